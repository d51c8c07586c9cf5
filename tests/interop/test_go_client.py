"""A Go client whose stubs protoc generated from our .proto files (tests/interop/go/client.go) works with
`sesame serve`: grpc-go's own HTTP/2 transport, where the Python and Node clients share gRPC's C core or
grpc-js. Built from Debian's Go packages (`make test` installs them), in GOPATH mode: no module download."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.interop import Served

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

ROOT = Path(__file__).parent.parent.parent
PROTOS = ROOT / "proto"
# Where Debian's golang-*-dev packages put their sources (grpc-go, google.golang.org/protobuf, genproto).
DEBIAN_GOPATH = Path("/usr/share/gocode")
# The Go package the generated stubs are put in, inside the test's own GOPATH.
STUBS = "sesameinterop/apiv1"
# How long the client holds a health Watch open on its idle connection, which pings every 10 s: past gRPC's
# default policy (2 pings too soon tolerated, GOAWAY at the third) with a margin.
IDLE = 35


@dataclass(frozen=True, slots=True)
class GoRun:
    """What the Go client printed and how it exited."""

    returncode: int
    summary: dict[str, Any]
    output: str


def _tools() -> dict[str, str]:
    """The build tools by name; a missing one fails the run (`make test` installs them: no optional extra)."""
    found = {
        "protoc": shutil.which("protoc"),
        "protoc-gen-go": shutil.which("protoc-gen-go"),
        "protoc-gen-go-grpc": shutil.which("protoc-gen-go-grpc"),
        "go": shutil.which("go"),
    }
    missing = sorted(name for name, path in found.items() if path is None)
    if missing:
        pytest.fail(f"not installed: {missing}; `make test` installs them (the Makefile's go-deps)")
    return {name: path for name, path in found.items() if path is not None}


def _build(gopath: Path) -> Path:
    """Generate the stubs with protoc-gen-go and protoc-gen-go-grpc, then build the client; its path."""
    tools = _tools()
    package = gopath / "src" / "sesameinterop"
    package.mkdir(parents=True)
    shutil.copy(ROOT / "tests" / "interop" / "go" / "client.go", package / "client.go")
    files = sorted(str(p.relative_to(PROTOS)) for p in PROTOS.rglob("*.proto"))
    # Our .proto files carry no go_package (docs/api.md: the caller chooses the import path): M flags give it.
    mapping = [f"--go_opt=M{f}={STUBS}" for f in files] + [f"--go-grpc_opt=M{f}={STUBS}" for f in files]
    subprocess.run(
        [
            tools["protoc"],
            f"-I{PROTOS}",
            f"--go_out={gopath / 'src'}",
            f"--go-grpc_out={gopath / 'src'}",
            *mapping,
            *files,
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    binary = gopath / "client"
    env = {
        **os.environ,
        "GOPATH": f"{gopath}:{DEBIAN_GOPATH}",
        "GO111MODULE": "off",
        "GOCACHE": str(gopath / "cache"),
        "GOFLAGS": "",
        "GOPROXY": "off",
    }
    built = subprocess.run(
        [tools["go"], "build", "-o", str(binary), "sesameinterop"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    return binary


@pytest.fixture(scope="module")
def go_run(served: Served, tmp_path_factory: pytest.TempPathFactory) -> GoRun:
    """Build the Go client and run it once against the server (bounded: 60 s and the idle time); its JSON
    summary line."""
    binary = _build(tmp_path_factory.mktemp("gopath"))
    result = subprocess.run(
        [str(binary), "-target", served.address, "-sms-file", str(served.sms_file), "-idle", f"{IDLE}s"],
        capture_output=True,
        text=True,
        timeout=60 + IDLE,
        check=False,
    )
    output = result.stdout + result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines, output
    return GoRun(result.returncode, json.loads(lines[-1]), output)


def test_go_client_exits_zero_with_no_mismatch(go_run: GoRun) -> None:
    """The client exits 0 and reports no failure and no crash."""
    assert go_run.returncode == 0, go_run.output
    assert go_run.summary["ok"] is True
    assert go_run.summary["failures"] == []
    assert go_run.summary["crashed"] is None


def test_go_client_enrols_and_round_trips_the_int64_amount(go_run: GoRun) -> None:
    """EnrollUser answers an active user, GetUser masks the number, the int64 amount comes back whole."""
    seen = go_run.summary["seen"]
    assert seen["enrolled_status"] == "USER_STATUS_ACTIVE"
    assert seen["masked_phone"] == "+33*******78"
    assert seen["delivery_state"] == "DELIVERY_STATE_QUEUED"
    assert seen["amount_minor"] == 2_500_000_000


def test_go_client_sees_every_verification_outcome(go_run: GoRun) -> None:
    """Changed amount, wrong code (2 attempts left), right code and replay answer as the API guide says."""
    seen = go_run.summary["seen"]
    assert seen["changed_amount"] == "VERIFY_RESULT_OPERATION_MISMATCH"
    assert seen["wrong_code"] == "VERIFY_RESULT_WRONG_CODE"
    assert seen["attempts_left"] == 2
    assert seen["right_code"] == "VERIFY_RESULT_VERIFIED"
    assert seen["replay"] == "VERIFY_RESULT_ALREADY_USED"


def test_go_client_verifies_the_proof_with_the_standard_library(go_run: GoRun) -> None:
    """The proof's ES256 signature verifies under GetProofKeys' JWK set with Go's crypto/ecdsa, its claims
    name the user, the challenge, the operation and the attempts; a changed claim does not verify; GetProof's
    proof verifies too."""
    seen = go_run.summary["seen"]
    assert seen["proof_verifies"] == "verified"
    assert seen["proof_sub"].startswith("go-")
    assert seen["proof_challenge_id"]
    assert seen["proof_op"] == "credit_transfer"
    assert seen["proof_attempts"] == 2
    assert seen["proof_typ"] == "sesame-proof+jwt"
    assert seen["tampered_proof_refused"] is True
    assert seen["get_proof_verifies"] is True


def test_go_client_decodes_the_rich_error_and_finds_the_request_id(go_run: GoRun) -> None:
    """A bad IBAN is INVALID_ARGUMENT whose google.rpc.BadRequest (grpc-go's status package) names the IBAN
    field; the request id is in the trailers of an answer and of a refusal."""
    seen = go_run.summary["seen"]
    assert seen["bad_iban_status"] == "InvalidArgument"
    assert seen["bad_iban_fields"] == "operation.credit_transfer.payee.iban"
    assert seen["request_id_in_trailers"] is True
    assert seen["refusal_request_id_in_trailers"] is True


def test_go_client_reaches_health_and_reflection(go_run: GoRun) -> None:
    """grpc-go's health client reads SERVING; reflection lists the three Sésame services."""
    seen = go_run.summary["seen"]
    assert seen["health"] == "SERVING"
    assert seen["reflected_services"] == (
        "sesame.api.v1.AuthenticationService,sesame.api.v1.EnrollmentService,sesame.api.v1.EvidenceService"
    )


def test_go_client_pinging_every_10_s_keeps_its_idle_connection_and_stream(go_run: GoRun) -> None:
    """A client that pings every 10 s, with or without calls (grpc-go's keepalive at its shortest), keeps a
    health Watch stream and its connection through 35 s of idleness. gRPC's server default takes a ping
    within 5 minutes of the last one, without a call in flight 2 hours, as abuse: the third such ping was
    answered GOAWAY ENHANCE_YOUR_CALM "too_many_pings", which ended the stream (UNAVAILABLE) and would
    have failed any call in flight then."""
    seen = go_run.summary["seen"]
    assert seen["watch_while_idle"] == "alive"
    assert seen["call_after_idle"] == "SERVING"
