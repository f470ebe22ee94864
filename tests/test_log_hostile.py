"""Hostile JSON lines through every JSON log reader (Zeek, Suricata EVE, Envoy): one dead letter each.

Nesting far past what Arrow's JSON reader (SIGSEGV at ~20,000) and Python's decoder (RecursionError
at ~1,000) survive, nesting just past the bound, objects with no connection field and ``null``, in
random order among good records: the good records are all read, every hostile line is counted once.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
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


#: Reads one file with one reader under a 1 GB address-space limit and prints (rows, bad lines).
#: Arrow's allocator is the system one (mimalloc reserves address space up front, beyond the limit).
_BOUNDED_CHILD = """
import json, resource, sys
from pathlib import Path
from tlsdetect.readers.envoy import read_envoy
from tlsdetect.readers.logs import DeadLetter
from tlsdetect.readers.suricata import read_suricata
from tlsdetect.readers.zeek import read_zeek
readers = {"envoy": read_envoy, "suricata": read_suricata, "zeek": read_zeek}
resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
dead = DeadLetter()
df = readers[sys.argv[1]]([Path(sys.argv[2])], dead_letter=dead)
print(json.dumps([len(df), dead.stats.bad_lines]))
"""


@pytest.mark.parametrize("name", list(READERS))
def test_many_distinct_names_read_in_bounded_memory(tmp_path: Path, name: str) -> None:
    """1,500 records of 40 random names each (1 MB): a reader that makes a column per name met (Arrow's
    JSON reader, a frame of all the records) needs 60,000 columns (Arrow: ``std::bad_alloc`` or
    MemoryError beyond 1 GB; 6 GB at 4,000 lines), a dead letter among them too. Under 1 GB here."""
    _, good, _ = READERS[name]
    lines = [good(0)]
    for i in range(1, 1_501):
        obj = json.loads(good(i))
        obj.update({f"n{i}_{j}": "v" for j in range(40)})
        lines.append(json.dumps(obj))
        if i % 15 == 0:
            lines.append(json.dumps({f"d{i}_{j}": "v" for j in range(40)}))  # no record at all
    path = tmp_path / f"{name}.json"
    path.write_text("\n".join(lines) + "\n")
    env = {**os.environ, "ARROW_DEFAULT_MEMORY_POOL": "system", "MALLOC_ARENA_MAX": "2"}
    res = subprocess.run([sys.executable, "-c", _BOUNDED_CHILD, name, str(path)], capture_output=True, text=True,
                         timeout=120, env=env, check=False)  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    rows, bad = json.loads(res.stdout)
    assert (rows, bad) == (1_501, 100)
