"""Every CLI command reads its PATHs the same way: detect formats, stream connections-table chunks.

``fingerprint``, ``baseline fit`` and ``score`` all take captures and logs mixed, files or
directories; this module is the one place that turns such a list into chunks of the connections
table, collecting warnings (damaged captures, skipped files, dead letters) for the caller to show.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from tlsdetect.readers.logs import DeadLetter, LogFormatError, detect_format, sniff
from tlsdetect.readers.pcap.capture import CaptureError

__all__ = ["InputError", "Inputs", "expand_paths"]


class InputError(ValueError):
    """A problem the user can fix: no such file, no readable input, a tool that is missing."""


def expand_paths(paths: tuple[str, ...] | list[str]) -> tuple[list[Path], list[str]]:
    """Files as given; directories to the files inside them that hold a known format.

    A file named on the command line must be readable as some format (else the reader errors);
    a file found inside a directory that is none of them is skipped with a warning.
    """
    out: list[Path] = []
    ignored: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            for f in sorted(f for f in p.rglob("*") if f.is_file()):
                (ignored if sniff(f) is None else out).append(f)
        elif p.exists():
            out.append(p)
        else:
            raise InputError(f"{raw}: no such file or directory")
    if not out:
        raise InputError("no capture or log files found in: " + " ".join(str(p) for p in paths))
    skipped = []
    if ignored:
        names = ", ".join(f.name for f in ignored[:5]) + (", ..." if len(ignored) > 5 else "")
        skipped.append(f"skipped {len(ignored)} file(s) that are not captures or known logs: {names}")
    return out, skipped


ProgressFactory = Callable[[list[Path]], Iterator[tuple[Path, object]]]


def _no_progress(files: list[Path]) -> Iterator[tuple[Path, object]]:
    for f in files:
        yield f, None


@dataclass
class Inputs:
    """The PATHs of one command, read as a stream of connections-table chunks."""

    paths: tuple[str, ...] | list[str]
    engine: str = "native"
    input_format: str | None = None
    dead_letter: DeadLetter = field(default_factory=lambda: DeadLetter(None))
    progress: ProgressFactory = _no_progress
    warnings: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)

    def chunks(self) -> Iterator[pd.DataFrame]:
        """Yield chunks; warnings accumulate in :attr:`warnings` as reading goes."""
        self.files, skipped = expand_paths(self.paths)
        self.warnings += skipped
        try:
            groups = detect_format(self.files, self.input_format)
        except LogFormatError as exc:
            raise InputError(str(exc)) from None
        for kind, group in groups.items():
            if kind == "pcap":
                yield from self._captures(group)
            else:
                yield from self._logs(kind, group)

    def read_all(self) -> pd.DataFrame:
        """All chunks as one table (for commands that need the whole input at once)."""
        from tlsdetect import schema

        parts = [c for c in self.chunks() if len(c)]
        return schema.concat(parts) if parts else schema.empty()

    def _logs(self, kind: str, files: list[Path]) -> Iterator[pd.DataFrame]:
        try:
            if kind == "zeek":
                from tlsdetect.readers.zeek import read_zeek

                yield read_zeek(files, dead_letter=self.dead_letter)
            elif kind == "suricata":
                from tlsdetect.readers.suricata import read_suricata

                yield read_suricata(files, dead_letter=self.dead_letter)
            else:
                from tlsdetect.readers.envoy import read_envoy

                yield read_envoy(files, dead_letter=self.dead_letter)
        except LogFormatError as exc:
            raise InputError(str(exc)) from None
        self.warnings += [w for w in self.dead_letter.stats.warnings if w not in self.warnings]

    def _captures(self, files: list[Path]) -> Iterator[pd.DataFrame]:
        try:
            if self.engine == "tshark":
                from tlsdetect.readers.pcap.tshark import TsharkError, read_pcap_tshark

                try:
                    df, tstats = read_pcap_tshark(files)
                except TsharkError as exc:
                    raise InputError(str(exc)) from None
                self.warnings += list(getattr(tstats, "warnings", []))
                yield df
                return
            from tlsdetect.readers.pcap.engine import PcapStats, iter_pcap

            stats = PcapStats()
            for f, callback in self.progress(files):
                yield from iter_pcap(f, stats=stats, progress=callback)  # type: ignore[arg-type]
            self.warnings += stats.warnings
        except CaptureError as exc:
            raise InputError(str(exc)) from None
