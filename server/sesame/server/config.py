"""Settings from the environment (`SESAME_` prefix), validated at boot with every problem listed at once."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from sesame.server.domain.challenges import ChallengePolicy
from sesame.server.domain.errors import ConfigurationError

ENVIRONMENTS = ("development", "production")


@dataclass(frozen=True, slots=True)
class HsmSettings:
    """A PKCS#11 token given by the operator; the PIN never appears in repr or logs."""

    module: str
    token_label: str
    pin: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything `sesame serve` needs; `None` for Redis or the HSM means the embedded default."""

    environment: str
    grpc_addr: str
    var_dir: Path
    redis_url: str | None
    hsm: HsmSettings | None
    sms_console_file: Path
    policy: ChallengePolicy
    retention: timedelta
    shutdown_grace: float
    health_interval: float
    metrics_addr: str | None  # None: no /metrics endpoint

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read and check the settings; ConfigurationError names every bad or missing one."""
        reader = _Reader(os.environ if env is None else env)
        var_dir = Path(reader.text("SESAME_VAR_DIR", "var"))
        settings = cls(
            environment=reader.choice("SESAME_ENV", "development", ENVIRONMENTS),
            grpc_addr=reader.address("SESAME_GRPC_ADDR", "127.0.0.1:50051"),
            var_dir=var_dir,
            redis_url=reader.optional("SESAME_REDIS_URL"),
            hsm=reader.hsm(),
            sms_console_file=Path(reader.text("SESAME_SMS_CONSOLE_FILE", str(var_dir / "sms.jsonl"))),
            policy=ChallengePolicy(
                digits=reader.integer("SESAME_CODE_DIGITS", 6, 6, 8),
                lifetime=timedelta(seconds=reader.integer("SESAME_CODE_TTL_SECONDS", 300, 30, 600)),
                max_attempts=reader.integer("SESAME_MAX_ATTEMPTS", 3, 1, 5),
                max_resends=reader.integer("SESAME_MAX_RESENDS", 3, 0, 5),
                resend_spacing=timedelta(seconds=reader.integer("SESAME_RESEND_SPACING_SECONDS", 30, 0, 300)),
                bank_name=reader.text("SESAME_BANK_NAME", "MaBanque"),
            ),
            retention=timedelta(
                seconds=reader.integer("SESAME_CHALLENGE_RETENTION_SECONDS", 86400, 0, 10**8)
            ),
            shutdown_grace=float(reader.integer("SESAME_SHUTDOWN_GRACE_SECONDS", 10, 0, 300)),
            health_interval=float(reader.integer("SESAME_HEALTH_INTERVAL_SECONDS", 1, 1, 60)),
            metrics_addr=reader.optional_address("SESAME_METRICS_ADDR", "127.0.0.1:9464"),
        )
        if settings.environment == "production":
            if settings.redis_url is None:
                reader.problems.append("SESAME_REDIS_URL is required in production (no embedded Redis)")
            if settings.hsm is None:
                reader.problems.append("SESAME_PKCS11_MODULE is required in production (no dev token)")
        if reader.problems:
            raise ConfigurationError("invalid settings:\n  - " + "\n  - ".join(reader.problems))
        return settings


class _Reader:
    """Reads variables and collects problems instead of failing on the first."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env
        self.problems: list[str] = []

    def optional(self, name: str) -> str | None:
        value = self._env.get(name, "").strip()
        return value or None

    def text(self, name: str, default: str) -> str:
        return self.optional(name) or default

    def choice(self, name: str, default: str, allowed: tuple[str, ...]) -> str:
        value = self.text(name, default)
        if value not in allowed:
            self.problems.append(f"{name} must be one of {', '.join(allowed)}, not {value!r}")
        return value

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        raw = self.optional(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            self.problems.append(f"{name} must be an integer, not {raw!r}")
            return default
        if not low <= value <= high:
            self.problems.append(f"{name} must be between {low} and {high}, not {value}")
        return value

    def address(self, name: str, default: str) -> str:
        value = self.text(name, default)
        host, _, port = value.rpartition(":")
        if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            self.problems.append(f"{name} must be host:port, not {value!r}")
        return value

    def optional_address(self, name: str, default: str) -> str | None:
        """A `host:port`, or None when the variable says `off`."""
        if self.text(name, default) == "off":
            return None
        return self.address(name, default)

    def hsm(self) -> HsmSettings | None:
        module = self.optional("SESAME_PKCS11_MODULE")
        token = self.optional("SESAME_HSM_TOKEN")
        pin = self.optional("SESAME_HSM_PIN")
        pin_file = self.optional("SESAME_HSM_PIN_FILE")
        if module is None and token is None and pin is None and pin_file is None:
            return None
        if module is None or token is None:
            self.problems.append("SESAME_PKCS11_MODULE and SESAME_HSM_TOKEN go together")
        if (pin is None) == (pin_file is None):
            self.problems.append("give exactly one of SESAME_HSM_PIN and SESAME_HSM_PIN_FILE")
        if pin_file is not None:
            try:
                pin = Path(pin_file).read_text(encoding="utf-8").strip()
            except OSError as exc:
                self.problems.append(f"SESAME_HSM_PIN_FILE cannot be read ({exc.strerror})")
        if module is not None and not Path(module).is_file():
            self.problems.append(f"SESAME_PKCS11_MODULE {module!r} is not a file")
        return HsmSettings(module or "", token or "", pin or "")
