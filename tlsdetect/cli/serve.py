"""``tlsdetect serve``: the REST API of :mod:`tlsdetect.serve.app` under uvicorn.

The app (and its baseline) is built once here, so a bad baseline fails in one clear line. One
worker (the default) serves in this process. With ``--workers N`` this process binds the socket,
forks N workers that share it (each a uvicorn server with its own copy of the app, its own
metrics) and supervises them: a worker that dies is replaced, SIGTERM/SIGINT stop them all.

SIGHUP reloads the baseline in every worker, in the background: each loads the directory beside
the one it serves and swaps it in when loaded, so no request is refused or dropped; a baseline
that fails to load is logged and the old one keeps serving. A changed ``meta.json`` is picked up
the same way within ``--reload-check-seconds``.

A slow client cannot hold a socket (:mod:`tlsdetect.serve.deadlines`): a request's head must arrive
within ``--header-timeout`` seconds, its body within ``--body-timeout`` seconds after it.

The listening socket is made here with the TCP protocol set, so asyncio turns on TCP_NODELAY for
every connection (uvicorn's own ``--workers`` socket does not, and each keep-alive answer then
waits for the client's delayed ACK: ~40 ms per request).
"""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

import click

from tlsdetect.cli.common import EXIT_INPUT, UserPath, baseline_option
from tlsdetect.cli.policy_options import load_policies, policy_options


@click.command("serve")
@baseline_option(required=True, help_text="Baseline directory (from 'tlsdetect baseline fit').")
@click.option("--host", default="127.0.0.1", show_default=True, envvar="TLSDETECT_HOST", show_envvar=True,
              help="Address to listen on (0.0.0.0: every interface; the Docker image sets TLSDETECT_HOST=0.0.0.0).")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535), help="TCP port.")
@click.option("--token-file", type=UserPath(dir_okay=False),
              help="Require 'Authorization: Bearer <token>' with the token in this file (/healthz stays open).")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64),
              help="Worker processes (metrics are per process).")
@click.option("--max-body-bytes", default=1 << 20, show_default=True, type=click.IntRange(1),
              help="Largest request body accepted (413 beyond).")
@click.option("--max-batch", default=10_000, show_default=True, type=click.IntRange(1),
              help="Most connections in one POST /v1/score (413 beyond).")
@click.option("--reload-check-seconds", default=5.0, show_default=True, type=click.FloatRange(0),
              help="How often to look for a changed meta.json in the baseline directory.")
@click.option("--header-timeout", default=10.0, show_default=True, type=click.FloatRange(0, min_open=True),
              help="Seconds a client has to send a request's line and headers (then 408 and close).")
@click.option("--body-timeout", default=30.0, show_default=True, type=click.FloatRange(0, min_open=True),
              help="Seconds a client has to send a request's body after its headers (then 408).")
@click.option("--max-header-bytes", default=65_536, show_default=True, type=click.IntRange(1),
              help="Largest request line and headers accepted (431 and close beyond).")
@click.option("--unhealthy-when-degraded", is_flag=True,
              help="/healthz answers 503 (not 200 with status 'degraded') while the last baseline reload failed.")
@click.option("--log-level", type=click.Choice(["critical", "error", "warning", "info", "debug"]), default="warning",
              show_default=True)
@click.option("--access-log/--no-access-log", default=False, show_default=True, help="Log every request.")
@policy_options
def serve(baseline_dir: str, host: str, port: int, token_file: str | None, workers: int, max_body_bytes: int,
          max_batch: int, reload_check_seconds: float, header_timeout: float, body_timeout: float,
          max_header_bytes: int, unhealthy_when_degraded: bool, log_level: str, access_log: bool,
          pins: tuple[str, ...] = (), issuer_policy: tuple[str, ...] = ()) -> None:
    """Serve the REST API: fingerprint lookups, batch scoring, /healthz, /metrics and the OpenAPI docs (/docs)."""
    try:
        from tlsdetect.serve.app import Settings, create_app
        from tlsdetect.serve.deadlines import server_config
    except ImportError as exc:
        raise click.ClickException(f"'serve' needs the serve extra (pip install 'tlsdetect[serve]'): {exc}") from None
    from tlsdetect.detect.baseline_dir import BaselineError

    token: str | None = None
    if token_file is not None:
        try:
            token = Path(token_file).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            click.echo(f"Error: {token_file}: cannot read the token ({exc})", err=True)
            sys.exit(EXIT_INPUT)
        if not token:
            click.echo(f"Error: {token_file}: the token file is empty", err=True)
            sys.exit(EXIT_INPUT)
    settings = Settings(baseline_dir=Path(baseline_dir), token=token, max_body_bytes=max_body_bytes,
                        max_batch=max_batch, reload_check_seconds=reload_check_seconds,
                        header_timeout=header_timeout, body_timeout=body_timeout,
                        max_header_bytes=max_header_bytes, unhealthy_when_degraded=unhealthy_when_degraded,
                        pins=pins, issuer_policy=issuer_policy)
    load_policies(pins, issuer_policy)  # a bad policy file: one line and exit 2 before the server starts
    try:
        app = create_app(settings)
    except BaselineError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(EXIT_INPUT)
    try:
        # several workers: each listens on its own SO_REUSEPORT socket, so the kernel spreads connections
        # evenly (one shared socket lets whichever worker is idle take them all); this one, bound but not
        # listening, only holds the port (and tells which one port 0 got)
        sock = _listen(host, port, reuse_port=workers > 1, listen=workers == 1)
    except OSError as exc:
        click.echo(f"Error: cannot listen on {host}:{port}: {exc}", err=True)
        sys.exit(EXIT_INPUT)
    config = server_config(app, host=host, port=port, log_level=log_level, access_log=access_log,
                           server_header=False, timeout_graceful_shutdown=30)
    click.echo(f"tlsdetect serve: http://{host}:{sock.getsockname()[1]} (docs at /docs), {workers} worker(s), "
               f"baseline {baseline_dir}", err=True)
    learned = app.state.holder.current.baseline.learned_mesh_warning()
    if learned:
        click.echo(f"tlsdetect serve: WARNING: {learned}", err=True)
    if workers == 1:
        _run_worker(config, app, sock)
    else:
        _supervise(config, app, sock, workers)


def _listen(host: str, port: int, *, reuse_port: bool = False, listen: bool = True) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    if listen:
        sock.listen(2048)
    return sock


def _run_worker(config: Any, app: Any, sock: socket.socket) -> None:
    """Serve on ``sock`` until SIGINT/SIGTERM; SIGHUP reloads the baseline without stopping."""
    import uvicorn

    holder = app.state.holder
    # the baseline, knowledge and imports are long-lived: keep them out of the collector's full passes,
    # which otherwise walk them all and stall requests for tens of milliseconds
    gc.collect()
    gc.freeze()
    # uvicorn handles SIGINT/SIGTERM itself; SIGHUP is ours: reload in the background, keep serving
    signal.signal(signal.SIGHUP, lambda signum, frame: holder.request_reload())
    uvicorn.Server(config).run(sockets=[sock])


def _supervise(config: Any, app: Any, sock: socket.socket, workers: int) -> None:
    children: dict[int, int] = {}  # pid -> slot
    stopping = False

    host, port = sock.getsockname()[:2]

    def spawn(slot: int) -> None:
        pid = os.fork()
        if pid == 0:  # the worker
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                signal.signal(sig, signal.SIG_DFL)
            code = 0
            try:
                sock.close()
                _run_worker(config, app, _listen(host, port, reuse_port=True))
            except BaseException:  # a worker must never return into the supervisor's loop
                code = 1
            os._exit(code)
        children[pid] = slot

    def forward(signum: int, frame: Any) -> None:
        nonlocal stopping
        if signum != signal.SIGHUP:
            stopping = True
        for pid in list(children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM if signum != signal.SIGHUP else signal.SIGHUP)

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, forward)
    for slot in range(workers):
        spawn(slot)
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:  # pragma: no cover - PEP 475 retries, kept for clarity
            continue
        slot_of = children.pop(pid, None)
        if slot_of is not None and not stopping:
            click.echo(f"tlsdetect serve: worker {pid} exited ({status}), starting another", err=True)
            time.sleep(0.5)
            spawn(slot_of)
