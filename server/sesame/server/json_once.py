"""JSON read with each key once per object: what Sésame writes for others to check (bundles, exports,
archive segments) never names a key twice, and a file that does was edited.

Python keeps the last value of a repeated key, other readers the first: the expert's tool and the lawyer's
could read two amounts, two addresses or two blocks from one file (outside audits).
"""

from __future__ import annotations

import json
from typing import Any


class RepeatedKey(ValueError):
    """A JSON object names one key twice."""


def one_each(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """`json.loads`'s object_pairs_hook: the object, or RepeatedKey."""
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise RepeatedKey(f"names {key!r} twice in one object")
        found[key] = value
    return found


def loads(text: str | bytes) -> Any:
    """`json.loads`, RepeatedKey for an object that names a key twice."""
    return json.loads(text, object_pairs_hook=one_each)
