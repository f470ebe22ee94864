"""``stream/loop.py``: the processor (parse + score a batch) and the streamer's dead letters."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.test_stream import SAMPLE_BASELINE, ListSink, conns, line, streamer
from tlsdetect.detect.baseline import Baseline
from tlsdetect.stream.loop import Processor, ledger_events


@pytest.fixture(scope="module")
def baseline() -> Baseline:
    return Baseline.load(SAMPLE_BASELINE)


def test_internal_error_dead_letters_the_batch(baseline: Baseline, monkeypatch: pytest.MonkeyPatch) -> None:
    import tlsdetect.stream.loop as stream_mod

    def broken(*_: Any, **__: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(stream_mod, "score", broken)
    result = Processor(baseline)((line(0) + "{bad\n" + line(1)).encode(), 7, "x.log")
    assert (result.rows, result.lines, result.alerts) == (0, 3, [])
    assert [(d[1], d[2]) for d in result.dead] == [(7, "internal error: RuntimeError: boom"),
                                                   (8, "internal error: RuntimeError: boom"),
                                                   (9, "internal error: RuntimeError: boom")]  # fmt: skip


def test_dead_letters_and_counters(tmp_path: Path, baseline: Baseline) -> None:
    log = tmp_path / "access.log"
    with log.open("w") as fh:
        fh.write(line(0) + "{broken json\n" + "[1,2]\n\n" + line(1).replace("10.0.0.1:1025", "999.1.1.1:1") + line(2))
    sink = ListSink()
    s = streamer(tmp_path, baseline, [sink])
    m = s.run()
    s.close()
    assert conns(sink.got) == [0, 2]
    dead = [json.loads(x) for x in (tmp_path / "dead.jsonl").read_text().splitlines()]
    assert [d["line"] for d in dead] == [2, 3, 5]
    assert dead[0]["reason"].startswith("broken JSON")
    assert dead[1]["reason"].startswith("not a JSON object")
    assert dead[2]["reason"].startswith("bad address")
    assert all(d["file"] == str(log) for d in dead)
    assert (m.lines_read, m.rows, m.alerts, m.dead_letters) == (5, 2, 2, 3)
    # the anomaly ledger's names: each dead letter by its reason's name, summed over the batches
    assert m.weird == {dead[0]["reason"].split(":")[0]: 1, dead[1]["reason"].split(":")[0]: 1,
                       dead[2]["reason"].split(":")[0]: 1}
    assert sum(m.weird.values()) == m.dead_letters


def test_dead_letters_are_deadletter_records(tmp_path: Path, baseline: Baseline) -> None:
    """The stream writes its dead letters with readers/logs.py's DeadLetter: the line's record, text cut at 4096."""
    log = tmp_path / "access.log"
    log.write_bytes(line(0).encode() + b"\xff\xfe not json\n" + b"{" + b"x" * 5000 + b"\n")
    s = streamer(tmp_path, baseline, [ListSink()])
    m = s.run()
    s.close()
    dead = [json.loads(x) for x in (tmp_path / "dead.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [list(d) for d in dead] == [["file", "line", "reason", "text"]] * 2
    assert (dead[0]["line"], dead[0]["text"][-9:]) == (2, " not json")
    assert len(dead[1]["text"]) == 4096
    assert m.dead_letters == 2


def test_ledger_events_name_dead_letters_and_incomplete_rows() -> None:
    import pandas as pd

    deep = "JSON nested too deep: more than 64 levels of objects and arrays"
    dead = [("x.log", 1, deep, b"[[["), ("x.log", 2, deep, b"[[[["), ("x.log", 3, "broken JSON", b"{")]
    table = pd.DataFrame({"incomplete": pd.array(["hello_truncated", None, "hello_truncated", "over_depth"],
                                                 dtype="string")})
    assert ledger_events(dead, table) == {"JSON nested too deep": 2, "broken JSON": 1,
                                          "hello_truncated": 2, "over_depth": 1}
    assert ledger_events([], pd.DataFrame({"ja4": ["x"]})) == {}  # a source without the column: nothing


def test_ledger_events_count_truncated_rows_as_fingerprint_does() -> None:
    """A row whose later flight was cut is one ``record_truncated`` event, beside its ``incomplete`` one if any:
    the counts ``tlsdetect fingerprint --weird`` sums (:func:`tlsdetect.sinks.weird.event_counts`)."""
    import pandas as pd

    table = pd.DataFrame({
        "incomplete": pd.array([None, "overlap_conflict", None, None], dtype="string"),
        "truncated": pd.array(["server_flight", "server_chain", None, "server_flight,client_flight"], dtype="string"),
    })
    assert ledger_events([], table) == {"record_truncated": 3, "overlap_conflict": 1}
