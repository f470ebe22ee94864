"""``python -m tlsdetect.healthcheck``: the Docker HEALTHCHECK, planned from a process's argv and probed for real."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tlsdetect.healthcheck import Probe, check, plan, subcommand

from .conftest import ROOT

SCRIPT = ["/opt/tlsdetect/bin/python", "/opt/tlsdetect/bin/tlsdetect"]
IMAGE_ENV = {"TLSDETECT_HOST": "0.0.0.0", "PATH": "/opt/tlsdetect/bin:/usr/bin"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _listening(port: int) -> set[str]:
    """Local addresses (hex, as /proc/net/tcp writes them) of the sockets listening on ``port``."""
    out = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, _, hex_port = local.partition(":")
        if state == "0A" and int(hex_port, 16) == port:
            out.add(address)
    return out


def _health(pid: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tlsdetect.healthcheck", "--pid", str(pid)], cwd=ROOT,
                          capture_output=True, text=True, timeout=30, check=False)


@contextmanager
def _running(argv: list[str], env: dict[str, str] | None = None, cwd: Path = ROOT) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(argv, cwd=cwd, env={**os.environ, **(env or {})},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30  # until exec: before it, /proc shows the parent's (pytest's) command line
        while b"tlsdetect" not in Path(f"/proc/{proc.pid}/cmdline").read_bytes().split(b"\0"):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _until_healthy(proc: subprocess.Popen[bytes], seconds: float = 60) -> subprocess.CompletedProcess[str]:
    deadline = time.monotonic() + seconds
    while True:
        r = _health(proc.pid)
        if r.returncode == 0:
            return r
        assert proc.poll() is None, f"the process exited: {r.stdout}"
        assert time.monotonic() < deadline, r.stdout
        time.sleep(0.3)


def test_subcommand_of_every_way_the_image_starts_tlsdetect() -> None:
    assert subcommand([*SCRIPT, "serve", "--port", "1"]) == ("serve", ["--port", "1"])
    assert subcommand(["tlsdetect", "-v", "stream", "--state", "/state"]) == ("stream", ["--state", "/state"])
    assert subcommand(["/usr/bin/python3", "-m", "tlsdetect", "serve"]) == ("serve", [])
    assert subcommand([*SCRIPT, "--help"]) == (None, [])
    assert subcommand(["/bin/sh", "-c", "sleep 1"]) == (None, [])


def test_serve_in_the_image_is_probed_on_what_a_published_port_reaches() -> None:
    """Issue 14 item 17: the image's TLSDETECT_HOST=0.0.0.0 is probed (on loopback, which a wildcard serves)."""
    assert plan([*SCRIPT, "serve", "--baseline", "/baseline"], IMAGE_ENV) == Probe(
        "http://127.0.0.1:8080/healthz", "serve on 0.0.0.0:8080")
    assert plan([*SCRIPT, "serve", "--port=9000"], IMAGE_ENV).url == "http://127.0.0.1:9000/healthz"
    # --host wins over the variable, as in click; a given address is probed as given, IPv6 too
    assert plan([*SCRIPT, "serve", "--host", "10.1.2.3", "--port", "81"], IMAGE_ENV).url == "http://10.1.2.3:81/healthz"
    assert plan([*SCRIPT, "serve", "--host", "::"], {}).url == "http://[::1]:8080/healthz"
    assert plan([*SCRIPT, "serve", "--host", "fd00::5"], {}).url == "http://[fd00::5]:8080/healthz"


@pytest.mark.parametrize(("argv", "env"), [
    ([*SCRIPT, "serve", "--baseline", "/baseline"], {}),
    ([*SCRIPT, "serve", "--host", "127.0.0.1"], IMAGE_ENV),
    ([*SCRIPT, "serve", "--host=localhost"], {}),
    ([*SCRIPT, "serve"], {"TLSDETECT_HOST": "::1"}),
])  # fmt: skip
def test_serve_on_loopback_only_is_unhealthy(argv: list[str], env: dict[str, str]) -> None:
    """Issue 14 item 17: the old image listened on 127.0.0.1, probed 127.0.0.1 and said healthy."""
    probe = plan(argv, env)
    assert probe.url is None
    assert probe.problem is not None
    assert "loopback only" in probe.problem
    healthy, line = check(probe)
    assert not healthy
    assert "TLSDETECT_HOST=0.0.0.0" in line


def test_stream_probes_its_metrics_when_it_has_them() -> None:
    """Issue 14 item 18: a stream with --metrics-port is probed on /metrics; without one nothing can be probed."""
    base = [*SCRIPT, "stream", "--source", "envoy:/logs/access.log", "--state", "/state", "--sink", "jsonl:-"]
    assert plan([*base, "--metrics-port", "9464"], IMAGE_ENV).url == "http://127.0.0.1:9464/metrics"
    assert plan([*base, "--metrics-port", "9464", "--metrics-host", "0.0.0.0"], {}).url == (
        "http://127.0.0.1:9464/metrics")
    assert plan([*base, "--metrics-port=9464", "--metrics-host=10.0.0.7"], {}).url == "http://10.0.0.7:9464/metrics"
    quiet = plan(base, IMAGE_ENV)
    assert quiet.url is None
    assert quiet.problem is None
    assert check(quiet) == (True, "healthy: stream without --metrics-port: nothing to probe")
    assert check(plan([*SCRIPT, "score", "x.pcap"], {}))[0]


def test_a_port_nobody_answers_is_unhealthy() -> None:
    port = _free_port()
    healthy, line = check(Probe(f"http://127.0.0.1:{port}/metrics", "stream"), timeout=2)
    assert not healthy
    assert line.startswith(f"unhealthy: http://127.0.0.1:{port}/metrics")


def test_a_process_that_is_gone_is_unhealthy() -> None:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    r = _health(int(proc.stdout))
    assert r.returncode == 1
    assert r.stdout.startswith(f"unhealthy: process {int(proc.stdout)}")


@pytest.mark.slow
def test_real_serve_listens_on_tlsdetect_host_and_is_healthy() -> None:
    """Issue 14 item 17: TLSDETECT_HOST=0.0.0.0 (the image's) makes `serve` listen on every interface, and the
    health check of that process is healthy; the same serve on 127.0.0.1 answers but is unhealthy."""
    port = _free_port()
    argv = [sys.executable, "-m", "tlsdetect", "serve", "--baseline", str(ROOT / "baselines/sample"), "--port",
            str(port)]
    with _running(argv, {"TLSDETECT_HOST": "0.0.0.0"}) as proc:
        r = _until_healthy(proc)
        assert r.stdout.strip() == f"healthy: http://127.0.0.1:{port}/healthz answered 200"
        assert _listening(port) == {"00000000"}  # 0.0.0.0, every interface
    port = _free_port()
    with _running([*argv[:-1], str(port), "--host", "127.0.0.1"], {"TLSDETECT_HOST": "0.0.0.0"}) as proc:
        deadline = time.monotonic() + 60
        while not _listening(port):
            assert proc.poll() is None
            assert time.monotonic() < deadline
            time.sleep(0.3)
        assert _listening(port) == {"0100007F"}  # 127.0.0.1: --host wins over the variable
        r = _health(proc.pid)
        assert r.returncode == 1
        assert "loopback only (127.0.0.1)" in r.stdout


@pytest.mark.slow
def test_real_stream_metrics_are_probed(tmp_path: Path) -> None:
    """Issue 14 item 18: a following stream with --metrics-port is healthy once /metrics answers."""
    log = tmp_path / "access.log"
    log.write_text("")
    port = _free_port()
    argv = [sys.executable, "-m", "tlsdetect", "stream", "--source", f"envoy:{log}", "--follow", "--sink",
            f"jsonl:{tmp_path / 'alerts.jsonl'}", "--state", str(tmp_path / "state"), "--metrics-port", str(port)]
    with _running(argv) as proc:
        r = _until_healthy(proc)
        assert r.stdout.strip() == f"healthy: http://127.0.0.1:{port}/metrics answered 200"
    # the same command line with nothing serving its metrics: unhealthy
    with _running([sys.executable, "-c", "import time; time.sleep(60)", *argv[2:]]) as idle:
        r = _health(idle.pid)
        assert r.returncode == 1
        assert r.stdout.startswith(f"unhealthy: http://127.0.0.1:{port}/metrics")
