"""The ring-file queue: oldest first, newest left to its writer, bounded with every loss counted."""

from __future__ import annotations

from pathlib import Path

from tlsdetect.stream.ring import RingQueue, ring_name


def _write(d: Path, *numbers: int, size: int = 10) -> None:
    for n in numbers:
        (d / ring_name("ring", n, "20261207214400", "pcapng")).write_bytes(b"x" * size)


def test_the_newest_file_is_left_to_dumpcap_until_it_stops(tmp_path: Path) -> None:
    _write(tmp_path, 1, 2)
    (tmp_path / "other_00003_1.pcapng").write_bytes(b"x")  # another prefix: not ours
    (tmp_path / "ring_00004_1.pcap.part").write_bytes(b"x")  # half written: not a ring file yet
    q = RingQueue(tmp_path, "ring")
    first = q.take(producer_done=False)
    assert first is not None
    assert first.name.startswith("ring_00001_")
    first.unlink()
    assert q.take(producer_done=False) is None
    last = q.take(producer_done=True)
    assert last is not None
    assert last.name.startswith("ring_00002_")
    assert (q.taken, q.dropped_files) == (2, 0)


def test_over_the_bound_the_oldest_are_deleted_and_counted(tmp_path: Path) -> None:
    _write(tmp_path, 1, 2, 3, 4, 5, 6, size=100)
    q = RingQueue(tmp_path, "ring", max_files=2)
    assert q.queued_bytes() == 600
    got = q.take(producer_done=False)  # finished: 1..5; 2 may wait; 1, 2, 3 dropped
    assert got is not None
    assert got.name.startswith("ring_00004_")
    assert (q.dropped_files, q.dropped_bytes, q.missing_files) == (3, 300, 0)
    assert sorted(p.name[:10] for p in tmp_path.iterdir()) == ["ring_00004", "ring_00005", "ring_00006"]


def test_gaps_in_the_numbering_are_counted_missing(tmp_path: Path) -> None:
    _write(tmp_path, 1, 4)  # dumpcap's own files: bound deleted 2 and 3
    q = RingQueue(tmp_path, "ring", newest_open=False)
    for _ in range(2):
        p = q.take(producer_done=False)
        assert p is not None
        p.unlink()
    assert (q.missing_files, q.taken) == (2, 2)


def test_the_byte_bound_drops_the_oldest_first(tmp_path: Path) -> None:
    _write(tmp_path, 1, 2, 3, size=100)
    _write(tmp_path, 4, size=10)
    q = RingQueue(tmp_path, "ring", max_bytes=150, newest_open=False)
    got = q.take(producer_done=False)  # 310 bytes waiting: 1 and 2 go, 3 + 4 = 110 fit
    assert got is not None
    assert got.name.startswith("ring_00003_")
    assert (q.dropped_files, q.dropped_bytes) == (2, 200)


def test_a_catching_up_reader_takes_the_queued_files_together(tmp_path: Path) -> None:
    _write(tmp_path, 1, 2, 3, 4, 5, 6, size=100)
    q = RingQueue(tmp_path, "ring")
    got = q.take_many(producer_done=False, max_files=3)  # 1..5 finished; three of them, oldest first
    assert [p.name[:10] for p in got] == ["ring_00001", "ring_00002", "ring_00003"]
    got = q.take_many(producer_done=False, max_files=9, max_bytes=50)  # the first always, however large
    assert [p.name[:10] for p in got] == ["ring_00004"]
    got = q.take_many(producer_done=False, max_files=9, max_bytes=150)  # 5 fits; 6 is dumpcap's
    assert [p.name[:10] for p in got] == ["ring_00005"]
    assert q.take_many(producer_done=False, max_files=9) == []
    assert (q.taken, q.dropped_files, q.missing_files) == (5, 0, 0)
