"""Every risk scenario file through the real server (real Redis, SoftHSM, gRPC, a local CAMARA operator),
on the server's clock moved from event to event; the false-positive rate on the benign ones is printed.

The same files are replayed on the pure rules by `sesame risk replay` (tests/unit/test_risk_replay.py):
here every operation is a StartChallenge whose code is read from the SMS and verified, wrong codes are
submitted for real, a number change is an OverrideSecurePhone and a SIM swap is the operator's answer.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

from sesame.api.v1 import authentication_service_pb2 as auth_pb
from sesame.api.v1 import enrollment_service_pb2 as enrol_pb
from sesame.api.v1 import operation_pb2 as op_pb
from sesame.clients.redis_store import RedisState
from sesame.hsm.pkcs11 import Pkcs11KeyStore
from sesame.server.domain.risk import RiskAssessment, RiskDecision, RiskReason
from sesame.server.grpc.demo import read_code
from sesame.server.risk_replay import Decided, Event, Scenario, load, summary
from tests.e2e.conftest import Live, live_with_sim_swap
from tests.e2e.helpers import wrong
from tests.support.camara_sim_swap import Operator

pytestmark = [pytest.mark.e2e, pytest.mark.integration]
SCENARIOS = sorted((Path(__file__).parents[1] / "risk_scenarios").glob("*.toml"))


@pytest.fixture(name="served")
async def _served(
    redis_store: RedisState, keystore: Pkcs11KeyStore, tmp_path: Path, operator: Operator
) -> AsyncIterator[Live]:
    async with live_with_sim_swap(redis_store, keystore, tmp_path, operator, wait=2.0) as live:
        yield live


def _operation(event: Event) -> op_pb.Operation:
    payee = op_pb.Payee(name=event.name, iban=event.payee)
    match event.kind:
        case "add_payee":
            return op_pb.Operation(add_beneficiary=op_pb.AddBeneficiary(payee=payee))
        case "transfer":
            money = op_pb.Money(currency="EUR", amount_minor=event.amount_minor)
            return op_pb.Operation(
                credit_transfer=op_pb.CreditTransfer(amount=money, payee=payee, transaction_id="replay")
            )
        case _:
            return op_pb.Operation(login=op_pb.Login())


class Customer:
    """One scenario's customer on the live server: its own user id and numbers."""

    def __init__(self, live: Live, operator: Operator, index: int) -> None:
        self.live, self.operator, self.index = live, operator, index
        self.user_id = f"scenario-{index}"
        self.phone = f"+33612{index:06d}"
        operator.changes[self.phone] = None  # known to the operator, never swapped

    async def enrol(self) -> None:
        await self.live.enrol.EnrollUser(
            enrol_pb.EnrollUserRequest(user_id=self.user_id, client_id="acme", secure_phone=self.phone)
        )

    async def step(self, event: Event) -> RiskAssessment | None:
        """Play one event; the assessment of an operation, None for the other events."""
        match event.kind:
            case "wrong_codes":
                await self._wrong_codes(event)
            case "sim_swap":
                self.operator.changes[self.phone] = self.live.clock.now()
            case "number_change":
                await self._number_change()
            case _:
                return await self._operation(event)
        return None

    async def _operation(self, event: Event) -> RiskAssessment:
        context = op_pb.RequestContext(ip=event.ip, device_id=event.device, session_id="s")
        operation = _operation(event)
        try:
            started = await self.live.auth.StartChallenge(
                auth_pb.StartChallengeRequest(user_id=self.user_id, operation=operation, context=context)
            )
        except grpc.aio.AioRpcError as error:
            return _denied(error)
        _, code = await read_code(self.live.sms_file, started.challenge_id)
        verified = await self.live.auth.VerifyChallenge(
            auth_pb.VerifyChallengeRequest(
                challenge_id=started.challenge_id, code=code, operation=operation, context=context
            )
        )
        assert verified.result == auth_pb.VERIFY_RESULT_VERIFIED
        name = auth_pb.RiskDecision.Name(started.risk.decision).removeprefix("RISK_DECISION_")
        reasons = tuple(RiskReason(r.code, r.description) for r in started.risk.reasons)
        return RiskAssessment(RiskDecision[name], reasons, started.risk.rules_version)

    async def _wrong_codes(self, event: Event) -> None:
        left = event.count
        while left > 0:
            login = op_pb.Operation(login=op_pb.Login())
            started = await self.live.auth.StartChallenge(
                auth_pb.StartChallengeRequest(user_id=self.user_id, operation=login)
            )
            _, code = await read_code(self.live.sms_file, started.challenge_id)
            for _ in range(min(left, 3)):
                await self.live.auth.VerifyChallenge(
                    auth_pb.VerifyChallengeRequest(
                        challenge_id=started.challenge_id, code=wrong(code), operation=login
                    )
                )
                left -= 1

    async def _number_change(self) -> None:
        self.phone = f"+33612{900000 + self.index:06d}"
        self.operator.changes[self.phone] = None
        await self.live.enrol.OverrideSecurePhone(
            enrol_pb.OverrideSecurePhoneRequest(
                user_id=self.user_id,
                new_phone=self.phone,
                operator="agent-7",
                reason="scenario",
                request_id=f"change-{self.index}",
                actor="back-office",
            )
        )


def _denied(error: grpc.aio.AioRpcError) -> RiskAssessment:
    """A RISK_DENIED error read back as the DENY assessment it carries."""
    assert error.code() is grpc.StatusCode.FAILED_PRECONDITION, error
    raw = dict(error.trailing_metadata() or ())["grpc-status-details-bin"]
    info = error_details_pb2.ErrorInfo()
    assert status_pb2.Status.FromString(raw).details[0].Unpack(info)
    assert info.reason == "RISK_DENIED"
    codes = info.metadata["reasons"].split(",")
    reasons = tuple(RiskReason(code, info.metadata[f"reason.{code}"]) for code in codes)
    return RiskAssessment(RiskDecision.DENY, reasons, info.metadata["rules_version"])


async def play(live: Live, operator: Operator, index: int, scenario: Scenario) -> list[Decided]:
    customer = Customer(live, operator, index)
    await customer.enrol()
    decided = []
    for number, event in enumerate(scenario.events, start=1):
        live.clock.advance(event.after)
        assessment = await customer.step(event)
        if assessment is not None and not event.past:
            decided.append(Decided(number, event, live.clock.now(), assessment))
    return decided


async def test_every_scenario_gives_its_expected_decisions_through_the_server(
    served: Live, operator: Operator, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each `expect` of each file holds through the real flows; detection and false-positive rates print."""
    results = []
    for index, path in enumerate(SCENARIOS, start=1):
        scenario = load(path)
        served.clock.advance(timedelta(days=30))  # apart from the scenario before
        results.append((scenario, await play(served, operator, index, scenario)))
    misses = [
        (scenario.name, d.index, d.event.expect, d.assessment.decision)
        for scenario, decided in results
        for d in decided
        if not d.as_expected
    ]
    assert misses == []
    lines = summary(results)
    with capsys.disabled():
        print("\nrisk scenarios through the real server:\n  " + "\n  ".join(lines))  # noqa: T201
    assert lines[0] == "frauds held or denied: 6/6"
    assert lines[1].startswith("false-positive rate (benign scenarios flagged): 0/10")
