"""`sesame journal export` and offline verification over real Redis and SoftHSM (decision 0035).

A journal sealed by the real sealer, partly archived and partly still in Redis, is exported by the command;
an export cut anywhere (an interruption) and resumed is byte for byte the whole export, and verifies with
the journal keys' JWK set only; the archive verifies on "another machine": a process given no Redis, no HSM
and no setting but the archive and the JWK set.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from sesame.clients.redis_journal import Lease
from sesame.clients.redis_server import EmbeddedRedis
from sesame.clients.redis_store import RedisState
from sesame.hsm.pkcs11 import Pkcs11KeyStore
from sesame.server.domain import proof
from sesame.server.journal_archive import JournalArchive
from sesame.server.journal_export import read_export
from sesame.server.sealer import Sealer
from tests.integration.test_journal_sealer import STEADY, journal_something

pytestmark = pytest.mark.integration

ARCHIVED_BLOCKS = 4
LIVE_BLOCKS = 2


def bare_env(**extra: str) -> dict[str, str]:
    """An environment with no Sésame or SoftHSM setting: what another machine would have."""
    kept = {k: v for k, v in os.environ.items() if not k.startswith(("SESAME_", "SOFTHSM2_"))}
    return {**kept, **extra}


def sesame(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run the `sesame` command."""
    return subprocess.run(
        [sys.executable, "-m", "sesame.server.cli", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def exporting(archive: JournalArchive, redis_server: EmbeddedRedis) -> tuple[str, ...]:
    """The export command over the archive and the live Redis."""
    return ("journal", "export", "--archive", str(archive.path), "--redis", redis_server.url)


@pytest.fixture
async def sealed(redis_store: RedisState, keystore: Pkcs11KeyStore, tmp_path: Path) -> JournalArchive:
    """Blocks 1-4 sealed and archived (gone from Redis), blocks 5-6 sealed and only in Redis."""
    archive = JournalArchive(tmp_path / "archive")
    sealer = Sealer(redis_store.sealed_journal(), keystore, archive, STEADY, holder="export-test")
    nonce = 0
    for _ in range(ARCHIVED_BLOCKS):
        for _ in range(3):
            nonce += 1
            await journal_something(redis_store, nonce)
        assert await sealer.step() is not None
    for _ in range(LIVE_BLOCKS):
        nonce += 1
        await journal_something(redis_store, nonce)
        assert await redis_store.sealed_journal().lease("export-test", STEADY.lease) is not Lease.ANOTHERS
        assert await sealer.seal() is not None  # sealed, not drained: the block stays in Redis
    assert archive.last_block() is not None
    assert archive.last_block().number == ARCHIVED_BLOCKS  # type: ignore[union-attr]
    return archive


@pytest.fixture
async def jwks_file(keystore: Pkcs11KeyStore, tmp_path: Path) -> Path:
    """The journal keys' JWK set, as `GetChallengeEvidence` or `keys` would hand it over."""
    path = tmp_path / "journal-jwks.json"
    path.write_text(json.dumps(proof.jwk_set(await keystore.journal_public_keys())), encoding="utf-8")
    return path


async def test_an_interrupted_export_resumed_equals_the_whole_export_and_verifies(
    sealed: JournalArchive, redis_server: EmbeddedRedis, jwks_file: Path, tmp_path: Path
) -> None:
    """The whole export holds the archived and the live blocks; cut at every kind of place (inside an entry
    line, between a block's entries, right after a seal) and resumed, it is the same bytes, and verifies."""
    env = bare_env(SESAME_VAR_DIR=str(tmp_path / "var"))
    whole = tmp_path / "whole.jsonl"
    whole.touch(mode=0o644)  # written over: made owner-only all the same (an outside audit: it stayed 0644)
    done = sesame(*exporting(sealed, redis_server), "--output", str(whole), env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "next: --after 6" in done.stderr
    assert whole.stat().st_mode & 0o777 == 0o600  # as the archive: it names users, IBANs, IPs
    data = whole.read_bytes()
    blocks = list(read_export(data.decode("utf-8").splitlines()))
    assert [b.seal.block.number for b in blocks] == list(range(1, ARCHIVED_BLOCKS + LIVE_BLOCKS + 1))
    lines = data.splitlines(keepends=True)
    ends = [sum(map(len, lines[: i + 1])) for i in range(len(lines))]
    seal_ends = [end for end, line in zip(ends, lines, strict=True) if b'"seal"' in line]
    # Inside the first entry line; between two entries of block 1; right after block 2's seal; inside a
    # live block's entry (block 5 is in Redis only).
    cuts = [ends[0] // 2, ends[0], seal_ends[1], seal_ends[ARCHIVED_BLOCKS] + 10]
    for cut in cuts:
        partial = tmp_path / f"partial-{cut}.jsonl"
        partial.write_bytes(data[:cut])
        resumed = sesame(
            *exporting(sealed, redis_server), "--output", str(partial), "--resume", env=env, cwd=tmp_path
        )
        assert resumed.returncode == 0, resumed.stderr
        assert partial.read_bytes() == whole.read_bytes(), cut
    checked = sesame(
        "journal", "verify", "--export", str(whole), "--jwks", str(jwks_file), env=env, cwd=tmp_path
    )
    assert (checked.returncode, checked.stdout.strip()) == (
        0,
        f"verified 6 blocks, {sum(len(b.entries) for b in blocks)} entries",
    )


async def test_an_export_after_a_cursor_is_the_tail_of_the_whole(
    sealed: JournalArchive, redis_server: EmbeddedRedis, tmp_path: Path
) -> None:
    """`--after 3` to standard output writes exactly the lines of blocks 4 to 6."""
    env = bare_env(SESAME_VAR_DIR=str(tmp_path / "var"))
    base = exporting(sealed, redis_server)
    whole = sesame(*base, env=env, cwd=tmp_path).stdout.splitlines()
    tail = sesame(*base, "--after", "3", env=env, cwd=tmp_path).stdout.splitlines()
    assert tail == [line for line in whole if json.loads(line)["block"] > 3]


async def test_an_edited_export_does_not_verify(
    sealed: JournalArchive, redis_server: EmbeddedRedis, jwks_file: Path, tmp_path: Path
) -> None:
    """One field changed in an exported entry: `journal verify --export` names the block, exit 1."""
    env = bare_env(SESAME_VAR_DIR=str(tmp_path / "var"))
    exported = tmp_path / "export.jsonl"
    sesame(*exporting(sealed, redis_server), "--output", str(exported), env=env, cwd=tmp_path)
    exported.write_text(
        exported.read_text(encoding="utf-8").replace('"opened"', '"cancelled"', 1), encoding="utf-8"
    )
    checked = sesame(
        "journal", "verify", "--export", str(exported), "--jwks", str(jwks_file), env=env, cwd=tmp_path
    )
    assert checked.returncode == 1
    assert checked.stdout.startswith("BROKEN: block 1: its entries are not the entries it seals")


@pytest.mark.parametrize("label", [2, True, 1.0, "1"])
async def test_an_entry_labelled_another_block_does_not_verify(
    sealed: JournalArchive, redis_server: EmbeddedRedis, jwks_file: Path, tmp_path: Path, label: object
) -> None:
    """Found by outside audits: an entry line's `"block": 1` changed to 2 (or `true`, `1.0`, which Python
    counts equal to 1) verified, though a reader groups the lines by it. `journal verify --export` names the
    block the line is under, exit 1."""
    env = bare_env(SESAME_VAR_DIR=str(tmp_path / "var"))
    exported = tmp_path / "export.jsonl"
    sesame(*exporting(sealed, redis_server), "--output", str(exported), env=env, cwd=tmp_path)
    lines = exported.read_text(encoding="utf-8").splitlines()
    first = json.loads(lines[0])
    assert (first["block"], "entry" in first) == (1, True)
    lines[0] = json.dumps({**first, "block": label})
    exported.write_text("\n".join(lines) + "\n", encoding="utf-8")
    checked = sesame(
        "journal", "verify", "--export", str(exported), "--jwks", str(jwks_file), env=env, cwd=tmp_path
    )
    assert (checked.returncode, checked.stdout) == (
        1,
        "BROKEN: block 1: a line of it is labelled another block\n",
    )


async def test_the_archive_verifies_without_redis_or_hsm(
    sealed: JournalArchive, jwks_file: Path, tmp_path: Path, redis_client: aioredis.Redis
) -> None:
    """Copied elsewhere, with no Redis reachable and an HSM library that cannot load, the archive verifies
    from the JWK set alone; without the JWK set the same command cannot (it needs the HSM)."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "archive").mkdir()
    shutil.copytree(sealed.path, elsewhere / "archive", dirs_exist_ok=True)
    shutil.copyfile(jwks_file, elsewhere / "jwks.json")
    await redis_client.flushall()  # nothing left in Redis either
    not_a_library = elsewhere / "not-a-pkcs11.so"
    not_a_library.write_bytes(b"")  # a file, as the settings require, that no HSM call could load
    env = bare_env(
        SESAME_REDIS_URL="redis://127.0.0.1:9/0",  # the discard port: nothing answers
        SESAME_PKCS11_MODULE=str(not_a_library),
        SESAME_HSM_TOKEN="none",  # noqa: S106 (a token name, not a password)
        SESAME_HSM_PIN="0000",
        SESAME_VAR_DIR=str(elsewhere / "var"),
    )
    checked = sesame(
        "journal", "verify", "--archive", "archive", "--jwks", "jwks.json", env=env, cwd=elsewhere
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.startswith(f"verified {ARCHIVED_BLOCKS} blocks")
    without_keys = sesame("journal", "verify", "--archive", "archive", env=env, cwd=elsewhere)
    assert without_keys.returncode != 0  # it would have to open the HSM, which is not there


@pytest.mark.parametrize("action", ["verify", "export"])
def test_a_missing_archive_directory_is_an_error_not_an_empty_archive(action: str, tmp_path: Path) -> None:
    """`journal verify` and `journal export` of an archive directory that does not exist (a mistyped path)
    exit 2 naming it: before, verify printed `verified 0 blocks, 0 entries` and exited 0."""
    jwks_file = tmp_path / "jwks.json"
    jwks_file.write_text('{"keys": []}', encoding="utf-8")
    missing = tmp_path / "no-such-archive"
    args = ("--jwks", str(jwks_file)) if action == "verify" else ("--archive-only",)
    env = bare_env(SESAME_VAR_DIR=str(tmp_path / "var"))

    result = sesame("journal", action, "--archive", str(missing), *args, env=env, cwd=tmp_path)

    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.splitlines()[-1] == f"sesame: no journal archive at {missing} (not a directory)"
    assert "verified" not in result.stdout
    assert not missing.exists()


@pytest.mark.parametrize(
    "args",
    [
        ("verify", "--archive", "var", "--jwks", "jwks.json"),  # the var directory above the archive
        ("verify", "--archive", "copy", "--jwks", "jwks.json"),  # an empty directory
        ("export", "--archive", "var", "--archive-only"),
    ],
)
def test_a_directory_without_segments_is_an_error_not_an_empty_archive(
    args: tuple[str, ...], tmp_path: Path
) -> None:
    """An archive directory that exists but holds no segment (the wrong directory) exits 2 naming it: verify
    printed `verified 0 blocks, 0 entries` and export `exported 0 blocks`, both exit 0 (decision 0106)."""
    (tmp_path / "var" / "journal").mkdir(parents=True)
    (tmp_path / "var" / "sms.jsonl").write_text("", encoding="utf-8")
    (tmp_path / "copy").mkdir()
    (tmp_path / "jwks.json").write_text('{"keys": []}', encoding="utf-8")
    env = bare_env(SESAME_VAR_DIR=str(tmp_path / "var"))

    result = sesame("journal", *args, env=env, cwd=tmp_path)

    assert result.returncode == 2, result.stdout + result.stderr
    assert (
        result.stderr.splitlines()[-1]
        == f"sesame: no journal archive at {args[2]} (no segment-*.jsonl in it)"
    )
    assert result.stdout == ""


def test_an_empty_export_is_an_error_not_a_verified_one(tmp_path: Path) -> None:
    """`journal verify --export` of an empty file (an export cut to nothing, the wrong file) exits 2: it
    printed `verified 0 blocks, 0 entries` and exited 0 (decision 0106)."""
    (tmp_path / "empty.jsonl").write_text("", encoding="utf-8")
    (tmp_path / "jwks.json").write_text('{"keys": []}', encoding="utf-8")
    env = bare_env(SESAME_VAR_DIR=str(tmp_path / "var"))

    result = sesame(
        "journal", "verify", "--export", "empty.jsonl", "--jwks", "jwks.json", env=env, cwd=tmp_path
    )

    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.splitlines()[-1] == "sesame: --export empty.jsonl holds no block: nothing verified"
    assert "verified" not in result.stdout


def test_an_emptied_segment_is_an_error_not_a_verified_archive(tmp_path: Path) -> None:
    """An archive whose only segment was emptied (cut to nothing) exits 2: it printed `verified 0 blocks, 0
    entries` and exited 0 (an outside audit's; decision 0106)."""
    (tmp_path / "archive").mkdir()
    (tmp_path / "archive" / "segment-000000000001.jsonl").write_text("", encoding="utf-8")
    (tmp_path / "jwks.json").write_text('{"keys": []}', encoding="utf-8")
    env = bare_env(SESAME_VAR_DIR=str(tmp_path / "var"))

    result = sesame("journal", "verify", "--archive", "archive", "--jwks", "jwks.json", env=env, cwd=tmp_path)

    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.splitlines()[-1] == "sesame: the journal archive holds no block: nothing verified"
    assert "verified" not in result.stdout


@pytest.mark.parametrize("line", ["{not json", '{"seal": 3}', "[]"])
async def test_a_line_that_is_no_block_is_broken_not_a_traceback(
    sealed: JournalArchive, jwks_file: Path, tmp_path: Path, line: str
) -> None:
    """A line of the archive replaced by one that is not an archived block: `BROKEN:` naming its segment
    and line, exit 1 (it was a Python traceback: JSONDecodeError, TypeError; an outside audit's)."""
    copy = tmp_path / "copy"
    shutil.copytree(sealed.path, copy)
    [segment, *_] = sorted(copy.glob("segment-*.jsonl"))
    lines = segment.read_text(encoding="utf-8").splitlines(keepends=True)
    segment.write_text("".join([lines[0], line + "\n", *lines[2:]]), encoding="utf-8")

    result = sesame(
        "journal",
        "verify",
        "--archive",
        str(copy),
        "--jwks",
        str(jwks_file),
        env=bare_env(SESAME_VAR_DIR=str(tmp_path / "var")),
        cwd=tmp_path,
    )

    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout.startswith(f"BROKEN: {segment.name} line 2 is not an archived block (")
    assert "Traceback" not in result.stderr


def _sets(jwks_file: Path, tmp_path: Path) -> tuple[Path, Path, Path]:
    """A set saved before the archive's key (empty), the set that holds it, and a file that is no set."""
    older, newer, junk = tmp_path / "older.json", tmp_path / "newer.json", tmp_path / "junk.json"
    older.write_text(json.dumps({"keys": []}))
    newer.write_text(json.dumps({"keys": json.loads(jwks_file.read_text())["keys"]}))
    junk.write_text("not json")
    return older, newer, junk


async def test_the_archive_verifies_with_its_keys_in_several_jwk_sets(
    sealed: JournalArchive, jwks_file: Path, tmp_path: Path
) -> None:
    """`--jwks` repeated joins the sets, as the operator holds them after rotations or a token started
    afresh (one set saved per key); one set alone that lacks the archive's key names it (exit 1); a file
    that is no JWK set among them fails the check, never raises."""
    older, newer, junk = _sets(jwks_file, tmp_path)
    env = bare_env(SESAME_VAR_DIR=str(tmp_path / "var"))
    archive = str(sealed.path)
    joined = sesame(
        "journal",
        "verify",
        "--archive",
        archive,
        "--jwks",
        str(older),
        "--jwks",
        str(newer),
        env=env,
        cwd=tmp_path,
    )
    assert joined.returncode == 0, joined.stdout + joined.stderr
    assert joined.stdout.startswith(f"verified {ARCHIVED_BLOCKS} blocks")
    alone = sesame("journal", "verify", "--archive", archive, "--jwks", str(older), env=env, cwd=tmp_path)
    assert alone.returncode == 1
    assert "no key 'sesame-journal-v1' in the JWK set" in alone.stdout
    with_junk = sesame(
        "journal",
        "verify",
        "--archive",
        archive,
        "--jwks",
        str(newer),
        "--jwks",
        str(junk),
        env=env,
        cwd=tmp_path,
    )
    assert with_junk.returncode == 1
    assert with_junk.stdout.startswith("BROKEN: ")


async def test_an_export_refused_for_its_redis_leaves_the_earlier_export_as_it_was(
    sealed: JournalArchive, tmp_path: Path
) -> None:
    """`journal export --output F` whose Redis cannot be reached exits 2 and leaves F as an earlier export
    wrote it: F was opened (emptied) before Redis was asked, so the refusal lost the whole export that a
    `--resume` would have continued (decision 0108)."""
    earlier = tmp_path / "journal.jsonl"
    env = bare_env(SESAME_VAR_DIR=str(tmp_path / "var"))
    whole = sesame(
        "journal",
        "export",
        "--archive",
        str(sealed.path),
        "--archive-only",
        "--output",
        str(earlier),
        env=env,
        cwd=tmp_path,
    )
    assert whole.returncode == 0, whole.stderr
    written = earlier.read_bytes()
    assert written

    refused = sesame(
        "journal", "export", "--archive", str(sealed.path), "--redis", "redis://127.0.0.1:9/0", "--output",
        str(earlier), env=env, cwd=tmp_path,
    )  # fmt: skip

    assert refused.returncode == 2, refused.stdout + refused.stderr
    # The Redis the option named, not the settings' (it named the embedded one).
    assert refused.stderr.splitlines()[-1].startswith("sesame: Redis at 127.0.0.1:9 (--redis) unavailable: ")
    assert earlier.read_bytes() == written


async def test_an_export_from_the_wrong_archive_stops_at_the_gap(
    sealed: JournalArchive, redis_server: EmbeddedRedis, tmp_path: Path
) -> None:
    """`--archive` naming a directory that is not this deployment's (empty: allowed, a new deployment's first
    blocks may be in Redis only) while Redis holds blocks 5-6: the export exited 0 with blocks 5-6 alone,
    blocks 1-4 skipped without a word. It exits 2 naming the blocks in neither place, writing none."""
    other = tmp_path / "other-archive"
    other.mkdir()
    env = bare_env(SESAME_VAR_DIR=str(tmp_path / "var"))
    output = tmp_path / "journal.jsonl"
    refused = sesame(
        "journal", "export", "--archive", str(other), "--redis", redis_server.url, "--output", str(output),
        env=env, cwd=tmp_path,
    )  # fmt: skip
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert refused.stderr.splitlines()[-1] == (
        "sesame: blocks 1 to 4 are neither in the archive nor in Redis (is --archive this deployment's?): the"
        " export stops after block 0"
    )
    assert output.read_text(encoding="utf-8") == ""
    assert sealed.last_block() is not None
