"""``open_sink(spec)``: an alert sink from its ``--sink`` spec; network sinks come with a disk spool.

A spec that names no sink, or a sink that cannot be opened (a directory given as a file, a missing
HEC token, a spool that cannot be created), is a :class:`SinkSpecError` that names the spec and what
is wrong, for a one-line error; a token in the spec is never repeated.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from tlsdetect.sinks.alerts.spool import AlertSink, Spooled

__all__ = ["SINK_FORMS", "SinkSpecError", "open_sink", "split_when_full"]

SINK_FORMS = ("jsonl:PATH|-, syslog+tcp://HOST:PORT, syslog+tls://HOST:PORT?ca=FILE, syslog+udp://HOST:PORT, "
              "cef:PATH|-, cef+syslog+tcp://HOST:PORT, cef+syslog+tls://..., "
              "hec+https://HOST:PORT?token=...")  # fmt: skip


class SinkSpecError(ValueError):
    """A sink spec that names no sink or cannot be opened; the message names the spec."""


def shown(spec: str) -> str:
    """The spec as an error message may repeat it: a ``token=`` value is masked."""
    return re.sub(r"(?i)(token=)[^&#]*", r"\1***", spec)


def split_when_full(spec: str) -> tuple[str, str | None]:
    """The spec without its ``when_full=`` option, and that option (None when absent).

    Only network specs (``scheme://...?query``) carry options; a file path keeps its ``?``. The value is
    checked by the stream (``block`` or ``drop``), not here.
    """
    if "://" not in spec or "?" not in spec:
        return spec, None
    base, _, query = spec.partition("?")
    keep, found = [], None
    for part in query.split("&"):
        key, sep, value = part.partition("=")
        if key == "when_full" and sep:
            found = value
        elif part:
            keep.append(part)
    return (base + ("?" + "&".join(keep) if keep else ""), found)


def open_sink(spec: str, state_dir: Path, *, spool_max_bytes: int = 256 << 20) -> AlertSink | Spooled:
    """A sink from its spec; network sinks come wrapped in :class:`Spooled` (spool under ``STATE/spool``)."""
    try:
        return _open(spec, state_dir, spool_max_bytes)
    except SinkSpecError:
        raise
    except IsADirectoryError as exc:
        raise SinkSpecError(f"sink {shown(spec)!r}: {exc.filename} is a directory; give a file path") from None
    except OSError as exc:
        what = f"{exc.filename}: " if exc.filename else ""
        raise SinkSpecError(f"sink {shown(spec)!r}: cannot open it: {what}{exc.strerror or exc}") from None
    except ValueError as exc:
        raise SinkSpecError(f"sink {shown(spec)!r}: {shown(str(exc))}") from None


def _open(spec: str, state_dir: Path, spool_max_bytes: int) -> AlertSink | Spooled:
    from tlsdetect.sinks.alerts.cef import CefFileSink, format_cef
    from tlsdetect.sinks.alerts.ecs import JsonlSink
    from tlsdetect.sinks.alerts.hec import HecSink
    from tlsdetect.sinks.alerts.syslog import SyslogSink

    net: AlertSink
    if spec.startswith("jsonl:"):
        return JsonlSink(spec[len("jsonl:") :])
    if spec.startswith(("cef+syslog+tcp://", "cef+syslog+tls://", "cef+syslog+udp://")):
        net = SyslogSink(spec[len("cef+") :], formatter=format_cef)
        net.name = "cef+" + net.name
    elif spec.startswith("cef:"):
        return CefFileSink(spec[len("cef:") :])
    elif spec.startswith(("syslog+tcp://", "syslog+tls://", "syslog+udp://")):
        net = SyslogSink(spec)
    elif spec.startswith(("hec+https://", "hec+http://")):
        net = HecSink(spec)
    else:
        raise SinkSpecError(f"unknown sink {shown(spec)!r}: use {SINK_FORMS}")
    key = hashlib.sha256(net.name.encode()).hexdigest()[:12]
    try:
        return Spooled(net, state_dir / "spool" / key, max_bytes=spool_max_bytes)
    except OSError as exc:
        net.close()
        raise SinkSpecError(f"sink {shown(spec)!r}: cannot create its spool in {state_dir / 'spool'}: "
                            f"{exc.strerror or exc}") from None  # fmt: skip
