"""The SMS the console gateway wrote to its file (one JSON object a line), as a test reads them.

The gateway appends each line with one write, but a reader in another process can see that write half-done:
a test polling the file while a dispatcher sends read a line cut short and failed on its JSON. Only complete
lines (ending in a newline) are read.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def written(sms_file: Path) -> list[dict[str, Any]]:
    """Every SMS whose line is complete in `sms_file` now, in order (none when there is no file yet)."""
    if not sms_file.exists():
        return []
    text = sms_file.read_text(encoding="utf-8")
    return [json.loads(line) for line in text[: text.rfind("\n") + 1].splitlines() if line]
