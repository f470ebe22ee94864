"""Which reader reads which files: one :class:`~tlsdetect.readers.base.Reader` per sniffed kind.

:func:`tlsdetect.readers.logs.sniff` names a file's kind from its first bytes; :func:`readers`
maps each kind to the reader that reads it (the capture engine is the caller's choice). The
readers here are thin: each wraps the public function of its module, imported when first used,
so a command that reads Zeek logs never imports the pcap engine.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from pathlib import Path

import pandas as pd

from tlsdetect.readers.base import DnOrder, FileProgress, Reader, ReadStats
from tlsdetect.readers.logs import DeadLetter, LogStats
from tlsdetect.wire.keylog import KeyLog

__all__ = ["ENGINES", "EnvoyReader", "NativePcapReader", "SuricataReader", "TsharkPcapReader", "ZeekReader",
           "readers"]

#: Capture engines: the native one (numpy) and Wireshark's dissection through tshark.
ENGINES = ("native", "tshark")


def _no_progress(files: list[Path]) -> Iterator[tuple[Path, None]]:
    for f in files:
        yield f, None


class NativePcapReader:
    """pcap and pcapng through the native engine, a file at a time, in chunks."""

    kind = "pcap"
    dn_order: DnOrder = "rfc2253"

    def __init__(self, keylog: KeyLog | None = None) -> None:
        self.keylog = keylog  # ``--keylog``: TLS 1.3 chains decrypted

    def read(self, paths: Sequence[Path], stats: ReadStats,
             progress: FileProgress | None = None) -> Iterator[pd.DataFrame]:
        from tlsdetect.readers.pcap.engine import iter_connections

        for f, callback in (progress or _no_progress)(list(paths)):
            yield from iter_connections(f, stats=stats, progress=callback, keylog=self.keylog)


class TsharkPcapReader:
    """pcap and pcapng (also QUIC and DTLS) through tshark, one table per file."""

    kind = "pcap"
    dn_order: DnOrder = "rfc2253"

    def __init__(self, keylog: KeyLog | None = None) -> None:
        self.keylog = keylog  # ``--keylog``: tshark decrypts TLS 1.3 handshakes with its file

    def read(self, paths: Sequence[Path], stats: ReadStats,
             progress: FileProgress | None = None) -> Iterator[pd.DataFrame]:
        from tlsdetect.readers.pcap.tshark import iter_tshark

        yield from iter_tshark(paths, stats=stats, keylog=self.keylog)


class _LogReader(ABC):
    """A log reader: the whole of its files as one table; bad lines go to ``dead_letter``.

    The log readers count into ``dead_letter.stats``; for the time of one read it is a fresh
    :class:`LogStats`, then added both to the collector's running total and to ``stats``.
    """

    kind = ""
    dn_order: DnOrder = "rfc2253"

    def __init__(self, dead_letter: DeadLetter) -> None:
        self.dead_letter = dead_letter

    def read(self, paths: Sequence[Path], stats: ReadStats,
             progress: FileProgress | None = None) -> Iterator[pd.DataFrame]:
        running, part = self.dead_letter.stats, LogStats()
        self.dead_letter.stats = part
        try:
            yield self._read(list(paths))
        finally:
            self.dead_letter.stats = running
            running.merge(part)
            stats.merge(part)

    @abstractmethod
    def _read(self, paths: list[Path]) -> pd.DataFrame:
        """The reader's own entry point over all ``paths``."""


class ZeekReader(_LogReader):
    """Zeek ssl logs (TSV or JSON) with their x509 and conn logs."""

    kind = "zeek"

    def _read(self, paths: list[Path]) -> pd.DataFrame:
        from tlsdetect.readers.zeek import read_zeek

        return read_zeek(paths, dead_letter=self.dead_letter)


class SuricataReader(_LogReader):
    """Suricata EVE JSON; Suricata prints DNs in certificate order."""

    kind = "suricata"
    dn_order: DnOrder = "x509"

    def _read(self, paths: list[Path]) -> pd.DataFrame:
        from tlsdetect.readers.suricata import read_suricata

        return read_suricata(paths, dead_letter=self.dead_letter)


class EnvoyReader(_LogReader):
    """Envoy access logs, JSON or text."""

    kind = "envoy"

    def _read(self, paths: list[Path]) -> pd.DataFrame:
        from tlsdetect.readers.envoy import read_envoy

        return read_envoy(paths, dead_letter=self.dead_letter)


def readers(engine: str = "native", dead_letter: DeadLetter | None = None, keylog: KeyLog | None = None
            ) -> dict[str, Reader]:
    """The reader of each kind :func:`~tlsdetect.readers.logs.sniff` names; ``engine`` reads captures."""
    if engine not in ENGINES:
        raise ValueError(f"unknown capture engine {engine!r}; choose one of {', '.join(ENGINES)}")
    letters = dead_letter if dead_letter is not None else DeadLetter()
    pcap: Reader = NativePcapReader(keylog) if engine == "native" else TsharkPcapReader(keylog)
    return {"pcap": pcap, "zeek": ZeekReader(letters), "suricata": SuricataReader(letters),
            "envoy": EnvoyReader(letters)}
