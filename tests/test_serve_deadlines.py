"""Slow clients against a real uvicorn server (``tlsdetect.serve.deadlines`` and the body deadline of
``BodyLimit``): issue 18 #12, sockets held 75 s by a half-sent head or body.

Each test starts the server the ``serve`` command starts (:func:`server_config`) on a free port in a
thread, talks raw HTTP over a socket and measures when the server closes it.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from tlsdetect.serve.app import Settings, create_app
from tlsdetect.serve.deadlines import TIMEOUT_ANSWER, TOO_LARGE_ANSWER, deadline_protocol, server_config

pytest_plugins = ["tests.serve_fixtures"]  # captures, rows, baseline_dir, own_baseline

HALF_HEAD = b"GET /healthz HTTP/1.1\r\nHost: api\r\n"  # no blank line: the head never ends
FULL_GET = b"GET /healthz HTTP/1.1\r\nHost: api\r\n\r\n"


@contextmanager
def serving(baseline_dir: Path, **limits: Any) -> Iterator[tuple[int, Any]]:
    """A real server (the ``serve`` command's config) on a free port; yields (port, app)."""
    app = create_app(Settings(baseline_dir=baseline_dir, reload_check_seconds=3600, **limits))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    port = int(sock.getsockname()[1])
    server = uvicorn.Server(server_config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started, "the server did not start"
    try:
        yield port, app
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()


@pytest.fixture(scope="module")
def server(baseline_dir: Path) -> Iterator[tuple[int, Any]]:
    """One server for the tests of the 1 s deadlines (the configurable test starts another)."""
    with serving(baseline_dir, header_timeout=1.0, body_timeout=1.0) as started:
        yield started


def timeouts(app: Any, phase: str) -> float:
    return float(app.state.metrics.timeouts.labels(phase)._value.get())


def until_closed(conn: socket.socket, limit: float) -> tuple[float, bytes]:
    """Seconds until the server closed ``conn`` (from now; ``limit`` + 1 if it did not) and what it sent."""
    start = time.monotonic()
    conn.settimeout(0.1)
    got = b""
    while time.monotonic() - start < limit:
        try:
            chunk = conn.recv(65536)
        except TimeoutError:
            continue
        except ConnectionResetError:
            break
        if not chunk:
            return time.monotonic() - start, got
        got += chunk
    return limit + 1, got


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=5)


def test_half_a_head_is_closed_at_the_deadline_with_408(server: tuple[int, Any]) -> None:
    port, app = server
    before = timeouts(app, "header")
    with connect(port) as conn:
        conn.sendall(HALF_HEAD)
        elapsed, got = until_closed(conn, 8)
    with connect(port) as silent:  # connected, never sent a byte: closed without an answer
        quiet_elapsed, quiet_got = until_closed(silent, 8)
    assert 0.8 <= elapsed <= 2.5, elapsed
    assert got == TIMEOUT_ANSWER
    assert json.loads(got.split(b"\r\n\r\n", 1)[1])["error"] == "request_timeout"
    assert 0.8 <= quiet_elapsed <= 2.5, quiet_elapsed
    assert quiet_got == b""
    assert timeouts(app, "header") - before == 2


def test_a_trickling_head_does_not_extend_the_deadline(server: tuple[int, Any]) -> None:
    """One byte every 0.2 s (slowloris): the deadline counts from the first byte, not the last."""
    with connect(server[0]) as conn:
        start = time.monotonic()
        closed_at = None
        for byte in HALF_HEAD + b"X-Slow: " + b"a" * 100:
            try:
                conn.sendall(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                closed_at = time.monotonic() - start
                break
            time.sleep(0.2)
        if closed_at is None:
            closed_at = start + until_closed(conn, 5)[0] - start
    assert closed_at <= 3.0, closed_at


def test_the_deadline_is_configurable(server: tuple[int, Any], baseline_dir: Path) -> None:
    with connect(server[0]) as conn:
        conn.sendall(HALF_HEAD)
        short = until_closed(conn, 8)[0]
    with serving(baseline_dir, header_timeout=3.0) as (port, _), connect(port) as conn:
        conn.sendall(HALF_HEAD)
        long = until_closed(conn, 8)[0]
    assert 0.8 <= short <= 2.5, short
    assert 2.8 <= long <= 4.5, long


def test_a_head_sent_in_pieces_within_the_deadline_is_answered_and_kept_alive(server: tuple[int, Any]) -> None:
    """The deadline only ends slow heads: a normal request in two pieces is answered, the connection stays open
    for the next request, and the next request's half head has its own deadline."""
    with connect(server[0]) as conn:
        conn.sendall(FULL_GET[:10])
        time.sleep(0.5)
        conn.sendall(FULL_GET[10:])
        first = conn.recv(65536)
        time.sleep(0.7)  # past the first head's deadline: it must not close a connection that answered
        conn.sendall(FULL_GET)
        second = conn.recv(65536)
        conn.sendall(HALF_HEAD)
        elapsed, got = until_closed(conn, 8)
    assert first.startswith(b"HTTP/1.1 200"), first
    assert second.startswith(b"HTTP/1.1 200"), second
    assert 0.8 <= elapsed <= 2.5, elapsed
    assert got == TIMEOUT_ANSWER


def test_half_a_body_is_408_at_its_deadline(server: tuple[int, Any]) -> None:
    head = (b"POST /v1/score HTTP/1.1\r\nHost: api\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\n\r\n")
    port, app = server
    before = timeouts(app, "body")
    with connect(port) as conn:
        conn.sendall(head + b'{"connections": [')
        elapsed, got = until_closed(conn, 8)
    assert 0.8 <= elapsed <= 2.5, elapsed
    assert got.startswith(b"HTTP/1.1 408"), got
    assert json.loads(got.split(b"\r\n\r\n", 1)[1]) == {
        "error": "request_timeout", "detail": "the request body did not arrive within 1 s"}
    assert timeouts(app, "body") - before == 1


def test_a_head_over_the_limit_is_431_and_a_big_body_is_not(server: tuple[int, Any], rows: Any) -> None:
    """The parser buffered a header of any length (80 MiB read, then 200): a head over 64 KiB is refused as it
    arrives; a body far longer than that, sent with its head in one write, is still scored."""
    from .serve_support import payload

    port, app = server
    before = float(app.state.metrics.heads_rejected._value.get())
    with connect(port) as conn:
        try:
            conn.sendall(HALF_HEAD + b"X-Big: ")
            for _ in range(64):  # up to 4 MiB, 64 KiB at a time
                conn.sendall(b"a" * 65_536)
        except (BrokenPipeError, ConnectionResetError):
            pass
        got = until_closed(conn, 5)[1]  # the 431, not the 408 of the 1 s deadline
    one = payload(rows)["connections"]
    times = -(-250_000 // len(json.dumps({"connections": one})))  # over 200 KB, under the 1 MiB body limit
    body = json.dumps({"connections": one * times}).encode()
    assert 200_000 < len(body) < 1 << 20
    head = (b"POST /v1/score HTTP/1.1\r\nHost: api\r\nContent-Type: application/json\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n")
    with connect(port) as conn:
        conn.sendall(head + body)
        answer = until_closed(conn, 60)[1]
    assert got == TOO_LARGE_ANSWER
    assert float(app.state.metrics.heads_rejected._value.get()) - before == 1
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]


def test_timeouts_must_be_positive(baseline_dir: Path) -> None:
    with pytest.raises(ValueError, match="timeout"):
        Settings(baseline_dir=baseline_dir, header_timeout=0)
    with pytest.raises(ValueError, match="timeout"):
        Settings(baseline_dir=baseline_dir, body_timeout=-1)
    with pytest.raises(ValueError, match="positive"):
        deadline_protocol(asyncio.Protocol, 0)
    with pytest.raises(ValueError, match="positive"):
        deadline_protocol(asyncio.Protocol, 1.0, max_header_bytes=0)
