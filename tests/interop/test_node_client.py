"""A Node.js client built only from our .proto files (tests/interop/client.mjs) works with `sesame serve`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc import status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.support.interop import Served

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

ROOT = Path(__file__).parent.parent.parent
NODE_MODULES = ROOT / ".tools" / "node_modules"


@dataclass(frozen=True, slots=True)
class NodeRun:
    """What the Node.js client printed and how it exited."""

    returncode: int
    summary: dict[str, Any]
    output: str


def _node() -> str:
    """The node executable; a missing one fails the run (it is a requirement, not an optional extra)."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed: `make test` installs npm (which brings node) when it is missing")
    if not (NODE_MODULES / "@grpc" / "grpc-js").is_dir():
        pytest.fail(f"no @grpc/grpc-js under {NODE_MODULES}: `make test` installs tools/package-lock.json")
    return node


def _googleapis_dir() -> Path:
    """The directory holding google/rpc/*.proto, as shipped by the googleapis-common-protos package."""
    include = Path(status_pb2.__file__).parents[2]
    assert (include / "google" / "rpc" / "error_details.proto").is_file(), include
    return include


@pytest.fixture(scope="module")
def node_run(served: Served) -> NodeRun:
    """Run the Node.js client once against the server (bounded: 60 s) and parse its JSON summary line."""
    result = subprocess.run(
        [
            _node(),
            str(ROOT / "tests" / "interop" / "client.mjs"),
            "--target",
            served.address,
            "--sms-file",
            str(served.sms_file),
            "--protos",
            str(ROOT / "proto"),
            "--googleapis",
            str(_googleapis_dir()),
        ],
        env={**os.environ, "NODE_PATH": str(NODE_MODULES)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    output = result.stdout + result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines, output
    return NodeRun(result.returncode, json.loads(lines[-1]), output)


def test_health_serves_every_service_name(served: Served) -> None:
    """Health answers SERVING for the server and both services (from Python: no health.proto for node)."""
    with grpc.insecure_channel(served.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "sesame.api.v1.AuthenticationService", "sesame.api.v1.EnrollmentService"):
            reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING, service


def test_node_client_exits_zero_with_no_mismatch(node_run: NodeRun) -> None:
    """The client exits 0 and reports no failure and no crash."""
    assert node_run.returncode == 0, node_run.output
    assert node_run.summary["ok"] is True
    assert node_run.summary["failures"] == []
    assert node_run.summary["crashed"] is None


def test_node_client_enrols_and_reads_the_user_masked(node_run: NodeRun) -> None:
    """EnrollUser answers an active user and GetUser shows the number masked."""
    seen = node_run.summary["seen"]
    assert seen["enrolled_status"] == "USER_STATUS_ACTIVE"
    assert seen["masked_phone"] == "+33*******78"


def test_node_client_round_trips_the_int64_amount(node_run: NodeRun) -> None:
    """The credit transfer's int64 amount goes out and comes back as the same decimal string."""
    seen = node_run.summary["seen"]
    assert seen["delivery_state"] == "DELIVERY_STATE_QUEUED"
    assert seen["operation_kind"] == "credit_transfer"
    assert seen["amount_minor"] == "2500000000"


def test_node_client_sees_every_verification_outcome(node_run: NodeRun) -> None:
    """Changed amount, wrong code (2 attempts left), right code and replay answer as the API guide says."""
    seen = node_run.summary["seen"]
    assert seen["changed_amount"] == "VERIFY_RESULT_OPERATION_MISMATCH"
    assert seen["wrong_code"] == "VERIFY_RESULT_WRONG_CODE"
    assert seen["attempts_left"] == 2
    assert seen["right_code"] == "VERIFY_RESULT_VERIFIED"
    assert seen["replay"] == "VERIFY_RESULT_ALREADY_USED"


def test_node_client_decodes_the_bad_request_detail(node_run: NodeRun) -> None:
    """A bad IBAN checksum is INVALID_ARGUMENT whose google.rpc.BadRequest names the IBAN field."""
    seen = node_run.summary["seen"]
    assert seen["bad_iban_status"] == "INVALID_ARGUMENT"
    assert seen["bad_iban_details_code"] == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert seen["bad_iban_fields"] == "operation.credit_transfer.payee.iban"
