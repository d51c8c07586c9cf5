"""deploy/k8s/: valid against the Kubernetes schemas, and in agreement with what the server reads and serves.

The schemas are those kubernetes-validate ships (a dev dependency, pinned in the lock): offline, strict (an
unknown field is an error, not ignored as `kubectl apply` would). `kubectl apply --dry-run=client` was not
used: it downloads the schemas from a cluster's API server (docs/decisions/0028).
"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import kubernetes_validate
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from sesame.server.config import Settings
from sesame.server.grpc.policy import parse_policy
from tests.support.pki import Pki
from tests.support.serve_process import free_port, start_serve
from tests.test_settings_listed import _listed_by_help

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
# The oldest Kubernetes the manifests are meant for (gRPC probes are GA since 1.27) and the newest schemas
# the pinned validator knows.
VERSIONS = ("1.30.0", "1.37.0")


def _image_uid() -> int:
    """The uid of the image's `sesame` user, as tools/image-install.sh (the Dockerfile's install) makes it."""
    found = re.search(
        r"--uid (\d+) sesame", (ROOT / "tools" / "image-install.sh").read_text(encoding="utf-8")
    )
    assert found is not None
    return int(found.group(1))


def _kustomized_files() -> list[Path]:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text(encoding="utf-8"))
    return [K8S / name for name in kustomization["resources"]]


def _resources() -> list[dict[str, Any]]:
    return [
        document
        for path in _kustomized_files()
        for document in yaml.safe_load_all(path.read_text(encoding="utf-8"))
        if document
    ]


def _one(kind: str, name: str = "sesame") -> dict[str, Any]:
    found = [r for r in _resources() if r["kind"] == kind and r["metadata"]["name"] == name]
    assert len(found) == 1, (kind, name)
    return found[0]


def _container() -> dict[str, Any]:
    containers = _one("Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    container: dict[str, Any] = containers[0]
    return container


def _settings() -> dict[str, str]:
    data: dict[str, str] = _one("ConfigMap", "sesame-settings")["data"]
    return data


def _port(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


def _container_port(name: str) -> int:
    ports = {p["name"]: p["containerPort"] for p in _container()["ports"]}
    return int(ports[name])


def test_the_kustomization_names_every_manifest() -> None:
    """Every YAML file of deploy/k8s/ is a resource of kustomization.yaml (none forgotten by apply -k)."""
    on_disk = {p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml"}
    assert set(_kustomized_files()) == on_disk


def test_every_kind_the_issue_asks_for_is_there() -> None:
    kinds = sorted(r["kind"] for r in _resources())
    expected = ["ConfigMap"] * 2 + ["Secret"] * 4 + ["Deployment", "Service", "PodDisruptionBudget"]
    expected.append("PersistentVolumeClaim")  # the journal's archive
    assert kinds == sorted([*expected, "NetworkPolicy"])


@pytest.mark.parametrize("version", VERSIONS)
def test_every_manifest_is_valid_against_the_kubernetes_schemas(version: str) -> None:
    """Strict validation: a misspelt or misplaced field fails (see the next test)."""
    for resource in _resources():
        kubernetes_validate.validate(resource, version, strict=True)


def test_the_validator_refuses_an_unknown_field() -> None:
    """The check above can fail: a field Kubernetes does not know is refused, not ignored."""
    deployment = _one("Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["grcp"] = {"port": 50052}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, VERSIONS[-1], strict=True)


def test_every_setting_of_the_configmap_is_one_the_server_reads() -> None:
    """No misspelt SESAME_* name (it would be ignored silently): each is listed by `sesame serve --help`."""
    assert set(_settings()) - set(_listed_by_help()) == set()


def _mounted_files(root: Path, pki: Pki) -> dict[str, Path]:
    """The pod's read-only mounts laid out under `root`: each key of each Secret or ConfigMap a file.

    The Secrets' placeholders are replaced by test values (the test PKI, a PIN, a password, a token); the
    policy is the ConfigMap's own text.
    """
    test_values = {
        ("sesame-tls", "tls.crt"): pki.server.cert.read_text(),
        ("sesame-tls", "tls.key"): pki.server.key.read_text(),
        ("sesame-client-ca", "ca.crt"): pki.ca.read_text(),
        ("sesame-hsm", "pin"): "1234",
        ("sesame-sms", "kannel-password"): "a kannel password",
        ("sesame-sms", "dlr-token"): "t" * 43,
    }
    sources = {}
    for resource in _resources():
        if resource["kind"] == "Secret":
            sources[resource["metadata"]["name"]] = {
                key: test_values[(resource["metadata"]["name"], key)] for key in resource["stringData"]
            }
        elif resource["kind"] == "ConfigMap":
            sources[resource["metadata"]["name"]] = resource["data"]
    volumes = {v["name"]: v for v in _one("Deployment")["spec"]["template"]["spec"]["volumes"]}
    mounts = {}
    for mount in _container()["volumeMounts"]:
        volume = volumes[mount["name"]]
        directory = root / mount["mountPath"].lstrip("/")
        directory.mkdir(parents=True)
        mounts[mount["mountPath"]] = directory
        source = volume.get("secret", {}).get("secretName") or volume.get("configMap", {}).get("name")
        for key, text in sources.get(source, {}).items():
            (directory / key).write_text(text)
    return mounts


def test_the_settings_read_in_the_pod_pass_the_settings_reader(tmp_path: Path, pki: Pki) -> None:
    """The ConfigMap's settings, with the pod's mounts, are accepted by the server's own reader in production.

    Each *_FILE setting names a key that its Secret or ConfigMap provides at the path it is mounted on (a
    renamed key or mount is a missing file here), and SESAME_VAR_DIR is a writable volume.
    """
    mounts = _mounted_files(tmp_path, pki)
    env = {}
    for name, value in _settings().items():
        env[name] = value
        for mount_path, directory in mounts.items():
            if value.startswith(mount_path + "/") or value == mount_path:
                env[name] = str(directory) + value[len(mount_path) :]
                break
    for name in ("SESAME_TLS_CERT_FILE", "SESAME_TLS_KEY_FILE", "SESAME_TLS_CLIENT_CA_FILE"):
        assert Path(env[name]).is_file(), name
    for name in ("SESAME_AUTHZ_POLICY_FILE", "SESAME_HSM_PIN_FILE", "SESAME_KANNEL_PASSWORD_FILE"):
        assert Path(env[name]).is_file(), name
    settings = Settings.from_env(env)
    assert settings.environment == "production"
    assert settings.hsm is not None
    assert settings.hsm.pin == "1234"
    assert settings.var_dir == mounts[_settings()["SESAME_VAR_DIR"]]
    assert settings.journal_archive_dir == mounts[_settings()["SESAME_JOURNAL_ARCHIVE_DIR"]]
    assert settings.transport.policy is not None


def test_the_policy_is_the_recommended_one_and_the_server_reads_it() -> None:
    """The ConfigMap holds docs/examples/caller-policy.toml as it is (the caller-rights test runs it)."""
    text = _one("ConfigMap", "sesame-policy")["data"]["caller-policy.toml"]
    assert text == (ROOT / "docs" / "examples" / "caller-policy.toml").read_text(encoding="utf-8")
    assert parse_policy(text).grants


def test_the_container_ports_are_the_listening_addresses() -> None:
    settings = _settings()
    assert _container_port("grpc") == _port(settings["SESAME_GRPC_ADDR"])
    assert _container_port("health") == _port(settings["SESAME_HEALTH_ADDR"])
    assert _container_port("metrics") == _port(settings["SESAME_METRICS_ADDR"])
    assert _container_port("dlr") == _port(settings["SESAME_DLR_ADDR"])
    for name in ("SESAME_GRPC_ADDR", "SESAME_HEALTH_ADDR", "SESAME_METRICS_ADDR", "SESAME_DLR_ADDR"):
        # The kubelet and the Service reach the pod's IP, not its loopback.
        assert settings[name].startswith("0.0.0.0:"), name


def test_every_probe_asks_the_health_only_port() -> None:
    """Startup and readiness ask gRPC health; liveness only that the process holds the port (a Redis or
    HSM outage reads NOT_SERVING and must not restart every pod)."""
    health = _port(_settings()["SESAME_HEALTH_ADDR"])
    container = _container()
    assert container["startupProbe"]["grpc"] == {"port": health}
    assert container["readinessProbe"]["grpc"] == {"port": health}
    assert container["livenessProbe"]["tcpSocket"] == {"port": health}


def test_the_service_and_the_network_policy_leave_the_health_port_out() -> None:
    """The plaintext health-only port is for the kubelet: no Service port and no NetworkPolicy rule."""
    health = _port(_settings()["SESAME_HEALTH_ADDR"])
    service_ports = {p["targetPort"] for p in _one("Service")["spec"]["ports"]}
    assert service_ports == {"grpc", "metrics", "dlr"}
    rules = _one("NetworkPolicy")["spec"]["ingress"]
    opened = {p["port"] for rule in rules for p in rule["ports"]}
    assert health not in opened
    assert opened == {_container_port("grpc"), _container_port("metrics"), _container_port("dlr")}


def test_the_pod_runs_as_the_image_user_with_a_read_only_root() -> None:
    pod = _one("Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == _image_uid()
    assert pod["automountServiceAccountToken"] is False
    context = _container()["securityContext"]
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    writable = {m["mountPath"] for m in _container()["volumeMounts"] if not m.get("readOnly")}
    # var/ (SESAME_VAR_DIR), /tmp (the workers' metrics files) and the journal's archive, nothing else.
    assert writable == {_settings()["SESAME_VAR_DIR"], "/tmp", _settings()["SESAME_JOURNAL_ARCHIVE_DIR"]}


def test_the_journal_archive_outlives_the_pods_and_is_shared_by_them() -> None:
    """The archive is the evidence of 13 months: on a claim every replica mounts (the lease holder writes
    it, any replica reads it), never on var/'s emptyDir."""
    volumes = {v["name"]: v for v in _one("Deployment")["spec"]["template"]["spec"]["volumes"]}
    mounted = {m["mountPath"]: volumes[m["name"]] for m in _container()["volumeMounts"]}
    archive = mounted[_settings()["SESAME_JOURNAL_ARCHIVE_DIR"]]
    claim = _one("PersistentVolumeClaim", archive["persistentVolumeClaim"]["claimName"])
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    assert "emptyDir" in mounted[_settings()["SESAME_VAR_DIR"]]


def test_the_grace_outlasts_the_drain() -> None:
    """The kubelet's SIGKILL comes after the server's drain and its 5 s kill of a late worker."""
    grace = _one("Deployment")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace > int(_settings()["SESAME_SHUTDOWN_GRACE_SECONDS"]) + 5


def test_the_disruption_budget_leaves_a_pod_serving() -> None:
    replicas = _one("Deployment")["spec"]["replicas"]
    assert 1 <= _one("PodDisruptionBudget")["spec"]["minAvailable"] < replicas


def test_the_secrets_hold_placeholders_only() -> None:
    """No PIN, key or password is committed."""
    for resource in _resources():
        if resource["kind"] == "Secret":
            assert "data" not in resource
            assert set(resource["stringData"].values()) == {"REPLACE-ME"}


@pytest.fixture(scope="module")
def health_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A real `sesame serve` with the health-only listener the probes use (on a free loopback port)."""
    port = free_port()
    serving = start_serve(
        tmp_path_factory.mktemp("var"), settings={"SESAME_HEALTH_ADDR": f"127.0.0.1:{port}"}
    )
    yield port
    serving.process.terminate()
    serving.process.wait(timeout=30)


@pytest.mark.integration
def test_the_probes_get_what_they_ask_for_from_a_real_server(health_port: int) -> None:
    """The kubelet's gRPC probe (Check, service "") reads SERVING there; its TCP probe connects."""
    with grpc.insecure_channel(f"127.0.0.1:{health_port}") as channel:
        answer = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert answer.status == health_pb2.HealthCheckResponse.SERVING
    with socket.create_connection(("127.0.0.1", health_port), timeout=5):
        pass
