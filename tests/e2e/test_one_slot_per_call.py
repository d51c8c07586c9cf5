"""Every call the server makes to Redis touches one hash slot, so that it runs on Redis Cluster (issue 6
item 2, issue 8 item 1; docs/decisions/0044).

Proved on the single Redis the tests run: MONITOR shows each command and, for a script, every command the
script ran with the keys it really touched, declared or not (a journal's feed, a budget named from a number
the script read). A cluster refuses a call whose keys span slots (CROSSSLOT) and a script that touches a key
of another slot than its declared keys'; this test finds the same calls without a cluster, for every flow
the server runs: enrolment, Start (a login, a transfer, a request id, a risk denial journaled in the
user's journal), Verify (wrong, right, five wrong codes in a row and the block), Resend, Cancel,
GetChallenge, GetProof, evidence, the lifecycle (suspend, reinstate, number change, an override and its
notice kept beside the user, unblock, revoke, a client's termination), the outbox's dispatch (take_outbox,
a send, a notice, a code and a notice no provider takes, dead-lettered), the send units held, spent, given
back and a resend withdrawn (decision 0046), the sealer (the feeds' reads, the openings journal) and the
archive's drop.
"""

from __future__ import annotations

import asyncio
import re
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
import redis.asyncio as aioredis

from sesame.api.v1 import authentication_service_pb2 as auth_pb
from sesame.api.v1 import enrollment_service_pb2 as enrol_pb
from sesame.api.v1 import evidence_service_pb2 as ev_pb
from sesame.api.v1 import evidence_service_pb2_grpc as ev_grpc
from sesame.api.v1 import operation_pb2 as op_pb
from sesame.clients.redis_scripts import Scripts
from sesame.clients.redis_server import EmbeddedRedis
from sesame.clients.redis_store import RedisState
from sesame.clients.sms_console import ConsoleSmsGateway
from sesame.hsm.pkcs11 import Pkcs11KeyStore
from sesame.server.app import Gateway
from sesame.server.clock_watch import SystemClock
from sesame.server.domain.errors import DeliveryRefused
from sesame.server.domain.model import SentSms, SmsMessage
from sesame.server.domain.ports import SmsGateway
from tests.e2e.conftest import Live, live_with_sim_swap
from tests.e2e.helpers import CONTEXT, IBAN, PHONE, enrolled, started, transfer, verify, wrong
from tests.support.camara_sim_swap import Operator
from tests.support.outbox import settled
from tests.support.slots import Call, monitored, slots_of

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

WHO = {"actor": "ops-1", "reason": "checked"}
NEW_PHONE = "+33698765432"
REFUSED = "+33611111111"  # a number the gateway refuses for good: its code and notice are dead-lettered
SWAPPED = "+33622222222"  # a number whose SIM the operator says changed 2 hours ago: a transfer is denied
SHARED = "+33633333333"  # one number of two users, whose budget (10 an hour) they spend together
LOGIN = op_pb.Operation(login=op_pb.Login())
ADD = op_pb.Operation(add_beneficiary=op_pb.AddBeneficiary(payee=op_pb.Payee(name="Jean DUPONT", iban=IBAN)))
# Scripts no flow of the server runs (so not seen here): record_keys, a new key at boot (the key ledger,
# shard 0); record_delivery, a delivery report (Kannel's DLR endpoint, SMPP receipts); record_health, a
# health note (journaled by a server that notes them, on a change); record_user_notice, no flow since notices
# are queued and settled by the dispatcher (decision 0041: the port's method is left to the tests);
# count_delivered_part, an SMPP receipt for a part another process sent (its one key: the message's
# `{pm:<ref>}` set, decision 0111); keep_journals, the sealer's note of a journal archived while its
# challenge is still open (`{journal}`, decision 0132: here every challenge is closed when it is archived).
# Each declares keys of one place only (see its KEYS) and journals there.
NOT_RUN = {
    "record_keys",
    "record_delivery",
    "record_health",
    "record_user_notice",
    "count_delivered_part",
    "keep_journals",
}
# Run by a health round when one falls within the flows (its one key, the shard count's): checked when seen.
HEALTH_ROUND = {"commands_refused"}
# keep_outbox runs here though no send is slow: the flows move the server's clock 31 s ahead, and a dispatcher
# that reaches a send more than half the claim idle time after its take asks whether the entry is still its
# own (decision 0129).
# No call spans slots: Start's and Resend's number, caller and global send units are held by a script of
# their own in `{sb}`, sent concurrently with the step (take_send_units, decision 0046), spent by the
# dispatcher (spend_send_units) or given back (release_send_units).


class Refusing:
    """The console gateway, but every message to REFUSED is refused for good (a provider's final word)."""

    def __init__(self, gateway: SmsGateway) -> None:
        self._gateway = gateway

    async def send(self, message: SmsMessage) -> SentSms:
        """Refuse REFUSED's messages; hand the others to the console."""
        if message.to == REFUSED:
            raise DeliveryRefused("the number is refused", "bad_number")
        return await self._gateway.send(message)


@pytest.fixture(name="guarded")
async def _guarded(
    redis_store: RedisState, keystore: Pkcs11KeyStore, tmp_path: Path, operator: Operator
) -> AsyncIterator[Live]:
    """The real server, asking the local operator's SIM Swap API, sending through the refusing gateway."""
    console = ConsoleSmsGateway(tmp_path / "sms.jsonl", SystemClock(), "development")
    sms = Gateway("console", Refusing(console))
    async with live_with_sim_swap(redis_store, keystore, tmp_path, operator, 0.3, sms=sms) as live:
        yield live


async def every_flow(live: Live, operator: Operator) -> None:
    """One of each call the server makes to Redis."""
    user_id = await enrolled(live)
    with pytest.raises(grpc.aio.AioRpcError):  # another client's user: taken back out of its index
        await live.enrol.EnrollUser(
            enrol_pb.EnrollUserRequest(user_id=user_id, client_id="other", secure_phone=PHONE)
        )
    challenge_id, code = await started(live, user_id)
    await verify(live, challenge_id, wrong(code))
    await verify(live, challenge_id, code)
    added, added_code = await started(live, user_id, ADD)
    await verify(live, added, added_code, ADD)  # the beneficiary notice, queued then sent
    await live.auth.GetChallenge(auth_pb.GetChallengeRequest(challenge_id=challenge_id))
    await live.auth.GetProof(auth_pb.GetProofRequest(challenge_id=challenge_id))
    login = await live.auth.StartChallenge(
        auth_pb.StartChallengeRequest(user_id=user_id, operation=LOGIN, context=CONTEXT, request_id="r-1")
    )
    await live.auth.StartChallenge(
        auth_pb.StartChallengeRequest(user_id=user_id, operation=LOGIN, context=CONTEXT, request_id="r-1")
    )
    await settled(live.store)
    live.clock.advance(timedelta(seconds=31))  # past the wait between two sends
    await live.auth.ResendChallenge(
        auth_pb.ResendChallengeRequest(challenge_id=login.challenge_id, context=CONTEXT)
    )
    await live.auth.CancelChallenge(
        auth_pb.CancelChallengeRequest(challenge_id=login.challenge_id, context=CONTEXT)
    )
    blocked, blocked_code = await started(live, user_id)
    for _ in range(5):
        await verify(live, blocked, wrong(blocked_code))
    await live.enrol.UnblockUser(enrol_pb.UnblockUserRequest(user_id=user_id, request_id="u-1", **WHO))
    await started(live, user_id)
    await live.enrol.SuspendUser(enrol_pb.SuspendUserRequest(user_id=user_id, request_id="s-1", **WHO))
    await live.enrol.ReinstateUser(enrol_pb.ReinstateUserRequest(user_id=user_id, request_id="s-2", **WHO))
    change = op_pb.Operation(change_phone=op_pb.ChangePhone(new_phone=NEW_PHONE))
    proved, proved_code = await started(live, user_id, change)
    await verify(live, proved, proved_code, change)
    await live.enrol.ChangeSecurePhone(
        enrol_pb.ChangeSecurePhoneRequest(
            user_id=user_id,
            new_phone=NEW_PHONE,
            request_id="p-1",
            actor="online-banking",
            context=CONTEXT,
            verified_challenge_id=proved,
        )
    )
    await live.enrol.GetUser(enrol_pb.GetUserRequest(user_id=user_id))
    await settled(live.store)
    assert live.sealer is not None
    live.sealer.drops_journals = True
    assert await live.sealer.step() is not None
    evidence = ev_grpc.EvidenceServiceStub(live.channel)
    await evidence.GetChallengeEvidence(ev_pb.GetChallengeEvidenceRequest(challenge_id=challenge_id))
    await evidence.GetUserEvidence(ev_pb.GetUserEvidenceRequest(user_id=user_id))
    other = await enrolled(live, "bob")
    await live.enrol.RevokeUser(enrol_pb.RevokeUserRequest(user_id=other, request_id="v-1", **WHO))
    await refused_and_denied(live, operator)
    await withdrawn_resend(live)
    await live.enrol.TerminateClient(
        enrol_pb.TerminateClientRequest(client_id="acme", request_id="t-1", **WHO)
    )
    await asyncio.sleep(0.1)


async def withdrawn_resend(live: Live) -> None:
    """Two users of one number spend its send budget; a resend of the second, which its own budget allows,
    is refused by the number's held units and withdrawn (decision 0046)."""
    for user_id in ("erin", "frank"):
        await live.enrol.EnrollUser(
            enrol_pb.EnrollUserRequest(user_id=user_id, client_id="acme", secure_phone=SHARED)
        )
    last = None
    for n in range(10):
        last = await live.auth.StartChallenge(
            auth_pb.StartChallengeRequest(
                user_id="erin" if n < 5 else "frank", operation=LOGIN, context=CONTEXT
            )
        )
    assert last is not None
    await settled(live.store)
    live.clock.advance(timedelta(seconds=31))
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await live.auth.ResendChallenge(
            auth_pb.ResendChallengeRequest(challenge_id=last.challenge_id, context=CONTEXT)
        )
    assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED


async def refused_and_denied(live: Live, operator: Operator) -> None:
    """A code and an override's notice no provider takes (dead-lettered, the notice's old number dropped
    with it), and a transfer denied for a swapped SIM (journaled in the user's journal, nothing sent)."""
    await live.enrol.EnrollUser(
        enrol_pb.EnrollUserRequest(user_id="carol", client_id="acme", secure_phone=REFUSED)
    )
    await live.auth.StartChallenge(
        auth_pb.StartChallengeRequest(user_id="carol", operation=LOGIN, context=CONTEXT)
    )
    await live.enrol.OverrideSecurePhone(
        enrol_pb.OverrideSecurePhoneRequest(
            user_id="carol",
            new_phone=PHONE,
            operator="ops-1",
            reason="lost phone",
            request_id="o-1",
            actor="ops-1",
        )
    )
    await settled(live.store)
    await live.enrol.EnrollUser(
        enrol_pb.EnrollUserRequest(user_id="dave", client_id="acme", secure_phone=SWAPPED)
    )
    operator.changes[SWAPPED] = datetime.now(UTC) - timedelta(hours=2)
    with pytest.raises(grpc.aio.AioRpcError) as denied:
        await live.auth.StartChallenge(
            auth_pb.StartChallengeRequest(user_id="dave", operation=transfer(), context=CONTEXT)
        )
    assert denied.value.code() is grpc.StatusCode.FAILED_PRECONDITION


def _kind(tag: str) -> str:
    """A hash tag less what names its shard: `{s:3}` is `{s:<n>}`."""
    return re.sub(r"^\{s:\d+\}$", "{s:<n>}", tag)


def _named(call: Call, scripts: dict[str, str]) -> str:
    if call.name == "evalsha":
        return scripts.get(call.command[1].decode(), call.command[1].decode())
    return call.name


async def test_every_call_touches_one_slot(
    guarded: Live, operator: Operator, redis_server: EmbeddedRedis, redis_client: aioredis.Redis
) -> None:
    scripts = Scripts(redis_client).names()
    async with monitored(redis_server.url) as watched:
        try:
            await every_flow(guarded, operator)
        except grpc.aio.AioRpcError as error:  # pragma: no cover (names the call that failed)
            raise AssertionError(f"{error.code()}: {error.details()}") from error
    spans: dict[str, set[str]] = defaultdict(set)
    ran: set[str] = set()
    for call in watched.calls:
        name = _named(call, scripts)
        ran.add(name)
        slots = await slots_of(redis_client, call)
        if len(slots) > 1:
            spans[name] |= {_kind(tag) for tag in slots.values()}
    assert dict(spans) == {}  # every call, every script's every command: one slot
    assert set(scripts.values()) - ran - HEALTH_ROUND == NOT_RUN
