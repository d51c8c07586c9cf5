"""Page tokens of EvidenceService forged by a caller: a token no page gave is INVALID_ARGUMENT on
`page_token`, never a crash, never a page. GetUserEvidence's tokens are decimal offsets: a token of other
Unicode digits (superscript two, circled one, Arabic-Indic one) passed `str.isdigit`, then `int` crashed
(INTERNAL) or read it as an offset no page ever gave."""

from __future__ import annotations

import grpc
import pytest

from sesame.api.v1 import evidence_service_pb2 as evidence_pb
from sesame.api.v1 import evidence_service_pb2_grpc as evidence_grpc
from tests.e2e.conftest import Live
from tests.e2e.helpers import enrolled, started, violations

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

FORGED = ["\u00b2", "\u2460", "\u0661", "\uff11", "-1", " 1", "1\n", "1" * 10, "0x1"]


async def test_a_forged_user_evidence_page_token_is_invalid_argument(live: Live) -> None:
    """Each forged token: INVALID_ARGUMENT naming page_token; a token a page could give is answered."""
    await started(live, await enrolled(live, "alice"))
    evidence = evidence_grpc.EvidenceServiceStub(live.channel)
    for token in FORGED:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await evidence.GetUserEvidence(
                evidence_pb.GetUserEvidenceRequest(user_id="alice", page_token=token)
            )
        assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT, repr(token)
        assert set(violations(refused.value)) == {"page_token"}, repr(token)
    beyond = await evidence.GetUserEvidence(
        evidence_pb.GetUserEvidenceRequest(user_id="alice", page_token="7")  # noqa: S106 (a page token, not a password)
    )
    assert (list(beyond.challenges), beyond.next_page_token) == ([], "")
