"""Numeric features of ClientHellos, for the population model.

A capture of a million connections holds a few hundred distinct hellos, so features are
computed once per distinct hello (identified by ``ja3_full`` and ``ja4_ro``, which together pin
every list the hello carried except GREASE values) and broadcast by integer codes. Rows without
the parsed hello lists (Envoy and most Zeek logs carry only the hashes) get no features: the
model says "not applicable" for them rather than guessing from a hash.

The vocabulary (which cipher, extension, group and signature-algorithm values get a presence
column) is learned from the baseline's hellos, so the feature space follows the population.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from .tls import is_grease

__all__ = ["HELLO_COLUMNS", "LIST_KINDS", "HelloVocabulary", "feature_matrix", "hello_codes"]

#: The hello-list columns features read, in the order the vocabulary keeps them.
LIST_KINDS = ("ch_ciphers", "ch_extensions", "ch_groups", "ch_sig_algs")
HELLO_COLUMNS = ("ch_version", *LIST_KINDS, "ch_point_formats", "ch_supported_versions", "ch_alpn")

#: Ciphers no current browser offers: NULL, anonymous, export, RC4, DES/3DES.
WEAK_CIPHERS = frozenset(
    [0x0000, 0x0001, 0x0002, 0x0003, 0x0004, 0x0005, 0x0006, 0x0008, 0x0009, 0x000A, 0x0011, 0x0012, 0x0013,
     0x0014, 0x0015, 0x0016, 0x0017, 0x0018, 0x0019, 0x001A, 0x001B, 0x002C, 0x002D, 0x002E, 0x0034, 0x003A,
     0x0062, 0x0064, 0xC001, 0xC002, 0xC006, 0xC007, 0xC00B, 0xC00C, 0xC010, 0xC011, 0xC015, 0xC016,
     0xC017, 0xC018, 0xC019, 0xC012, 0xC008, 0xC00D, 0xC003, 0x0007, 0x0096, 0x0097, 0x0098, 0x0099, 0x009A]
)


def _ints(value: Any) -> tuple[int, ...]:
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return ()
    return tuple(int(v) for v in value)


def hello_codes(df: pd.DataFrame) -> tuple[npt.NDArray[np.int64], pd.DataFrame]:
    """Per-row code of the row's distinct hello (-1 without hello lists) and one row per hello.

    The returned frame holds the hello list columns of the first row with each hello and
    ``connections`` (how many rows carry it).
    """
    n = len(df)
    if n == 0 or "ch_version" not in df.columns or "ja3_full" not in df.columns or "ja4_ro" not in df.columns:
        return np.full(n, -1, dtype=np.int64), pd.DataFrame(columns=[*HELLO_COLUMNS, "connections"])
    has = df["ch_version"].notna().to_numpy() & df["ja3_full"].notna().to_numpy()
    a, _ = pd.factorize(df["ja3_full"], use_na_sentinel=True)
    b, b_uniq = pd.factorize(df["ja4_ro"], use_na_sentinel=True)
    combined = a.astype(np.int64) * (len(b_uniq) + 1) + (b.astype(np.int64) + 1)
    codes = np.full(n, -1, dtype=np.int64)
    if not has.any():
        return codes, pd.DataFrame(columns=[*HELLO_COLUMNS, "connections"])
    uniq, first, inverse, counts = np.unique(combined[has], return_index=True, return_inverse=True,
                                             return_counts=True)
    codes[has] = inverse.reshape(-1)
    rows = np.flatnonzero(has)[first]
    table = df.iloc[rows][[c for c in HELLO_COLUMNS if c in df.columns]].reset_index(drop=True)
    table["connections"] = counts.astype(np.int64)
    del uniq
    return codes, table


class HelloVocabulary:
    """Which list values get a presence column: the most common ones of the learned population."""

    def __init__(self, values: dict[str, list[int]]) -> None:
        self.values = {k: [int(v) for v in values.get(k, [])] for k in LIST_KINDS}

    @classmethod
    def learn(cls, hellos: pd.DataFrame, size: int = 64) -> HelloVocabulary:
        """Top ``size`` values per list kind, weighted by how many connections carried them."""
        vocab: dict[str, list[int]] = {}
        weights = hellos["connections"].to_numpy() if "connections" in hellos else np.ones(len(hellos))
        for kind in LIST_KINDS:
            counter: Counter[int] = Counter()
            if kind in hellos.columns:
                for lst, w in zip(hellos[kind], weights, strict=True):
                    for v in _ints(lst):
                        if not is_grease(v):
                            counter[v] += int(w)
            vocab[kind] = sorted(v for v, _ in counter.most_common(size))
        return cls(vocab)

    def feature_names(self) -> list[str]:
        names = ["n_ciphers", "n_extensions", "n_groups", "n_sig_algs", "n_point_formats", "has_grease",
                 "max_version", "has_sni", "has_alpn", "alpn_h2", "n_weak_ciphers"]
        for kind in LIST_KINDS:
            short = kind.removeprefix("ch_")
            names += [f"{short}_{v:04x}" for v in self.values[kind]]
            names.append(f"{short}_other")
        return names


def _max_version(legacy: Any, supported: Iterable[int]) -> int:
    real = [v for v in supported if not is_grease(v)]
    if real:
        return max(real)
    try:
        return int(legacy)
    except (TypeError, ValueError):
        return 0


def feature_matrix(hellos: pd.DataFrame, vocab: HelloVocabulary) -> npt.NDArray[np.float64]:
    """One row of features per distinct hello (the frame :func:`hello_codes` returns)."""
    names = vocab.feature_names()
    out = np.zeros((len(hellos), len(names)), dtype=np.float64)
    index = {kind: {v: i for i, v in enumerate(vocab.values[kind])} for kind in LIST_KINDS}
    offsets: dict[str, int] = {}
    pos = 11
    for kind in LIST_KINDS:
        offsets[kind] = pos
        pos += len(vocab.values[kind]) + 1
    for r, rec in enumerate(hellos.to_dict("records")):
        lists = {k: _ints(rec.get(k)) for k in (*LIST_KINDS, "ch_point_formats", "ch_supported_versions")}
        clean = {k: [v for v in lst if not is_grease(v)] for k, lst in lists.items()}
        alpn = rec.get("ch_alpn")
        alpn_list: Sequence[Any] = () if alpn is None or alpn is pd.NA else list(alpn)
        out[r, 0] = len(clean["ch_ciphers"])
        out[r, 1] = len(clean["ch_extensions"])
        out[r, 2] = len(clean["ch_groups"])
        out[r, 3] = len(clean["ch_sig_algs"])
        out[r, 4] = len(clean["ch_point_formats"])
        out[r, 5] = float(any(len(clean[k]) != len(lists[k]) for k in lists))
        out[r, 6] = _max_version(rec.get("ch_version"), lists["ch_supported_versions"])
        out[r, 7] = float(0 in clean["ch_extensions"])
        out[r, 8] = float(len(alpn_list) > 0)
        out[r, 9] = float(len(alpn_list) > 0 and str(alpn_list[0]) == "6832")
        out[r, 10] = sum(1 for c in clean["ch_ciphers"] if c in WEAK_CIPHERS)
        for kind in LIST_KINDS:
            base = offsets[kind]
            other = base + len(vocab.values[kind])
            for v in clean[kind]:
                i = index[kind].get(v)
                out[r, other if i is None else base + i] += 1.0
    return out


def has_grease(hellos: pd.DataFrame) -> npt.NDArray[np.bool_]:
    """Whether each distinct hello carried any GREASE value (Chromium always does)."""
    out = np.zeros(len(hellos), dtype=bool)
    for r, rec in enumerate(hellos.to_dict("records")):
        out[r] = any(is_grease(v) for k in (*LIST_KINDS, "ch_supported_versions") for v in _ints(rec.get(k)))
    return out


def weak_cipher_count(hellos: pd.DataFrame) -> npt.NDArray[np.int64]:
    """How many weak ciphers (NULL, anon, export, RC4, DES/3DES) each distinct hello offered."""
    out = np.zeros(len(hellos), dtype=np.int64)
    if "ch_ciphers" in hellos.columns:
        for r, lst in enumerate(hellos["ch_ciphers"]):
            out[r] = sum(1 for c in _ints(lst) if c in WEAK_CIPHERS)
    return out
