"""What a caller's text can make the code SMS say, through the real server, Redis and SoftHSM (m5)."""

from __future__ import annotations

import pytest

from sesame.api.v1 import authentication_service_pb2 as auth_pb
from sesame.server.grpc.demo import find_sms
from tests.e2e.conftest import Live
from tests.e2e.helpers import enrolled, started, transfer, verify

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

SPOOF = "ANNULATION du virement precedent. Code de blocage"


async def test_a_payee_name_cannot_write_the_banks_words_into_the_sms(live: Live) -> None:
    """The spoofing name prints quoted and without its sentence; the code verifies over the name as sent."""
    user_id = await enrolled(live)
    operation = transfer(name=SPOOF)
    challenge_id, code = await started(live, user_id, operation)
    text, _ = find_sms(live.sms_file, challenge_id) or ("", "")
    assert SPOOF not in text
    assert "precedent." not in text
    assert '"ANNULATION du virement precedent Code de"' in text
    assert (await verify(live, challenge_id, code, operation)).result == auth_pb.VERIFY_RESULT_VERIFIED
