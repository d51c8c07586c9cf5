"""`sesame serve` behind mTLS as an operator runs it, and production's refusal to run without it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from sesame.api.v1 import enrollment_service_pb2 as enrol_pb
from sesame.api.v1 import enrollment_service_pb2_grpc as enrol_grpc
from tests.support.pki import Pki
from tests.support.serve_process import ServeProcess, free_port, run_serve, start_serve

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


@dataclass(frozen=True)
class Served:
    """A running `sesame serve` with mTLS, and the settings it was given."""

    serving: ServeProcess
    settings: dict[str, str]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[Served]:
    """`sesame serve` with the test PKI and policy, and a plaintext health-only listener."""
    settings = {**pki.env, "SESAME_HEALTH_ADDR": f"127.0.0.1:{free_port()}"}
    serving = start_serve(tmp_path_factory.mktemp("var"), settings=settings)
    yield Served(serving, settings)
    serving.process.terminate()
    serving.process.wait(timeout=30)
    assert serving.process.returncode == 0, serving.output()


def _health(served: Served, *args: str) -> subprocess.CompletedProcess[str]:
    """`sesame health` with the server's own settings, as the Docker HEALTHCHECK runs it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SESAME_")}
    env.update(served.settings, SESAME_GRPC_ADDR=served.serving.address)
    return subprocess.run(
        [sys.executable, "-m", "sesame.server.cli", "health", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_health_command_uses_the_plaintext_health_listener(served: Served) -> None:
    """With SESAME_HEALTH_ADDR set, `sesame health` needs no option and no certificate."""
    result = _health(served)
    assert (result.returncode, result.stdout.strip()) == (0, "SERVING"), result.stderr


def test_health_command_can_present_a_certificate_to_the_mtls_port(served: Served, pki: Pki) -> None:
    """With --ca/--cert/--key, `sesame health` checks the mTLS port itself; without them it cannot."""
    options = ("--ca", str(pki.ca), "--cert", str(pki.stranger.cert), "--key", str(pki.stranger.key))
    with_certificate = _health(served, *options, "--server-name", "localhost")
    assert (with_certificate.returncode, with_certificate.stdout.strip()) == (0, "SERVING")
    plaintext = _health(served, "--target", served.serving.address)
    assert (plaintext.returncode, plaintext.stdout.strip()) == (1, "UNREACHABLE")


def test_an_allowed_caller_is_served_and_the_boot_log_says_mtls(served: Served, pki: Pki) -> None:
    """The backoffice enrols through the mTLS port; the boot log names the transport and no open policy."""
    credentials = pki.backoffice.credentials(pki.ca)
    with grpc.secure_channel(served.serving.address, credentials) as channel:
        reply = enrol_grpc.EnrollmentServiceStub(channel).EnrollUser(
            enrol_pb.EnrollUserRequest(user_id="served", client_id="acme", secure_phone="+33612345678"),
            timeout=5,
        )
    assert reply.user.user_id == "served"
    output = served.serving.output()
    assert "mTLS, client certificates required" in output
    assert "every caller may call every RPC" not in output


def test_production_without_tls_refuses_to_start_and_names_what_is_missing(tmp_path: Path) -> None:
    """SESAME_ENV=production with nothing else exits 2, listing the TLS files and the policy at once."""
    result = run_serve(tmp_path / "var", {"SESAME_ENV": "production"})
    assert result.returncode == 2, result.stdout
    for name in (
        "SESAME_TLS_CERT_FILE",
        "SESAME_TLS_KEY_FILE",
        "SESAME_TLS_CLIENT_CA_FILE",
        "SESAME_AUTHZ_POLICY_FILE",
        "SESAME_REDIS_URL",
    ):
        assert name in result.stdout
    assert not (tmp_path / "var").exists()
