"""What the interop clients' tests share: the server they call."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Served:
    """A running `sesame serve` and the console SMS file it writes codes to."""

    address: str
    sms_file: Path
