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
when it is a learned size plus the delta of a new certificate that a connection of the scored table
shows in clear (a TLS <= 1.2 leg: a probe, an older client), issued by an issuer the server already had
(same issuing key), seen no later than one window after the row (:mod:`~tlsdetect.detect.renewals`).
Without such a connection (a TLS 1.3-only server), a renewal cannot be told from an interceptor that
keeps the server's stack: it is flagged (``suspicious``; ``intercepted`` with ``server_convergence``)
until the baseline learns the new size (``partial_fit``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from tlsdetect.detect.baseline import Baseline
from tlsdetect.detect.columns import as_category, pair_in, text_column, texts_at
from tlsdetect.detect.derived import derived
from tlsdetect.detect.evidence import Evidence
from tlsdetect.detect.renewals import clear_certs, explained_by_renewal, renewal_deltas, same_servers, unseen_certs
from tlsdetect.detect.server_profiles import Coded, ServerRows, combine, profile_counts, server_rows

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


class _Learned:
    """The learned profiles of one kind as lookup structures: built once per baseline (``derived``)."""

    def __init__(self, table: pd.DataFrame, kind: str, min_obs: int, all_counts: pd.DataFrame) -> None:
        sub = table[table["kind"] == kind]
        counts = all_counts[all_counts["kind"] == kind]
        counts = counts[counts["observations"] >= min_obs].reset_index(drop=True)
        self.counts = counts
        self.scopes = {scope: bool((counts["scope"] == scope).any()) for scope in ("sni", "addr")}
        ident = self.ident = pd.MultiIndex.from_frame(counts[["scope", "server", "family"]].astype(object))
        # learned values of the kept profiles, as (profile id, value) pairs
        vals = sub[sub.set_index(["scope", "server", "family"]).index.isin(ident)]
        self.value_pid = np.asarray(ident.get_indexer(vals.set_index(["scope", "server", "family"]).index),
                                    dtype=np.int64)
        self.values = vals.reset_index(drop=True)
        self.known = pd.Index(self.values["value"].unique())
        self.known_pos = np.asarray(self.known.get_indexer(self.values["value"]), dtype=np.int64)
        self.size = pd.to_numeric(self.values["value"], errors="coerce").to_numpy(dtype=np.float64)
        good = ~np.isnan(self.size)
        self.size_keys = np.sort(self.value_pid[good] * _SHIFT + self.size[good].astype(np.int64))
        self._expected: dict[str, npt.NDArray[np.object_]] = {}

    def expected(self, kind: str) -> npt.NDArray[np.object_]:
        """Per profile id: what it holds, as text for a reason's ``expected`` (made on first use)."""
        if kind not in self._expected:
            self._expected[kind] = self._expected_texts(kind)
        return self._expected[kind]

    def _expected_texts(self, kind: str) -> npt.NDArray[np.object_]:
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


def _learned(b: Baseline, min_obs: int) -> dict[str, _Learned]:
    """Each kind's :class:`_Learned` of ``b.server_values_``, once per baseline and ``min_obs``."""
    def build() -> dict[str, _Learned]:
        table = b.server_values_
        counts = profile_counts(table)
        return {kind: _Learned(table, kind, min_obs, counts) for kind in SIGNAL_OF}
    return derived(b, f"server_signals.profiles.{min_obs}", ("server_values_",), build)


class _Profiles:
    """The learned profiles of one kind: ids per (scope, server, family), their values, broadcast to rows."""

    def __init__(self, learned: _Learned, rows: ServerRows, pairs: dict[str, _Pairs]) -> None:
        self.learned = learned
        self.counts = learned.counts
        n = len(rows.family.codes)
        self.pid = np.full(n, -1, dtype=np.int64)
        self.scope = np.zeros(n, dtype=np.int8)  # 1: by name, 2: by address
        ident = learned.ident
        for s, scope in enumerate(("sni", "addr"), start=1):  # the name's profile first, else the address's
            pr = pairs[scope]
            if len(pr.servers) == 0 or not learned.scopes[scope]:
                continue
            # each distinct (server, family) of the rows looked up once, then broadcast by code
            per_pair = np.asarray(ident.get_indexer(pd.MultiIndex.from_arrays(
                [np.full(len(pr.servers), scope, dtype=object), pr.servers, pr.families])), dtype=np.int64)
            pid = np.append(per_pair, -1)[pr.codes]
            hit = (pid >= 0) & (self.pid < 0)
            self.pid[hit] = pid[hit]
            self.scope[hit] = s
        self.value_pid = learned.value_pid
        self.values = learned.values

    def seen(self, coded_codes: npt.NDArray[np.int64], texts: npt.NDArray[np.object_]) -> npt.NDArray[np.bool_]:
        """Whether each row's value is one its profile learned (rows without a profile or value: False)."""
        known = self.learned.known
        vpos = np.append(np.asarray(known.get_indexer(pd.Index(texts, dtype=object)), dtype=np.int64), -1)[coded_codes]
        return pair_in(self.pid, vpos, self.value_pid, self.learned.known_pos, len(known))

    def near(self, size: npt.NDArray[np.float64], tolerance: int) -> npt.NDArray[np.bool_]:
        """Whether each row's flight size is within ``tolerance`` bytes of a size its profile learned."""
        keys = self.learned.size_keys
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
        return self.learned.expected(kind)


def server_signals(df: pd.DataFrame, b: Baseline, ja4: pd.Series, ev: Evidence, compared: Any,
                   window: str = "1h", min_clients: int = 3, names: Coded | None = None) -> pd.Categorical:
    """Fire the server signals; return ``compared`` with the server kinds each row was compared on (``names``:
    the rows' :func:`~tlsdetect.detect.server_profiles.server_names`, when the caller has them already)."""
    table = getattr(b, "server_values_", None)
    if table is None or len(table) == 0:
        return as_category(compared)
    rows = server_rows(df, ja4, names)
    n = len(df)
    # every comparison depends on the row's (name, address, family, server values) only: made once per
    # distinct tuple (a few thousand in a million rows), then broadcast by the row's tuple code
    group, first = combine(rows.keys["sni"].codes, rows.keys["addr"].codes, rows.family.codes,
                           *(rows.values[kind].codes for kind in SIGNAL_OF))
    t = _take(rows, first)
    changed: dict[str, npt.NDArray[np.bool_]] = {}
    profiles: dict[str, _Profiles] = {}
    bits_t = np.zeros(len(first), dtype=np.int64)
    pairs = {scope: _Pairs(t, scope) for scope in ("sni", "addr")}
    learned = _learned(b, MIN_OBSERVATIONS)
    for bit, kind in enumerate(SIGNAL_OF):
        p = _Profiles(learned[kind], t, pairs)
        val = t.values[kind]
        has = (p.pid >= 0) & (val.codes >= 0)
        same = p.near(t.flight, FLIGHT_TOLERANCE) if kind == "flight" else p.seen(val.codes, val.texts)
        fired = has & ~same
        changed[kind] = fired[group] if fired.any() else np.zeros(n, dtype=bool)
        profiles[kind] = p
        bits_t |= np.where(has, 1 << bit, 0)
    mask_bits = bits_t[group]
    stack_same = ~(changed["ja3s"] | changed["cipher"] | changed["version"])
    pf = profiles["flight"]
    changed["flight"] &= ~_renewal(df, b, rows, changed["flight"] & stack_same, pf.pid[group], pf.scope[group],
                                   pf.value_pid, pf.learned.size, window)

    pids: dict[str, npt.NDArray[np.int64]] = {}  # per row, for the kinds that fired
    for kind, code in SIGNAL_OF.items():
        if not changed[kind].any():
            continue
        p, val = profiles[kind], rows.values[kind]
        exp = p.expected(kind)  # text for the profiles of fired rows only is built below; this is per profile
        pid, scope = p.pid[group], p.scope[group]
        pids[kind] = pid
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
    _convergence(df, rows, changed, pids, ev, window, min_clients)
    return _with_compared(compared, mask_bits)


def _take(rows: ServerRows, at: npt.NDArray[np.int64]) -> ServerRows:
    """``rows`` at positions ``at`` (one row of each distinct tuple); the texts are shared."""
    return ServerRows({k: Coded(c.codes[at], c.texts) for k, c in rows.keys.items()},
                      Coded(rows.family.codes[at], rows.family.texts),
                      {k: Coded(c.codes[at], c.texts) for k, c in rows.values.items()}, rows.flight[at])


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
             pid: npt.NDArray[np.int64], scope: npt.NDArray[np.int8], learned_pid: npt.NDArray[np.int64],
             learned_size: npt.NDArray[np.float64], window: str) -> npt.NDArray[np.bool_]:
    """Flight-only changes explained by a renewal (:mod:`~tlsdetect.detect.renewals`): a learned size plus the
    delta of a new certificate, from an issuer the server had, that a connection of this table shows in clear."""
    known = getattr(b, "server_certs_", None)
    if not flight_only.any() or known is None or len(known) == 0:
        return np.zeros(len(df), dtype=bool)
    stamp = df["ts"] if "ts" in df.columns else pd.Series(pd.NaT, index=df.index, dtype="datetime64[ns, UTC]")
    keep = same_servers(rows, flight_only) & unseen_certs(df, known)
    deltas = renewal_deltas(known, clear_certs(df, rows, stamp, keep))
    ts = _stamps(df)
    return explained_by_renewal(rows, flight_only, pid, scope, learned_pid, learned_size, deltas, ts,
                                int(pd.Timedelta(window).value), FLIGHT_TOLERANCE)


def _stamps(df: pd.DataFrame) -> npt.NDArray[np.int64]:
    """Each row's time in nanoseconds (-1 when the table has none)."""
    if "ts" not in df.columns:
        return np.full(len(df), -1, dtype=np.int64)
    ts = pd.to_datetime(df["ts"], utc=True).reset_index(drop=True).dt.tz_convert(None)
    return np.asarray(ts.to_numpy(dtype="datetime64[ns]").astype(np.int64), dtype=np.int64)


def _convergence(df: pd.DataFrame, rows: ServerRows, changed: dict[str, npt.NDArray[np.bool_]],
                 pids: dict[str, npt.NDArray[np.int64]], ev: Evidence, window: str, min_clients: int) -> None:
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
        frame = pd.DataFrame({"pid": pids[kind][idx], "value": value, "bucket": bucket[idx],
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
