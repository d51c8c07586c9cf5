"""Clients in Go and Java whose stubs protoc generated from our .proto files alone work with `sesame serve`.

Each brings its own HTTP/2 implementation (grpc-go's, grpc-java's Netty transport), where the Python and Node
clients share gRPC's C core or grpc-js: trailers, rich status details, keepalive pings and reflection are
read their way. Both are built from Debian's packages (`make test` installs them; the Go sources in GOPATH
mode, the Java jars from /usr/share/java): nothing is downloaded. Both run at once against one server, each
on a channel that pings every 10 s, idle or not, as callers behind load balancers and NATs set it
(decision 0081).

The same builds then run over mTLS against a `sesame serve` with the test PKI and a caller policy, as banks'
services call the production port: Go's crypto/tls and Java's JSSE (JDK ALPN through Netty) against gRPC
core's BoringSSL, the full flow under the policy, a call the policy does not grant (PERMISSION_DENIED with
its ErrorInfo) and a client certificate from another CA (the handshake fails: UNAVAILABLE, nothing served).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc import status_pb2

from sesame.api.v1 import enrollment_service_pb2 as enrol_pb
from sesame.api.v1 import enrollment_service_pb2_grpc as enrol_grpc
from tests.support.interop import Served
from tests.support.pki import BACKOFFICE, ONLINE, Identity, Pki
from tests.support.serve_process import free_port, start_serve

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
    # OpenSSL for the mTLS runs (libnetty-tcnative-java): Debian's Netty 4.1.48 lacks its JDK ALPN classes.
    "netty-tcnative",
]
# netty-tcnative's library as libnetty-tcnative-jni installs it. Netty 4.1.48 looks for libnetty_tcnative.so
# (underscores) and the library checks its own file name when loaded, so the build copies it under that name.
TCNATIVE = next(Path("/usr/lib").glob("*/jni/libnetty-tcnative.so"), None)
# How long each client holds a health Watch open on its idle, pinging connection: past gRPC's default
# policy (2 pings too soon tolerated, GOAWAY at the third, i.e. 30 s at one ping per 10 s) with a margin.
IDLE = 35
LANGUAGES = ("go", "java")
# The bank's client in the mTLS runs is online banking's certificate (tests/support/pki.py); the policy grants
# it what the clients call, not OverrideSecurePhone. The back office is named too, so that the foreign
# certificate, which names it, would be let in if another CA's certificates were not refused.
MTLS_POLICY = f"""
[callers."{ONLINE}"]
allow = [
  "sesame.api.v1.EnrollmentService/EnrollUser",
  "sesame.api.v1.EnrollmentService/GetUser",
  "sesame.api.v1.AuthenticationService/*",
  "grpc.reflection.v1alpha.ServerReflection/*",
]

[callers."{BACKOFFICE}"]
allow = ["sesame.api.v1.EnrollmentService/*"]
"""
OVERRIDE = "sesame.api.v1.EnrollmentService/OverrideSecurePhone"


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
    return [str(gopath / "client")]


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
    native = build / "native"
    native.mkdir()
    assert TCNATIVE is not None, "not installed: libnetty-tcnative-jni (the Makefile's interop-deps)"
    shutil.copy(TCNATIVE, native / "libnetty_tcnative.so")
    return [tools["java"], f"-Djava.library.path={native}", "-cp", f"{classpath}:{classes}", "SesameClient"]


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
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """Both clients built once for the module (one after the other: the machine's cores): their commands."""
    tools = _tools()
    return {
        "go": _build_go(tools, tmp_path_factory.mktemp("gopath")),
        "java": _build_java(tools, tmp_path_factory.mktemp("java")),
    }


def _at_once(commands: Mapping[str, list[str]], served: Served) -> dict[str, ClientRun]:
    """The commands run at once against the server, by name."""
    with ThreadPoolExecutor(len(commands)) as pool:
        started = {name: pool.submit(_client_run, command, served) for name, command in commands.items()}
        return {name: future.result() for name, future in started.items()}


@pytest.fixture(scope="module")
def runs(served: Served, built: dict[str, list[str]]) -> dict[str, ClientRun]:
    """Both clients run at once against the plaintext server, each holding its connection IDLE seconds."""
    idle = {"go": f"{IDLE}s", "java": str(IDLE)}
    return _at_once({name: [*command, "-idle", idle[name]] for name, command in built.items()}, served)


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


# mTLS with a caller policy: the same clients as banks' services would call the production port.


@dataclass(frozen=True, slots=True)
class Secured:
    """A `sesame serve` behind mTLS with MTLS_POLICY, and the test PKI it trusts."""

    served: Served
    pki: Pki


@pytest.fixture(scope="module")
def secured(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    """`sesame serve` with the test PKI's server certificate, its CA for clients and MTLS_POLICY; health on a
    plaintext probe port (the gRPC port wants a certificate)."""
    policy = tmp_path_factory.mktemp("policy") / "policy.toml"
    policy.write_text(MTLS_POLICY)
    var = tmp_path_factory.mktemp("var")
    settings = {
        **pki.env,
        "SESAME_AUTHZ_POLICY_FILE": str(policy),
        "SESAME_HEALTH_ADDR": f"127.0.0.1:{free_port()}",
    }
    serving = start_serve(var, settings=settings)
    yield Secured(Served(serving.address, var / "sms.jsonl"), pki)
    serving.process.terminate()
    serving.process.wait(timeout=30)


def _tls(ca: Path, identity: Identity) -> list[str]:
    """The client's TLS flags: trust `ca`, present `identity`, check the server's certificate as localhost."""
    files = ["-ca", str(ca), "-cert", str(identity.cert), "-key", str(identity.key)]
    return [*files, "-server-name", "localhost"]


def _denied(language: str) -> list[str]:
    """The flag that makes the client also call OverrideSecurePhone (a Go bool flag, a Java pair)."""
    return ["-denied=true"] if language == "go" else ["-denied", "true"]


def _probe_user(language: str) -> str:
    return f"{language}-foreign-ca-probe"


@pytest.fixture(scope="module")
def tls_runs(secured: Secured, built: dict[str, list[str]]) -> dict[str, ClientRun]:
    """Each client once with online banking's certificate (the full flow, then the call not granted) and
    once with the foreign CA's certificate (one enrolment tried): the four at once, no idle time."""
    pki = secured.pki
    commands = {}
    for name, command in built.items():
        commands[name] = [*command, *_tls(pki.ca, pki.online), *_denied(name)]
        commands[f"{name}-foreign"] = [*command, *_tls(pki.ca, pki.foreign), "-probe", _probe_user(name)]
    return _at_once(commands, secured.served)


@pytest.fixture(params=LANGUAGES)
def seen_over_mtls(request: pytest.FixtureRequest, tls_runs: dict[str, ClientRun]) -> dict[str, Any]:
    """What one client saw over mTLS, having exited 0 with no mismatch."""
    run = tls_runs[request.param]
    assert run.summary["crashed"] is None, run.output
    assert (run.returncode, run.summary["failures"]) == (0, []), run.output
    return dict(run.summary["seen"])


def test_over_mtls_the_client_runs_the_whole_flow(seen_over_mtls: dict[str, Any]) -> None:
    """Over mTLS (Go crypto/tls or Java JSSE against the server's BoringSSL) and the policy: every
    verification outcome, the proof verified with the client's standard library, the rich error, the request
    id."""
    seen = seen_over_mtls
    assert seen["enrolled_status"] == "USER_STATUS_ACTIVE"
    assert seen["masked_phone"] == "+33*******78"
    assert seen["amount_minor"] == 2_500_000_000
    assert (seen["changed_amount"], seen["wrong_code"], seen["attempts_left"]) == (
        "VERIFY_RESULT_OPERATION_MISMATCH",
        "VERIFY_RESULT_WRONG_CODE",
        2,
    )
    assert (seen["right_code"], seen["replay"]) == ("VERIFY_RESULT_VERIFIED", "VERIFY_RESULT_ALREADY_USED")
    assert seen["proof_verifies"] == "verified"
    assert seen["proof_sub"].split("-")[0] in LANGUAGES
    assert seen["tampered_proof_refused"] is True
    assert seen["get_proof_verifies"] is True
    assert (seen["bad_iban_code"], seen["bad_iban_fields"]) == (3, "operation.credit_transfer.payee.iban")
    assert seen["request_id_in_trailers"] is True
    assert seen["refusal_request_id_in_trailers"] is True


def test_over_mtls_each_client_speaks_its_own_tls_stack(tls_runs: dict[str, ClientRun]) -> None:
    """Go's crypto/tls negotiates TLS 1.3 and ALPN h2 with the server. The Java client's TLS is OpenSSL
    through netty-tcnative (Debian's Netty 4.1.48 lacks the JDK ALPN classes), and TLS 1.2: grpc-netty offers
    Netty's HTTP/2 cipher list, which in 4.1.48 has no TLS 1.3 suite. Such callers need the server's TLS 1.2
    (ECDHE, AEAD): a TLS 1.3-only port would refuse them."""
    go = tls_runs["go"].summary["seen"]
    assert (go["tls_version"], go["alpn"]) == ("TLS 1.3", "h2")
    java = tls_runs["java"].summary["seen"]
    assert java["tls_provider"] == "OpenSslClientContext"
    version, cipher = java["tls_version"].split()
    assert (version, cipher.startswith("TLS_ECDHE_ECDSA_WITH_")) == ("TLSv1.2", True)


def test_over_mtls_the_go_client_reaches_health_and_reflection(tls_runs: dict[str, ClientRun]) -> None:
    """Health needs no grant; reflection is granted to online banking by MTLS_POLICY."""
    seen = tls_runs["go"].summary["seen"]
    assert seen["health"] == "SERVING"
    assert "sesame.api.v1.EnrollmentService" in seen["reflected_services"]


def test_a_call_the_policy_does_not_grant_is_permission_denied_with_its_error_info(
    seen_over_mtls: dict[str, Any],
) -> None:
    """OverrideSecurePhone, not granted to online banking: PERMISSION_DENIED, an ErrorInfo CALLER_NOT_ALLOWED
    naming the method and the caller read from the certificate, the request id; the number did not move."""
    seen = seen_over_mtls
    assert seen["denied_code"] == "PERMISSION_DENIED"
    assert (seen["denied_reason"], seen["denied_domain"]) == ("CALLER_NOT_ALLOWED", "sesame")
    assert (seen["denied_method"], seen["denied_caller"]) == (OVERRIDE, ONLINE)
    assert seen["denied_request_id_in_trailers"] is True
    assert seen["denied_masked_phone_after"] == "+33*******78"


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_certificate_from_another_ca_fails_the_handshake_and_nothing_is_served(
    language: str, secured: Secured, tls_runs: dict[str, ClientRun]
) -> None:
    """A client certificate naming the back office (granted EnrollmentService/*) but signed by another CA: the
    enrolment ends UNAVAILABLE, and the user it tried to enrol does not exist."""
    run = tls_runs[f"{language}-foreign"]
    assert run.summary["crashed"] is None, run.output
    assert run.summary["seen"]["probe_code"] == "UNAVAILABLE", run.output
    pki = secured.pki
    credentials = pki.online.credentials(pki.ca)
    with (
        grpc.secure_channel(secured.served.address, credentials, _LOCALHOST) as channel,
        pytest.raises(grpc.RpcError) as caught,
    ):
        enrol_grpc.EnrollmentServiceStub(channel).GetUser(
            enrol_pb.GetUserRequest(user_id=_probe_user(language)), timeout=5
        )
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND  # type: ignore[attr-defined]


_LOCALHOST = (("grpc.ssl_target_name_override", "localhost"),)
