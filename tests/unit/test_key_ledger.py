"""What a boot makes of the key ledger: lost versions and replaced labels (pure logic)."""

from __future__ import annotations

from sesame.server.domain.key_ledger import KeyPrint, KeysSeen, lost, replaced
from sesame.server.domain.model import KeyKind

SEEN = KeysSeen(
    highest={KeyKind.OTP: 2, KeyKind.PROOF: 1},
    prints={"sesame-otp-v1": "a1", "sesame-otp-v2": "a2", "sesame-proof-v1": "b1"},
)


def test_the_same_keys_are_neither_lost_nor_replaced() -> None:
    """The HSM that wrote the ledger (even with a newer version besides) passes both checks."""
    held = [KeyPrint(KeyKind.OTP, 2, "a2"), KeyPrint(KeyKind.OTP, 3, "a3"), KeyPrint(KeyKind.PROOF, 1, "b1")]
    assert lost(SEEN, held) == {}
    assert replaced(SEEN, held) == []


def test_a_kind_whose_newest_version_seen_is_missing_is_lost() -> None:
    """An HSM holding fewer versions than seen, or none, loses those kinds, with the version seen."""
    assert lost(SEEN, [KeyPrint(KeyKind.OTP, 1, "a1")]) == {KeyKind.OTP: 2, KeyKind.PROOF: 1}
    assert lost(KeysSeen(), []) == {}


def test_a_label_held_with_another_fingerprint_is_replaced() -> None:
    """A key regenerated under a used label is named; a label never seen is not."""
    held = [KeyPrint(KeyKind.OTP, 1, "zz"), KeyPrint(KeyKind.OTP, 9, "new")]
    assert replaced(SEEN, held) == ["sesame-otp-v1"]
