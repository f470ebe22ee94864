"""The container health check: ``python -m tlsdetect.healthcheck [--pid 1]``.

It reads the command line and environment of the image's main process (PID 1, ``tlsdetect ...``)
and probes what that command serves, so the Dockerfile's HEALTHCHECK stays one plain command that
is tested here rather than a ``python -c`` string:

* ``serve``: ``GET /healthz`` on the address a published port reaches. A wildcard ``--host`` (or
  ``TLSDETECT_HOST``) is probed on loopback; a loopback-only ``--host`` is unhealthy at once, since
  ``docker run -p`` cannot reach it however well it answers inside the container.
* ``stream`` with ``--metrics-port``: ``GET /metrics`` on ``--metrics-host`` (loopback for a wildcard).
* anything else (``stream`` without metrics, ``score``, ``--help``): healthy, nothing to probe.

Exit status 0 is healthy and 1 unhealthy (what Docker expects); one line says why. Only the
standard library is imported: the check runs every 30 s under a 5 s timeout.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

#: ``serve --host`` reads this variable when the option is not given (the image sets 0.0.0.0).
HOST_ENV = "TLSDETECT_HOST"
SERVE_HOST = "127.0.0.1"
SERVE_PORT = 8080
METRICS_HOST = "127.0.0.1"
TIMEOUT_S = 4.0


@dataclass(frozen=True)
class Probe:
    """What to check: ``url`` to GET (None: nothing to probe), or a ``problem`` that is unhealthy as it is."""

    url: str | None
    why: str
    problem: str | None = None


def subcommand(argv: Sequence[str]) -> tuple[str | None, list[str]]:
    """The tlsdetect subcommand in a process's argv and the arguments after it.

    The argv is ``python /venv/bin/tlsdetect serve ...`` (the console script), ``tlsdetect serve ...``
    or ``python -m tlsdetect serve ...``; global options (``-v``) may come before the subcommand.
    """
    start = None
    for i, arg in enumerate(argv):
        if Path(arg).name == "tlsdetect" or (arg == "tlsdetect" and i > 0 and argv[i - 1] == "-m"):
            start = i + 1
            break
    if start is None:
        return None, []
    rest = list(argv[start:])
    while rest and rest[0].startswith("-"):
        rest.pop(0)
    return (rest[0], rest[1:]) if rest else (None, [])


def option(args: Sequence[str], name: str) -> str | None:
    """The last value of ``--name VALUE`` or ``--name=VALUE`` (click's last one wins), or None."""
    value = None
    for i, arg in enumerate(args):
        if arg == "--":
            break
        if arg == name and i + 1 < len(args):
            value = args[i + 1]
        elif arg.startswith(name + "="):
            value = arg[len(name) + 1 :]
    return value


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _url(host: str, port: str, path: str) -> str:
    """``http://host:port/path`` with wildcard addresses turned into their loopback."""
    host = host.strip("[]")
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"http://[{host}]:{port}{path}" if ":" in host else f"http://{host}:{port}{path}"


def plan(argv: Sequence[str], environ: Mapping[str, str]) -> Probe:
    """What the health check of a process with this argv and environment probes (pure: no I/O)."""
    command, args = subcommand(argv)
    if command == "serve":
        host = option(args, "--host") or environ.get(HOST_ENV) or SERVE_HOST
        port = option(args, "--port") or str(SERVE_PORT)
        if _loopback(host):
            return Probe(None, f"serve on {host}:{port}", problem=(
                f"serve listens on loopback only ({host}): a published port cannot reach it "
                f"(set {HOST_ENV}=0.0.0.0 or --host 0.0.0.0)"))  # fmt: skip
        return Probe(_url(host, port, "/healthz"), f"serve on {host}:{port}")
    if command == "stream":
        metrics_port = option(args, "--metrics-port")
        if metrics_port is None:
            return Probe(None, "stream without --metrics-port: nothing to probe")
        host = option(args, "--metrics-host") or METRICS_HOST
        return Probe(_url(host, metrics_port, "/metrics"), f"stream metrics on {host}:{metrics_port}")
    return Probe(None, f"{command or 'tlsdetect'}: no endpoint to probe")


def check(probe: Probe, timeout: float = TIMEOUT_S) -> tuple[bool, str]:
    """(healthy, one line) for a probe: a 2xx answer to its GET within ``timeout``."""
    if probe.problem is not None:
        return False, f"unhealthy: {probe.problem}"
    if probe.url is None:
        return True, f"healthy: {probe.why}"
    # no proxy: HTTP_PROXY in a container's environment must not route a loopback probe elsewhere
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(probe.url, timeout=timeout) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        return False, f"unhealthy: {probe.url} answered {exc.code}"
    except (OSError, ValueError) as exc:
        return False, f"unhealthy: {probe.url}: {getattr(exc, 'reason', exc)}"
    return True, f"healthy: {probe.url} answered {status}"


def process(pid: int) -> tuple[list[str], dict[str, str]]:
    """argv and environment of a process, from /proc (this process's environment when it is unreadable)."""
    proc = Path("/proc") / str(pid)
    argv = [a.decode(errors="replace") for a in (proc / "cmdline").read_bytes().split(b"\0") if a]
    try:
        raw = (proc / "environ").read_bytes()
    except OSError:  # another user's process: Docker gives the check the container's environment anyway
        return argv, dict(os.environ)
    environ = {}
    for item in raw.split(b"\0"):
        key, sep, value = item.decode(errors="replace").partition("=")
        if sep:
            environ[key] = value
    return argv, environ


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tlsdetect.healthcheck", description=__doc__.split("\n")[0])
    parser.add_argument("--pid", type=int, default=1, help="Process to check (default: 1, the container's).")
    parser.add_argument("--timeout", type=float, default=TIMEOUT_S, help="Seconds to wait for the answer.")
    ns = parser.parse_args(argv)
    try:
        target, environ = process(ns.pid)
    except OSError as exc:
        print(f"unhealthy: process {ns.pid}: {exc.strerror or exc}")
        return 1
    healthy, line = check(plan(target, environ), ns.timeout)
    print(line)
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
