"""Starting afresh after a lost token is asked for explicitly: a setting or a `sesame serve` flag."""

from __future__ import annotations

import pytest

from sesame.server.cli import _parser
from sesame.server.config import Settings
from sesame.server.domain.errors import ConfigurationError


def test_start_afresh_is_off_unless_set() -> None:
    """Without SESAME_KEYS_START_AFRESH a boot never makes keys above a lost token's."""
    assert Settings.from_env({}).keys_start_afresh is False
    assert Settings.from_env({"SESAME_KEYS_START_AFRESH": "1"}).keys_start_afresh is True


def test_start_afresh_accepts_only_zero_or_one() -> None:
    """Any other value stops the boot, named in the error."""
    with pytest.raises(ConfigurationError, match="SESAME_KEYS_START_AFRESH"):
        Settings.from_env({"SESAME_KEYS_START_AFRESH": "yes"})


def test_serve_takes_a_start_afresh_flag() -> None:
    """`sesame serve --start-afresh` is the flag form of the setting."""
    assert _parser().parse_args(["serve", "--start-afresh"]).start_afresh is True
    assert _parser().parse_args(["serve"]).start_afresh is False
