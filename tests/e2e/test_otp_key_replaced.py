"""An OTP key made again under its label while serving is not taken for the one it replaced (decision 0156).

Found by an outside audit: another process with the PIN destroyed `sesame-otp-v1` and generated a key under
the same label. The server found the label again after its handle went stale and used the new key: right
codes of the challenges already sent answered WRONG_CODE (counted against their users), new challenges were
sent and verified under the substitute, and health read SERVING. A boot refuses such a token (the key
ledger); a running worker now tells the key apart by its MAC of a fixed input: a code under it answers
KEY_VERSION_UNAVAILABLE with no attempt counted, a new StartChallenge fails, health reads NOT_SERVING.
"""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from sesame.api.v1 import authentication_service_pb2 as auth_pb
from sesame.api.v1 import authentication_service_pb2_grpc as auth_grpc
from sesame.api.v1 import enrollment_service_pb2 as enrol_pb
from sesame.api.v1 import enrollment_service_pb2_grpc as enrol_grpc
from sesame.api.v1 import operation_pb2 as op_pb
from sesame.server.grpc.probe import check_health
from tests.support.dev_token import on_dev_token
from tests.support.outbox import sms_in
from tests.support.serve_process import served, until

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

# Another process with the PIN: the key under `sys.argv[3]` destroyed, one generated in its place.
_REPLACE = """
import sys
import pkcs11
from pkcs11 import Attribute, KeyType, MechanismFlag, ObjectClass
token = pkcs11.lib(sys.argv[1]).get_token(token_label="sesame")
with token.open(rw=True, user_pin=sys.argv[2]) as session:
    session.get_key(object_class=ObjectClass.SECRET_KEY, label=sys.argv[3]).destroy()
    session.generate_key(
        KeyType.GENERIC_SECRET, 256, label=sys.argv[3], store=True,
        capabilities=MechanismFlag.SIGN | MechanismFlag.VERIFY,
        template={Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False},
    )
"""


def _replace_key(var: Path, label: str) -> None:
    on_dev_token(var, _REPLACE, label)


def _login(auth: auth_grpc.AuthenticationServiceStub) -> str:
    return auth.StartChallenge(
        auth_pb.StartChallengeRequest(user_id="ana", operation=op_pb.Operation(login=op_pb.Login())),
        timeout=10,
    ).challenge_id


def test_a_replaced_otp_key_answers_key_version_unavailable_and_counts_nothing(tmp_path: Path) -> None:
    """Two codes sent under v1, v1 replaced by another process: each right code answers UNAVAILABLE
    KEY_VERSION_UNAVAILABLE and keeps its attempts, a new start fails, health reads NOT_SERVING."""
    var = tmp_path / "var"
    with served(var, {"SESAME_WORKERS": "1"}) as serving, grpc.insecure_channel(serving.address) as channel:
        enrol_grpc.EnrollmentServiceStub(channel).EnrollUser(
            enrol_pb.EnrollUserRequest(user_id="ana", client_id="acme", secure_phone="+33612345678"),
            timeout=5,
        )
        auth = auth_grpc.AuthenticationServiceStub(channel)
        sent = {
            challenge_id: sms_in(var / "sms.jsonl", challenge_id)[1]
            for challenge_id in (_login(auth), _login(auth))
        }
        _replace_key(var, "sesame-otp-v1")
        for challenge_id, code in sent.items():
            for _ in range(2):
                with pytest.raises(grpc.RpcError) as refused:
                    auth.VerifyChallenge(
                        auth_pb.VerifyChallengeRequest(
                            challenge_id=challenge_id,
                            code=code,
                            operation=op_pb.Operation(login=op_pb.Login()),
                        ),
                        timeout=10,
                    )
                assert refused.value.code() == grpc.StatusCode.UNAVAILABLE, refused.value.details()
            read = auth.GetChallenge(auth_pb.GetChallengeRequest(challenge_id=challenge_id), timeout=5)
            assert (read.challenge.status, read.challenge.attempts_left) == (auth_pb.CHALLENGE_STATUS_OPEN, 3)
        with pytest.raises(grpc.RpcError) as refused:
            _login(auth)
        assert refused.value.code() == grpc.StatusCode.INTERNAL
        assert until(lambda: check_health(serving.address, "") == "NOT_SERVING", 5)
    assert serving.output().count("sesame-otp-v1 is not the key this process used") == 1
