"""The design's skeleton: StartChallenge and VerifyChallenge with only the work no implementation can skip.

The echo server (bench/echo_server.py) measures what Python gRPC costs. This one measures what the design
card's stack costs when nothing else is done (decision 0083): Sésame's own protobuf messages on the same
grpc.aio server (uvloop, one process per worker, SO_REUSEPORT), and per call exactly the round trips issue 6
names as the least:

- StartChallenge: the request parsed, a nonce from the OS, one Lua script on Redis (the challenge's hash
  written with its expiry, an outbox entry appended), the answer;
- VerifyChallenge: the request parsed, the operation's SHA-256, one HMAC in the HSM (the expected code,
  compared in constant time), one ECDSA signature in the HSM (the proof, over a few claims), one script
  (the challenge read, marked used, a journal entry appended), the answer;
- the SMS: each worker's dispatcher reads the outbox in batches (a consumer group), computes each code in
  the HSM, appends a line per SMS to a file, acknowledges the batch.

The HSM calls run on the event loop (SoftHSM answers in tens of µs: no thread hop); every Redis command of
a worker goes on one pipelined connection (Sésame's `Lane`, hiredis: decision 0063), the outbox read
without blocking, every `POLL` seconds while it is empty. Nothing is checked (no user, no budget, no
rule, no lock, no risk), nothing is journaled but one entry a call, nothing is sealed, logged or metered:
no correct Sésame can cost less, so `flows / skeleton` is the share of the reachable that Sésame reaches,
and `skeleton / echo` the most any implementation on this stack reaches of the echo floor (issue 6 asks
50 %). Redis runs as Sésame's embedded one does (AOF, appendfsync everysec); the token is a fresh SoftHSM
token with Sésame's keys.

    python -m bench.skeleton_server --port 50098 --var /tmp/skeleton [--workers 2]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import hmac
import os
import secrets
import struct
from pathlib import Path
from typing import Any

import grpc
import pkcs11
import redis.asyncio as aioredis
import uvloop
from pkcs11 import Mechanism, ObjectClass
from redis.exceptions import ResponseError

from bench.echo_server import run_workers
from sesame.api.v1 import authentication_service_pb2 as auth_pb
from sesame.clients.redis_lane import Lane
from sesame.clients.redis_server import EmbeddedRedis
from sesame.hsm.keys import init_keys
from sesame.hsm.softhsm import bootstrap_token

SERVICE = "sesame.api.v1.AuthenticationService"
LIFETIME_MS = 300_000
STREAM_LENGTH = 10_000  # the outbox and the journal are trimmed to about this many entries
OUTBOX = "{skeleton}:outbox"
JOURNAL = "{skeleton}:journal"
GROUP = "dispatchers"
BATCH = 64
POLL = 0.005  # seconds between two reads of an empty outbox

# One round trip each; the keys are in the user's slot, as Sésame's are.
OPEN = """
redis.call('HSET', KEYS[1], 'user', ARGV[1], 'nonce', ARGV[2], 'op_digest', ARGV[3], 'status', 'open',
  'attempts', 0, 'created_at', ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[6], '*', 'challenge', ARGV[7], 'phone', ARGV[8],
  'op_digest', ARGV[3])
return 1
"""
DECIDE = """
local found = redis.call('HMGET', KEYS[1], 'status', 'attempts')
if not found[1] then return 0 end
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'attempts', tonumber(found[2]) + 1)
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', 'challenge', ARGV[2], 'result', ARGV[1])
return 1
"""


def _digest(operation: Any) -> bytes:
    return hashlib.sha256(operation.SerializeToString(deterministic=True)).digest()


class Skeleton:
    """One worker's HSM session, Redis connection and scripts."""

    def __init__(self, token_label: str, pin: str, redis_url: str, sms_file: Path) -> None:
        """Open the session and the connection (the module is loaded in this process)."""
        module = os.environ["SESAME_SKELETON_MODULE"]
        self._session = pkcs11.lib(module).get_token(token_label=token_label).open(user_pin=pin)
        self._otp: Any = self._session.get_key(object_class=ObjectClass.SECRET_KEY, label="sesame-otp-v1")
        self._proof: Any = self._session.get_key(
            object_class=ObjectClass.PRIVATE_KEY, label="sesame-proof-v1"
        )
        # Every command goes on one pipelined connection, Sésame's fastest path to Redis (decision 0063).
        self._lane = Lane(aioredis.Redis.from_url(redis_url))
        self._open = hashlib.sha1(OPEN.encode()).hexdigest()  # noqa: S324 - Redis names scripts by SHA-1
        self._decide = hashlib.sha1(DECIDE.encode()).hexdigest()  # noqa: S324
        self._sms = sms_file.open("ab", buffering=0)
        self._consumer = f"worker-{os.getpid()}"

    def _code(self, nonce: bytes, op_digest: bytes) -> str:
        mac = self._otp.sign(nonce + op_digest, mechanism=Mechanism.SHA256_HMAC)
        offset = mac[-1] & 0x0F
        return f"{struct.unpack('>I', mac[offset : offset + 4])[0] & 0x7FFFFFFF:010d}"[-6:]

    async def start(
        self, request: auth_pb.StartChallengeRequest, _context: Any
    ) -> auth_pb.StartChallengeResponse:
        """Open a challenge: one script."""
        nonce = secrets.token_bytes(16)
        challenge_id = f"{{u:{request.user_id}}}.{nonce.hex()}"
        op_digest = _digest(request.operation).hex()
        await self._lane.call(
            "EVALSHA",
            self._open,
            2,
            f"{{u:{request.user_id}}}:ch:{nonce.hex()}",
            OUTBOX,
            request.user_id,
            nonce.hex(),
            op_digest,
            str(asyncio.get_running_loop().time()),
            LIFETIME_MS,
            STREAM_LENGTH,
            challenge_id,
            "+33612340000",
        )
        return auth_pb.StartChallengeResponse(challenge_id=challenge_id, masked_phone="+33******00")

    async def verify(
        self, request: auth_pb.VerifyChallengeRequest, _context: Any
    ) -> auth_pb.VerifyChallengeResponse:
        """Check the code (one HMAC), sign the proof (one signature), decide (one script)."""
        place, _, nonce_hex = request.challenge_id.rpartition(".")
        op_digest = _digest(request.operation)
        expected = self._code(bytes.fromhex(nonce_hex), op_digest)
        matches = hmac.compare_digest(expected.encode(), request.code.encode())
        claims = f'{{"sub":"{place}","op_digest":"{op_digest.hex()}","jti":"{secrets.token_hex(16)}"}}'
        signature = self._proof.sign(hashlib.sha256(claims.encode()).digest(), mechanism=Mechanism.ECDSA)
        result = "verified" if matches else "wrong_code"
        await self._lane.call(
            "EVALSHA",
            self._decide,
            2,
            f"{place}:ch:{nonce_hex}",
            JOURNAL,
            result,
            request.challenge_id,
            STREAM_LENGTH,
        )
        return auth_pb.VerifyChallengeResponse(
            result=auth_pb.VERIFY_RESULT_VERIFIED if matches else auth_pb.VERIFY_RESULT_WRONG_CODE,
            proof=claims + "." + signature.hex(),
        )

    async def load_scripts(self) -> None:
        """Have Redis hold both scripts (EVALSHA names them)."""
        for script in (OPEN, DECIDE):
            await self._lane.call("SCRIPT", "LOAD", script)

    async def dispatch(self) -> None:
        """Send the outbox's SMS: a batch read, a code computed in the HSM each, a line each, one ack. The
        reads go on the lane without blocking (a blocking read would hold the calls behind it): an empty
        outbox is read again `POLL` seconds later."""
        with contextlib.suppress(ResponseError):  # the group exists already (another worker made it)
            await self._lane.call("XGROUP", "CREATE", OUTBOX, GROUP, "0", "MKSTREAM")
        while True:
            read = await self._lane.call(
                "XREADGROUP", "GROUP", GROUP, self._consumer, "COUNT", BATCH, "STREAMS", OUTBOX, ">"
            )
            if not read:
                await asyncio.sleep(POLL)
                continue
            ((_stream, entries),) = read
            lines = []
            for _id, fields in entries:
                named = dict(zip(fields[::2], fields[1::2], strict=True))
                challenge_id = named[b"challenge"].decode()
                nonce = bytes.fromhex(challenge_id.rpartition(".")[2])
                code = self._code(nonce, bytes.fromhex(named[b"op_digest"].decode()))
                lines.append(f'{{"challenge_id":"{challenge_id}","text":"Code {code}"}}\n'.encode())
            self._sms.write(b"".join(lines))
            await self._lane.call("XACK", OUTBOX, GROUP, *(entry_id for entry_id, _ in entries))


async def serve(port: int, token_label: str, pin: str, redis_url: str, sms_file: Path) -> None:
    """Serve the two methods on 127.0.0.1:`port`, and dispatch, until terminated."""
    skeleton = Skeleton(token_label, pin, redis_url, sms_file)
    await skeleton.load_scripts()
    handler = grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "StartChallenge": grpc.unary_unary_rpc_method_handler(
                skeleton.start,
                request_deserializer=auth_pb.StartChallengeRequest.FromString,
                response_serializer=auth_pb.StartChallengeResponse.SerializeToString,
            ),
            "VerifyChallenge": grpc.unary_unary_rpc_method_handler(
                skeleton.verify,
                request_deserializer=auth_pb.VerifyChallengeRequest.FromString,
                response_serializer=auth_pb.VerifyChallengeResponse.SerializeToString,
            ),
        },
    )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    dispatcher = asyncio.create_task(skeleton.dispatch())
    try:
        await server.wait_for_termination()
    finally:
        dispatcher.cancel()


def _worker(port: int, token_label: str, pin: str, redis_url: str, sms_file: Path) -> None:
    uvloop.run(serve(port, token_label, pin, redis_url, sms_file))


def main() -> None:
    """Make the token and Redis under `--var`, then run N worker processes sharing the port."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--var", type=Path, required=True, help="a private directory for the token and Redis")
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    pin = secrets.token_urlsafe(16)
    config = bootstrap_token(args.var / "softhsm", label="skeleton", pin=pin)
    init_keys(config)
    os.environ["SESAME_SKELETON_MODULE"] = config.module
    sms_file = args.var / "sms.jsonl"
    with EmbeddedRedis(args.var / "redis") as embedded:
        run_workers(args.workers, _worker, (args.port, "skeleton", pin, embedded.url, sms_file))


if __name__ == "__main__":
    main()
