"""The evidence bundle's inclusion proofs (decision 0036): each event proven to a signed block, checked again
with the JWK set only; an edited event, a bent path, a forged or missing block is found."""

from __future__ import annotations

import base64
import copy
import io
import json
from pathlib import Path
from typing import Any

import pytest
from pypdf import PdfReader

from sesame.server import bundle_extent
from sesame.server.domain.journal_seal import Block, FeedEntry, Seal, canonical, seal_from_dict, seal_to_dict
from sesame.server.evidence import EvidenceRecord
from sesame.server.evidence_bundle import (
    UserRecord,
    challenge_bundle,
    is_sound,
    order_of_steps,
    sections,
    user_bundle,
    verify,
)
from sesame.server.evidence_command import check_saved, thumbprint
from sesame.server.evidence_pdf import render
from sesame.server.journal_check import check_stream
from tests.unit.test_journal_seal import KID, Signer

STREAM = "sesame:{u:0}:ch:c1:journal"
USER_STREAM = "sesame:{u:0}:journal:alice"
HEALTH_STREAM = "sesame:{s:0}:health:journal"
OPENINGS_STREAM = "sesame:{u:0}:openings:alice"


REFUSALS = [{"kind": "already_used", "count": "3", "last_at": "2026-10-31T10:01:00Z"}]


def _extent(  # noqa: PLR0913 (a statement's parts)
    signer: Signer,
    subject: dict[str, str],
    streams: dict[str, Any],
    head: Block,
    kid: str = KID,
    *,
    refusals: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    """A statement of extent signed as the server signs one (decision 0091), with the signer's key."""
    said = bundle_extent.statement(subject, streams, head, kid, refusals)
    return {"statement": said, "signature": base64.urlsafe_b64encode(signer.sign(canonical(said))).decode()}


def _stated(stream: str, entries: list[FeedEntry], seals: list[Seal]) -> dict[str, Any]:
    return bundle_extent.stated_stream(stream, [(e.id, e.fields) for e in entries], seals)


def _entries(stream: str, events: list[dict[str, str]], start: int) -> list[FeedEntry]:
    entries, prev = [], "0-0"
    for n, fields in enumerate(events, start=1):
        entry_id = f"{start + n}-0"
        entries.append(FeedEntry(entry_id, stream, {**fields, "seq": str(n), "prev": prev}))
        prev = entry_id
    return entries


JOURNAL = [
    {
        "event": "challenge.opened",
        "at": "2026-10-31T10:00:00.000+00:00",
        "user_id": "alice",
        "ip": "198.51.100.4",
        # The first factor, as the evidence-factors branch journals it (decision 0035).
        "factor_category": "knowledge",
        "factor_method": "password",
        "factor_at": "2026-10-31T09:59:50.000+00:00",
    },
    {"event": "challenge.delivery", "at": "2026-10-31T10:00:01.000+00:00", "delivery": "delivered"},
    {"event": "challenge.verification", "at": "2026-10-31T10:00:30.000+00:00", "outcome": "wrong_code"},
    {
        "event": "challenge.verification",
        "at": "2026-10-31T10:00:40.000+00:00",
        "outcome": "verified",
        "user_id": "alice",
    },
]
LIFECYCLE = [{"event": "user.enrolled", "at": "2026-01-02T09:00:00.000+00:00", "user_id": "alice"}]
HEALTH = [{"event": "health.note", "at": "2026-10-31T09:30:00.000+00:00", "worker": "w1", "key store": "up"}]


@pytest.fixture
def sealed() -> tuple[dict[str, Any], dict[str, Any]]:
    """A challenge's bundle over two signed blocks, with lifecycle and health; and the journal JWK set."""
    return sealed_bundle()


def sealed_bundle() -> tuple[dict[str, Any], dict[str, Any]]:
    """The `sealed` fixture's bundle and keys."""
    signer = Signer()
    lifecycle = _entries(USER_STREAM, LIFECYCLE, 1000)
    journal = _entries(STREAM, JOURNAL, 2000)
    health = _entries(HEALTH_STREAM, HEALTH, 1500)
    first = signer.seal(None, [*lifecycle, *health, journal[0]])
    second = signer.seal(first.block, journal[1:])
    seals = [seal_to_dict(first), seal_to_dict(second)]
    record = EvidenceRecord(
        challenge_id="c1",
        challenge=None,
        journal=[dict(e.fields) for e in journal],
        proof="",
        operation_digest=None,
        refusals=REFUSALS,
        seals_json=json.dumps(
            {
                "stream": STREAM,
                "jwks": signer.jwks,
                "seals": seals,
                "extent": _extent(
                    signer,
                    {"challenge_id": "c1"},
                    {"journal": _stated(STREAM, journal, [first, second])},
                    second.block,
                    refusals=REFUSALS,  # as the answer gave them (decision 0102)
                ),
            }
        ),
    )
    user = UserRecord(
        user_id="alice",
        challenges=[],
        lifecycle=[dict(e.fields) for e in lifecycle],
        health=[dict(e.fields) for e in health],
        seals_json=json.dumps(
            {
                "lifecycle_stream": USER_STREAM,
                "health_stream": HEALTH_STREAM,
                "jwks": signer.jwks,
                "seals": [seals[0]],
                "extent": _extent(
                    signer,
                    # The hour around the journal, as `sesame evidence` asks for it (decision 0094).
                    {
                        "user_id": "alice",
                        "since": "2026-10-31T09:00:00+00:00",
                        "until": "2026-10-31T11:00:40+00:00",
                        "transaction_id": "",
                    },
                    {
                        "lifecycle": _stated(USER_STREAM, lifecycle, [first]),
                        "health": _stated(HEALTH_STREAM, health, [first]),
                        "openings": _stated(OPENINGS_STREAM, [], []),
                    },
                    second.block,
                ),
            }
        ),
    )
    return challenge_bundle(record, {"keys": []}, user), signer.jwks


def test_every_event_carries_its_inclusion_proof_and_verifies_offline(
    sealed: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    bundle, jwks = sealed
    assert [p["block"] for p in bundle["inclusion_proofs"]] == [1, 2, 2, 2]
    assert [b["block"]["number"] for b in bundle["signed_blocks"]] == [1, 2]
    assert all("leaves" not in b for b in bundle["signed_blocks"])
    assert bundle["lifecycle"]["inclusion_proofs"][0]["block"] == 1
    assert bundle["offline_check"] == {"valid": True, "failed": None, "covered": 6, "uncovered": 0}
    assert verify(json.loads(json.dumps(bundle)), jwks)["valid"] is True
    assert is_sound(bundle)
    sections = bundle["l133_23"]
    assert sections["authenticated"]["verified_at"] == "2026-10-31T10:00:40.000+00:00"
    assert sections["authenticated"]["second_factor_sms"]["delivered"] is True
    assert sections["recorded"]["events_with_inclusion_proof"] == 4
    assert sections["no_technical_deficiency"]["every_dependency_up"] is True
    assert sections["lifecycle"][0]["event"] == "user.enrolled"


def _edit_entry(bundle: dict[str, Any]) -> None:
    bundle["journal"][3]["outcome"] = "wrong_code"


def _bend_path(bundle: dict[str, Any]) -> None:
    path = bundle["inclusion_proofs"][2]["audit_path"]
    path[0] = path[0][::-1]


def _forge_block(bundle: dict[str, Any]) -> None:
    bundle["signed_blocks"][1]["block"]["root"] = "0" * 64


def _drop_block(bundle: dict[str, Any]) -> None:
    del bundle["signed_blocks"][0]


def _edit_lifecycle(bundle: dict[str, Any]) -> None:
    bundle["lifecycle"]["entries"][0]["at"] = "2026-10-30T09:00:00.000+00:00"


def _edit_health(bundle: dict[str, Any]) -> None:
    bundle["health"]["entries"][0]["key store"] = "down"


def _edit_unproven(bundle: dict[str, Any]) -> None:
    """The other side's edit, with the proof that would betray it dropped: an event without one."""
    bundle["journal"][2]["outcome"] = "verified"
    bundle["inclusion_proofs"][2] = None


def _drop_failed_attempt(bundle: dict[str, Any]) -> None:
    del bundle["journal"][2]
    del bundle["inclusion_proofs"][2]


def _drop_last(bundle: dict[str, Any]) -> None:
    """The last entry left out: no gap, but its seal (with its leaves) names it."""
    del bundle["journal"][3]
    del bundle["inclusion_proofs"][3]


def _reorder(bundle: dict[str, Any]) -> None:
    for part in ("journal", "inclusion_proofs"):
        bundle[part][2], bundle[part][3] = bundle[part][3], bundle[part][2]


def _relabel(bundle: dict[str, Any]) -> None:
    bundle["challenge_id"] = "c2"


def _drop_lifecycle(bundle: dict[str, Any]) -> None:
    del bundle["lifecycle"]["entries"][0]
    del bundle["lifecycle"]["inclusion_proofs"][0]


def _another_users_lifecycle(bundle: dict[str, Any]) -> None:
    bundle["journal"][0]["user_id"] = "bob"
    bundle["inclusion_proofs"][0] = None


def _malformed(bundle: dict[str, Any]) -> None:
    bundle["inclusion_proofs"] = bundle["inclusion_proofs"][:2]


def _cut_last_block(bundle: dict[str, Any]) -> None:
    """Block 2, with entries 2 to 4, cut off: the seals given, the checks and sections computed again."""
    del bundle["journal"][1:], bundle["inclusion_proofs"][1:], bundle["signed_blocks"][1:]
    given = bundle["journal_seals"]["given"]
    del given["seals"][1:]
    seals = [seal_from_dict(seal) for seal in given["seals"]]
    bundle["journal_seals"] = {**check_stream(STREAM, bundle["journal"], seals, given["jwks"]).as_dict()}
    bundle["journal_seals"]["given"] = given
    bundle["l133_23"] = sections(bundle)


def _lower_seq(bundle: dict[str, Any]) -> None:
    bundle["extents"][0]["statement"]["streams"]["journal"]["seq"] = 1


def _no_extent(bundle: dict[str, Any]) -> None:
    del bundle["extents"][0]


def _fewer_refusals(bundle: dict[str, Any]) -> None:
    """Three replays of a spent code made one: the counts are the statement's (decision 0102)."""
    bundle["refusals"][0]["count"] = "1"


def _refusals_unstated(bundle: dict[str, Any]) -> None:
    """The counts taken out of the statement: its signature no longer verifies."""
    del bundle["extents"][0]["statement"]["refusals"]


def _seals_said_whole(bundle: dict[str, Any]) -> None:
    bundle["journal_seals"]["sealed_entries"] = 9


@pytest.mark.parametrize(
    ("tamper", "failure"),
    [
        (_edit_unproven, "journal: event 3 of sesame:{u:0}:ch:c1:journal has no inclusion proof"),
        (_drop_failed_attempt, "journal: entry 3 is missing or out of place (found seq 4)"),
        (_drop_last, "journal: entry 4 was sealed but is missing"),
        (_reorder, "journal: entry 3 is missing or out of place (found seq 4)"),
        (_relabel, "journal: 'sesame:{u:0}:ch:c1:journal' is not this bundle's stream"),
        (_drop_lifecycle, "lifecycle: the bundle holds none of the user's journal"),
        (_another_users_lifecycle, "journal: event 1 of sesame:{u:0}:ch:c1:journal has no inclusion"),
        (_malformed, "journal: not one inclusion proof per event"),
        (_seals_said_whole, "journal: the journal check differs from the seals'"),
        (
            _edit_entry,
            "journal: event 4 of sesame:{u:0}:ch:c1:journal: the entry differs from the entry sealed",
        ),
        (_bend_path, "journal: event 3 of sesame:{u:0}:ch:c1:journal: its audit path does not lead"),
        (_forge_block, "journal: block 2: the signature does not verify"),
        (_drop_block, "journal: event 1 of sesame:{u:0}:ch:c1:journal: block 1 is not in the bundle"),
        (_edit_lifecycle, "lifecycle: event 1 of sesame:{u:0}:journal:alice: the entry differs"),
        (_edit_health, "health: event 1 of sesame:{s:0}:health:journal: the entry differs"),
        (_cut_last_block, "journal: the bundle ends at entry 1 of sesame:{u:0}:ch:c1:journal, the server's"),
        (_lower_seq, "extent: the signature does not verify under 'sesame-journal-v1'"),
        (_no_extent, "journal: the bundle carries no signed statement of its extent"),
        (_fewer_refusals, "refusals: not the counts the server's signed statement gives"),
        (_refusals_unstated, "extent: the signature does not verify under 'sesame-journal-v1'"),
    ],
)
def test_a_tampered_bundle_fails_offline(
    sealed: tuple[dict[str, Any], dict[str, Any]], tamper: Any, failure: str
) -> None:
    bundle, jwks = sealed
    tampered = copy.deepcopy(bundle)
    tamper(tampered)
    checked = verify(tampered, jwks)
    assert checked["valid"] is False
    assert checked["failed"].startswith(failure)


def test_another_key_set_does_not_verify(sealed: tuple[dict[str, Any], dict[str, Any]]) -> None:
    bundle, _ = sealed
    assert verify(bundle, Signer().jwks)["failed"].startswith(
        "journal: block 1: the signature does not verify"
    )
    assert verify(bundle, {"keys": []})["failed"].startswith("journal: block 1: no key ")


def test_the_first_factor_and_the_pdf(sealed: tuple[dict[str, Any], dict[str, Any]]) -> None:
    """Both factors: the first as journaled with the opening; the PDF says it in French."""
    bundle, _ = sealed
    assert bundle["l133_23"]["authenticated"]["first_factor"] == [
        {
            "event": "challenge.opened",
            "at": "2026-10-31T10:00:00.000+00:00",
            "factor_category": "knowledge",
            "factor_method": "password",
            "factor_at": "2026-10-31T09:59:50.000+00:00",
        }
    ]
    text = " ".join(page.extract_text() for page in PdfReader(io.BytesIO(render(bundle))).pages)
    assert (
        "demande du 31/10/2026 10:00:00 UTC : connaissance, password vérifié le 31/10/2026 09:59:50 UTC"
        in text
    )
    assert "code erroné" in text
    assert "Toutes les dépendances opérationnelles : oui" in text
    words = " ".join(text.split())  # the line wraps, justified
    assert "journal complet jusqu'à l'événement n° 4 (bloc 2), journal scellé jusqu'au bloc 2" in words
    assert "client n° 1 - 02/01/2026 09:00:00 UTC - user.enrolled - bloc 1, feuille 0" in words
    assert "défi n° 4 - 31/10/2026 10:00:40 UTC - challenge.verification - bloc 2, feuille 2" in words
    assert "deux demandes concurrentes" not in words  # the stamps follow the order


def test_the_order_of_steps_is_the_seals(sealed: tuple[dict[str, Any], dict[str, Any]]) -> None:
    """The challenge's events and the user's in the order of their seals (decision 0102): the lifecycle
    sealed in block 1 before the opening, the rest in block 2; the stamps follow it."""
    bundle, _ = sealed
    order = bundle["l133_23"]["recorded"]["order_of_steps"]
    assert [(s["part"], s["seq"], s["block"], s["leaf_index"]) for s in order["steps"]] == [
        ("lifecycle", "1", 1, 0),
        ("journal", "1", 1, 2),
        ("journal", "2", 2, 0),
        ("journal", "3", 2, 1),
        ("journal", "4", 2, 2),
    ]
    assert (order["sealed"], order["at_follows_order"]) == (5, True)


def test_a_stamp_before_a_step_that_ran_earlier_is_told_and_unsealed_events_come_last() -> None:
    """A revocation sealed after a verification, stamped 3 ms before it: the order is the seals', and the
    stamps are said not to follow it; an event not sealed yet comes after every sealed one."""
    journal = [{"seq": "1", "event": "challenge.verification", "at": "2026-10-31T10:00:00.004+00:00"}]
    lifecycle = [
        {"seq": "7", "event": "user.revoke", "at": "2026-10-31T10:00:00.001+00:00"},
        {"seq": "8", "event": "user.notice", "at": "2026-10-31T10:00:00.009+00:00"},
    ]
    order = order_of_steps(
        {
            "journal": (journal, [{"block": 5, "leaf_index": 3}]),
            "lifecycle": (lifecycle, [{"block": 5, "leaf_index": 4}, None]),
        }
    )
    assert [(s["part"], s["seq"]) for s in order["steps"]] == [
        ("journal", "1"),
        ("lifecycle", "7"),
        ("lifecycle", "8"),
    ]
    assert "block" not in order["steps"][2]
    assert (order["sealed"], order["at_follows_order"]) == (2, False)
    text = " ".join(
        page.extract_text()
        for page in PdfReader(io.BytesIO(render({"l133_23": {"recorded": {"order_of_steps": order}}}))).pages
    )
    words = " ".join(text.split())
    assert "client n° 8 - 31/10/2026 10:00:00 UTC - user.notice - non scellé" in words
    assert "deux demandes concurrentes peuvent s'y croiser" in words


def _selection(bundle: dict[str, Any], operations: list[dict[str, Any]]) -> dict[str, Any]:
    """alice's selection over the fixture's challenge, as `sesame evidence --user` assembles it."""
    # As its opening says (the fixture's journal holds no operation: no transaction; decision 0094).
    found = [{"challenge_id": "c1", "opened_at": "2026-10-31T10:00:00+00:00", "transaction_id": ""}]
    user = UserRecord(user_id="alice", challenges=found, lifecycle=[], health=[], seals_json="")
    selector = {"user_id": "alice", "transaction_id": ""}
    selector |= {"since": "2026-10-31T09:00:00+00:00", "until": "2026-10-31T11:00:40+00:00"}
    selection = user_bundle(selector, user, operations)
    selection["lifecycle"] = copy.deepcopy(bundle["lifecycle"])  # with its inclusion proofs
    selection["extents"] = bundle["extents"][1:]  # the user's: of this selection's query
    return selection


def test_a_users_selection_holds_its_operations_one_each_and_the_users_only(
    sealed: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    """An operation found but left out, one shown twice, another user's: checked on the selection. Checked as
    assembled (`unsealed`): the fixture holds no openings journal, so its completeness says it is not whole,
    which a saved selection may not be (decision 0147, tests/e2e/test_evidence_tampered_by_place.py)."""
    bundle, jwks = sealed
    assert verify(_selection(bundle, [bundle]), jwks, unsealed=True)["valid"] is True
    whole = "the selection is not the whole of the user's openings journal: "
    assert (
        verify(_selection(bundle, [bundle]), jwks)["failed"]
        == f"{whole}c1: found, not in the openings journal"
    )
    dropped = verify(_selection(bundle, []), jwks, unsealed=True)
    assert dropped["failed"] == "the operations are not the challenges found, one each"
    twice = verify(_selection(bundle, [bundle, bundle]), jwks, unsealed=True)
    assert twice["failed"] == "the operations are not the challenges found, one each"
    bobs = copy.deepcopy(bundle)
    bobs["journal"][0]["user_id"] = "bob"
    assert verify(_selection(bundle, [bobs]), jwks, unsealed=True)["failed"] == "operation c1: another user's"


def test_a_saved_bundle_that_names_a_key_twice_fails(
    sealed: tuple[dict[str, Any], dict[str, Any]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`"outcome": "verified", "outcome": "wrong_code"`: Python reads the sealed last value, a reader that
    keeps the first (many do) reads another outcome from the same file: refused, whatever the leaves say."""
    bundle, jwks = sealed
    saved = tmp_path / "bundle.json"
    saved.write_text(json.dumps(bundle))
    assert check_saved(str(saved), jwks) == 0
    text = json.dumps(bundle).replace(
        '"outcome": "wrong_code"', '"outcome": "verified", "outcome": "wrong_code"', 1
    )
    saved.write_text(text)
    capsys.readouterr()
    assert check_saved(str(saved), jwks) == 1
    assert json.loads(capsys.readouterr().out)["failed"] == "the bundle names 'outcome' twice in one object"


def test_verify_names_the_keys_it_used_and_refuses_a_bundle_whose_own_keys_are_others(
    sealed: tuple[dict[str, Any], dict[str, Any]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bundle re-signed with the other side's keys verifies with the set it carries: the thumbprints
    printed are what the expert compares with the bank's; a set it carries under the bank's kid with another
    key than --jwks holds is refused."""
    bundle, jwks = sealed
    saved = tmp_path / "bundle.json"
    saved.write_text(json.dumps(bundle))
    capsys.readouterr()
    assert check_saved(str(saved), jwks) == 0
    (key,) = jwks["keys"]
    assert json.loads(capsys.readouterr().out)["keys_used"] == {key["kid"]: [thumbprint(key)]}
    bundle["journal_jwks"] = Signer().jwks  # the same kid, another key
    saved.write_text(json.dumps(bundle))
    assert check_saved(str(saved), jwks) == 1
    checked = json.loads(capsys.readouterr().out)
    assert checked["keys_differ"] == f"the bundle's journal_jwks holds another key {key['kid']!r} than --jwks"


@pytest.mark.parametrize(
    ("currency", "shown"),
    [("EUR", "1 250,00 EUR"), ("JPY", "125 000 JPY"), ("KWD", "125,000 KWD"), ("XXZ", "125000 (unités")],
)
def test_the_pdf_shows_the_amount_with_the_currencys_decimals(currency: str, shown: str) -> None:
    """amount_minor 125000 is ¥125,000 and 125.000 dinars: the PDF said "1 250,00" for every currency,
    where the JSON and the SMS the customer read said otherwise."""
    authorised = {"type": "credit_transfer", "amount": {"currency": currency, "amount_minor": 125000}}
    bundle = {"l133_23": {"accounted_for": {"operation_as_authorised": authorised}}}
    text = " ".join(page.extract_text() for page in PdfReader(io.BytesIO(render(bundle))).pages)
    assert f"Montant : {shown}" in text


@pytest.mark.parametrize(
    ("notes", "expected"),
    [
        ([("2026-10-31T09:59:00+00:00", "up")], True),  # the last note before the opening: it covers it
        ([("2026-10-31T09:59:00+00:00", "down"), ("2026-10-31T10:00:30+00:00", "up")], False),
        # Found by an outside audit: Redis restarted empty held notes from after the loss only, and the bundle
        # of a challenge opened before said every dependency was up then. Notes that all came later: unknown.
        ([("2026-10-31T10:13:00+00:00", "up")], None),
        ([], None),
        # Found by an outside audit: a note after the operation's last event said `false` of it.
        ([("2026-10-31T09:59:00+00:00", "up"), ("2026-10-31T10:03:00+00:00", "down")], True),
        ([("2026-10-31T09:59:00+00:00", "up"), ("2026-10-31T10:01:00+00:00", "down")], False),  # between
        # Found by an outside audit: a `down` an hour before, `up` again before the opening, read `false`.
        ([("2026-10-31T09:20:00+00:00", "down"), ("2026-10-31T09:21:00+00:00", "up")], True),
    ],
)
def test_every_dependency_up_is_said_only_of_notes_that_cover_the_opening(
    notes: list[tuple[str, str]], *, expected: bool | None
) -> None:
    """From the notes before the opening through the last event (verified at 10:02), not after it."""
    bundle = {
        "journal": [
            {"event": "challenge.opened", "at": "2026-10-31T10:00:00.000+00:00"},
            {"event": "challenge.verified", "at": "2026-10-31T10:02:00.000+00:00"},
        ],
        "health": {"entries": [{"event": "health.note", "at": at, "state store": up} for at, up in notes]},
    }
    assert sections(bundle)["no_technical_deficiency"]["every_dependency_up"] is expected


@pytest.mark.parametrize(
    ("notes", "expected"),
    [
        ([("w-1", "09:30", "up"), ("w-2", "09:40", "up")], True),
        # Each worker's own last note before the opening: w-2 saw the state store down at the opening.
        ([("w-1", "09:30", "up"), ("w-2", "09:20", "up"), ("w-2", "09:50", "down")], False),
        ([("w-1", "09:30", "down"), ("w-2", "09:40", "up"), ("w-1", "09:45", "up")], True),
    ],
)
def test_every_dependency_up_reads_each_workers_state_at_the_opening(
    notes: list[tuple[str, str, str]], *, expected: bool
) -> None:
    bundle = {
        "journal": [{"event": "challenge.opened", "at": "2026-10-31T10:00:00.000+00:00"}],
        "health": {
            "entries": [
                {
                    "event": "health.note",
                    "at": f"2026-10-31T{at}:00+00:00",
                    "worker": worker,
                    "state store": up,
                }
                for worker, at, up in notes
            ]
        },
    }
    assert sections(bundle)["no_technical_deficiency"]["every_dependency_up"] is expected


def test_every_dependency_up_ends_when_the_operation_was_decided() -> None:
    """Found by an outside audit: a replay of a verified code after a `down` note made the verified
    transfer's `false`. The operation's time ends at the entry that closed its challenge."""
    bundle = {
        "journal": [
            {"event": "challenge.opened", "at": "2026-10-31T10:00:00.000+00:00", "status": "open"},
            {"event": "challenge.verification", "at": "2026-10-31T10:01:00.000+00:00", "status": "open"},
            {"event": "challenge.verification", "at": "2026-10-31T10:02:00.000+00:00", "status": "verified"},
            {"event": "challenge.verification", "at": "2026-10-31T10:09:00.000+00:00", "status": "verified"},
        ],
        "health": {
            "entries": [
                {"event": "health.note", "at": f"2026-10-31T{at}:00+00:00", "state store": up}
                for at, up in (("09:59", "up"), ("10:05", "down"))
            ]
        },
    }
    assert sections(bundle)["no_technical_deficiency"]["every_dependency_up"] is True


@pytest.mark.parametrize(("down_at", "expected"), [("10:03", False), ("10:06", True)])
def test_every_dependency_up_of_a_challenge_never_decided_runs_to_its_expiry(
    down_at: str, *, expected: bool
) -> None:
    """Found by an outside audit: a challenge that expired unanswered ended its time at its last entry (the
    SMS's delivery, seconds after the opening), so a key store `down` while its code could still be checked
    read `true`. Its time runs to the code's expiry, which the opening says."""
    bundle = {
        "journal": [
            {
                "event": "challenge.opened",
                "at": "2026-10-31T10:00:00.000+00:00",
                "status": "open",
                "expires_at": "2026-10-31T10:05:00.000+00:00",
            },
            {"event": "challenge.delivery", "at": "2026-10-31T10:00:02.000+00:00", "status": "open"},
        ],
        "health": {
            "entries": [
                {"event": "health.note", "at": f"2026-10-31T{at}:00+00:00", "key store": up}
                for at, up in (("09:59", "up"), (down_at, "down"))
            ]
        },
    }
    assert sections(bundle)["no_technical_deficiency"]["every_dependency_up"] is expected
