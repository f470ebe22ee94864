"""What every log reader shares: the dead-letter file, read statistics, and format detection.

A log line that does not parse is never dropped silently and never crashes a run: it is counted,
written to the dead-letter file (when one is given) with its file, line number and reason, and
summarised at the end. A whole file of the wrong kind is a :class:`LogFormatError` instead.
"""

from __future__ import annotations

import gzip
import json
import os
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from tlsdetect.readers import json_depth
from tlsdetect.readers.base import ReadStats

__all__ = ["DeadLetter", "LogFormatError", "LogStats", "detect_format", "open_text", "sniff"]

#: Formats :func:`detect_format` can name. ``pcap`` covers pcap and pcapng.
FORMATS = ("pcap", "zeek", "suricata", "envoy")


class LogFormatError(ValueError):
    """A file is not the kind of log it was given or detected as."""


@dataclass(slots=True)
class LogStats(ReadStats):
    """A :class:`ReadStats` under the log readers' names: ``lines`` and ``bad_lines`` are
    ``counts["lines"]`` and ``counts["bad_lines"]``, ``reasons`` is ``skipped`` (bad lines and
    skipped records by reason). The names stay while the log readers count through them."""

    @property
    def lines(self) -> int:
        return self.counts["lines"]

    @lines.setter
    def lines(self, value: int) -> None:
        self.counts["lines"] = value

    @property
    def bad_lines(self) -> int:
        return self.counts["bad_lines"]

    @bad_lines.setter
    def bad_lines(self, value: int) -> None:
        self.counts["bad_lines"] = value

    @property
    def reasons(self) -> Counter[str]:
        return self.skipped

    def summary(self) -> str:
        top = ", ".join(f"{reason} ({n})" for reason, n in self.reasons.most_common(3))
        return f"{self.bad_lines} of {self.lines} lines could not be read" + (f": {top}" if top else "")


class DeadLetter:
    """Collects unreadable lines: a JSON line each with file, line number, reason and the line."""

    def __init__(self, path: str | os.PathLike[str] | None = None, stats: LogStats | None = None) -> None:
        #: what the log readers counted through this collector (swapped per read by the registry)
        self.stats = stats if stats is not None else LogStats()
        self._fh: IO[str] | None = open(path, "a", encoding="utf-8") if path is not None else None  # noqa: SIM115

    def add(self, file: str | os.PathLike[str], line_no: int, reason: str, line: str | bytes) -> None:
        self.stats.bad_lines += 1
        self.stats.reasons[reason.split(":", maxsplit=1)[0]] += 1
        if self._fh is not None:
            if isinstance(line, str) and not line.isascii():
                # a line decoded with surrogateescape: its raw bytes as the bytes case shows them (\\xff)
                line = line.encode("utf-8", "surrogateescape")
            text = line.decode("utf-8", "backslashreplace") if isinstance(line, bytes) else line
            self.write({"file": str(file), "line": line_no, "reason": reason, "text": text[:4096]})

    @property
    def writes(self) -> bool:
        """Whether records go to a file (a collector without one only counts)."""
        return self._fh is not None

    def write(self, record: Mapping[str, Any]) -> None:
        """One record as a JSON line (the stream also writes the alerts a sink refused this way)."""
        if self._fh is not None:
            self._fh.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")

    def sync(self) -> None:
        """Flush and fsync what was written: the stream calls it before its checkpoint moves past the lines."""
        if self._fh is not None:
            self._fh.flush()
            os.fsync(self._fh.fileno())

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def __enter__(self) -> DeadLetter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def valid_utf8(data: str | bytes) -> bool:
    """Whether raw bytes are UTF-8, or text was decoded (``surrogateescape``) from bytes that were.

    Zeek and Suricata escape odd bytes in their logs, so a raw invalid byte means a damaged line:
    the readers dead-letter it (Arrow-backed string columns cannot hold lone surrogates), and
    check a whole block before handing it to Arrow's readers, which do not.
    """
    if data.isascii():
        return True
    try:
        data.decode("utf-8") if isinstance(data, bytes) else data.encode("utf-8")
    except (UnicodeDecodeError, UnicodeEncodeError):
        return False
    return True


def open_text(path: str | os.PathLike[str]) -> IO[str]:
    """A log opened as text, gunzipped when it is gzip (Zeek rotates to ``*.log.gz``)."""
    with open(path, "rb") as fh:
        magic = fh.read(2)
    if magic == b"\x1f\x8b":
        return gzip.open(path, "rt", encoding="utf-8", errors="surrogateescape", newline="")
    return open(path, encoding="utf-8", errors="surrogateescape", newline="")


def _head(path: Path, size: int = 65536) -> bytes:
    with open(path, "rb") as fh:
        head = fh.read(size)
    if head[:2] == b"\x1f\x8b":
        with gzip.open(path, "rb") as gz:
            try:
                head = gz.read(size)
            except (OSError, EOFError):
                return b""
    return head


def sniff(path: str | os.PathLike[str]) -> str | None:
    """Which format a file holds, from its first bytes; None when it is none of them.

    Zeek: a ``#separator``/``#fields`` header (TSV) or JSON objects with ``uid`` and Zeek's
    field names; Suricata EVE: JSON with ``event_type``; Envoy: JSON access-log objects (any
    other JSON lines, since Envoy's keys are whatever the operator configured). Related files are
    matched by content, never by file name.
    """
    head = _head(Path(path))
    if head[:4] in (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d") or (
        head[:4] == b"\x0a\x0d\x0d\x0a"
    ):
        return "pcap"
    text = head.decode("utf-8", "replace")
    if text.startswith("#separator") or "\n#fields\t" in text:
        return "zeek"
    for raw in text.splitlines()[:20]:
        line = raw.strip()
        if not line.startswith("{"):
            continue
        try:
            obj = json_depth.loads(line)  # a line nested too deep is skipped, as a broken one is
        except ValueError:
            continue
        if not isinstance(obj, dict):
            continue
        if "event_type" in obj and ("flow_id" in obj or "src_ip" in obj):
            return "suricata"
        if "uid" in obj or "fuid" in obj or ("id" in obj and "certificate.subject" in obj) or "id.orig_h" in obj:
            return "zeek"
        return "envoy"
    return None


def detect_format(paths: list[Path], forced: str | None = None) -> dict[str, list[Path]]:
    """Group input files by format (``forced`` skips detection). Unknown files are an error."""
    if forced is not None:
        if forced not in FORMATS:
            raise LogFormatError(f"unknown input format {forced!r}; choose one of {', '.join(FORMATS)}")
        return {forced: list(paths)}
    groups: dict[str, list[Path]] = {}
    for path in paths:
        kind = sniff(path)
        if kind is None:
            raise LogFormatError(
                f"{path}: not a capture, Zeek, Suricata EVE or Envoy log (use --input-format to force one)"
            )
        groups.setdefault(kind, []).append(path)
    return groups
