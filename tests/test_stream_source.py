"""The loop's source interface: every source implements it, and a new one plugs into the loop unchanged."""

from __future__ import annotations

import io
from pathlib import Path

import pyarrow as pa

from tlsdetect.stream.checkpoint import Checkpoint, CheckpointStore
from tlsdetect.stream.follow import Batch, Follower, StdinFollower
from tlsdetect.stream.loop import Processor, Streamer
from tlsdetect.stream.source import Source


class _Pushed:
    """A minimal source without offsets that hands two batches of decoded records, then ends."""

    live = False
    key = ""

    def __init__(self, tables: list[pa.Table]) -> None:
        self.file = "test://pushed"
        self.events: list[str] = []
        self.tables = tables
        self.line = 0
        self.ended = False

    @property
    def checkpoint(self) -> Checkpoint:
        return Checkpoint(0, 0, "", 0, self.line)

    def read(self, max_lines: int, *, final: bool = False) -> Batch | None:
        if not self.tables:
            self.ended = True
            return None
        t = self.tables.pop(0)
        first, self.line = self.line + 1, self.line + t.num_rows
        return Batch(b"", first, self.file, self.checkpoint, t.num_rows, records=t)

    def lag_bytes(self) -> int:
        return 0

    def close(self) -> None:
        pass


def test_followers_are_sources(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    log.write_text("")
    follower = Follower(log, None)
    assert isinstance(follower, Source)
    assert follower.key == str(log.resolve())
    stdin = StdinFollower(io.BytesIO(b""))
    assert isinstance(stdin, Source)
    assert stdin.key == ""
    follower.close()
    stdin.close()


def test_a_new_source_runs_through_the_loop(tmp_path: Path) -> None:
    """Records in columns, across two batches (different keys per batch), counted once; a bad one is a named
    dead letter; no checkpoint is written for a source without offsets."""
    one = pa.table({"downstream_remote_address": ["10.0.0.1:1000", "10.0.0.2:1001"], "ja4": ["t13d_a_b", "t13d_c_d"],
                    "requested_server_name": ["a.example", "b.example"]})  # fmt: skip
    two = pa.table({"DOWNSTREAM_REMOTE_ADDRESS": ["10.0.0.3:1002", "not an address"],
                    "REQUESTED_SERVER_NAME": ["c.example", "d.example"]})  # fmt: skip
    source = _Pushed([one, two])
    assert isinstance(source, Source)
    store = CheckpointStore(tmp_path / "state")
    streamer = Streamer(source, Processor(None), [], store, dead_letter=tmp_path / "dead.jsonl")
    m = streamer.run()
    streamer.close()
    assert m.lines_read == 4
    assert m.records_in == 4
    assert m.rows == 3
    assert m.dead_letters == 1
    assert m.skipped == {"bad address": 1}
    dead = (tmp_path / "dead.jsonl").read_text()
    assert "test://pushed" in dead
    assert "not an address" in dead
    assert CheckpointStore(tmp_path / "state").load("test://pushed") is None
