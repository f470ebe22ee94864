"""JA4 split into its parts, and the keys that compare a client's TLS stack rather than one connection.

A JA4 is ``a_b_c``: ``a`` = transport, version, SNI flag (``d`` with an SNI extension, ``i`` without),
cipher count, extension count, ALPN; ``b`` = the hash of the sorted ciphers; ``c`` = the hash of the sorted
extensions (SNI and ALPN left out) and the signature algorithms.

The SNI flag is a property of the connection (a client dialling an IP literal sends no SNI), not of the
stack. Measured on loopback against ``openssl s_server`` (``dumpcap`` on ``lo``, 2026-12-07), each client to
``127.0.0.1`` and to ``localhost``: curl 7.88.1 (``t13i3111h2`` / ``t13d3112h2``), ``openssl s_client`` 3.0.19
(``t13i310900`` / ``t13d311000``), Python 3.11 ``ssl`` (``t13i181000`` / ``t13d181100``) and gnutls-cli 3.7.9
(``t13i291200`` / ``t13d291300``): the ``i`` hello lacks exactly the SNI extension, so its extension count is
one lower, while ``b`` and ``c`` are equal (``c`` leaves SNI out by definition). Its JA3N differs (the SNI
extension is in JA3's list), so the JA3N hold-back of a JA4 change cannot excuse it.

So the *stack* form of ``a`` drops the flag and counts extensions without SNI: ``t13d3112h2`` and
``t13i3111h2`` both become ``t13x3111h2`` (``x``: "SNI flag dropped, SNI not counted"). The ``ab`` key is that
normalised ``a`` with ``b``; the stack key adds ``c``. Everything is computed once per distinct value and
broadcast by codes; a value that is not JA4-shaped keeps itself as its stack key and has no parts.

The parts of a few distinct values are remembered (:data:`MEMO_SIZE` values, process-wide): a one-row
request paid ~40 ms of fixed pandas cost per call on the 2-core machine for one value (issue 18 #15).
A large call (over :data:`MEMO_BATCH` distinct values) is computed as a whole and not remembered.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pandas as pd

from tlsdetect.detect.columns import Unique

__all__ = ["JA4_SHAPE", "PART_COLUMNS", "ja4_parts", "learn_ja4_stacks", "stack_a"]

JA4_SHAPE = re.compile(r"^[tqd](?:1[0-3]|s[23]|d[0-3]|00)[di]\d{4}[0-9a-z]{2}_[0-9a-f]{12}_[0-9a-f]{12}$")
#: The columns of :func:`ja4_parts`.
PART_COLUMNS = ("a", "b", "c", "stack_a", "ab", "stack")
#: Distinct values whose parts are remembered (the memo is emptied when full).
MEMO_SIZE = 65_536
#: Calls with more distinct values than this skip the memo (computed vectorised, as a whole).
MEMO_BATCH = 4_096
_MEMO: dict[str, tuple[str | None, ...]] = {}


def stack_a(a: pd.Series) -> pd.Series:
    """JA4_a without the connection's SNI flag: ``x`` in its place, the extension count without SNI.

    ``a`` must be JA4-shaped ``a`` parts (10 characters); missing stays missing."""
    a = a.astype("string")
    flag = a.str.slice(3, 4)
    exts = pd.to_numeric(a.str.slice(6, 8), errors="coerce")
    # 'd': the SNI extension is counted; a count capped at 99 cannot be corrected and stays as is
    fixed = exts - ((flag == "d") & (exts < 99)).astype("Int64")
    count = fixed.astype("Int64").astype("string").str.zfill(2)
    return a.str.slice(0, 3) + "x" + a.str.slice(4, 6) + count + a.str.slice(8, 10)


def ja4_parts(values: pd.Series, columns: Sequence[str] = PART_COLUMNS) -> pd.DataFrame:
    """Per row: ``a``, ``b``, ``c``, ``stack_a`` (:func:`stack_a`), ``ab`` (``stack_a`` + ``_`` + ``b``) and
    ``stack`` (``ab`` + ``_`` + ``c``; the value itself when it is not JA4-shaped). String columns.

    ``columns`` picks some of them (in that order): each column is an Arrow string array built per row, a
    fixed ~0.3 ms even for one row, and scoring reads two of the six."""
    unknown = [c for c in columns if c not in PART_COLUMNS]
    if unknown:
        raise ValueError(f"unknown JA4 part column(s) {unknown}; known: {PART_COLUMNS}")
    u = Unique(values)
    if len(u.values) > MEMO_BATCH:
        per_unique = _parts(u.values)
    else:
        keys = u.values.tolist()
        known = [_MEMO.get(k) for k in keys]
        miss = [i for i, k in enumerate(known) if k is None]
        if miss:
            fresh = _parts(u.values.iloc[miss].reset_index(drop=True))
            if len(_MEMO) + len(miss) > MEMO_SIZE:
                _MEMO.clear()
            for j, i in enumerate(miss):
                known[i] = _MEMO[keys[i]] = tuple(fresh[col][j] for col in PART_COLUMNS)
        per_unique = {col: np.array([k[c] for k in known if k is not None], dtype=object)
                      for c, col in enumerate(PART_COLUMNS) if col in columns}
    return pd.DataFrame({col: u.strings(per_unique[col]) for col in columns}, index=pd.RangeIndex(len(values)))


def _parts(uniq: pd.Series) -> dict[str, npt.NDArray[np.object_]]:
    """The parts of each of ``uniq`` (distinct, non-missing strings), as object arrays (``None`` for none)."""
    text = uniq.str.strip().str.lower()
    ok = text.str.match(JA4_SHAPE.pattern).fillna(False).to_numpy(dtype=bool)
    parts = pd.DataFrame({c: pd.Series(pd.NA, index=text.index, dtype="string") for c in PART_COLUMNS})
    good = text[ok]
    parts.loc[ok, "a"] = good.str.slice(0, 10)
    parts.loc[ok, "b"] = good.str.slice(11, 23)
    parts.loc[ok, "c"] = good.str.slice(24, 36)
    parts.loc[ok, "stack_a"] = stack_a(good.str.slice(0, 10))
    parts["ab"] = parts["stack_a"] + "_" + parts["b"]
    parts["stack"] = (parts["ab"] + "_" + parts["c"]).where(pd.Series(ok, index=text.index), uniq)
    return {col: parts[col].astype(object).where(parts[col].notna(), None).to_numpy() for col in PART_COLUMNS}


def learn_ja4_stacks(ja4: pd.Series, origin: pd.Series, cid: pd.Series, ts: pd.Series) -> pd.DataFrame:
    """The baseline's ``ja4_stacks`` rows: per client, ``fingerprint_origin`` (``unknown`` when missing),
    normalised JA4_ab and JA4_c, the connections, first and last seen. Rows without a client or a JA4-shaped
    value are left out. From these a scorer knows each fingerprint's source and whether a client's JA4_c
    varies per connection for one JA4_ab."""
    parts = ja4_parts(ja4.reset_index(drop=True))
    frame = pd.DataFrame({
        "client_id": cid.astype("string").reset_index(drop=True),
        "origin": origin.astype("string").reset_index(drop=True).fillna("unknown"),
        "ja4_ab": parts["ab"], "ja4_c": parts["c"], "ts": ts.reset_index(drop=True),
    })
    frame = frame[frame["client_id"].notna().to_numpy() & frame["ja4_ab"].notna().to_numpy()]
    g = frame.groupby(["client_id", "origin", "ja4_ab", "ja4_c"], sort=False, observed=True)
    out = g.size().rename("count").to_frame()
    out["first_seen"] = g["ts"].min()
    out["last_seen"] = g["ts"].max()
    return out.reset_index()
