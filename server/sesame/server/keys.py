"""`sesame keys init|rotate|list`: key ceremony commands over the configured (or development) token."""

from __future__ import annotations

from sesame.hsm import keys
from sesame.server.app import hsm_config
from sesame.server.config import Settings


def run_keys(settings: Settings, action: str) -> None:
    """Run one key command and print what it did (labels and attributes, never key material)."""
    config = hsm_config(settings)
    match action:
        case "init":
            print(f"current OTP key: {keys.init_keys(config).label}")  # noqa: T201
        case "rotate":
            print(f"new current OTP key: {keys.rotate_keys(config).label}")  # noqa: T201
        case _:
            for info in keys.list_keys(config):
                print(info)  # noqa: T201
