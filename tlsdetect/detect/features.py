"""ClientHello features and the population model.

A capture of a million connections holds a few hundred distinct hellos, so features are
computed once per distinct hello (identified by ``ja3_full`` and ``ja4_ro``, which together pin
every list the hello carried except GREASE values) and broadcast by integer codes. Rows without
the parsed hello lists (Envoy and most Zeek logs carry only the hashes) get no features: the
model says "not applicable" for them rather than guessing from a hash.

The population model (:class:`HelloNovelty`) compares each distinct hello with the baseline's
distinct hellos as sets of offered values.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from tlsdetect.wire.tls import is_grease

__all__ = ["HELLO_COLUMNS", "LIST_KINDS", "HelloNovelty", "has_grease", "hello_codes", "hello_tokens",
           "weak_cipher_count"]

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
    # hash-based grouping (no sort of the whole column): codes in order of first appearance
    inverse, uniq = pd.factorize(combined[has])
    codes[has] = inverse
    positions = np.flatnonzero(has)
    first = np.full(len(uniq), len(df), dtype=np.int64)
    np.minimum.at(first, inverse, positions)  # the first row of each hello (repeated-index writes have no order)
    counts = np.bincount(inverse, minlength=len(uniq))
    rows = first
    table = df.iloc[rows][[c for c in (*HELLO_COLUMNS, "ja4") if c in df.columns]].reset_index(drop=True)
    table["connections"] = counts.astype(np.int64)
    return codes, table


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


# --- the population model: nearest-neighbour novelty over the values a hello offers -------------------
_TOKEN_KINDS = (*LIST_KINDS, "ch_supported_versions", "ch_point_formats")


def hello_tokens(hellos: pd.DataFrame) -> list[frozenset[str]]:
    """Each distinct hello as the set of values it offers (``kind:value``, GREASE dropped, order ignored).

    Reads only the list columns it needs, as Python lists: ``to_dict("records")`` over the whole hello table
    cost ~2 ms of fixed time per call for one hello (issue 18 #15)."""
    n = len(hellos)
    lists = {k: hellos[k].tolist() if k in hellos.columns else [None] * n for k in (*_TOKEN_KINDS, "ch_alpn")}
    out: list[frozenset[str]] = []
    for r in range(n):
        toks = {f"{k.removeprefix('ch_')}:{v}" for k in _TOKEN_KINDS for v in _ints(lists[k][r]) if not is_grease(v)}
        alpn = lists["ch_alpn"][r]
        if alpn is not None and alpn is not pd.NA:
            toks.update(f"alpn:{a}" for a in alpn)
        out.append(frozenset(toks))
    return out


class HelloNovelty:
    """How unlike the learned population a hello is: Jaccard distance to its nearest baseline hello.

    A hello is the set of cipher, extension, group, signature-algorithm, version and ALPN values it
    offers; the distance to the closest hello of the baseline says how much of it no known client
    ever sent in that combination (0: an exact known hello, 1: nothing in common). Unlike a tree
    ensemble, this sees a value the population never offered, and a handful of distinct stacks is
    enough to learn from. The neighbour search is scikit-learn's ``NearestNeighbors`` (brute force,
    Jaccard metric) over boolean presence columns; the state is plain arrays, saved without pickle.
    """

    def __init__(self, tokens: Sequence[str], matrix: npt.NDArray[np.bool_], labels: Sequence[str]) -> None:
        self.tokens = list(tokens)
        self.matrix = np.asarray(matrix, dtype=bool)
        self.labels = list(labels)

    @classmethod
    def fit(cls, hellos: pd.DataFrame) -> HelloNovelty:
        sets = hello_tokens(hellos)
        tokens = sorted(set().union(*sets)) if sets else []
        index = {t: i for i, t in enumerate(tokens)}
        matrix = np.zeros((len(sets), len(tokens)), dtype=bool)
        for r, s in enumerate(sets):
            matrix[r, [index[t] for t in s]] = True
        labels = hellos["ja4"].astype(str).tolist() if "ja4" in hellos.columns else [""] * len(sets)
        return cls(tokens, matrix, labels)

    def distances(self, hellos: pd.DataFrame) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
        """Distance of each distinct hello to its nearest baseline hello, and that neighbour's row."""
        if len(hellos) == 0 or len(self.matrix) == 0:
            return np.ones(len(hellos)), np.full(len(hellos), -1, dtype=np.int64)
        from sklearn.neighbors import NearestNeighbors

        sets = hello_tokens(hellos)
        tokens = list(self.tokens)
        index = {t: i for i, t in enumerate(tokens)}
        for s in sets:  # values the population never offered still count in the distance
            for t in sorted(s - index.keys()):
                index[t] = len(tokens)
                tokens.append(t)
        train = np.zeros((len(self.matrix), len(tokens)), dtype=bool)
        train[:, : len(self.tokens)] = self.matrix
        query = np.zeros((len(sets), len(tokens)), dtype=bool)
        for r, s in enumerate(sets):
            query[r, [index[t] for t in s]] = True
        nn = NearestNeighbors(n_neighbors=1, metric="jaccard", algorithm="brute").fit(train)
        dist, idx = nn.kneighbors(query)
        return np.asarray(dist[:, 0], dtype=np.float64), np.asarray(idx[:, 0], dtype=np.int64)

    def save(self, path: str | os.PathLike[str]) -> None:
        np.savez(path, tokens=np.array(self.tokens, dtype=str), matrix=self.matrix,
                 labels=np.array(self.labels, dtype=str))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> HelloNovelty:
        """Raises ``ValueError`` on anything but the three plain arrays :meth:`save` writes."""
        with np.load(path, allow_pickle=False) as data:
            names = set(data.files)
            if names != {"tokens", "matrix", "labels"}:
                raise ValueError(f"expected arrays tokens, matrix, labels; found {', '.join(sorted(names))}")
            tokens, matrix, labels = data["tokens"], data["matrix"], data["labels"]
        if matrix.dtype != bool or matrix.ndim != 2 or matrix.shape != (len(labels), len(tokens)):
            raise ValueError(f"matrix of shape {matrix.shape} and type {matrix.dtype} does not fit "
                             f"{len(labels)} hellos x {len(tokens)} values")
        return cls(tokens.tolist(), matrix, labels.tolist())
