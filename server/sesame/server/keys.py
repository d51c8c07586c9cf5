"""`sesame keys init|rotate|list`: key ceremony commands over the configured (or development) token."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from sesame.hsm import keys
from sesame.server.app import hsm_config
from sesame.server.command_redis import command_redis
from sesame.server.config import Settings
from sesame.server.domain.model import KeyKind
from sesame.server.key_boot import ledger_seen, lost_keys, record_token


def run_keys(settings: Settings, action: str, kind: KeyKind = KeyKind.OTP) -> None:
    """Run one key command and print what it did (labels and attributes, never key material).

    `kind` says which keys `rotate` rotates; `init` and `list` handle every kind. `init` and `rotate` record
    the token's keys in the key ledger at once (docs/decisions/0015): a new version is remembered before any
    server uses it, and a replaced token is told apart now. The ledger is SESAME_REDIS_URL's, or else the
    embedded Redis's under SESAME_VAR_DIR (`command_redis`): a rotate that read no ledger in development made
    a destroyed version's label again, and the server then refused its key (an outside audit).
    """
    if action == "list":
        for info in keys.list_keys(hsm_config(settings, create=False)):  # never leaves a new token behind
            print(info)  # noqa: T201
        return
    with command_redis(settings) as url:
        # Read before any key or token is made (a key made, then refused, was left to remove by hand; a retry
        # of a rotate with Redis away made a second one): `init` refuses a token lacking kinds it saw,
        # `rotate` goes above every version it saw.
        seen = asyncio.run(ledger_seen(url)) if url is not None else None
        config = hsm_config(settings, create=True)
        if action == "init":
            try:
                current = keys.init_keys(config, seen.highest if seen is not None else None)
            except keys.TokenLacksKeys as exc:
                raise lost_keys(config.token_label, exc.lost, []) from None
            print(f"current OTP key: {current.otp.label}")  # noqa: T201
            print(f"current proof key: {current.proof.label}")  # noqa: T201
            print(f"current journal key: {current.journal.label}")  # noqa: T201
        else:
            name = "OTP" if kind is KeyKind.OTP else kind.value
            made = keys.rotate_keys(config, kind, above=seen.top(kind) if seen is not None else 0)
            print(f"new current {name} key: {made.label}")  # noqa: T201
        if url is not None:
            asyncio.run(record_token(config, url, datetime.now(UTC)))
            print("recorded in the key ledger")  # noqa: T201
