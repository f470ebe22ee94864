"""Every CLI command reads its PATHs the same way: detect formats, stream connections-table chunks.

``fingerprint``, ``baseline fit`` and ``score`` all take captures and logs mixed, files or
directories; this module is the one place that turns such a list into chunks of the connections
table: each file's kind is sniffed, the registry's reader of that kind reads it, and every chunk
passes the one enrichment stage (:func:`tlsdetect.fingerprint.enrich`). What the readers counted
is merged into one :class:`~tlsdetect.readers.base.ReadStats` (:attr:`Inputs.stats`), warnings
(damaged captures, skipped files, dead letters) included, for the caller to show.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import pandas as pd

from tlsdetect.fingerprint import enrich
from tlsdetect.readers.base import FileProgress, ReadStats
from tlsdetect.readers.logs import DeadLetter, LogFormatError, detect_format, sniff
from tlsdetect.readers.pcap.capture import CaptureError
from tlsdetect.readers.pcap.tshark import TsharkError
from tlsdetect.readers.registry import readers
from tlsdetect.wire.keylog import KeyLog

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
    files: list[Path] = field(default_factory=list)
    #: what every reader read, merged (``warnings`` is its list)
    stats: ReadStats = field(default_factory=ReadStats)
    #: ``--keylog``: the capture readers decrypt TLS 1.3 chains with it
    keylog: KeyLog | None = None

    @property
    def warnings(self) -> list[str]:
        """Sentences for the user: skipped files, damaged captures, dead-letter summaries."""
        return self.stats.warnings

    def chunks(self) -> Iterator[pd.DataFrame]:
        """Yield enriched chunks; :attr:`stats` and :attr:`warnings` grow as reading goes."""
        self.files, skipped = expand_paths(self.paths)
        for w in skipped:
            self.stats.warn(w)
        try:
            groups = detect_format(self.files, self.input_format)
        except LogFormatError as exc:
            raise InputError(str(exc)) from None
        by_kind = readers(self.engine, self.dead_letter, self.keylog)
        for kind, group in groups.items():
            reader = by_kind[kind]
            part = ReadStats()
            try:
                for chunk in reader.read(group, part, cast(FileProgress, self.progress)):
                    yield enrich(chunk, dn_order=reader.dn_order)
            except (LogFormatError, CaptureError, TsharkError) as exc:
                raise InputError(str(exc)) from None
            finally:
                self.stats.merge(part)

    def read_all(self) -> pd.DataFrame:
        """All chunks as one table (for commands that need the whole input at once).

        Rows that name a certificate by SHA-256 only get its SPKI pin from any certificate the run
        showed, before or after them (:class:`tlsdetect.readers.certstore.CertStore`).
        """
        from tlsdetect import schema
        from tlsdetect.readers.certstore import CertStore

        parts = [c for c in self.chunks() if len(c)]
        table = schema.concat(parts) if parts else schema.empty()
        store = CertStore()
        store.learn(table)
        return store.fill(table)
