"""Server signals: a server answering a client hello family otherwise than it always did in the baseline.

Where the sensor sees the client's side of an interceptor, the ClientHello is genuine and only who
answers changes: ``server_flight_changed`` (the first flight after ServerHello, mostly the certificate
chain, has a size the server never sent), ``server_fingerprint_changed`` (a JA3S never seen),
``server_version_changed`` and ``server_cipher_changed``; ``server_convergence`` when many clients of
one server meet the same new value in one window (the middlebox signature).

A row is compared with a profile (:mod:`~tlsdetect.detect.server_profiles`) only when the baseline
holds at least :data:`MIN_OBSERVATIONS` observations of that kind for the row's server and hello family:
the server's name first, else its address. A resumed handshake is never compared with full-handshake
flight sizes, and a flight size within :data:`FLIGHT_TOLERANCE` bytes of a learned one is the same
(TLS 1.3's CertificateVerify and TLS 1.2's ServerKeyExchange carry an ECDSA signature whose DER length
varies by a few bytes). ``compared`` names the kinds each row was compared on, and no other.

Legitimate change. A pool of two stacks behind one name, or a renewal inside the baseline period, is
two learned values and stays clean. A renewal **after** the baseline changes the flight size only (the
stack, hence JA3S, cipher and version, stays): such a flight-only change is explained, and not flagged,
when in the same window a connection to the same name shows its new certificate in clear (a TLS 1.2
leg, or a log that carries it) issued by an issuer the name already had in the baseline. Without such
a connection (a TLS 1.3-only server), a renewal cannot be told from an interceptor that keeps the
server's stack: it is flagged (``suspicious``; ``intercepted`` with ``server_convergence``) until the
baseline learns the new size (``partial_fit``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from tlsdetect.detect.baseline import Baseline
from tlsdetect.detect.columns import as_category, pair_in, positions, raw_column, text_column, texts_at
from tlsdetect.detect.evidence import Evidence
from tlsdetect.detect.server_profiles import ServerRows, profile_counts, server_rows

__all__ = ["FLIGHT_TOLERANCE", "MIN_OBSERVATIONS", "SIGNAL_OF", "server_signals"]

#: Observations of one kind a (server, family) profile needs before a row is compared with it.
MIN_OBSERVATIONS = 3
#: Bytes by which a full flight may differ from a learned size and still be that size.
FLIGHT_TOLERANCE = 8
#: The signal each compared kind fires.
SIGNAL_OF = {"flight": "server_flight_changed", "ja3s": "server_fingerprint_changed",
             "version": "server_version_changed", "cipher": "server_cipher_changed"}
_WHAT = {"flight": "a first flight of", "ja3s": "JA3S", "version": "version", "cipher": "cipher"}
_SHIFT = np.int64(1) << np.int64(32)


class _Pairs:
    """The rows' distinct (server, family) pairs of one scope: row codes into them, and their texts."""

    def __init__(self, rows: ServerRows, scope: str) -> None:
        key = rows.keys[scope]
        ok = (key.codes >= 0) & (rows.family.codes >= 0)
        nf = len(rows.family.texts) + 1
        codes, uniq = pd.factorize(np.where(ok, key.codes * nf + rows.family.codes, -1), use_na_sentinel=True)
        uniq = np.asarray(uniq, dtype=np.int64)
        keep = uniq >= 0
        remap = np.append(np.where(keep, np.cumsum(keep) - 1, -1), -1)
        self.codes = remap[np.asarray(codes, dtype=np.int64)]
        self.servers = np.asarray(key.texts, dtype=object)[uniq[keep] // nf]
        self.families = np.asarray(rows.family.texts, dtype=object)[uniq[keep] % nf]


class _Profiles:
    """The learned profiles of one kind: ids per (scope, server, family), their values, broadcast to rows."""

    def __init__(self, table: pd.DataFrame, kind: str, rows: ServerRows, pairs: dict[str, _Pairs],
                 min_obs: int) -> None:
        sub = table[table["kind"] == kind]
        counts = profile_counts(sub)
        counts = counts[counts["observations"] >= min_obs].reset_index(drop=True)
        self.counts = counts
        n = len(rows.family.codes)
        self.pid = np.full(n, -1, dtype=np.int64)
        self.scope = np.zeros(n, dtype=np.int8)  # 1: by name, 2: by address
        ident = pd.MultiIndex.from_frame(counts[["scope", "server", "family"]].astype(object))
        for s, scope in enumerate(("sni", "addr"), start=1):  # the name's profile first, else the address's
            pr = pairs[scope]
            if len(pr.servers) == 0 or not (counts["scope"] == scope).any():
                continue
            # each distinct (server, family) of the rows looked up once, then broadcast by code
            per_pair = np.asarray(ident.get_indexer(pd.MultiIndex.from_arrays(
                [np.full(len(pr.servers), scope, dtype=object), pr.servers, pr.families])), dtype=np.int64)
            pid = np.append(per_pair, -1)[pr.codes]
            hit = (pid >= 0) & (self.pid < 0)
            self.pid[hit] = pid[hit]
            self.scope[hit] = s
        # learned values of the kept profiles, as (profile id, value) pairs
        vals = sub[sub.set_index(["scope", "server", "family"]).index.isin(ident)]
        self.value_pid = np.asarray(ident.get_indexer(vals.set_index(["scope", "server", "family"]).index),
                                    dtype=np.int64)
        self.values = vals.reset_index(drop=True)

    def seen(self, coded_codes: npt.NDArray[np.int64], texts: npt.NDArray[np.object_]) -> npt.NDArray[np.bool_]:
        """Whether each row's value is one its profile learned (rows without a profile or value: False)."""
        known = pd.Index(self.values["value"].unique())
        vpos = np.append(np.asarray(known.get_indexer(pd.Index(texts, dtype=object)), dtype=np.int64), -1)[coded_codes]
        return pair_in(self.pid, vpos, self.value_pid, np.asarray(known.get_indexer(self.values["value"]),
                                                                  dtype=np.int64), len(known))

    def near(self, size: npt.NDArray[np.float64], tolerance: int) -> npt.NDArray[np.bool_]:
        """Whether each row's flight size is within ``tolerance`` bytes of a size its profile learned."""
        learned = pd.to_numeric(self.values["value"], errors="coerce").to_numpy(dtype=np.float64)
        good = ~np.isnan(learned)
        keys = np.sort(self.value_pid[good] * _SHIFT + learned[good].astype(np.int64))
        ok = (self.pid >= 0) & ~np.isnan(size)
        if len(keys) == 0:
            return np.zeros(len(size), dtype=bool)
        rk = np.where(ok, self.pid * _SHIFT + np.nan_to_num(size, nan=0).astype(np.int64), -1)
        at = np.searchsorted(keys, rk)
        hi = keys[np.minimum(at, len(keys) - 1)]
        lo = keys[np.maximum(at - 1, 0)]
        close = ((np.abs(hi - rk) <= tolerance) & (hi // _SHIFT == self.pid)) | \
                ((np.abs(rk - lo) <= tolerance) & (lo // _SHIFT == self.pid))
        out: npt.NDArray[np.bool_] = ok & close
        return out

    def expected(self, kind: str) -> npt.NDArray[np.object_]:
        """Per profile id: what it holds, as text for a reason's ``expected``."""
        v = self.values.assign(pid=self.value_pid)
        if kind == "flight":
            size = pd.to_numeric(v["value"], errors="coerce")
            g = v.assign(size=size).groupby("pid")
            text = (g["size"].min().astype("int64").astype(str) + "-" + g["size"].max().astype("int64").astype(str)
                    + " bytes (" + g["value"].nunique().astype(str) + " size(s), "
                    + g["count"].sum().astype(str) + " full handshakes)")
        else:
            top = v.sort_values("count", ascending=False, kind="stable").groupby("pid").head(3)
            text = (top["value"].astype(str) + " (" + top["count"].astype(str) + ")").groupby(top["pid"]).agg(", ".join)
        out = np.full(len(self.counts) + 1, None, dtype=object)
        out[text.index.to_numpy(dtype=np.int64)] = text.to_numpy(dtype=object)
        return out


def server_signals(df: pd.DataFrame, b: Baseline, ja4: pd.Series, ev: Evidence, compared: Any,
                   window: str = "1h", min_clients: int = 3) -> pd.Categorical:
    """Fire the server signals; return ``compared`` with the server kinds each row was compared on."""
    table = getattr(b, "server_values_", None)
    if table is None or len(table) == 0:
        return as_category(compared)
    rows = server_rows(df, ja4)
    n = len(df)
    changed: dict[str, npt.NDArray[np.bool_]] = {}
    profiles: dict[str, _Profiles] = {}
    mask_bits = np.zeros(n, dtype=np.int64)
    pairs = {scope: _Pairs(rows, scope) for scope in ("sni", "addr")}
    for bit, kind in enumerate(SIGNAL_OF):
        p = _Profiles(table, kind, rows, pairs, MIN_OBSERVATIONS)
        val = rows.values[kind]
        has = (p.pid >= 0) & (val.codes >= 0)
        same = p.near(rows.flight, FLIGHT_TOLERANCE) if kind == "flight" else p.seen(val.codes, val.texts)
        changed[kind] = has & ~same
        profiles[kind] = p
        mask_bits |= np.where(has, 1 << bit, 0)
    stack_same = ~(changed["ja3s"] | changed["cipher"] | changed["version"])
    changed["flight"] &= ~_renewal(df, b, rows, changed["flight"] & stack_same, window)

    for kind, code in SIGNAL_OF.items():
        if not changed[kind].any():
            continue
        p, val = profiles[kind], rows.values[kind]
        exp = p.expected(kind)  # text for the profiles of fired rows only is built below; this is per profile
        pid, scope = p.pid, p.scope
        unit = " bytes" if kind == "flight" else ""
        ev.add(code, changed[kind],
               lambda i, kind=kind, val=val, pid=pid, scope=scope, exp=exp, unit=unit: (
                   "the server " + texts_at(scope, i).map({"1": "name ", "2": "address "}) +
                   pd.Series(_server_text(rows, scope, i), dtype=object) + " answered this client hello family ("
                   + pd.Series(rows.family.texts[rows.family.codes[i]], dtype=object) + f") with {_WHAT[kind]} "
                   + pd.Series(val.texts[val.codes[i]], dtype=object) + unit
                   + "; in the baseline it answered it with " + pd.Series(exp[pid[i]], dtype=object).fillna("")),
               expected=lambda i, pid=pid, exp=exp: exp[pid[i]],
               observed=lambda i, val=val: val.texts[val.codes[i]])
    _convergence(df, rows, changed, profiles, ev, window, min_clients)
    return _with_compared(compared, mask_bits)


def _server_text(rows: ServerRows, scope: npt.NDArray[np.int8], i: npt.NDArray[np.int64]) -> list[str]:
    out = []
    for r, s in zip(i.tolist(), scope[i].tolist(), strict=True):
        key = rows.keys.get({1: "sni", 2: "addr"}.get(s, ""))
        out.append("" if key is None or key.codes[r] < 0 else str(key.texts[key.codes[r]]))
    return out


def _buckets(df: pd.DataFrame, window: str) -> npt.NDArray[np.int64]:
    if "ts" not in df.columns:
        return np.full(len(df), -1, dtype=np.int64)
    ts = pd.to_datetime(df["ts"], utc=True).reset_index(drop=True)
    floor = ts.dt.floor(window)
    return np.asarray(floor.to_numpy(dtype="datetime64[ns]").astype(np.int64), dtype=np.int64)


def _renewal(df: pd.DataFrame, b: Baseline, rows: ServerRows, flight_only: npt.NDArray[np.bool_],
             window: str) -> npt.NDArray[np.bool_]:
    """Flight-only changes explained by a renewal: in the same window, a connection to the same name shows
    a new-size flight with its certificate in clear, issued by an issuer the name had in the baseline."""
    out = np.zeros(len(df), dtype=bool)
    si = b.sni_issuers_
    if not flight_only.any() or len(si) == 0 or "server_issuer_key" not in df.columns:
        return out
    sni = rows.keys["sni"]
    snis = pd.Index(si["sni"].unique())
    keys = pd.Index(si["issuer_key"].unique())
    s_pos = np.append(np.asarray(snis.get_indexer(pd.Index(sni.texts, dtype=object)), dtype=np.int64), -1)[sni.codes]
    k_pos = positions(raw_column(df, "server_issuer_key"), keys)
    pairs = np.unique(np.asarray(snis.get_indexer(si["sni"]), dtype=np.int64) * _SHIFT
                      + np.asarray(keys.get_indexer(si["issuer_key"]), dtype=np.int64))
    ok = (s_pos >= 0) & (k_pos >= 0)
    clear = flight_only & ok & np.isin(np.where(ok, s_pos * _SHIFT + k_pos, -1), pairs)
    if not clear.any():
        return out
    bucket = _buckets(df, window)
    renewed = np.unique(sni.codes[clear] * _SHIFT + bucket[clear] // 10**9)
    cand = flight_only & (sni.codes >= 0)
    out[cand] = np.isin(sni.codes[cand] * _SHIFT + bucket[cand] // 10**9, renewed)
    return out


def _convergence(df: pd.DataFrame, rows: ServerRows, changed: dict[str, npt.NDArray[np.bool_]],
                 profiles: dict[str, _Profiles], ev: Evidence, window: str, min_clients: int) -> None:
    """Many clients of one server meeting the same new server value inside one window."""
    hit = np.zeros(len(df), dtype=bool)
    many = np.zeros(len(df), dtype=np.int64)
    what = np.full(len(df), None, dtype=object)
    if not any(m.any() for m in changed.values()):
        return
    client = text_column(df, "client_ip")
    bucket = _buckets(df, window)
    for kind, mask in changed.items():
        idx = np.flatnonzero(mask & ~hit)
        if len(idx) == 0:
            continue
        val = rows.values[kind]
        value = val.codes[idx] if kind != "flight" else (rows.flight[idx] // (2 * FLIGHT_TOLERANCE)).astype(np.int64)
        frame = pd.DataFrame({"pid": profiles[kind].pid[idx], "value": value, "bucket": bucket[idx],
                              "client": client.iloc[idx].to_numpy(dtype=object)})
        counts = frame.groupby(["pid", "value", "bucket"])["client"].transform("nunique").to_numpy()
        fire = idx[counts >= min_clients]
        hit[fire] = True
        many[idx] = np.maximum(many[idx], counts)
        what[fire] = SIGNAL_OF[kind].removeprefix("server_").replace("_changed", "")
    ev.add("server_convergence", hit,
           lambda i: (texts_at(many, i) + " clients of this server met the same new server " + texts_at(what, i)
                      + f" within one {window} window: a middlebox answering for the server?"),
           expected="a server that answers every client as in the baseline",
           observed=lambda i: texts_at(many, i) + " clients")


def _with_compared(compared: Any, bits: npt.NDArray[np.int64]) -> pd.Categorical:
    """``compared`` plus, per row, the server kinds it was compared on (categories per distinct pair only)."""
    base = as_category(compared)
    codes = np.asarray(base.codes, dtype=np.int64)
    combo = (codes + 1) * 16 + bits  # a small range: a lookup table, no hashing per row
    present = np.flatnonzero(np.bincount(combo, minlength=16 * (len(base.categories) + 1)))
    lut = np.full(16 * (len(base.categories) + 1), -1, dtype=np.int64)
    lut[present] = np.arange(len(present))
    c_codes, uniq = lut[combo], present
    names = list(SIGNAL_OF)
    cats = np.asarray(base.categories, dtype=object)
    texts = []
    for u in np.asarray(uniq, dtype=np.int64).tolist():
        old, mask = u // 16 - 1, u % 16
        head = None if old < 0 else str(cats[old])
        kinds = [("JA3S" if k == "ja3s" else "flight size" if k == "flight" else k)
                 for bit, k in enumerate(names) if mask & (1 << bit)]
        tail = "server profile (" + ", ".join(kinds) + ")" if kinds else None
        texts.append(", ".join(t for t in (head, tail) if t) or None)
    t_codes, t_uniq = pd.factorize(pd.Series(texts, dtype=object), use_na_sentinel=True)
    return pd.Categorical.from_codes(np.asarray(t_codes, dtype=np.int64)[c_codes],
                                     categories=pd.Index(t_uniq, dtype=object))
