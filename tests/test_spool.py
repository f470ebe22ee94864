"""``sinks/alerts/spool.py``: the bounded disk spool, across restarts, and batches a sink refuses for good."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_hec import PlainHec
from tests.test_sinks_stream import ALERT
from tests.test_stream import ListSink
from tlsdetect.sinks.alerts.hec import HecSink
from tlsdetect.sinks.alerts.spool import Spooled, SpoolFullError


def test_spool_is_bounded(tmp_path: Path) -> None:
    sink = ListSink(fail=lambda _: True)
    sp = Spooled(sink, tmp_path / "spool", max_bytes=600, backoff_min=0.0, backoff_max=0.0)
    sp.send([{"id": "a" * 32, "x": "y" * 100}])
    for _ in range(2):
        sp.send([{"id": "b" * 32, "x": "y" * 100}])
    with pytest.raises(SpoolFullError):
        sp.send([{"id": "c" * 32, "x": "y" * 100}])
    assert sp.spooled_bytes <= 600
    sink.fail = None
    assert sp.drain(force=True)
    assert [a["id"][0] for a in sink.got] == ["a", "b", "b"]


def test_spool_survives_restart(tmp_path: Path) -> None:
    down = ListSink(fail=lambda _: True)
    Spooled(down, tmp_path / "spool").send([{"id": "1"}, {"id": "2"}])
    up = ListSink()
    sp = Spooled(up, tmp_path / "spool")
    sp.send([{"id": "3"}])
    assert [a["id"] for a in up.got] == ["1", "2", "3"]



def test_hec_refused_batches_leave_the_spool(tmp_path: Path) -> None:
    """issue 14 item 13: behind the spool, a 403/400 batch is set aside with its reason (not retried, not
    spooled); a 503 or 429 batch is spooled and retried until HEC takes it; a spooled batch HEC then refuses
    for good leaves the spool too."""
    hec = PlainHec(403, 400, 503, 429, 200, 503, 400, 200)
    try:
        sp = Spooled(HecSink(hec.spec), tmp_path / "spool", backoff_min=0.0, backoff_max=0.0)
        sp.send([{**ALERT, "id": "1" * 32}])  # 403
        sp.send([{**ALERT, "id": "2" * 32}])  # 400
        assert [(len(a), r.split(": ", 1)[1][:8]) for a, r in sp.take_rejected()] == [(1, "HTTP 403"), (1, "HTTP 400")]
        assert sp.spooled_batches == 0
        assert not sp.down
        sp.send([{**ALERT, "id": "3" * 32}])  # 503: spooled
        assert sp.spooled_batches == 1
        assert sp.down
        assert sp.drain(force=True) is False  # 429: still spooled
        assert sp.spooled_batches == 1
        assert sp.drain(force=True) is True  # 200
        sp.send([{**ALERT, "id": "4" * 32}])  # 503: spooled
        assert sp.drain(force=True) is True  # 400: refused for good, out of the spool
        sp.send([{**ALERT, "id": "5" * 32}])  # 200
        assert [r.split(": ", 1)[1][:8] for _, r in sp.take_rejected()] == ["HTTP 400"]
    finally:
        hec.close()
    assert hec.answered == [403, 400, 503, 429, 200, 503, 400, 200]
    assert [e["event"]["event"]["id"] for e in hec.events] == ["3" * 32, "5" * 32]
    assert sp.spooled_batches == 0
    assert sp.rejected_alerts == 3

