"""`sesame demo`: every outcome of the skeleton, against a running server, with the generated stubs."""

from __future__ import annotations

import asyncio
import json
import secrets
import sys
from pathlib import Path

import grpc

from sesame.api.v1 import authentication_service_pb2 as auth_pb
from sesame.api.v1 import authentication_service_pb2_grpc as auth_grpc
from sesame.api.v1 import enrollment_service_pb2 as enrol_pb
from sesame.api.v1 import enrollment_service_pb2_grpc as enrol_grpc
from sesame.api.v1 import operation_pb2 as op_pb

_PAYEE = op_pb.Payee(name="Jean DUPONT", iban="FR76 3000 6000 0112 3456 7890 189")
_CONTEXT = op_pb.RequestContext(ip="203.0.113.7", device_id="demo-device", session_id="demo-session")


def _transfer(amount_minor: int) -> op_pb.Operation:
    return op_pb.Operation(
        credit_transfer=op_pb.CreditTransfer(
            amount=op_pb.Money(currency="EUR", amount_minor=amount_minor),
            payee=_PAYEE,
            transaction_id="demo-tx-1",
        )
    )


def code_in(text: str) -> str:
    """The code of an SMS rendered by Sésame (`<bank>: code 123456 ...`), as the end user reads it."""
    return text.split("code ", 1)[1].split(" ", 1)[0]


def find_sms(sms_file: Path, challenge_id: str) -> tuple[str, str] | None:
    """The (text, code) of the console SMS for `challenge_id`, if it was written yet."""
    if not sms_file.exists():
        return None
    for line in sms_file.read_text(encoding="utf-8").splitlines():
        try:
            message = json.loads(line)
        except json.JSONDecodeError:
            continue  # the last line, still being written by the console gateway: read again later
        if message["challenge_id"] == challenge_id:
            text: str = message["text"]
            return text, code_in(text)
    return None


async def read_code(sms_file: Path, challenge_id: str, wait_seconds: float = 5.0) -> tuple[str, str]:
    """The (text, code) of the console SMS for `challenge_id`, waiting for it a bounded time."""
    deadline = asyncio.get_running_loop().time() + wait_seconds
    while (found := await asyncio.to_thread(find_sms, sms_file, challenge_id)) is None:
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"no SMS for {challenge_id} in {sms_file}")
        await asyncio.sleep(0.05)
    return found


def demo_phone() -> str:
    """A random French mobile number in +33 612, a block assigned to mobiles whatever its last six digits.

    Not every +336 number is valid (639 and most of 69x are not), and the server refuses invalid ones.
    """
    return f"+33612{secrets.randbelow(10**6):06d}"


async def run_demo(target: str, sms_file: str) -> int:
    """Enrol, then go through every verification outcome; prints each step. Exit status 0 when all match.

    What stops the walk (no server, no SMS file, a refused call) is one line on stderr and status 1.
    """
    path = Path(sms_file)
    # The console gateway creates its file at boot: none here means another file, or no console gateway.
    if not await asyncio.to_thread(path.is_file):
        _stopped(f"no console SMS file at {sms_file}: give the server's SESAME_SMS_CONSOLE_FILE (--sms-file)")
        return 1
    try:
        return await _walk(target, path)
    except grpc.aio.AioRpcError as error:
        reason = (
            f"no server answers at {target}"
            if error.code() is grpc.StatusCode.UNAVAILABLE
            else f"the server answered {error.code().name}: {error.details()}"
        )
        _stopped(reason)
    except TimeoutError:
        _stopped(
            f"no SMS for the demo's challenge in {sms_file}: is it the server's SESAME_SMS_CONSOLE_FILE?"
        )
    return 1


def _stopped(reason: str) -> None:
    print(f"sesame demo: {reason}", file=sys.stderr)  # noqa: T201


async def _walk(target: str, sms_file: Path) -> int:
    async with grpc.aio.insecure_channel(target) as channel:
        auth = auth_grpc.AuthenticationServiceStub(channel)
        enrol = enrol_grpc.EnrollmentServiceStub(channel)
        user_id = f"demo-{secrets.token_hex(4)}"
        # A fresh French mobile number per run, as a fresh user: repeated demos against one server do not
        # spend one number's send budget (10 SMS an hour by default, docs/decisions/0011).
        phone = demo_phone()
        enrolled = await enrol.EnrollUser(
            enrol_pb.EnrollUserRequest(user_id=user_id, client_id="demo-client", secure_phone=phone)
        )
        print(f"enrolled {enrolled.user.user_id} -> {enrolled.user.masked_phone}")  # noqa: T201
        failures = 0

        async def verify(label: str, challenge_id: str, code: str, amount: int, expected: int) -> None:
            nonlocal failures
            reply = await auth.VerifyChallenge(
                auth_pb.VerifyChallengeRequest(
                    challenge_id=challenge_id, code=code, operation=_transfer(amount), context=_CONTEXT
                )
            )
            name = auth_pb.VerifyResult.Name(reply.result)
            # A verification is what the README promises only with its signed proof (the proof key may be
            # unusable: VERIFIED then comes without one, which an outside audit saw the demo call ok).
            unproven = reply.result == auth_pb.VERIFY_RESULT_VERIFIED and not reply.proof
            if unproven:
                name += " without a signed proof"
            ok = reply.result == expected and not unproven
            failures += not ok
            left = (
                f" ({reply.attempts_left} attempts left)"
                if reply.result == auth_pb.VERIFY_RESULT_WRONG_CODE
                else ""
            )
            print(f"{'ok ' if ok else 'BAD'} {label:<44} -> {name}{left}")  # noqa: T201
            if reply.proof:
                print(f"    signed proof ({len(reply.proof)} characters): sesame evidence {challenge_id}")  # noqa: T201

        async def start() -> tuple[str, str]:
            started = await auth.StartChallenge(
                auth_pb.StartChallengeRequest(user_id=user_id, operation=_transfer(125000), context=_CONTEXT)
            )
            text, code = await read_code(sms_file, started.challenge_id)
            print(f"challenge {started.challenge_id} sent to {started.masked_phone}")  # noqa: T201
            print(f"  SMS: {text}")  # noqa: T201
            return started.challenge_id, code

        first, code = await start()
        wrong = str((int(code) + 1) % 10 ** len(code)).zfill(len(code))
        await verify("wrong code", first, wrong, 125000, auth_pb.VERIFY_RESULT_WRONG_CODE)
        await verify(
            "right code, amount changed to 9 999,00 EUR",
            first,
            code,
            999900,
            auth_pb.VERIFY_RESULT_OPERATION_MISMATCH,
        )
        await verify("right code after the mismatch", first, code, 125000, auth_pb.VERIFY_RESULT_VOIDED)
        second, code = await start()
        await verify("right code, right operation", second, code, 125000, auth_pb.VERIFY_RESULT_VERIFIED)
        await verify("replay of the same code", second, code, 125000, auth_pb.VERIFY_RESULT_ALREADY_USED)
        return 1 if failures else 0
