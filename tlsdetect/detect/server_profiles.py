"""What the baseline learns per server: how it answers each family of client hellos.

A middlebox in the path answers with its own TLS stack and its own certificate chain even when the
ClientHello is the client's own, so the server's side changes: another JA3S, cipher or version, and
another size of the first flight after ServerHello (mostly the certificate chain). This module turns a
connections table into the per-server table :class:`~tlsdetect.detect.baseline.Baseline` keeps
(``server_values``) and reads it back as per-row codes for scoring.

A server is keyed twice (``scope``): by its name (``sni``, lowercase) and by its address
(``addr``, ``ip:port``). A proxy by name answers at another address, an inline interceptor keeps the
server's address; scoring uses the name's profile and falls back to the address's. Each is keyed also
by the client's hello **family**, the JA4 ``a`` section (``t13d1812h2``: transport, highest version
offered, SNI or not, cipher and extension counts, first ALPN): the server's answer depends on what the
client offered (the version, the cipher intersection, which extensions it echoes, the ALPN it selects
in EncryptedExtensions). JA4 ``a`` rather than JA3N: every source carries JA4 (JA3N differs with how a
tool treats GREASE), GREASE and Chromium's extension shuffle do not change it, and a browser's minor
update rarely does, so a profile survives client updates that do not change what the server sees.

Rows are ``(scope, server, family, kind, value)`` with a count and first/last seen, folded like every
other baseline table (counts add). ``kind`` is ``version`` (negotiated), ``cipher`` (``0x1301``),
``ja3s``, ``flight`` (``server_flight_bytes`` of full handshakes only: a resumed session has no
certificate and a short flight) and ``resumed`` (``true``/``false``: the resumption rate). A kind
the source does not carry is simply absent: a baseline fitted without flight sizes has no flight
profile, and scoring then compares none. Every distinct value is kept, so a pool of two stacks
behind one name (two JA3S, two flight sizes) is two learned values, not a range an interceptor
could fall inside.

Everything is grouped over distinct tuples of integer codes (no Python per row): one groupby over
the rows, then small aggregations of its result.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from tlsdetect.wire.versions import version_name

__all__ = ["FAMILY_CHARS", "KINDS", "SCOPES", "ServerRows", "learn_server_values", "server_names", "server_rows"]

#: Characters of JA4 that make the hello family (its ``a`` section).
FAMILY_CHARS = 10
KINDS = ("version", "cipher", "ja3s", "flight", "resumed")
SCOPES = ("sni", "addr")


@dataclass(frozen=True)
class Coded:
    """One column as codes (-1 missing) into its distinct values as text."""

    codes: npt.NDArray[np.int64]
    texts: npt.NDArray[np.object_]


@dataclass(frozen=True)
class ServerRows:
    """Per row: the server by name and by address, the hello family, and each kind's value, as codes."""

    keys: dict[str, Coded]  # scope -> server
    family: Coded
    values: dict[str, Coded]  # kind -> value
    flight: npt.NDArray[np.float64]  # server_flight_bytes of full handshakes (NaN otherwise)


def _coded(values: pd.Series, text: npt.NDArray[np.object_] | None = None) -> Coded:
    codes, uniq = pd.factorize(values, use_na_sentinel=True)
    texts = np.asarray(uniq, dtype=object) if text is None else text
    return Coded(np.asarray(codes, dtype=np.int64), texts)


def _column(df: pd.DataFrame, col: str) -> pd.Series:
    if col in df.columns:
        return df[col].reset_index(drop=True)
    return pd.Series(pd.NA, index=pd.RangeIndex(len(df)), dtype=object)


def _ints(s: pd.Series) -> npt.NDArray[np.int64]:
    """A nullable integer column as int64 with -1 for missing (values are non-negative on the wire).

    An integer column is read straight from its values and mask: the cast to ``Int64`` and ``fillna`` cost
    ~1.5 ms per column even for one row (five columns per score, issue 18 #15) and 5x the time per row."""
    if s.dtype == object:
        return np.asarray(pd.to_numeric(s, errors="coerce").fillna(-1).to_numpy(dtype=np.float64), dtype=np.int64)
    if pd.api.types.is_integer_dtype(s.dtype):
        return np.asarray(s.to_numpy(dtype=np.int64, na_value=-1), dtype=np.int64)
    return np.asarray(s.astype("Int64").fillna(-1).to_numpy(dtype=np.int64))


def _int_coded(v: npt.NDArray[np.int64], fmt: str) -> Coded:
    """Non-negative ints (-1 missing) as codes: a lookup table over the value range (versions, ciphers and
    flight sizes are small numbers), a hash only for a wide range."""
    top = int(v.max(initial=-1))
    if top < 1 << 20:
        present = np.bincount(v[v >= 0], minlength=top + 1) > 0 if top >= 0 else np.zeros(0, dtype=bool)
        uniq = np.flatnonzero(present)
        lut = np.full(top + 2, -1, dtype=np.int64)
        lut[uniq] = np.arange(len(uniq))
        codes = lut[np.where(v >= 0, v, top + 1)]
    else:
        raw, found = pd.factorize(np.where(v >= 0, v, -1))
        found = np.asarray(found, dtype=np.int64)
        order = np.argsort(found)
        uniq = found[order][found[order] >= 0]
        remap = np.full(len(found) + 1, -1, dtype=np.int64)
        remap[order[found[order] >= 0]] = np.arange(len(uniq))
        codes = remap[np.asarray(raw, dtype=np.int64)]
    texts = np.array([version_name(u) if fmt == "version" else f"0x{u:04x}" if fmt == "hex" else str(u)
                      for u in uniq.tolist()], dtype=object)
    return Coded(np.asarray(codes, dtype=np.int64), texts)


def combine(*codes: npt.NDArray[np.int64]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Row codes of distinct tuples of codes (-1 kept as a value, tuples numbered in order of first
    appearance), and the first row of each tuple.

    The codes are packed into one int64 (mixed radix) and hashed once while the product of the
    cardinalities fits in 62 bits (the usual case); beyond that, folded pairwise, each step renumbered by a
    hash of int64s, so it never overflows. Either way one million rows of eight columns cost a few dozen
    milliseconds."""
    key = np.asarray(codes[0], dtype=np.int64) + 1
    span = int(key.max(initial=0)) + 1
    for c in codes[1:]:
        radix = int(c.max(initial=-1)) + 2
        if span * radix >= 1 << 62:  # renumber what is packed so far: its span becomes its distinct count
            key = np.asarray(pd.factorize(key)[0], dtype=np.int64)
            span = int(key.max(initial=0)) + 1
        key = key * radix + (np.asarray(c, dtype=np.int64) + 1)
        span *= radix
    return _first_rows(key)


def _first_rows(key: npt.NDArray[np.int64]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    group, _ = pd.factorize(key)  # numbered in order of first appearance
    group = np.asarray(group, dtype=np.int64)
    # so a row is a tuple's first exactly where its code exceeds every code before it
    seen = np.maximum.accumulate(group)
    first = np.flatnonzero(np.concatenate([[True], seen[1:] > seen[:-1]])) if len(group) else group[:0]
    return group, first


def _family(df: pd.DataFrame, ja4: pd.Series | None) -> Coded:
    col = ja4 if ja4 is not None else _column(df, "ja4")
    cat = col.reset_index(drop=True)
    if not isinstance(cat.dtype, pd.CategoricalDtype):
        cat = cat.astype("string").astype("category")
    fam = pd.Series(cat.cat.categories.astype(str), dtype=object).str.slice(0, FAMILY_CHARS)
    f_codes, f_uniq = pd.factorize(fam)
    per_cat = np.append(np.asarray(f_codes, dtype=np.int64), -1)
    return Coded(per_cat[np.asarray(cat.cat.codes, dtype=np.int64)], np.asarray(f_uniq, dtype=object))


def server_names(df: pd.DataFrame) -> Coded:
    """The rows' server names, lowercase, as codes: hashed once per table and shared by the signals."""
    s = _column(df, "sni")
    codes, uniq = pd.factorize(s, use_na_sentinel=True)
    lower = pd.Series(np.asarray(uniq, dtype=object), dtype=object).str.lower()
    l_codes, l_uniq = pd.factorize(lower)  # names differing only in case are one server
    per = np.append(np.asarray(l_codes, dtype=np.int64), -1)
    return Coded(per[np.asarray(codes, dtype=np.int64)], np.asarray(l_uniq, dtype=object))


def _addr(df: pd.DataFrame) -> Coded:
    ip_codes, ips = pd.factorize(_column(df, "server_ip"), use_na_sentinel=True)
    port = _ints(_column(df, "server_port"))
    ok = (ip_codes >= 0) & (port >= 0)
    pair = np.where(ok, ip_codes.astype(np.int64) * 65536 + np.maximum(port, 0), -1)
    codes, uniq = pd.factorize(pair)
    uniq = np.asarray(uniq, dtype=np.int64)
    ip_text = np.asarray(ips, dtype=object)
    texts = np.array([None if u < 0 else (f"[{ip_text[u >> 16]}]:{u & 0xFFFF}" if ":" in str(ip_text[u >> 16])
                                          else f"{ip_text[u >> 16]}:{u & 0xFFFF}") for u in uniq.tolist()],
                     dtype=object)
    codes = np.asarray(codes, dtype=np.int64)
    missing = np.flatnonzero(uniq < 0)
    if len(missing):
        m = int(missing[0])
        codes = np.where(codes == m, -1, np.where(codes > m, codes - 1, codes))
        texts = np.delete(texts, m)
    return Coded(codes, texts)


def server_rows(df: pd.DataFrame, ja4: pd.Series | None = None, names: Coded | None = None) -> ServerRows:
    """The codes scoring and fitting share; ``ja4`` may be given as a categorical already built, ``names`` as
    :func:`server_names` already computed."""
    n = len(df)
    sel = _ints(_column(df, "sh_selected_version"))
    legacy = _ints(_column(df, "sh_version"))
    version = _int_coded(np.where(sel >= 0, sel, legacy), "version")
    cipher_i = _ints(_column(df, "sh_cipher"))
    if (version.codes < 0).all() and "tls_version" in df.columns:
        # a log without the ServerHello's numbers (Zeek): its tls_version is the negotiated one when the
        # row shows the server answered (a cipher or a JA3S)
        answered = (cipher_i >= 0) | _column(df, "ja3s").notna().to_numpy()
        version = _coded(_column(df, "tls_version").where(pd.Series(answered)))
    resumed = _column(df, "resumed")
    res_known = resumed.notna().to_numpy()
    res_true = np.zeros(n, dtype=bool)
    res_true[res_known] = resumed[res_known].astype(bool).to_numpy()
    res = _int_coded(np.where(res_known, res_true.astype(np.int64), -1), "plain")
    res = Coded(res.codes, np.array(["true" if t == "1" else "false" for t in res.texts], dtype=object))
    bytes_ = _ints(_column(df, "server_flight_bytes"))
    full = res_known & ~res_true & (bytes_ >= 0)  # a resumed (or unknown) handshake is never a full flight
    flight_i = np.where(full, bytes_, -1)
    values = {
        "version": version,
        "cipher": _int_coded(cipher_i, "hex"),
        "ja3s": _coded(_column(df, "ja3s")),
        "flight": _int_coded(flight_i, "plain"),
        "resumed": res,
    }
    return ServerRows({"sni": names if names is not None else server_names(df), "addr": _addr(df)}, _family(df, ja4),
                      values,
                      np.where(full, bytes_, np.nan).astype(np.float64))


def learn_server_values(df: pd.DataFrame, ts: pd.Series) -> pd.DataFrame:
    """The ``server_values`` rows of ``df``: one groupby over distinct code tuples, then per scope and kind."""
    rows = server_rows(df)
    cols = {"fam": rows.family.codes, **{f"s_{k}": c.codes for k, c in rows.keys.items()},
            **{f"v_{k}": c.codes for k, c in rows.values.items()}}
    has_fam = rows.family.codes >= 0
    if not has_fam.any():
        return pd.DataFrame(columns=["scope", "server", "family", "kind", "value", "count", "first_seen",
                                     "last_seen"])
    sub = {k: v[has_fam] for k, v in cols.items()}
    group, first = combine(*sub.values())
    # time as int64 nanoseconds (a tz-aware column as numpy would be a Timestamp object per row)
    naive = pd.to_datetime(ts.reset_index(drop=True)[has_fam], utc=True).dt.tz_convert(None)
    g = pd.Series(naive.to_numpy(dtype="datetime64[ns]")).groupby(group, sort=False)
    combos = pd.DataFrame({k: v[first] for k, v in sub.items()})  # a few thousand distinct tuples
    combos["count"] = np.bincount(group, minlength=len(first)).astype(np.int64)
    combos["first_seen"] = g.min().reindex(np.arange(len(first))).to_numpy()
    combos["last_seen"] = g.max().reindex(np.arange(len(first))).to_numpy()
    parts = []
    for scope, key in rows.keys.items():
        for kind, val in rows.values.items():
            part = combos[(combos[f"s_{scope}"] >= 0) & (combos[f"v_{kind}"] >= 0)]
            if len(part) == 0:
                continue
            agg = part.groupby([f"s_{scope}", "fam", f"v_{kind}"], sort=False).agg(
                count=("count", "sum"), first_seen=("first_seen", "min"), last_seen=("last_seen", "max")).reset_index()
            parts.append(pd.DataFrame({
                "scope": scope, "server": key.texts[agg[f"s_{scope}"].to_numpy()],
                "family": rows.family.texts[agg["fam"].to_numpy()], "kind": kind,
                "value": val.texts[agg[f"v_{kind}"].to_numpy()], "count": agg["count"].to_numpy(dtype=np.int64),
                "first_seen": agg["first_seen"].to_numpy(), "last_seen": agg["last_seen"].to_numpy(),
            }))
    if not parts:
        return pd.DataFrame(columns=["scope", "server", "family", "kind", "value", "count", "first_seen",
                                     "last_seen"])
    out = pd.concat(parts, ignore_index=True)
    out["first_seen"] = pd.to_datetime(out["first_seen"], utc=True)
    out["last_seen"] = pd.to_datetime(out["last_seen"], utc=True)
    return out


def profile_counts(table: pd.DataFrame) -> pd.DataFrame:
    """Per ``(scope, server, family, kind)``: observations (``count`` summed) and distinct values."""
    if len(table) == 0:
        return pd.DataFrame({"scope": pd.Series(dtype="string"), "server": pd.Series(dtype="string"),
                             "family": pd.Series(dtype="string"), "kind": pd.Series(dtype="string"),
                             "observations": pd.Series(dtype="int64"), "values": pd.Series(dtype="int64")})
    g = table.groupby(["scope", "server", "family", "kind"], sort=True, observed=True)
    return pd.DataFrame({"observations": g["count"].sum(), "values": g["value"].nunique()}).reset_index()


def server_summary(table: pd.DataFrame) -> dict[str, object]:
    """What ``meta.json`` says of the server profiles: how many servers, families and profiles per kind."""
    counts = profile_counts(table)
    return {
        "servers": {s: int(table.loc[table["scope"] == s, "server"].nunique()) for s in SCOPES},
        "families": int(table["family"].nunique()),
        "profiles": {k: int((counts["kind"] == k).sum()) for k in KINDS},
    }
