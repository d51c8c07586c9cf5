"""The journal's archive: append-only segment files of checked blocks (docs/decisions/0027)."""

from __future__ import annotations

import io
import resource
import signal
from pathlib import Path

import pytest

from sesame.server import journal_archive
from sesame.server.domain.journal_seal import FeedEntry, Seal
from sesame.server.journal_archive import ArchiveRefused, JournalArchive
from tests.unit.test_journal_seal import STREAM, Signer, journal


def feed(first: int, count: int) -> list[FeedEntry]:
    return [FeedEntry(f"{n}-0", STREAM, fields) for n, fields in enumerate(journal(first + count - 1), 1)][
        first - 1 :
    ]


def test_blocks_are_kept_in_order_and_read_back_after_a_restart(tmp_path: Path) -> None:
    signer, archive = Signer(), JournalArchive(tmp_path)
    one = signer.seal(None, feed(1, 2))
    two = signer.seal(one.block, feed(3, 3))
    archive.append(one, feed(1, 2))
    archive.append(two, feed(3, 3))
    reopened = JournalArchive(tmp_path)
    assert reopened.last_block() == two.block
    assert [b.seal for b in reopened.blocks()] == [one, two]
    assert reopened.seals_from("3-0") == [two]
    assert [e.id for b in reopened.blocks() for e in b.entries] == ["1-0", "2-0", "3-0", "4-0", "5-0"]


def test_a_block_out_of_order_or_with_other_entries_is_refused(tmp_path: Path) -> None:
    signer, archive = Signer(), JournalArchive(tmp_path)
    one = signer.seal(None, feed(1, 2))
    two = signer.seal(one.block, feed(3, 1))
    archive.append(one, feed(1, 2))
    with pytest.raises(ArchiveRefused, match="does not follow"):
        archive.append(one, feed(1, 2))  # the same block again
    assert archive.last_block() == one.block
    with pytest.raises(ArchiveRefused, match="are not the entries it seals"):
        archive.append(two, feed(2, 1))
    assert archive.last_block() == one.block


def test_a_line_being_written_is_not_read(tmp_path: Path) -> None:
    signer, archive = Signer(), JournalArchive(tmp_path)
    archive.append(signer.seal(None, feed(1, 1)), feed(1, 1))
    (segment,) = tmp_path.glob("segment-*.jsonl")
    with segment.open("a", encoding="utf-8") as out:
        out.write('{"seal": {"block"')
    assert len(list(JournalArchive(tmp_path).blocks())) == 1


def _five_blocks_in_three_segments(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> JournalArchive:
    """An archive of blocks 1 to 5, two a segment, every one closed at 18:00."""
    monkeypatch.setattr(journal_archive, "SEGMENT_BLOCKS", 2)
    signer, archive = Signer(), JournalArchive(tmp_path)
    previous = None
    for n in range(1, 6):
        seal = signer.seal(previous, feed(n, 1))
        archive.append(seal, feed(n, 1))
        previous = seal.block
    return archive


def test_segments_past_the_retention_are_pruned_but_the_newest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = _five_blocks_in_three_segments(tmp_path, monkeypatch)
    assert len(list(tmp_path.glob("segment-*.jsonl"))) == 3
    gone = archive.prune("2026-11-30T19:00:00.000+00:00")  # every block was closed at 18:00
    assert [p.name for p in gone] == ["segment-000000000001.jsonl", "segment-000000000003.jsonl"]
    assert [b.seal.block.number for b in archive.blocks()] == [5]
    assert archive.prune("2026-11-30T17:00:00.000+00:00") == []


def test_pruning_reads_each_old_segments_last_block_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found from outside: the hourly pruning read every line of every segment, inside the sealer's step
    (0.6 s a full segment, growing with the archive). Only each segment's last line is read, oldest first,
    and the first segment kept ends the search: lines it does not read may be anything."""
    archive = _five_blocks_in_three_segments(tmp_path, monkeypatch)
    first, second, _ = sorted(tmp_path.glob("segment-*.jsonl"))
    kept = second.read_bytes()
    first.write_bytes(b"not read\n" + first.read_bytes().split(b"\n", 1)[1])
    second.write_bytes(kept + b"not a block either\n")
    assert archive.prune("2026-11-30T17:00:00.000+00:00") == []  # the first segment kept: no further
    second.write_bytes(kept)
    assert archive.prune("2026-11-30T19:00:00.000+00:00") == [first, second]


OTHER = "sesame:{u:1}:ch:y:journal"


def mixed(first: int) -> list[FeedEntry]:
    """Two streams' entries in one block: STREAM's entry `first`, then one of OTHER."""
    return [*feed(first, 1), FeedEntry(f"{first}-1", OTHER, {"event": "challenge.opened", "seq": str(first)})]


def test_the_index_finds_a_streams_entries_and_the_seals_covering_it(tmp_path: Path) -> None:
    """Decision 0037: the entries of one stream and the blocks holding it, without reading every block."""
    signer, archive = Signer(), JournalArchive(tmp_path)
    previous, seals = None, []
    for n in range(1, 5):
        entries = mixed(n) if n in (2, 3) else feed(n, 1)
        seals.append(signer.seal(previous, entries))
        archive.append(seals[-1], entries)
        previous = seals[-1].block
    reopened = JournalArchive(tmp_path)
    assert [(e.id, e.stream) for e in reopened.stream_entries(OTHER)] == [("2-1", OTHER), ("3-1", OTHER)]
    assert [e.id for e in reopened.stream_entries(STREAM)] == ["1-0", "2-0", "3-0", "4-0"]
    assert reopened.seals_from("2-1", OTHER) == seals[1:3]
    assert reopened.seals_from("2-1") == seals[1:]  # to the newest block
    assert reopened.seals_from("1-0", "sesame:{u:2}:ch:z:journal") == []


def test_the_index_catches_up_after_a_crash_before_it_was_written(tmp_path: Path) -> None:
    """The line is fsync'ed first, then indexed: an index lost (or behind) is rebuilt from the segments."""
    signer, archive = Signer(), JournalArchive(tmp_path)
    one = signer.seal(None, mixed(1))
    archive.append(one, mixed(1))
    archive.index.path.unlink()
    reopened = JournalArchive(tmp_path)
    assert reopened.stream_entries(OTHER) == []
    assert reopened.catch_up_index() == 1
    assert [e.id for e in reopened.stream_entries(OTHER)] == ["1-1"]
    assert reopened.catch_up_index() == 0


def test_pruned_segments_leave_the_index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(journal_archive, "SEGMENT_BLOCKS", 2)
    signer, archive = Signer(), JournalArchive(tmp_path)
    previous = None
    for n in range(1, 4):
        seal = signer.seal(previous, mixed(n))
        archive.append(seal, mixed(n))
        previous = seal.block
    archive.prune("2026-11-30T19:00:00.000+00:00")
    assert [e.id for e in archive.stream_entries(OTHER)] == ["3-1"]
    assert archive.index.between(1, 3) == archive.index.holding(OTHER)


def test_an_archive_from_before_the_index_is_indexed_whole(tmp_path: Path) -> None:
    """Segments written without an index (decision 0027's archive): caught up from block 1."""
    signer, archive = Signer(), JournalArchive(tmp_path)
    one = signer.seal(None, mixed(1))
    two = signer.seal(one.block, mixed(2))
    archive.append(one, mixed(1))
    archive.append(two, mixed(2))
    for leftover in tmp_path.glob("index.sqlite3*"):
        leftover.unlink()
    assert JournalArchive(tmp_path).seals_from("1-0", OTHER) == []
    assert JournalArchive(tmp_path).catch_up_index() == 2
    assert JournalArchive(tmp_path).seals_from("1-0", OTHER) == [one, two]


def test_the_index_catches_up_from_where_it_was_complete(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A catch-up reads on from the last line known indexed, not the whole segment at every drain, and still
    finds a line another process wrote but did not index (a crash between the line and its index row)."""
    signer, archive = Signer(), JournalArchive(tmp_path)
    previous = None
    for n in range(1, 6):
        seal = signer.seal(previous, mixed(n))
        archive.append(seal, mixed(n))
        previous = seal.block
    assert archive.catch_up_index() == 0
    parsed: list[int] = []
    archived = journal_archive._archived  # counted: the lines a catch-up parses

    def counted(value: dict[str, object]) -> journal_archive.ArchivedBlock:
        block = archived(value)  # type: ignore[arg-type]
        parsed.append(block.seal.block.number)
        return block

    monkeypatch.setattr(journal_archive, "_archived", counted)
    assert archive.catch_up_index() == 0
    assert parsed == []  # from the end of the last line known indexed: nothing to read (decision 0048)
    other = JournalArchive(tmp_path)  # the sealer of another process, crashing after its line
    six = signer.seal(previous, mixed(6))

    def crash(*_: object) -> None:
        raise OSError("killed before the index row")

    monkeypatch.setattr(other.index, "add", crash)
    with pytest.raises(OSError, match="killed"):
        other.append(six, mixed(6))
    parsed.clear()
    assert archive.catch_up_index() == 1
    assert parsed == [6]
    assert [e.id for e in archive.stream_entries(OTHER)][-1] == "6-1"
    seven = signer.seal(six.block, mixed(7))
    JournalArchive(tmp_path).append(seven, mixed(7))  # indexed, by a third process
    starting = JournalArchive(tmp_path)  # a process that knows nothing of the files yet
    eight, crashing = signer.seal(seven.block, mixed(8)), JournalArchive(tmp_path)
    monkeypatch.setattr(crashing.index, "add", crash)
    with pytest.raises(OSError, match="killed"):
        crashing.append(eight, mixed(8))
    parsed.clear()
    assert starting.catch_up_index() == 1
    assert parsed == [7, 8]  # from the line the index ends at, as the index places it (decision 0074)
    assert [e.id for e in starting.stream_entries(OTHER)][-1] == "8-1"


def test_the_last_block_is_read_from_the_end_of_the_newest_segment(tmp_path: Path) -> None:
    """Only the newest whole line is parsed: a line before it that could not be parsed does not matter."""
    signer, archive = Signer(), JournalArchive(tmp_path)
    one = signer.seal(None, feed(1, 2))
    two = signer.seal(one.block, feed(3, 40))  # a line longer than what was read at a time when it was read
    archive.append(one, feed(1, 2))
    archive.append(two, feed(3, 40))
    (segment,) = tmp_path.glob("segment-*.jsonl")
    first, rest = segment.read_bytes().split(b"\n", 1)
    segment.write_bytes(b"x" * len(first) + b"\n" + rest)
    assert JournalArchive(tmp_path).last_block() == two.block


def test_a_torn_tail_is_cut_off_and_the_next_block_follows_readably(tmp_path: Path) -> None:
    """A line cut short by a crash before its fsync (its block still in Redis) is cut off when the archive is
    read afresh: the block appended next is a line of its own, and every line reads back."""
    _, one, two, segment = _block_one_archived(tmp_path, 1)
    whole = segment.stat().st_size
    with segment.open("a", encoding="utf-8") as out:
        out.write('{"seal": {"block"')
    reopened = JournalArchive(tmp_path)
    assert reopened.last_block() == one.block
    assert segment.stat().st_size == whole
    reopened.append(two, feed(3, 1))
    assert [b.seal for b in JournalArchive(tmp_path).blocks()] == [one, two]


def _block_one_archived(tmp_path: Path, second: int) -> tuple[JournalArchive, Seal, Seal, Path]:
    """An archive holding block 1 (two entries); block 2's seal over the `second` entries after them, not
    appended; the segment file."""
    signer, archive = Signer(), JournalArchive(tmp_path)
    one = signer.seal(None, feed(1, 2))
    two = signer.seal(one.block, feed(3, second))
    archive.append(one, feed(1, 2))
    (segment,) = tmp_path.glob("segment-*.jsonl")
    return archive, one, two, segment


def test_a_newest_segment_without_a_whole_line_leaves_the_last_block_in_the_one_before(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(journal_archive, "SEGMENT_BLOCKS", 2)
    signer, archive = Signer(), JournalArchive(tmp_path)
    one = signer.seal(None, feed(1, 1))
    two = signer.seal(one.block, feed(2, 1))
    three = signer.seal(two.block, feed(3, 1))
    archive.append(one, feed(1, 1))
    archive.append(two, feed(2, 1))
    torn = tmp_path / f"segment-{3:012d}.jsonl"
    torn.write_text('{"seal": {"blo', encoding="utf-8")
    reopened = JournalArchive(tmp_path)
    assert reopened.last_block() == two.block
    assert torn.stat().st_size == 0
    reopened.append(three, feed(3, 1))
    assert [b.seal for b in JournalArchive(tmp_path).blocks()] == [one, two, three]


def test_a_line_the_disk_took_only_part_of_is_taken_back(tmp_path: Path) -> None:
    """A write that fails part-way (here the process's file size limit, as a full disk would) leaves no part
    of its line: the block is appended whole once the disk takes it, after the lines before it."""
    archive, one, two, segment = _block_one_archived(tmp_path, 40)
    whole = segment.stat().st_size
    limits = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails with EFBIG instead
    try:
        resource.setrlimit(resource.RLIMIT_FSIZE, (whole + 100, limits[1]))
        with pytest.raises(OSError, match="too large"):
            archive.append(two, feed(3, 40))
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limits)
        signal.signal(signal.SIGXFSZ, previous)
    assert segment.stat().st_size == whole
    assert archive.last_block() == one.block
    archive.append(two, feed(3, 40))
    assert [b.seal for b in JournalArchive(tmp_path).blocks()] == [one, two]


def test_a_writer_that_lost_the_archive_to_another_does_not_append_over_its_lines(tmp_path: Path) -> None:
    """A sealer paused past its lease in the middle of a drain (a stall, a stopped VM), resumed after the new
    holder archived the same block and the next: its append is refused, not written a second time after the
    other's lines (one archive line out of the chain: `sesame journal verify` failed from there on); read
    afresh, it sees what the other wrote."""
    signer = Signer()
    one = signer.seal(None, feed(1, 1))
    two = signer.seal(one.block, feed(2, 1))
    three = signer.seal(two.block, feed(3, 1))
    stale, holder = JournalArchive(tmp_path), JournalArchive(tmp_path)
    stale.append(one, feed(1, 1))
    holder.append(two, feed(2, 1))
    holder.append(three, feed(3, 1))
    with pytest.raises(ArchiveRefused, match="another sealer wrote"):
        stale.append(two, feed(2, 1))
    assert [b.seal.block.number for b in JournalArchive(tmp_path).blocks()] == [1, 2, 3]
    assert stale.last_block() == three.block


def test_the_new_holder_waits_for_the_line_another_is_writing_rather_than_cut_it(tmp_path: Path) -> None:
    """A torn tail is cut only under the archive's lock: while another writer holds it (its line on its way
    to the disk), reading the last block refuses (OSError, retried by the sealer): that line stays whole."""
    signer, archive = Signer(), JournalArchive(tmp_path)
    one = signer.seal(None, feed(1, 1))
    archive.append(one, feed(1, 1))
    (segment,) = tmp_path.glob("segment-*.jsonl")
    with archive.locked():
        with segment.open("a", encoding="utf-8") as out:
            out.write('{"seal": {"block"')  # the other writer's line, half written
        with pytest.raises(OSError, match="another writer"):
            JournalArchive(tmp_path).last_block()
        assert segment.read_text(encoding="utf-8").endswith('{"seal": {"block"')
    assert JournalArchive(tmp_path).last_block() == one.block  # cut once the lock is free
    assert segment.read_text(encoding="utf-8").endswith("\n")


def test_a_line_the_disk_took_part_of_leaves_nothing_once_the_cut_frees_room(tmp_path: Path) -> None:
    """A disk that takes part of a line and has room again once that part is cut (a full disk, freed by the
    cut itself): nothing of the line is left. A buffered file kept what the disk refused and wrote it when
    closed, after the cut: the end of the line as a line of its own, which no reader could parse and after
    which no block was archived again (on main: 2,530 bytes left, `json.loads` failed on them)."""
    archive, one, two, segment = _block_one_archived(tmp_path, 40)
    whole = segment.stat().st_size
    limits = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    try:
        # Room for 6,000 bytes of block two's line, and after the cut for what a buffer would keep of it.
        resource.setrlimit(resource.RLIMIT_FSIZE, (whole + 6000, limits[1]))
        with pytest.raises(OSError, match="too large"):
            archive.append(two, feed(3, 40))
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limits)
        signal.signal(signal.SIGXFSZ, previous)
    assert segment.stat().st_size == whole
    assert [b.seal for b in JournalArchive(tmp_path).blocks()] == [one]
    archive.append(two, feed(3, 40))
    assert [b.seal for b in JournalArchive(tmp_path).blocks()] == [one, two]
    # Longer than a buffer (written past it, then the rest kept): the case the limit above makes.
    assert segment.stat().st_size - whole > io.DEFAULT_BUFFER_SIZE
