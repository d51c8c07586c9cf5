"""An operator's SMS templates through `sesame serve` and the real gRPC server: used if good, else refused."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from sesame.server.domain.challenges import ChallengePolicy
from sesame.server.domain.sms_templates import load
from sesame.server.grpc.demo import find_sms
from tests.e2e.conftest import Live
from tests.e2e.helpers import enrolled, started
from tests.support.serve_process import run_serve

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

DEFAULTS = Path(__file__).parents[2] / "server" / "sesame" / "server" / "sms_templates"
HEAD = "{bank}: code {code} pour PAYER {amount} à {payee} (IBAN {iban}). "


def operator_templates(root: Path, transfer: str) -> Path:
    """A copy of the defaults whose French transfer template is `transfer`."""
    folder = root / "templates"
    shutil.copytree(DEFAULTS, folder, dirs_exist_ok=True)
    (folder / "fr" / "credit_transfer.txt").write_text(transfer, encoding="utf-8")
    return folder


def test_serve_refuses_a_template_over_the_budget_naming_the_file(tmp_path: Path) -> None:
    """`sesame serve` with a 3-part transfer template exits non-zero naming the file and parts, no trace."""
    folder = operator_templates(tmp_path, HEAD + "Attention. " * 12 + "{warning}")
    result = run_serve(tmp_path / "var", {"SESAME_SMS_TEMPLATES_DIR": str(folder)})
    assert result.returncode != 0
    assert "Traceback" not in result.stdout
    assert f"{folder / 'fr' / 'credit_transfer.txt'} takes 3 gsm7 parts" in result.stdout


@pytest.fixture
def policy(tmp_path_factory: pytest.TempPathFactory) -> ChallengePolicy:
    """The server's policy, with an operator's French transfer template."""
    folder = operator_templates(tmp_path_factory.mktemp("operator"), HEAD + "{warning}")
    return ChallengePolicy(sms_templates=load(folder))


async def test_the_server_sends_the_operators_words(live: Live) -> None:
    """A code SMS through the real server uses the operator's template, the warning still at its end."""
    user_id = await enrolled(live)
    challenge_id, code = await started(live, user_id)
    text, _ = find_sms(live.sms_file, challenge_id) or ("", "")
    assert text.startswith(f'MaBanque: code {code} pour PAYER 1 250,00 EUR à "Jean DUPONT" (IBAN FR76')
    assert text.endswith("appelez le numéro au dos de la carte.")
