"""Clients in Go and Java whose stubs protoc generated from our .proto files alone work with `sesame serve`.

Each brings its own HTTP/2 implementation (grpc-go's, grpc-java's Netty transport), where the Python and Node
clients share gRPC's C core or grpc-js: trailers, rich status details, keepalive pings and reflection are
read their way. Both are built from Debian's packages (`make test` installs them; the Go sources in GOPATH
mode, the Java jars from /usr/share/java): nothing is downloaded. Both run at once against one server, each
on a channel that pings every 10 s, idle or not, as callers behind load balancers and NATs set it
(decision 0081).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from google.rpc import status_pb2

from tests.support.interop import Served

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

ROOT = Path(__file__).parent.parent.parent
HERE = Path(__file__).parent
PROTOS = ROOT / "proto"
API_FILES = sorted(str(p.relative_to(PROTOS)) for p in PROTOS.rglob("*.proto"))
# Where Debian's golang-*-dev packages put their sources (grpc-go, google.golang.org/protobuf, genproto).
DEBIAN_GOPATH = Path("/usr/share/gocode")
# The Go package the generated stubs are put in, inside the test's own GOPATH.
GO_STUBS = "sesameinterop/apiv1"
JARS = Path("/usr/share/java")
# grpc-java 1.41 and what it needs at run time, as Debian installs them (netty-all.jar is only a manifest).
JAVA_CLASSPATH = [
    "protobuf",
    "grpc-api",
    "grpc-context",
    "grpc-core",
    "grpc-netty",
    "grpc-protobuf",
    "grpc-protobuf-lite",
    "grpc-stub",
    "guava",
    "gson",
    "perfmark-api",
    "geronimo-annotation-1.3-spec",  # javax.annotation.Generated, which grpc-java 1.41's plugin writes
    *(
        f"netty-{part}"
        for part in (
            "common",
            "buffer",
            "transport",
            "transport-native-unix-common",
            "codec",
            "codec-http",
            "codec-http2",
            "codec-socks",
            "handler",
            "handler-proxy",
            "resolver",
        )
    ),
]
# How long each client holds a health Watch open on its idle, pinging connection: past gRPC's default
# policy (2 pings too soon tolerated, GOAWAY at the third, i.e. 30 s at one ping per 10 s) with a margin.
IDLE = 35
LANGUAGES = ("go", "java")


@dataclass(frozen=True, slots=True)
class ClientRun:
    """What a client printed and how it exited."""

    returncode: int
    summary: dict[str, Any]
    output: str


def _tools() -> dict[str, str]:
    """The build tools by name; a missing one fails the run (`make test` installs them: no optional extra)."""
    found = {
        "protoc": shutil.which("protoc"),
        "protoc-gen-go": shutil.which("protoc-gen-go"),
        "protoc-gen-go-grpc": shutil.which("protoc-gen-go-grpc"),
        "grpc_java_plugin": shutil.which("grpc_java_plugin"),
        "go": shutil.which("go"),
        "javac": shutil.which("javac"),
        "java": shutil.which("java"),
    }
    missing = sorted(name for name, path in found.items() if path is None)
    if missing:
        pytest.fail(f"not installed: {missing}; `make test` installs them (the Makefile's interop-deps)")
    return {name: path for name, path in found.items() if path is not None}


def _googleapis() -> Path:
    """The directory holding google/rpc/*.proto, as shipped by the googleapis-common-protos package."""
    include = Path(status_pb2.__file__).parents[2]
    assert (include / "google" / "rpc" / "error_details.proto").is_file(), include
    return include


def _run(argv: list[str], env: Mapping[str, str] | None = None) -> None:
    """A build step; its output is the assertion's message when it fails."""
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, f"{argv[0]}: {done.stdout}{done.stderr}"


def _build_go(tools: Mapping[str, str], gopath: Path) -> list[str]:
    """The stubs by protoc-gen-go and protoc-gen-go-grpc, then the client: the command that runs it."""
    package = gopath / "src" / "sesameinterop"
    package.mkdir(parents=True)
    shutil.copy(HERE / "go" / "client.go", package / "client.go")
    # Our .proto files carry no go_package (docs/api.md: the caller chooses the import path): M flags give it.
    mapping = [f"--go_opt=M{f}={GO_STUBS}" for f in API_FILES]
    mapping += [f"--go-grpc_opt=M{f}={GO_STUBS}" for f in API_FILES]
    out = gopath / "src"
    _run([tools["protoc"], f"-I{PROTOS}", f"--go_out={out}", f"--go-grpc_out={out}", *mapping, *API_FILES])
    env = {
        **os.environ,
        "GOPATH": f"{gopath}:{DEBIAN_GOPATH}",
        "GO111MODULE": "off",
        "GOCACHE": str(gopath / "cache"),
        "GOFLAGS": "",
        "GOPROXY": "off",
    }
    _run([tools["go"], "build", "-o", str(gopath / "client"), "sesameinterop"], env)
    return [str(gopath / "client"), "-idle", f"{IDLE}s"]


def _build_java(tools: Mapping[str, str], build: Path) -> list[str]:
    """The messages by protoc, the stubs by grpc-java's plugin, then the client: the command that runs it."""
    sources, classes = build / "src", build / "classes"
    sources.mkdir(parents=True)
    rpc = ["google/rpc/status.proto", "google/rpc/error_details.proto"]
    _run(
        [
            tools["protoc"],
            f"-I{PROTOS}",
            f"-I{_googleapis()}",
            f"-I{HERE / 'java'}",
            f"--plugin=protoc-gen-grpc-java={tools['grpc_java_plugin']}",
            f"--java_out={sources}",
            f"--grpc-java_out={sources}",
            *API_FILES,
            *rpc,
            "health.proto",
        ]
    )
    shutil.copy(HERE / "java" / "SesameClient.java", sources / "SesameClient.java")
    jars = [JARS / f"{name}.jar" for name in JAVA_CLASSPATH]
    missing = [str(jar) for jar in jars if not jar.is_file()]
    assert not missing, f"not installed: {missing} (the Makefile's interop-deps)"
    classpath = ":".join(map(str, jars))
    _run(
        [tools["javac"], "-nowarn", "-d", str(classes), "-cp", classpath, *map(str, sources.rglob("*.java"))]
    )
    return [tools["java"], "-cp", f"{classpath}:{classes}", "SesameClient", "-idle", str(IDLE)]


def _client_run(command: list[str], served: Served) -> ClientRun:
    """Run one built client against the server (bounded: 60 s and the idle time); its JSON summary line."""
    result = subprocess.run(
        [*command, "-target", served.address, "-sms-file", str(served.sms_file)],
        capture_output=True,
        text=True,
        timeout=60 + IDLE,
        check=False,
    )
    output = result.stdout + result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines, output
    return ClientRun(result.returncode, json.loads(lines[-1]), output)


@pytest.fixture(scope="module")
def runs(served: Served, tmp_path_factory: pytest.TempPathFactory) -> dict[str, ClientRun]:
    """Both clients built (one after the other: the machine's cores), then run at once against the server."""
    tools = _tools()
    commands = {
        "go": _build_go(tools, tmp_path_factory.mktemp("gopath")),
        "java": _build_java(tools, tmp_path_factory.mktemp("java")),
    }
    with ThreadPoolExecutor(len(commands)) as pool:
        started = {name: pool.submit(_client_run, command, served) for name, command in commands.items()}
        return {name: future.result() for name, future in started.items()}


@pytest.fixture(params=LANGUAGES)
def seen(request: pytest.FixtureRequest, runs: dict[str, ClientRun]) -> dict[str, Any]:
    """What one client saw."""
    run = runs[request.param]
    assert run.summary["crashed"] is None, run.output
    return dict(run.summary["seen"])


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_client_exits_zero_with_no_mismatch(language: str, runs: dict[str, ClientRun]) -> None:
    """The client exits 0 and reports no failure and no crash."""
    run = runs[language]
    assert run.returncode == 0, run.output
    assert run.summary["ok"] is True
    assert run.summary["failures"] == []
    assert run.summary["crashed"] is None


def test_the_client_enrols_and_round_trips_the_int64_amount(seen: dict[str, Any]) -> None:
    """EnrollUser answers an active user, GetUser masks the number, the int64 amount comes back whole."""
    assert seen["enrolled_status"] == "USER_STATUS_ACTIVE"
    assert seen["masked_phone"] == "+33*******78"
    assert seen["delivery_state"] == "DELIVERY_STATE_QUEUED"
    assert seen["amount_minor"] == 2_500_000_000


def test_the_client_sees_every_verification_outcome(seen: dict[str, Any]) -> None:
    """Changed amount, wrong code (2 attempts left), right code and replay answer as the API guide says."""
    assert seen["changed_amount"] == "VERIFY_RESULT_OPERATION_MISMATCH"
    assert seen["wrong_code"] == "VERIFY_RESULT_WRONG_CODE"
    assert seen["attempts_left"] == 2
    assert seen["right_code"] == "VERIFY_RESULT_VERIFIED"
    assert seen["replay"] == "VERIFY_RESULT_ALREADY_USED"


def test_the_client_verifies_the_proof_with_its_standard_library(seen: dict[str, Any]) -> None:
    """The proof's ES256 signature verifies under GetProofKeys' JWK set (Go's crypto/ecdsa, Java's
    SHA256withECDSAinP1363Format), its claims name the user, the challenge, the operation and the attempts;
    a changed claim does not verify; GetProof's proof verifies too."""
    assert seen["proof_verifies"] == "verified"
    assert seen["proof_sub"].split("-")[0] in LANGUAGES
    assert seen["proof_challenge_id"]
    assert seen["proof_op"] == "credit_transfer"
    assert seen["proof_attempts"] == 2
    assert seen["proof_typ"] == "sesame-proof+jwt"
    assert seen["tampered_proof_refused"] is True
    assert seen["get_proof_verifies"] is True


def test_the_client_decodes_the_rich_error_and_finds_the_request_id(seen: dict[str, Any]) -> None:
    """A bad IBAN is INVALID_ARGUMENT whose google.rpc.BadRequest names the IBAN field; the request id is in
    the trailers of an answer and of a refusal."""
    assert seen["bad_iban_code"] == 3  # INVALID_ARGUMENT
    assert seen["bad_iban_fields"] == "operation.credit_transfer.payee.iban"
    assert seen["request_id_in_trailers"] is True
    assert seen["refusal_request_id_in_trailers"] is True


def test_a_client_pinging_every_10_s_keeps_its_idle_connection_and_stream(seen: dict[str, Any]) -> None:
    """A client that pings every 10 s, with or without calls (the shortest keepalive grpc-go and grpc-java
    allow), keeps a health Watch stream and its connection through IDLE seconds of idleness. gRPC's server
    default takes a ping within 5 minutes of the last one (2 hours without a call in flight) as abuse: the
    third such ping was answered GOAWAY ENHANCE_YOUR_CALM "too_many_pings", which ended the stream
    (UNAVAILABLE "Too many pings") and would have failed any call in flight then."""
    assert seen["watch_while_idle"] == "alive"
    assert seen["call_after_idle"] == "SERVING"


def test_the_go_client_reaches_health_and_reflection(runs: dict[str, ClientRun]) -> None:
    """grpc-go's health client reads SERVING; reflection (v1alpha) lists the three Sésame services."""
    seen = runs["go"].summary["seen"]
    assert seen["health"] == "SERVING"
    assert seen["reflected_services"] == (
        "sesame.api.v1.AuthenticationService,sesame.api.v1.EnrollmentService,sesame.api.v1.EvidenceService"
    )
