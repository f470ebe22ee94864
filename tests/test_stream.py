"""``tlsdetect stream`` (``cli/stream.py`` over the loop): checkpoints, replay ids, spool, refusals, garbage input.

The follower, checkpoint, metrics and processor have their own files (``test_stream_*.py``); the
helpers here (``line``, ``write``, ``streamer``, ``ListSink``) are shared with them.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tlsdetect.cli import main
from tlsdetect.detect.baseline import Baseline
from tlsdetect.sinks.alerts.ecs import JsonlSink
from tlsdetect.sinks.alerts.spool import SinkError, Spooled, SpoolFullError
from tlsdetect.sinks.alerts.syslog import SyslogSink, parse_octet_frames
from tlsdetect.stream.checkpoint import CheckpointStore
from tlsdetect.stream.loop import Processor, StreamConfig, Streamer

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_BASELINE = ROOT / "baselines" / "sample"
TEMPLATE = {
    "access_log_type": "DownstreamEnd", "connection_id": 9, "downstream_local_address": "127.0.0.1:10443",
    "downstream_peer_fingerprint_256": "bf2acf64b005c7f869303b6541403cda68b5904f4f26c0780e1c238f9b390185",
    "downstream_peer_issuer": "CN=Example Corp Internal Root CA,OU=Corporate Security,O=Example Corp,C=US",
    "downstream_peer_subject": "CN=node.clients.example.internal,OU=Workloads,O=Example Corp,C=US",
    "downstream_tls_version": "TLSv1.3", "ja3": "0cce74b0d9b7f8528fb2181588d23793",
    "ja4": "t13d591000_a33745022dd6_1f22a2ca17c4", "method": "GET", "requested_server_name": "mtls.tlsdetect.test",
    "response_code": 200, "start_time": "2026-11-26T17:08:00.484Z", "user_agent": "node/20.20.2",
}  # fmt: skip


def line(i: int) -> str:
    """One Envoy JSON line; every one is an alert against the sample baseline (an unknown private CA)."""
    rec = {**TEMPLATE, "downstream_remote_address": f"10.0.{i // 60000}.{i % 250}:{1024 + i % 60000}",
           "connection_id": i}  # fmt: skip
    return json.dumps(rec) + "\n"


def write(path: Path, lines: Sequence[int], mode: str = "a") -> None:
    with path.open(mode) as fh:
        fh.write("".join(line(i) for i in lines))


@pytest.fixture(scope="module")
def baseline() -> Baseline:
    return Baseline.load(SAMPLE_BASELINE)


class ListSink:
    """Keeps every alert it is sent (a sink that cannot dedupe)."""

    def __init__(self, name: str = "list", fail: Callable[[int], bool] | None = None) -> None:
        self.name, self.sent, self.got, self.calls, self.fail = name, 0, [], 0, fail
        self.got: list[dict[str, Any]]

    def send(self, alerts: Sequence[Mapping[str, Any]]) -> None:
        self.calls += 1
        if self.fail is not None and self.fail(self.calls):
            raise SinkError("down")
        self.got.extend(dict(a) for a in alerts)
        self.sent += len(alerts)

    def close(self) -> None:
        pass


class CrashError(Exception):
    """Stands for the process dying (kill -9) between delivery and checkpoint."""


def conns(alerts: Sequence[Mapping[str, Any]]) -> list[int]:
    return [int(a["conn_id"]) for a in alerts]


def streamer(tmp: Path, baseline: Baseline, sinks: Sequence[Any], *, follow: bool = False, lines: int = 5000,
             src: str = "access.log") -> Streamer:  # fmt: skip
    cfg = StreamConfig(follow=follow, batch_lines=lines, batch_ms=50, poll_ms=5)
    return Streamer(tmp / src, Processor(baseline), sinks, CheckpointStore(tmp / "state"),
                    dead_letter=tmp / "dead.jsonl", config=cfg)  # fmt: skip


# ---------------------------------------------------------------------------------------- streamer


def test_batch_run_and_checkpoint_resume(tmp_path: Path, baseline: Baseline) -> None:
    log = tmp_path / "access.log"
    write(log, range(12))
    sink = ListSink()
    s = streamer(tmp_path, baseline, [sink], lines=5)
    m = s.run()
    s.close()
    assert conns(sink.got) == list(range(12))
    assert (m.lines_read, m.rows, m.alerts, m.batches) == (12, 12, 12, 3)
    write(log, range(12, 15))
    sink2 = ListSink()
    s = streamer(tmp_path, baseline, [sink2])
    s.run()
    s.close()
    assert conns(sink2.got) == [12, 13, 14]  # from the checkpoint on, nothing again


def test_crash_before_ack_replays_same_ids(tmp_path: Path, baseline: Baseline) -> None:
    log = tmp_path / "access.log"
    write(log, range(10))
    plain = ListSink("plain")
    jsonl = JsonlSink(str(tmp_path / "alerts.jsonl"))

    class Crashing(ListSink):
        def send(self, alerts: Sequence[Mapping[str, Any]]) -> None:
            super().send(alerts)
            if self.calls == 2:
                raise CrashError  # delivered to every sink before it, checkpoint not committed

    s = streamer(tmp_path, baseline, [plain, jsonl, Crashing()], lines=4)
    with pytest.raises(CrashError):
        s.run()
    jsonl.close()
    s.store.close()
    before = {a["conn_id"]: a["id"] for a in plain.got}
    assert sorted(int(c) for c in before) == list(range(8))

    plain2 = ListSink("plain")
    s = streamer(tmp_path, baseline, [plain2, JsonlSink(str(tmp_path / "alerts.jsonl"))], lines=4)
    s.run()
    s.close()
    assert conns(plain2.got) == list(range(4, 10))  # the unacknowledged batch again (at-least-once) ...
    for a in plain2.got:
        if a["conn_id"] in before:
            assert a["id"] == before[a["conn_id"]]  # ... with the same ids
    docs = [json.loads(x) for x in (tmp_path / "alerts.jsonl").read_text().splitlines()]
    ids = [d["event"]["id"] for d in docs]
    assert len(ids) == len(set(ids)) == 10  # the JSONL sink dedupes: exactly once


def test_text_format_log(tmp_path: Path) -> None:
    """A text access log (the configured format string), through the CLI without --follow."""
    from tests.test_envoy import ISSUER
    from tests.test_envoy_text import FORMAT

    log = tmp_path / "access.log"
    log.write_text(
        '[2026-11-26T17:08:00.484Z] "GET /a HTTP/2" 200 10.0.0.7:5000 10.0.0.1:10443 4 mtls.test TLSv1.3 '
        f'0cce74b0d9b7f8528fb2181588d23793 t13d591000_a33745022dd6_1f22a2ca17c4 "{ISSUER}" '
        '"CN=node, O=Example Corp" "curl/8.5.0 (x86_64)" 100%\n'
        "this line is not in the format\n"
    )
    args = ["stream", "--baseline", str(SAMPLE_BASELINE), "--source", f"envoy:{log}", "--text-format", FORMAT,
            "--sink", f"jsonl:{tmp_path / 'a.jsonl'}", "--state", str(tmp_path / "st")]  # fmt: skip
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    assert "2 lines, 1 connections, 1 alerts, 1 dead letters" in res.output
    assert "; weird: 1 events (" in res.output  # the dead letter, named by its reason
    doc = json.loads((tmp_path / "a.jsonl").read_text())
    assert doc["tlsdetect"]["ja4"] == "t13d591000_a33745022dd6_1f22a2ca17c4"
    assert doc["source"]["port"] == 5000
    dead = json.loads((tmp_path / "st" / "dead-letter.jsonl").read_text())
    assert (dead["line"], dead["reason"]) == (2, "line does not match text_format")


def test_follow_through_rotations(tmp_path: Path, baseline: Baseline) -> None:
    log = tmp_path / "access.log"
    write(log, range(5))
    sink = ListSink()
    s = streamer(tmp_path, baseline, [sink], follow=True, lines=3)
    t = threading.Thread(target=s.run)
    t.start()

    def wait_for(n: int) -> None:
        end = time.monotonic() + 20
        while len(sink.got) < n and time.monotonic() < end:
            time.sleep(0.02)
        assert len(sink.got) >= n, conns(sink.got)

    try:
        wait_for(5)
        write(log, range(5, 8))
        log.rename(tmp_path / "access.log.1")  # logrotate create
        write(log, range(8, 11))
        wait_for(11)
        shutil.copyfile(log, tmp_path / "access.log.2")  # logrotate copytruncate
        with log.open("r+") as fh:
            fh.truncate(0)
        write(log, range(11, 13))
        wait_for(13)
    finally:
        s.stop()
        t.join(10)
        s.close()
    assert conns(sink.got) == list(range(13))
    assert s.metrics.lines_read == 13


def test_sink_down_then_up_spool_drains(tmp_path: Path, baseline: Baseline) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = tmp_path / "access.log"
    write(log, range(6))
    spooled = Spooled(SyslogSink(f"syslog+tcp://127.0.0.1:{port}", timeout=1), tmp_path / "spool",
                      backoff_min=0.01, backoff_max=0.05)  # fmt: skip
    local = ListSink()
    s = streamer(tmp_path, baseline, [local, spooled], lines=2)
    m = s.run()  # syslog is down: every batch spooled, the checkpoint moves anyway
    assert conns(local.got) == list(range(6))
    assert spooled.down
    assert spooled.spooled_batches >= 1
    assert m.sink_up[spooled.name] == 0
    assert m.spool_bytes[spooled.name] > 0

    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", port))
    srv.listen()
    got: list[bytes] = []

    def serve() -> None:
        conn, _ = srv.accept()
        with conn:
            while data := conn.recv(65536):
                got.append(data)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    write(log, range(6, 8))
    time.sleep(0.1)
    s.run()  # sink is back: the spool drains first, then the new batch
    s.close()  # closes the connection
    t.join(5)
    srv.close()
    msgs, rest = parse_octet_frames(b"".join(got))
    assert rest == b""
    ids = [m_.split('id="', 1)[1].split('"', 1)[0] for m_ in msgs]
    local_ids = [a["id"] for a in local.got]
    assert ids == local_ids  # everything, in order, once
    assert not spooled.down
    assert spooled.spooled_batches == 0


def test_hec_refusal_goes_to_dead_letters_and_metrics(tmp_path: Path, baseline: Baseline) -> None:
    """issue 14 item 13: HEC answering 403 (a bad token) was retried forever and held the stream; now the
    refused alerts are dead letters with HEC's answer as the reason, counted in the metrics, and the
    checkpoint moves on. 503 and 429 keep being retried (spooled) until HEC takes the alerts."""
    from tlsdetect.sinks.alerts.hec import HecSink
    from tlsdetect.sinks.alerts.open import open_sink

    from .test_hec import PlainHec

    log = tmp_path / "access.log"
    write(log, range(5))
    hec = PlainHec(403)
    try:
        sink = Spooled(HecSink(hec.spec), tmp_path / "spool", backoff_min=0.0, backoff_max=0.0)
        s = streamer(tmp_path, baseline, [sink], lines=2)
        m = s.run()
        s.close()
    finally:
        hec.close()
    assert hec.answered == [403, 403, 403]  # three batches, each tried once
    assert m.sink_rejected[sink.name] == 5
    assert m.alerts == 5
    assert m.sink_sent[sink.name] == 0
    assert sink.spooled_batches == 0
    assert f'tlsdetect_stream_alerts_rejected_total{{sink="{sink.name}"}} 5' in m.prometheus()
    dead = [json.loads(x) for x in (tmp_path / "dead.jsonl").read_text().splitlines()]
    assert len(dead) == 5
    assert all(d["sink"] == sink.name and "HTTP 403" in d["reason"] and "Invalid token" in d["reason"] for d in dead)
    assert sorted(json.loads(d["text"])["conn_id"] for d in dead) == ["0", "1", "2", "3", "4"]
    assert all(d["file"] == str(log) for d in dead)
    assert CheckpointStore(tmp_path / "state").load(str(log.resolve())).line == 5  # type: ignore[union-attr]

    # 503 then 429: spooled and retried, nothing dead-lettered; then HEC takes everything, in order
    write(log, range(5, 8))
    hec = PlainHec(503, 429, 200)
    try:
        spooled = open_sink(hec.spec, tmp_path / "st2")
        assert isinstance(spooled, Spooled)
        spooled.backoff_min = spooled.backoff_max = 0.0
        s = streamer(tmp_path, baseline, [spooled], lines=10)
        m = s.run()
        s.close()
    finally:
        hec.close()
    assert hec.answered[:3] == [503, 429, 200]
    assert m.sink_rejected[spooled.name] == 0
    assert spooled.sent == 3  # the last retry is the drain at close
    assert len({e["event"]["event"]["id"] for e in hec.events}) == 3
    assert not {e["event"]["event"]["id"] for e in hec.events} & {json.loads(d["text"])["id"] for d in dead}
    assert len((tmp_path / "dead.jsonl").read_text().splitlines()) == 5


def test_cli_hec_token_from_env_and_refusal_summary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """issue 14 item 13: the token comes from TLSDETECT_HEC_TOKEN when the spec has none; a refusing HEC
    ends the run (not an endless retry) and the summary says where the alerts went."""
    from .test_hec import PlainHec

    log = tmp_path / "access.log"
    write(log, range(3))
    monkeypatch.setenv("TLSDETECT_HEC_TOKEN", "from-env")
    hec = PlainHec(403)
    try:
        res = CliRunner().invoke(main, ["stream", "--baseline", str(SAMPLE_BASELINE), "--source", f"envoy:{log}",
                                        "--sink", f"hec+http://127.0.0.1:{hec.port}", "--state", str(tmp_path / "st")])
    finally:
        hec.close()
    assert res.exit_code == 0, res.output
    assert "3 alerts, 0 dead letters, 3 alerts refused by a sink (in the dead letters)" in res.output
    assert set(hec.auth) == {"Splunk from-env"}
    dead = (tmp_path / "st" / "dead-letter.jsonl").read_text().splitlines()
    assert len(dead) == 3
    assert all("HTTP 403" in json.loads(d)["reason"] for d in dead)


def test_full_spool_holds_the_checkpoint(tmp_path: Path, baseline: Baseline, monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / "access.log"
    write(log, range(4))
    calls = {"n": 0}

    class Full(ListSink):
        def send(self, alerts: Sequence[Mapping[str, Any]]) -> None:
            calls["n"] += 1
            if calls["n"] <= 2:
                raise SpoolFullError("spool full")
            super().send(alerts)

    monkeypatch.setattr(time, "sleep", lambda _s: None)
    sink = Full()
    s = streamer(tmp_path, baseline, [sink], lines=10)
    s.run()
    s.close()
    assert conns(sink.got) == list(range(4))
    assert calls["n"] == 3


def test_cli_batch_and_resume(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    write(log, range(3))
    log.open("a").write("not json\n")
    args = ["stream", "--baseline", str(SAMPLE_BASELINE), "--source", f"envoy:{log}", "--sink",
            f"jsonl:{tmp_path / 'a.jsonl'}", "--sink", f"cef:{tmp_path / 'a.cef'}",
            "--state", str(tmp_path / "st")]  # fmt: skip
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    assert "4 lines, 3 connections, 3 alerts, 1 dead letters" in res.output
    assert len((tmp_path / "a.jsonl").read_text().splitlines()) == 3
    assert len((tmp_path / "a.cef").read_text().splitlines()) == 3
    assert "not json" in (tmp_path / "st" / "dead-letter.jsonl").read_text()
    res = CliRunner().invoke(main, args)
    assert "0 lines" in res.output
    bad = CliRunner().invoke(main, [*args[:3], "zeek:x", *args[5:]])
    assert bad.exit_code != 0
    bad = CliRunner().invoke(main, [*args[:5], "--sink", "ftp://x", "--state", str(tmp_path / "st")])
    assert bad.exit_code != 0
    assert "unknown sink" in bad.output
    bad = CliRunner().invoke(main, ["stream", "--source", f"envoy:{tmp_path / 'none.log'}", "--sink", "jsonl:-",
                                    "--state", str(tmp_path / "st")])  # fmt: skip
    assert bad.exit_code != 0
    assert "no such file" in bad.output


# ------------------------------------------------------------------------------------------ garbage


_GARBAGE = st.lists(
    st.one_of(
        st.binary(max_size=200),
        st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")),
        st.sampled_from([
            b"{}", b"[]", b"null", b'{"ja4": 5}', b'{"ja4": {"a": 1}}', b'{"downstream_remote_address": 7}',
            b'{"start_time": "yesterday", "ja4": "x"}', b'{"downstream_remote_address": "1.2.3.4:99999"}',
            b'{"connection_id": 1e400}', b"\xff\xfe\x00", b'{"ja3": "a"}{"ja3": "b"}',
        ]),
        st.integers(0, 100).map(lambda i: line(i).encode()),
    ),
    max_size=30,
)  # fmt: skip


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(_GARBAGE)
def test_garbage_never_crashes(baseline: Baseline, lines: list[bytes]) -> None:
    data = b"\n".join(x.replace(b"\n", b" ") for x in lines) + b"\n"
    result = Processor(baseline)(data, 1, "fuzz.log")
    nonblank = sum(1 for x in data.split(b"\n") if x.decode("utf-8", "replace").strip())
    # Arrow's JSON reader takes two objects on one line as two rows, so rows may exceed lines there
    assert result.lines >= nonblank
    assert len(result.dead) <= nonblank
    assert len(result.alerts) <= result.rows
    for a in result.alerts:
        json.dumps(a)


def test_null_lines_do_not_crash_arrow(tmp_path: Path) -> None:
    """pyarrow 26 segfaulted on a JSON block whose first line is ``null``; it reads a later one as an empty row."""
    from tlsdetect.readers.envoy import parse_envoy_lines, read_envoy
    from tlsdetect.readers.logs import DeadLetter

    for block in (b"null\n" + line(1).encode(), line(1).encode() + b"null\n", b"null\n"):
        dead = DeadLetter()
        df = parse_envoy_lines(block, source=Path("x.log"), dead_letter=dead)
        assert len(df) == (1 if b"{" in block else 0)
        assert dead.stats.bad_lines == 1
        assert dead.stats.reasons["not a JSON object"] == 1
    path = tmp_path / "n.log"
    path.write_bytes(b"null\n" + line(2).encode())
    dead = DeadLetter()
    assert len(read_envoy([path], dead_letter=dead)) == 1
    assert dead.stats.bad_lines == 1


def test_fuzz_corpus_through_the_streamer(tmp_path: Path, baseline: Baseline) -> None:
    import random

    rnd = random.Random(5)
    log = tmp_path / "access.log"
    good = 0
    with log.open("wb") as fh:
        for i in range(400):
            if rnd.random() < 0.5:
                fh.write(line(i).encode())
                good += 1
            else:
                fh.write(bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 120))).replace(b"\n", b"") + b"\n")
    sink = ListSink()
    s = streamer(tmp_path, baseline, [sink], lines=37)
    m = s.run()
    s.close()
    assert m.alerts >= good  # a random line may even parse
    dead = (tmp_path / "dead.jsonl").read_text().splitlines()
    assert m.dead_letters == len(dead)
    assert m.rows + m.dead_letters == m.lines_read


# ------------------------------------------------------------------------------------------ --source forms


def test_source_forms(tmp_path: Path) -> None:
    """issue 14 item 14: envoy:PATH, envoy:- and -, and a bare path when it is an existing file."""
    from tlsdetect.cli.stream import source_path

    log = tmp_path / "access.log"
    write(log, range(1))
    assert source_path(f"envoy:{log}") == str(log)
    assert source_path("envoy:/not/yet/there.log") == "/not/yet/there.log"  # --follow waits for it
    assert source_path("envoy:-") == "-"
    assert source_path("-") == "-"
    assert source_path(str(log)) == str(log)
    assert source_path(str(tmp_path / "missing.log")) is None
    assert source_path(str(tmp_path)) is None  # a directory
    assert source_path("zeek:x") is None
    assert source_path("envoy:") is None
    assert source_path("") is None


def _sample_lines() -> bytes:
    """Real Envoy JSON lines (the shared sample) and lines that are alerts against the sample baseline."""
    from .conftest import SHARED

    path = SHARED / "samples" / "envoy" / "envoy_access.sample.jsonl"
    if not path.is_file():  # CI checks the corpus before any test (conftest)
        pytest.skip(f"shared data not found: {path} (set TLSDETECT_SHARED to the shared/ folder)")
    sample = path.read_bytes()
    return sample + "".join(line(i) for i in range(4)).encode()


def test_cli_stdin_pipe_equals_the_file(tmp_path: Path) -> None:
    """issue 14 item 14: `--source envoy:-` reads a real pipe (the installed command, stdin piped) and gives
    the alerts that `--source envoy:PATH` and a bare PATH give for the same lines; it says once that no
    checkpoint is kept, and keeps none."""
    import subprocess
    import sys

    data = _sample_lines()
    n = data.count(b"\n")
    log = tmp_path / "access.log"
    log.write_bytes(data)
    base = ["stream", "--baseline", str(SAMPLE_BASELINE), "--sink"]
    by_file = CliRunner().invoke(main, [*base, f"jsonl:{tmp_path / 'file.jsonl'}", "--source", f"envoy:{log}",
                                        "--state", str(tmp_path / "st-file")])  # fmt: skip
    assert by_file.exit_code == 0, by_file.output
    bare = CliRunner().invoke(main, [*base, f"jsonl:{tmp_path / 'bare.jsonl'}", "--source", str(log),
                                     "--state", str(tmp_path / "st-bare")])  # fmt: skip
    assert bare.exit_code == 0, bare.output
    exe = Path(sys.executable).with_name("tlsdetect")
    cmd = [str(exe), *base, f"jsonl:{tmp_path / 'stdin.jsonl'}", "--source", "envoy:-", "--state", str(tmp_path / "x")]
    proc = subprocess.run(cmd, input=data, capture_output=True, timeout=120, check=False)
    err = proc.stderr.decode()
    assert proc.returncode == 0, err
    assert err.count("no checkpoint is kept") == 1
    assert f"{n} lines, {n} connections" in err

    def ids(name: str) -> list[str]:
        return [json.loads(x)["event"]["id"] for x in (tmp_path / name).read_text().splitlines()]

    assert len(ids("file.jsonl")) >= 4  # the template lines at least
    assert ids("stdin.jsonl") == ids("file.jsonl") == ids("bare.jsonl")
    assert CheckpointStore(tmp_path / "x").db.execute("SELECT count(*) FROM checkpoint").fetchone() == (0,)
    assert CheckpointStore(tmp_path / "st-file").load(str(log.resolve())) is not None
    # CliRunner's input= (a file object, not a pipe) and a bare "-" too; the alerts' file says <stdin>
    res = CliRunner().invoke(main, [*base, f"jsonl:{tmp_path / 'runner.jsonl'}", "--source", "-",
                                    "--state", str(tmp_path / "st-runner")], input=data)  # fmt: skip
    assert res.exit_code == 0, res.output
    assert ids("runner.jsonl") == ids("file.jsonl")
    assert json.loads((tmp_path / "runner.jsonl").read_text().splitlines()[0])["log"]["file"]["path"] == "<stdin>"


def test_cli_source_errors_list_the_forms(tmp_path: Path) -> None:
    """issue 14 item 14: a --source that is none of the forms is one line naming them all."""
    for spec in (str(tmp_path / "missing.log"), "zeek:x", str(tmp_path)):
        args = ["stream", "--source", spec, "--sink", "jsonl:-", "--state", str(tmp_path / "s")]
        res = CliRunner().invoke(main, args)
        assert res.exit_code != 0
        assert res.output.strip().splitlines() == [
            f"Error: --source {spec!r}: expected envoy:PATH, envoy:- (standard input), the path of an existing "
            "log file, envoy-als://HOST:PORT (Envoy's gRPC access-log service), otlp://HOST:PORT or "
            "otlp+http://HOST:PORT (OpenTelemetry logs)"
        ]
        assert "Traceback" not in res.output


def test_cli_metrics_port_in_use_is_one_line(tmp_path: Path) -> None:
    """A --metrics-port another process holds is a one-line error naming the port, not a traceback."""
    import socket

    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    log = tmp_path / "access.log"
    log.write_text("")
    try:
        args = ["stream", "--source", f"envoy:{log}", "--sink", f"jsonl:{tmp_path / 'a.jsonl'}",
                "--state", str(tmp_path / "s"), "--metrics-port", str(port)]
        res = CliRunner().invoke(main, args)
    finally:
        holder.close()
    assert res.exit_code == 1
    assert res.output.strip().splitlines() == [f"Error: --metrics-port {port} on 127.0.0.1: Address already in use"]


def test_cli_deeply_nested_line_is_passed_and_restart_goes_on(tmp_path: Path) -> None:
    """A line nested 20,000 deep SIGSEGVed Arrow's JSON reader: every restart crashed on it again and
    nothing after it was delivered. The CLI runs in a subprocess so a crash fails the test, not the run."""
    log = tmp_path / "access.log"
    write(log, range(3))
    with log.open("a") as fh:
        fh.write('{"downstream_remote_address": "10.0.0.1:1", "x": ' + "[" * 20_000 + "]" * 20_000 + "}\n")
    write(log, range(3, 6))
    out = tmp_path / "a.jsonl"
    args = [sys.executable, "-m", "tlsdetect", "stream", "--baseline", str(SAMPLE_BASELINE), "--source",
            f"envoy:{log}", "--sink", f"jsonl:{out}", "--state", str(tmp_path / "st")]  # fmt: skip

    def run() -> str:
        res = subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)
        assert res.returncode == 0, res.stderr[-2000:]
        return res.stdout + res.stderr

    assert "7 lines, 6 connections, 6 alerts, 1 dead letters" in run()
    assert len(out.read_text().splitlines()) == 6
    dead = [json.loads(x) for x in (tmp_path / "st" / "dead-letter.jsonl").read_text().splitlines()]
    assert [(d["line"], d["reason"].split(":")[0]) for d in dead] == [(4, "JSON nested too deep")]
    assert "0 lines" in run()  # the restart starts after the line, not on it
    write(log, range(6, 8))
    assert "2 lines, 2 connections, 2 alerts" in run()
    assert len(out.read_text().splitlines()) == 8
