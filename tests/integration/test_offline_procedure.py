"""docs/evidence.md's offline check, run literally: its Python block, with jwcrypto and the standard library
only, verifies the archive and an export that the real sealer wrote, and finds a tampered one (issue 8
item 5, decision 0035)."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

from sesame.clients.redis_server import EmbeddedRedis
from sesame.server.journal_archive import JournalArchive
from tests.integration.test_journal_export import (  # noqa: F401 (fixtures)
    ARCHIVED_BLOCKS,
    LIVE_BLOCKS,
    bare_env,
    exporting,
    jwks_file,
    sealed,
)
from tests.unit.test_evidence_bundle import sealed_bundle
from tests.unit.test_journal_seal import Signer

pytestmark = pytest.mark.integration

EVIDENCE_DOC = Path(__file__).parents[2] / "docs" / "evidence.md"
REPOSITORY = Path(__file__).resolve().parents[2]


def _documented() -> dict[str, Any]:
    """The names the doc's Python block that imports jwcrypto defines, run as it is written."""
    blocks = re.findall(r"```python\n(.*?)```", EVIDENCE_DOC.read_text(encoding="utf-8"), flags=re.DOTALL)
    (code,) = [block for block in blocks if "from jwcrypto import" in block]
    assert "sesame" not in code.replace("sesame.bundle-extent.v1", "")  # only jwcrypto and the stdlib
    namespace: dict[str, Any] = {}
    exec(compile(code, str(EVIDENCE_DOC), "exec"), namespace)  # noqa: S102 (the documentation's own code)
    return namespace


def the_procedure() -> Callable[[Any, str], int]:
    """The `verify` function of the documented procedure."""
    verify: Callable[[Any, str], int] = _documented()["verify"]
    return verify


def the_extent_check() -> Callable[[Any, str], bool]:
    """The `check_extents` function of the documented procedure: a bundle's signed extents (decision 0091)."""
    check: Callable[[Any, str], bool] = _documented()["check_extents"]
    return check


def archive_lines(archive: Path) -> list[str]:
    """Every line of every segment file, in order, as a reader of the copied archive would take them."""
    return [
        line
        for segment in sorted(archive.glob("segment-*.jsonl"))
        for line in segment.read_text().splitlines()
    ]


def text_of(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def export_to(output: Path, archive: JournalArchive, redis_server: EmbeddedRedis) -> str:
    """`sesame journal export` of the archive and the live Redis into `output`; its text."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "sesame.server.cli",
            *exporting(archive, redis_server),
            "--output",
            str(output),
        ],
        env=bare_env(SESAME_VAR_DIR=str(output.parent / "var")),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return text_of(output)


def test_the_procedure_uses_a_jose_library_that_is_not_ours() -> None:
    """jwcrypto is installed as a test dependency and is what the documented block imports."""
    import jwcrypto

    # An installed distribution, not a module of this repository (whatever the checkout's directory is named).
    location = Path(jwcrypto.__file__ or "").resolve()
    installed = metadata.distribution("jwcrypto").locate_file("jwcrypto/__init__.py")
    assert Path(str(installed)).resolve() == location
    assert "site-packages" in location.parts
    assert not any(
        location.is_relative_to(REPOSITORY / part) for part in ("server", "clients", "hsm", "tests")
    )
    assert callable(the_procedure())


async def test_the_documented_procedure_verifies_the_archive_and_an_export(
    sealed: JournalArchive,  # noqa: F811
    jwks_file: Path,  # noqa: F811
    redis_server: EmbeddedRedis,
    tmp_path: Path,
) -> None:
    """The archive's 4 blocks and the export's 6 (archive and live Redis) verify with the JWK set only."""
    verify = the_procedure()
    jwks = text_of(jwks_file)
    assert verify(archive_lines(sealed.path), jwks) == ARCHIVED_BLOCKS
    exported = export_to(tmp_path / "journal.jsonl", sealed, redis_server)
    assert verify(exported.splitlines(), jwks) == ARCHIVED_BLOCKS + LIVE_BLOCKS


@pytest.mark.parametrize("tampering", ["edit", "delete", "reorder", "forge", "drop first block"])
async def test_the_documented_procedure_finds_a_tampered_archive(
    sealed: JournalArchive,  # noqa: F811
    jwks_file: Path,  # noqa: F811
    tampering: str,
) -> None:
    """An edited or deleted entry, two entries swapped, a forged signature, a missing first block: raises."""
    lines = archive_lines(sealed.path)
    blocks = [json.loads(line) for line in lines]
    match tampering:
        case "edit":
            blocks[1]["entries"][0][2]["outcome"] = "cancelled"
        case "delete":
            del blocks[2]["entries"][1]
        case "reorder":
            entries = blocks[0]["entries"]
            entries[0], entries[1] = entries[1], entries[0]
        case "forge":
            signature = blocks[3]["seal"]["signature"]
            blocks[3]["seal"]["signature"] = ("A" if signature[0] != "A" else "B") + signature[1:]
        case _:
            del blocks[0]
    with pytest.raises(Exception):  # noqa: B017 (an assertion, or jwcrypto's InvalidJWSSignature)
        the_procedure()([json.dumps(block) for block in blocks], text_of(jwks_file))


def test_the_documented_procedure_checks_a_bundles_extent() -> None:
    """A bundle's statements of extent verify with the journal keys only; a bundle cut after its last block,
    a statement edited or removed, or another key's, raises (decision 0091)."""
    bundle, jwks = sealed_bundle()
    check, keys = the_extent_check(), json.dumps(jwks)
    assert check(json.loads(json.dumps(bundle)), keys) is True
    cut = copy.deepcopy(bundle)
    del cut["journal"][1:], cut["inclusion_proofs"][1:], cut["signed_blocks"][1:]
    lowered = copy.deepcopy(bundle)
    lowered["extents"][0]["statement"]["streams"]["journal"]["seq"] = 1
    removed = copy.deepcopy(bundle)
    del removed["extents"][0]
    recounted = copy.deepcopy(bundle)  # the refusal counts the statement signs, edited (decision 0102)
    recounted["refusals"][0]["count"] = "1"
    for tampered, key_set in (
        (cut, keys),
        (lowered, keys),
        (removed, keys),
        (recounted, keys),
        (bundle, json.dumps(Signer().jwks)),
    ):
        with pytest.raises(Exception):  # noqa: B017 (an assertion, a KeyError, or jwcrypto's InvalidJWSSignature)
            check(tampered, key_set)
