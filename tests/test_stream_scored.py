"""``stream/scored.py``: a batch's result crosses process boundaries (workers, crash-guard children) intact."""

from __future__ import annotations

import pickle

from tlsdetect.stream.isolate import merge_scored
from tlsdetect.stream.scored import Scored


def test_scored_pickles_with_raw_dead_lines_and_ledger_events() -> None:
    s = Scored([{"conn_id": 1}], 1, 2, [("a.log", 7, "broken JSON", b"\xff{")], 1.5, {"broken JSON": 1})
    back = pickle.loads(pickle.dumps(s))
    assert (back.alerts, back.rows, back.lines, back.dead, back.newest_ts, back.weird) == (
        [{"conn_id": 1}], 1, 2, [("a.log", 7, "broken JSON", b"\xff{")], 1.5, {"broken JSON": 1})
    assert Scored([], 0, 0, [], None).weird == {}  # a result without ledger events


def test_merge_keeps_line_order_and_sums() -> None:
    a = Scored([{"conn_id": 1}], 1, 2, [("a.log", 2, "x", "y")], 3.0, {"x": 1})
    b = Scored([{"conn_id": 3}], 1, 1, [], None, {"x": 2, "z": 1})
    m = merge_scored([a, b])
    assert ([x["conn_id"] for x in m.alerts], m.rows, m.lines, m.dead, m.newest_ts, m.weird) == (
        [1, 3], 2, 3, [("a.log", 2, "x", "y")], 3.0, {"x": 3, "z": 1})
