"""Hostile JSON lines through every JSON log reader (Zeek, Suricata EVE, Envoy): one dead letter each.

Nesting far past what Arrow's JSON reader (SIGSEGV at ~20,000) and Python's decoder (RecursionError
at ~1,000) survive, nesting just past the bound, objects with no connection field and ``null``, in
random order among good records: the good records are all read, every hostile line is counted once.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tlsdetect.readers.envoy import read_envoy
from tlsdetect.readers.json_depth import MAX_DEPTH
from tlsdetect.readers.logs import DeadLetter
from tlsdetect.readers.suricata import read_suricata
from tlsdetect.readers.zeek import read_zeek

from . import test_envoy, test_suricata, test_zeek


def _deep(n: int, key: str) -> str:
    return '{"' + key + '": "x", "n": ' + "[" * (n - 1) + "]" * (n - 1) + "}"


#: reader, a good record, the key a hostile line carries (so it is not told apart by its first key)
READERS: dict[str, tuple[Callable[[Path, DeadLetter], pd.DataFrame], Callable[[int], str], str]] = {
    "zeek": (lambda p, d: read_zeek([p], dead_letter=d), lambda i: json.dumps(test_zeek._row(i)), "uid"),
    "suricata": (lambda p, d: read_suricata([p], dead_letter=d),
                 lambda i: json.dumps(test_suricata.tls_event(flow_id=i)), "event_type"),
    "envoy": (lambda p, d: read_envoy([p], dead_letter=d), lambda i: test_envoy.record(connection_id=i),
              "downstream_remote_address"),
}  # fmt: skip

_HOSTILE = st.sampled_from(["deep", "just-too-deep", "empty-object", "array-only", "null"])


def _hostile(kind: str, key: str) -> str:
    return {
        "deep": _deep(30_000, key),
        "just-too-deep": _deep(MAX_DEPTH + 1, key),
        "empty-object": '{"a": [1, [2, {}]]}',
        "array-only": "[[[[1]]]]",
        "null": "null",
    }[kind]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.one_of(st.none(), _HOSTILE), min_size=1, max_size=12), st.sampled_from(list(READERS)))
def test_hostile_lines_are_one_dead_letter_each(tmp_path: Path, layout: list[str | None], name: str) -> None:
    reader, good, key = READERS[name]
    lines = [good(0)]  # a good first record: the format is told by it (a hostile first line is tested per reader)
    lines += [good(i + 1) if kind is None else _hostile(kind, key) for i, kind in enumerate(layout)]
    path = tmp_path / f"{name}.json"
    path.write_text("\n".join(lines) + "\n")
    dead = DeadLetter()
    df = reader(path, dead)
    hostile = sum(kind is not None for kind in layout)
    assert len(df) == len(lines) - hostile
    assert dead.stats.bad_lines == hostile
    assert dead.stats.lines == len(lines)
