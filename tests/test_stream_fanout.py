"""``stream/fanout.py``: one lane per sink; a dead sink holds back only itself (issue 18 #11)."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.test_stream import SAMPLE_BASELINE, ListSink, conns, write
from tlsdetect.detect.baseline import Baseline
from tlsdetect.sinks.alerts.ecs import JsonlSink
from tlsdetect.sinks.alerts.hec import HecSink
from tlsdetect.sinks.alerts.spool import SinkRejectedError, Spooled
from tlsdetect.stream.checkpoint import CheckpointStore
from tlsdetect.stream.fanout import SinkLane
from tlsdetect.stream.loop import Processor, StreamConfig, Streamer


def _a(n: int, start: int = 0) -> list[dict[str, Any]]:
    return [{"id": f"{i:032x}"} for i in range(start, start + n)]


def test_lane_holds_while_down_then_sends_in_order() -> None:
    sink = ListSink(fail=lambda n: n <= 2)
    lane = SinkLane(sink, max_alerts=10, backoff_min=0.0, backoff_max=0.0)
    assert lane.offer(1, _a(3)) == []  # down: held
    assert (lane.held, lane.done_through, lane.down) == (3, 0, True)
    assert lane.offer(2, []) == []  # nothing to hold, but batch 1 is still before it
    assert lane.done_through == 0
    assert [len(x) for x in lane.offer(3, _a(2, 3))] == [3, 2]  # back: oldest first
    assert (lane.held, lane.done_through, lane.down) == (0, 3, False)
    assert [a["id"] for a in sink.got] == [a["id"] for a in _a(5)]


def test_lane_drop_counts_what_does_not_fit() -> None:
    lane = SinkLane(ListSink(fail=lambda _: True), when_full="drop", max_alerts=4, backoff_min=0.0, backoff_max=0.0)
    lane.offer(1, _a(3))
    lane.offer(2, _a(3, 3))  # 6 > 4: the newest batch goes
    assert (lane.held, lane.dropped, lane.done_through) == (3, 3, 0)
    lane.offer(3, _a(9, 6))  # larger than the whole buffer
    assert (lane.held, lane.dropped) == (3, 12)
    assert lane.drop_held() == 3
    assert (lane.held, lane.dropped, lane.done_through, lane.full) == (0, 15, 3, False)
    block = SinkLane(ListSink(fail=lambda _: True), max_alerts=4)
    block.offer(1, _a(5))
    assert block.full
    assert block.dropped == 0
    with pytest.raises(ValueError, match="when_full='later'"):
        SinkLane(ListSink(), when_full="later")  # type: ignore[arg-type]


def test_lane_refused_batch_is_finished_not_retried() -> None:
    class Refusing(ListSink):
        def send(self, alerts: Any) -> None:
            raise SinkRejectedError("HTTP 400")

    lane = SinkLane(Refusing())
    assert lane.offer(1, _a(2)) == []
    assert (lane.held, lane.done_through, len(lane.rejected)) == (0, 1, 1)


@pytest.fixture(scope="module")
def baseline() -> Baseline:
    return Baseline.load(SAMPLE_BASELINE)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _dead_hec(tmp_path: Path, port: int) -> Spooled:
    """HEC on a closed port, behind a spool smaller than one batch (the case of the issue)."""
    return Spooled(HecSink(f"hec+http://127.0.0.1:{port}?token=t", timeout=1), tmp_path / "spool", max_bytes=500,
                   backoff_min=0.01, backoff_max=0.05)  # fmt: skip


def test_dead_sink_drop_does_not_stall_jsonl(tmp_path: Path, baseline: Baseline) -> None:
    log = tmp_path / "access.log"
    write(log, range(40))
    hec = SinkLane(_dead_hec(tmp_path, _free_port()), when_full="drop", max_alerts=5, backoff_min=0.01)
    jsonl = JsonlSink(str(tmp_path / "a.jsonl"))
    s = Streamer(log, Processor(baseline), [hec, jsonl], CheckpointStore(tmp_path / "state"),
                 config=StreamConfig(batch_lines=10))  # fmt: skip
    t0 = time.monotonic()
    m = s.run()
    s.close()
    assert time.monotonic() - t0 < 30
    assert len((tmp_path / "a.jsonl").read_text().splitlines()) == 40  # every alert, the dead sink first in line
    assert m.sink_dropped[hec.name] == 40
    assert m.sink_up[hec.name] == 0
    assert m.sink_held[hec.name] == 0
    s = Streamer(log, Processor(baseline), [ListSink()], CheckpointStore(tmp_path / "state"))
    assert s.run().lines_read == 0  # the checkpoint went to the end: drop never holds it
    s.close()


class _Hec:
    """A real HTTP collector on a given port (the one the dead sink points at), keeping the event ids."""

    def __init__(self, port: int) -> None:
        self.ids: list[str] = []
        hec = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0"))).decode()
                dec, pos = json.JSONDecoder(), 0
                while pos < len(body):
                    doc, pos = dec.raw_decode(body, pos)
                    hec.ids.append(doc["event"]["event"]["id"])
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_dead_sink_block_other_sinks_go_on_and_replay_has_no_duplicate(tmp_path: Path, baseline: Baseline) -> None:
    """issue 18 #11: the JSONL sink received nothing for 15 s while HEC was down with a too small spool."""
    log = tmp_path / "access.log"
    write(log, range(40))
    port = _free_port()
    hec = SinkLane(_dead_hec(tmp_path, port), max_alerts=15, backoff_min=0.01)
    local = ListSink("local")
    s = Streamer(log, Processor(baseline), [hec, local], CheckpointStore(tmp_path / "state"),
                 config=StreamConfig(batch_lines=10))  # fmt: skip
    ended: list[BaseException] = []

    def run() -> None:
        try:
            s.run()
        except SystemExit as exc:
            ended.append(exc)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    deadline = time.monotonic() + 30
    while not hec.full and time.monotonic() < deadline:
        time.sleep(0.02)
    assert hec.full  # HEC holds two batches (20 > 15): the stream waits for it ...
    assert conns(local.got) == list(range(20))  # ... after the other sink had both
    s.stop()
    t.join(30)
    assert ended
    assert isinstance(ended[0], SystemExit)
    s.close()

    collector = _Hec(port)  # HEC is back; the restart replays from the checkpoint, which waited for HEC
    try:
        local2 = ListSink("local")
        s = Streamer(log, Processor(baseline), [SinkLane(_dead_hec(tmp_path, port), backoff_min=0.01), local2],
                     CheckpointStore(tmp_path / "state"), config=StreamConfig(batch_lines=10))  # fmt: skip
        m = s.run()
        s.close()
    finally:
        collector.close()
    assert conns(local2.got) == list(range(20, 40))  # the local sink is not sent its 20 again
    assert m.sink_deduped["local"] == 20
    assert len(collector.ids) == len(set(collector.ids)) == 40  # HEC: every alert once


def test_cli_when_full_drop_in_the_spec_and_the_summary(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from tlsdetect.cli import main

    log = tmp_path / "access.log"
    write(log, range(6))
    hec = f"hec+http://127.0.0.1:{_free_port()}?token=t"
    args = ["stream", "--baseline", str(SAMPLE_BASELINE), "--source", f"envoy:{log}", "--sink",
            f"jsonl:{tmp_path / 'a.jsonl'}", "--state", str(tmp_path / "st"), "--spool-max-mb", "0",
            "--sink-buffer", "2"]  # fmt: skip
    res = CliRunner().invoke(main, [*args, "--sink", hec + "&when_full=drop"])
    assert res.exit_code == 0, res.output
    assert "6 alerts, 0 dead letters, 6 alerts dropped for a full sink (when_full=drop)" in res.output
    assert len((tmp_path / "a.jsonl").read_text().splitlines()) == 6
    bad = CliRunner().invoke(main, [*args, "--sink", hec + "&when_full=later"])
    assert bad.exit_code == 2
    assert "when_full='later', expected one of block, drop" in bad.output
