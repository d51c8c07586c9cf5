"""`sesame serve` refuses a delivery-report token file that holds nothing (decision 0080).

SESAME_DLR_TOKEN_FILE is read stripped: a file holding only a new line (an empty secret mounted, a key
written with `echo >`) gave the empty token, which skipped the token's check, and the listener took a report
with `token=` as authentic. Through `sesame serve` on main, a report forged with `token=` turned a challenge
whose SMS had failed into DELIVERED. Now the boot is refused, naming the setting, as for a token too short.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.serve_process import run_serve

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


@pytest.mark.parametrize("content", ["", "\n", "   \n"])
def test_serve_refuses_an_empty_delivery_report_token_file(tmp_path: Path, content: str) -> None:
    """Kannel with reports on loopback, the token file blank: exit non-zero naming the token, no trace."""
    token_file = tmp_path / "dlr-token"
    token_file.write_text(content, encoding="utf-8")
    settings = {
        "SESAME_SMS_PROVIDERS": "kannel",
        "SESAME_KANNEL_URL": "http://127.0.0.1:13013",
        "SESAME_KANNEL_USERNAME": "sesame",
        "SESAME_KANNEL_PASSWORD": "kannel-password",
        "SESAME_DLR_ADDR": "127.0.0.1:0",
        "SESAME_DLR_TOKEN_FILE": str(token_file),
    }
    result = run_serve(tmp_path / "var", settings)
    assert result.returncode != 0
    assert "Traceback" not in result.stdout
    assert "SESAME_DLR_TOKEN_FILE holds no secret" in result.stdout
    assert "kannel-password" not in result.stdout
