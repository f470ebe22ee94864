"""``read_zeek``: Zeek logs (files or folders, plain or gzip) to one connections table.

Each file is read by its content: a big plain TSV file from disk (:mod:`.tsv_disk`), other TSV in
memory (:mod:`.tsv`), JSON lines (:mod:`.json`). The ssl records are then joined with every x509
record of the call and with conn.log (:mod:`.join`) and mapped to the table (:mod:`.mapping`).
Fingerprints (from the ``ssl-log-ext`` hello lists) and issuer keys are the enrichment stage's
(:func:`tlsdetect.fingerprint.enrich`), run on every reader's output.
"""

from __future__ import annotations

import gzip
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from tlsdetect import schema
from tlsdetect.readers.logs import DeadLetter, LogFormatError
from tlsdetect.readers.zeek.fields import Part
from tlsdetect.readers.zeek.join import CertCache, join_conn
from tlsdetect.readers.zeek.json import read_json
from tlsdetect.readers.zeek.mapping import conformed, map_ssl
from tlsdetect.readers.zeek.quic import join_quic
from tlsdetect.readers.zeek.tsv import read_tsv
from tlsdetect.readers.zeek.tsv_disk import read_tsv_streamed

__all__ = ["read_zeek"]


def read_zeek(paths: Sequence[Path], *, dead_letter: DeadLetter | None = None) -> pd.DataFrame:
    """Read Zeek ssl (+ x509, + conn, + quic) logs into one connections table.

    ``paths`` may mix files and directories (read recursively, sorted). Unparseable lines go to
    ``dead_letter`` (counted even without one); a file that is not a Zeek ssl/x509/conn/quic log
    raises :class:`LogFormatError`.
    """
    letters = dead_letter if dead_letter is not None else DeadLetter()
    parts: list[Part] = []
    for path in _expand(paths):
        letters.stats.files += 1
        parts.extend(_read_file(path, letters))
    ssl = [p.frame for p in parts if p.kind == "ssl" and len(p.frame)]
    x509 = [p.frame for p in parts if p.kind == "x509" and len(p.frame)]
    conn = [p.frame for p in parts if p.kind == "conn" and len(p.frame)]
    quic = [p.frame for p in parts if p.kind == "quic" and len(p.frame)]
    letters.stats.rows += sum(len(p.frame) for p in parts)
    if not ssl and not quic:
        return schema.empty()
    if ssl:
        raw = pd.concat(ssl, ignore_index=True) if len(ssl) > 1 else ssl[0]
        out = map_ssl(raw, CertCache.build(x509))
    else:
        out = schema.empty()
    if conn and ssl:
        out = join_conn(out, pd.concat(conn, ignore_index=True))
    if quic:  # QUIC-only rows (no ssl row) come last; conn.log's extras are not joined to them
        return join_quic(conformed(out), pd.concat(quic, ignore_index=True))
    return conformed(out)


def _expand(paths: Sequence[Path]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            out.extend(sorted(q for q in path.rglob("*") if q.is_file()))
        else:
            out.append(path)
    return out


def _read_bytes(path: Path) -> bytes:
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise LogFormatError(f"{path}: broken gzip file ({exc})") from None
    return data


def _read_file(path: Path, letters: DeadLetter) -> list[Part]:
    streamed = read_tsv_streamed(path, letters)
    if streamed is not None:
        return streamed
    data = _read_bytes(path)
    stripped = data.lstrip()
    if stripped.startswith(b"#"):
        return read_tsv(path, data, letters)
    if stripped.startswith(b"{"):
        return read_json(path, data, letters)
    if not stripped:
        return []
    raise LogFormatError(f"{path}: not a Zeek log (no #fields header and not JSON lines)")
