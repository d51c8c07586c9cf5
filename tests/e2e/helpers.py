"""Requests the end-to-end tests build again and again."""

from __future__ import annotations

from sesame.api.v1 import authentication_service_pb2 as auth_pb
from sesame.api.v1 import enrollment_service_pb2 as enrol_pb
from sesame.api.v1 import operation_pb2 as op_pb
from sesame.server.grpc.demo import read_code
from tests.e2e.conftest import Live

PHONE = "+33612345678"
IBAN = "FR7630006000011234567890189"
CONTEXT = op_pb.RequestContext(ip="198.51.100.4", device_id="dev-1", session_id="sess-1", user_agent="pytest")


def transfer(amount_minor: int = 125000, iban: str = IBAN, name: str = "Jean DUPONT") -> op_pb.Operation:
    """A credit transfer operation."""
    return op_pb.Operation(
        credit_transfer=op_pb.CreditTransfer(
            amount=op_pb.Money(currency="EUR", amount_minor=amount_minor),
            payee=op_pb.Payee(name=name, iban=iban),
            transaction_id="tx-1",
        )
    )


async def enrolled(live: Live, user_id: str = "alice") -> str:
    """Enrol a user with the test phone and return its id."""
    await live.enrol.EnrollUser(
        enrol_pb.EnrollUserRequest(user_id=user_id, client_id="acme", secure_phone=PHONE)
    )
    return user_id


async def started(live: Live, user_id: str, operation: op_pb.Operation | None = None) -> tuple[str, str]:
    """Start a challenge and read its code from the console SMS file: (challenge_id, code)."""
    reply = await live.auth.StartChallenge(
        auth_pb.StartChallengeRequest(user_id=user_id, operation=operation or transfer(), context=CONTEXT)
    )
    _, code = await read_code(live.sms_file, reply.challenge_id)
    return reply.challenge_id, code


async def verify(
    live: Live, challenge_id: str, code: str, operation: op_pb.Operation | None = None
) -> auth_pb.VerifyChallengeResponse:
    """Submit a code for the default transfer (or `operation`)."""
    response: auth_pb.VerifyChallengeResponse = await live.auth.VerifyChallenge(
        auth_pb.VerifyChallengeRequest(
            challenge_id=challenge_id, code=code, operation=operation or transfer(), context=CONTEXT
        )
    )
    return response


def wrong(code: str) -> str:
    """A code of the same length that is certainly not `code`."""
    return str((int(code) + 1) % 10 ** len(code)).zfill(len(code))
