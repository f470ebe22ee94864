"""Zeek's JSON writer: one object per line (nested names flattened to Zeek's dotted ones) to typed columns.

The kind of log (ssl, x509, conn) is taken from the first record's fields; a record of that kind
without its key (``uid``; x509's ``fingerprint`` or ``id``) and a line that is not a JSON object go
to the dead letters, as does a line nested deeper than :data:`~tlsdetect.readers.json_depth.MAX_DEPTH`
(never parsed: Python's decoder and :func:`~tlsdetect.dotted.flatten` recurse). Vectors become the
joined text the TSV reader gives, so one mapping serves both. Only the fields the readers use
(:data:`~tlsdetect.readers.zeek.fields.USED`, as the TSV reader keeps) are kept of a record: a
frame of every name met would be rows x distinct names (1,500 lines of 40 random names: 690 MB).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tlsdetect.dotted import flatten
from tlsdetect.readers import json_depth
from tlsdetect.readers.logs import DeadLetter, LogFormatError, valid_utf8
from tlsdetect.readers.zeek.fields import STRING_FIELDS, USED, VECTOR_FIELDS, Header, Part, kind_from_record
from tlsdetect.readers.zeek.values import typed

__all__ = ["read_json"]

#: A JSON record of each kind carries at least one of these keys.
_REQUIRED = {"ssl": frozenset({"uid"}), "conn": frozenset({"uid"}), "quic": frozenset({"uid"}),
             "x509": frozenset({"fingerprint", "id"})}


def read_json(path: Path, data: bytes, letters: DeadLetter) -> list[Part]:
    """The records of one JSON-lines file (an empty list when it holds no record)."""
    records: list[dict[str, Any]] = []
    numbers: list[int] = []
    texts: list[str] = []
    kind: str | None = None
    for no, line in enumerate(data.decode("utf-8", "surrogateescape").split("\n"), start=1):
        text = line.strip()
        if not text:
            continue
        letters.stats.lines += 1
        if not valid_utf8(text):  # Zeek's JSON writer escapes odd bytes: raw invalid UTF-8 is damage
            letters.add(path, no, "invalid UTF-8", line)
            continue
        try:
            obj = json_depth.loads(text)
        except json_depth.JsonTooDeepError:
            letters.add(path, no, json_depth.TOO_DEEP, line)
            continue
        except ValueError as exc:
            letters.add(path, no, f"bad json: {exc}", line)
            continue
        if not isinstance(obj, dict):
            letters.add(path, no, "bad json: not an object", line)
            continue
        flat = flatten(obj)
        if kind is None:
            kind = kind_from_record(flat)
            if kind is None:
                raise LogFormatError(f"{path}: JSON lines but not a Zeek ssl, x509, conn or quic log")
        if not (flat.keys() & _REQUIRED[kind]):
            letters.add(path, no, f"not a Zeek {kind} record: no {' or '.join(sorted(_REQUIRED[kind]))}", line)
            continue
        records.append({k: v for k, v in flat.items() if k in USED})
        numbers.append(no)
        texts.append(line)
    if kind is None:
        return []
    raw = pd.DataFrame.from_records(records) if records else pd.DataFrame()
    for col in raw.columns:
        if col in VECTOR_FIELDS:
            raw[col] = [_json_vector(v) for v in raw[col].tolist()]
        elif col in STRING_FIELDS:
            raw[col] = pd.array([None if v is None or (isinstance(v, float) and np.isnan(v)) else str(v)
                                 for v in raw[col].tolist()], dtype="string")

    def line_of(mask: np.ndarray) -> list[tuple[int, str]]:
        return [(int(numbers[i]), texts[i]) for i in np.flatnonzero(mask)]

    head = Header(set_separator=",")
    return [Part(kind, typed(path, raw, head, letters, line_of, tsv=False))]


def _json_vector(value: object) -> str | None:
    """JSON arrays become the set-separator-joined string the TSV path produces (escapes kept)."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, list):
        return ",".join(str(v).replace("\\", "\\\\").replace(",", "\\x2c") for v in value)
    return str(value)
