"""The evidence PDF prints a payee's name as written in any Latin, Greek or Cyrillic script (decision 0042):
DejaVu Sans is embedded, where fpdf2's core Helvetica printed each character outside Latin-1 as `?`; Chinese
and Japanese letters, which DejaVu lacks (they were left out), come from Droid Sans Fallback. Through
the real server: a transfer to "Łódź Αθήνα Москва 北京 東京 とうきょう" verified and sealed,
`sesame evidence --pdf`, read back."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest
from pypdf import PdfReader

from sesame.api.v1 import authentication_service_pb2 as auth_pb
from sesame.api.v1 import operation_pb2 as op_pb
from tests.e2e.conftest import Live
from tests.e2e.helpers import enrolled, started, transfer, verify
from tests.support.evidence_cli import run_evidence

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

PAYEE = "Łódź Αθήνα Москва 北京 東京 とうきょう"


async def _verified_pdf(
    live: Live, tmp_path: Path, operation: op_pb.Operation
) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """`operation` verified and sealed, then `sesame evidence --pdf` of it: the file, and the run."""
    challenge_id, code = await started(live, await enrolled(live), operation)
    assert (await verify(live, challenge_id, code, operation)).result == auth_pb.VERIFY_RESULT_VERIFIED
    assert live.sealer is not None
    await live.sealer.step()
    pdf = tmp_path / "preuve.pdf"
    done = await asyncio.to_thread(run_evidence, challenge_id, "--pdf", str(pdf), "--target", live.address)
    assert done.returncode == 0, done.stderr[-3000:]
    return pdf, done


async def test_a_payee_name_outside_latin_1_reads_back_from_the_pdf(live: Live, tmp_path: Path) -> None:
    """The name reads back whole, with no `?` in its place; the fonts are embedded in the file."""
    pdf, _ = await _verified_pdf(live, tmp_path, transfer(name=PAYEE))
    reader = PdfReader(pdf)
    text = " ".join(page.extract_text() for page in reader.pages)
    assert PAYEE in text
    assert "??" not in text
    fonts = {
        str(font["/BaseFont"])
        for page in reader.pages
        for font in page["/Resources"]["/Font"].values()  # type: ignore[union-attr]
    }
    assert any("DejaVuSans" in name for name in fonts), fonts
    assert any("DroidSansFallback" in name for name in fonts), fonts


async def test_the_pdf_is_written_without_the_font_subsetters_chatter(live: Live, tmp_path: Path) -> None:
    """`sesame evidence --pdf` leaves standard error free of fontTools' INFO lines (one per font table)."""
    pdf, done = await _verified_pdf(live, tmp_path, transfer())
    assert pdf.stat().st_size > 0
    assert [line for line in done.stderr.splitlines() if "fontTools" in line] == []
