"""Certificate renewals: a server's new flight size explained by its new certificate seen in clear.

A renewal changes the size of the server's first flight (mostly the certificate chain) for every client
at once, and nothing else of its stack; so does an interceptor that keeps the server's stack. What tells
them apart is a connection that shows the new certificate **in clear** (TLS <= 1.2: monitoring probes,
older clients): the baseline learns, per server (name and address) and hello family, each certificate
seen in clear with the size of its Certificate handshake message (TLS <= 1.2 ``server_flight[0]``, header
included), its chain length and issuer (DN key and AKID), and the rest of the flight (ServerKeyExchange,
CertificateStatus, ServerHelloDone: ``rest_bytes``) (:func:`learn_server_certs`, the ``server_certs``
table). A certificate seen in the scored table that is new for its server, from an issuer the server
already had (the same issuing key when the old certificate carried an AKID), is a renewal with
``delta`` = new flight - old flight in TLS <= 1.2 bytes (:func:`renewal_deltas`).

A new flight size is then explained only when it is a learned size of its (server, family) profile plus
``delta`` (within the flight tolerance) and the renewal was seen in the same table no later than one
window after the row (:func:`explained_by_renewal`). TLS 1.3 sends each certificate with 2 more bytes
(its extensions' length) and the message with a context byte, so its delta is ``delta + 2 * (new chain
length - old)``; the context byte cancels. An interceptor's forged leaf from its own issuer is no
renewal, and its flight matches a learned size + delta only by chance: on the inline corpus (2026-12-07,
delta 825 bytes in TLS 1.2, 824-828 in TLS 1.3) no interceptor leg to the renewed names came within 385
bytes of it (0 of 194), and of all deltas within +-2000 bytes, 0.55 % would have excused a given leg.

Not explained (flagged until ``partial_fit`` learns the new size): a renewal no connection shows in clear
(a TLS 1.3-only server), a certificate sent compressed (RFC 8879: the message size is no longer linear
in the chain), a new chain that crosses a 16 KiB record boundary, and a renewal seen only in another
table (the stream's next chunk sees it again only if a probe connects in that chunk).
"""

from __future__ import annotations

import json

import numpy as np
import numpy.typing as npt
import pandas as pd

from tlsdetect.detect.server_profiles import ServerRows, combine, server_rows

__all__ = ["CERT_TABLE_COLUMNS", "clear_certs", "explained_by_renewal", "learn_server_certs", "renewal_deltas",
           "same_servers", "unseen_certs"]

#: The ``server_certs`` table: one row per (server, family, certificate) seen in clear.
CERT_TABLE_COLUMNS = ["scope", "server", "family", "cert", "cert_bytes", "issuer_key", "issuer_akid", "chain",
                      "rest_bytes", "count", "first_seen", "last_seen"]
_TLS13 = frozenset({"TLSv1.3", "DTLSv1.3"})
_SHIFT = np.int64(1) << np.int64(32)


def _cat_codes(df: pd.DataFrame, col: str) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.object_]]:
    """A certificate column as codes into its categories' text (codes -1 when missing or absent)."""
    if col not in df.columns:
        return np.full(len(df), -1, dtype=np.int64), np.zeros(0, dtype=object)
    s = df[col].reset_index(drop=True)
    if not isinstance(s.dtype, pd.CategoricalDtype):
        s = s.astype("string").astype("category")
    return np.asarray(s.cat.codes, dtype=np.int64), np.asarray(s.cat.categories.astype(str), dtype=object)


def _or_none(texts: npt.NDArray[np.object_]) -> npt.NDArray[np.object_]:
    """``texts`` with a trailing None, so code -1 reads as missing."""
    return np.concatenate([np.asarray(texts, dtype=object), np.array([None], dtype=object)])


def _chain_lengths(texts: npt.NDArray[np.object_]) -> npt.NDArray[np.int64]:
    """Certificates in each distinct ``server_chain`` JSON list (-1 when it is not one): parsed once each."""
    out = np.full(len(texts), -1, dtype=np.int64)
    for i, t in enumerate(texts.tolist()):
        try:
            chain = json.loads(t)
        except (TypeError, ValueError):
            continue
        if isinstance(chain, list):
            out[i] = len(chain)
    return out


def clear_certs(df: pd.DataFrame, rows: ServerRows, ts: pd.Series,
                keep: npt.NDArray[np.bool_] | None = None) -> pd.DataFrame:
    """The ``server_certs`` rows of ``df``: its full TLS <= 1.2 handshakes that show a certificate (only the
    ``keep`` rows when given: scoring needs the servers whose flight changed, not the whole table)."""
    version = rows.values["version"]
    is13 = np.append(np.isin(version.texts.astype(str), list(_TLS13)), False)[version.codes]
    cert, cert_t = _cat_codes(df, "server_cert_sha256")
    clear = (cert >= 0) & (version.codes >= 0) & ~is13 & ~np.isnan(rows.flight)
    if keep is not None:
        clear &= keep
    if not clear.any() or "server_flight" not in df.columns:
        return pd.DataFrame({c: [] for c in CERT_TABLE_COLUMNS})
    idx = np.flatnonzero(clear)
    # the first message of each distinct flight (the Certificate message): one Python step per distinct flight
    f_codes, f_uniq = pd.factorize(df["server_flight"].reset_index(drop=True).iloc[idx], use_na_sentinel=True)
    first = np.array([int(f[0]) if isinstance(f, (tuple, list, np.ndarray)) and len(f) else -1 for f in f_uniq],
                     dtype=np.int64)
    cert_bytes = np.append(first, -1)[np.asarray(f_codes, dtype=np.int64)]
    key, key_t = _cat_codes(df, "server_issuer_key")
    akid, akid_t = _cat_codes(df, "server_issuer_akid")
    chain, chain_t = _cat_codes(df, "server_chain")
    chain_n = np.append(_chain_lengths(chain_t), -1)[chain[idx]]
    naive = pd.to_datetime(ts.reset_index(drop=True), utc=True).dt.tz_convert(None)
    stamp = np.asarray(naive.to_numpy(dtype="datetime64[ns]").astype(np.int64), dtype=np.int64)[idx]
    rest = rows.flight[idx] - cert_bytes
    fixed = [rows.family.codes[idx], cert[idx], cert_bytes, key[idx], akid[idx], chain_n]
    parts = []
    for scope, server in rows.keys.items():
        ok = (server.codes[idx] >= 0) & (fixed[0] >= 0) & (cert_bytes > 0)
        if not ok.any():
            continue
        # one group per distinct (server, family, certificate, size, issuer, AKID, chain): codes, no frame per row
        group, first = combine(server.codes[idx][ok], *(c[ok] for c in fixed))
        k = len(first)
        low_rest = np.full(k, np.inf)
        np.minimum.at(low_rest, group, rest[ok])
        seen_first = np.full(k, np.iinfo(np.int64).max, dtype=np.int64)
        np.minimum.at(seen_first, group, stamp[ok])
        seen_last = np.full(k, np.iinfo(np.int64).min, dtype=np.int64)
        np.maximum.at(seen_last, group, stamp[ok])
        at = np.flatnonzero(ok)[first]
        chain_k = fixed[5][at]
        parts.append(pd.DataFrame({
            "scope": scope, "server": _or_none(server.texts)[server.codes[idx][at]],
            "family": _or_none(rows.family.texts)[fixed[0][at]], "cert": _or_none(cert_t)[fixed[1][at]],
            "cert_bytes": cert_bytes[at], "issuer_key": _or_none(key_t)[fixed[3][at]],
            "issuer_akid": _or_none(akid_t)[fixed[4][at]],
            "chain": pd.Series(chain_k, dtype="Int64").where(pd.Series(chain_k >= 0)).array,
            "rest_bytes": pd.array(np.round(low_rest).astype(np.int64), dtype="Int64"),
            "count": np.bincount(group, minlength=k).astype(np.int64),
            "first_seen": seen_first.astype("datetime64[ns]"), "last_seen": seen_last.astype("datetime64[ns]")}))
    if not parts:
        return pd.DataFrame({c: [] for c in CERT_TABLE_COLUMNS})
    out = pd.concat(parts, ignore_index=True)
    out["first_seen"] = pd.to_datetime(out["first_seen"], utc=True)
    out["last_seen"] = pd.to_datetime(out["last_seen"], utc=True)
    return out[CERT_TABLE_COLUMNS]


def learn_server_certs(df: pd.DataFrame, ts: pd.Series) -> pd.DataFrame:
    """What :class:`~tlsdetect.detect.baseline.Baseline` folds into its ``server_certs`` table."""
    return clear_certs(df, server_rows(df), ts)


def renewal_deltas(known: pd.DataFrame, seen: pd.DataFrame) -> pd.DataFrame:
    """Each certificate of ``seen`` new for its server, from an issuer the server had in ``known``.

    One row per (new, old) certificate pair: ``scope``, ``server``, ``delta`` (TLS <= 1.2 flight bytes: the
    Certificate message's change plus the rest of the flight's, measured on the families both were seen
    with, else 0), ``dchain`` (chain length change, 0 when unknown) and ``first_seen`` of the new one."""
    cols = ["scope", "server", "delta", "dchain", "first_seen"]
    if len(known) == 0 or len(seen) == 0:
        return pd.DataFrame({c: [] for c in cols})
    ident = ["scope", "server", "cert"]
    new = seen[~pd.MultiIndex.from_frame(seen[ident].astype(object)).isin(
        pd.MultiIndex.from_frame(known[ident].astype(object)))]
    if len(new) == 0:
        return pd.DataFrame({c: [] for c in cols})
    per = ["scope", "server", "cert", "cert_bytes", "issuer_key", "issuer_akid", "chain"]
    old_c = known[per].astype(object).drop_duplicates()
    new_c = new.groupby(per, dropna=False, sort=False)["first_seen"].min().reset_index().astype(
        dict.fromkeys(per, object))
    pairs = new_c.merge(old_c, on=["scope", "server", "issuer_key"], suffixes=("", "_old"))
    # the same issuing key: an old certificate with an AKID accepts only a new one with that AKID
    same_key = pairs["issuer_akid_old"].isna() | (pairs["issuer_akid"] == pairs["issuer_akid_old"])
    pairs = pairs[same_key.fillna(False).astype(bool)].reset_index(drop=True)
    if len(pairs) == 0:
        return pd.DataFrame({c: [] for c in cols})
    # the rest of the flight (key exchange signature, stapled OCSP) compared within one hello family
    rest_new = new[["scope", "server", "cert", "family", "rest_bytes"]].astype(object)
    rest_old = known[["scope", "server", "cert", "family", "rest_bytes"]].astype(object)
    both = pairs[["scope", "server", "cert", "cert_old"]].reset_index().merge(
        rest_new, on=["scope", "server", "cert"]).merge(
        rest_old.rename(columns={"cert": "cert_old"}), on=["scope", "server", "cert_old", "family"],
        suffixes=("", "_old"))
    d_rest = (pd.to_numeric(both["rest_bytes"], errors="coerce")
              - pd.to_numeric(both["rest_bytes_old"], errors="coerce")).groupby(both["index"]).median()
    rest = d_rest.reindex(pairs.index).fillna(0).to_numpy(dtype=np.float64)
    chain = pd.to_numeric(pairs["chain"], errors="coerce") - pd.to_numeric(pairs["chain_old"], errors="coerce")
    out = pd.DataFrame({
        "scope": pairs["scope"].astype(str), "server": pairs["server"].astype(str),
        "delta": (pd.to_numeric(pairs["cert_bytes"]) - pd.to_numeric(pairs["cert_bytes_old"])).to_numpy(
            dtype=np.float64) + np.round(rest),
        "dchain": chain.fillna(0).to_numpy(dtype=np.float64),
        "first_seen": pd.to_datetime(pairs["first_seen"], utc=True)})
    return out.groupby(["scope", "server", "delta", "dchain"], sort=False)["first_seen"].min().reset_index()


def same_servers(rows: ServerRows, mask: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
    """Rows to a server (by name or by address) that one of the ``mask`` rows went to."""
    out = np.zeros(len(mask), dtype=bool)
    for key in rows.keys.values():
        hit = np.zeros(len(key.texts) + 1, dtype=bool)
        hit[key.codes[mask]] = True  # code -1 marks the trailing slot, dropped below
        hit[-1] = False
        out |= hit[key.codes]
    return out


def unseen_certs(df: pd.DataFrame, known: pd.DataFrame) -> npt.NDArray[np.bool_]:
    """Rows whose leaf certificate is none the ``known`` table holds (looked up once per distinct one): only
    they can show a renewal, so scoring aggregates them alone."""
    codes, texts = _cat_codes(df, "server_cert_sha256")
    new = ~pd.Index(texts, dtype=object).isin(pd.Index(known["cert"].astype(object).unique()))
    out: npt.NDArray[np.bool_] = (codes >= 0) & np.append(np.asarray(new, dtype=bool), False)[codes]
    return out


def explained_by_renewal(rows: ServerRows, changed: npt.NDArray[np.bool_], pid: npt.NDArray[np.int64],
                         scope: npt.NDArray[np.int8], learned_pid: npt.NDArray[np.int64],
                         learned_size: npt.NDArray[np.float64], deltas: pd.DataFrame,
                         ts: npt.NDArray[np.int64], window_ns: int, tolerance: int) -> npt.NDArray[np.bool_]:
    """Which ``changed`` rows have a flight that is a learned size of their profile plus a renewal's delta.

    ``pid``/``scope`` are each row's flight profile (scope 1: by name, 2: by address); ``learned_pid``/
    ``learned_size`` the learned (profile, size) pairs; ``ts`` nanoseconds (-1 unknown: any time will do).
    Work is per distinct (profile, size, server, version) of the changed rows, not per row."""
    out = np.zeros(len(changed), dtype=bool)
    if len(deltas) == 0 or not changed.any():
        return out
    idx = np.flatnonzero(changed & (pid >= 0) & ~np.isnan(rows.flight))
    if len(idx) == 0:
        return out
    version = rows.values["version"]
    is13 = np.append(np.isin(version.texts.astype(str), list(_TLS13)), False)[version.codes[idx]]
    server = np.full(len(idx), None, dtype=object)
    for s, name in ((1, "sni"), (2, "addr")):
        key = rows.keys[name]
        at = scope[idx] == s
        server[at] = _or_none(key.texts)[key.codes[idx[at]]]
    rowf = pd.DataFrame({"row": idx, "pid": pid[idx], "size": rows.flight[idx], "is13": is13,
                         "scope": np.where(scope[idx] == 1, "sni", "addr"), "server": server})
    distinct = rowf.drop(columns="row").drop_duplicates().reset_index(drop=True)
    pairs = distinct.reset_index().merge(deltas, on=["scope", "server"])
    if len(pairs) == 0:
        return out
    shift = pairs["delta"].to_numpy(dtype=np.float64) + np.where(
        pairs["is13"].to_numpy(dtype=bool), 2 * pairs["dchain"].to_numpy(dtype=np.float64), 0.0)
    target = np.rint(pairs["size"].to_numpy(dtype=np.float64) - shift).astype(np.int64)
    good = ~np.isnan(learned_size)
    keys = np.sort(learned_pid[good] * _SHIFT + learned_size[good].astype(np.int64))
    if len(keys) == 0:
        return out
    p = pairs["pid"].to_numpy(dtype=np.int64)
    rk = p * _SHIFT + target
    at = np.searchsorted(keys, rk)
    hi = keys[np.minimum(at, len(keys) - 1)]
    lo = keys[np.maximum(at - 1, 0)]
    near = (((np.abs(hi - rk) <= tolerance) & (hi // _SHIFT == p))
            | ((np.abs(rk - lo) <= tolerance) & (lo // _SHIFT == p)))
    hit = pairs[near]
    if len(hit) == 0:
        return out
    seen = pd.to_datetime(hit["first_seen"], utc=True).dt.tz_convert(None).to_numpy(dtype="datetime64[ns]")
    earliest = pd.Series(seen.astype(np.int64)).groupby(hit["index"].to_numpy()).min()
    first = earliest.reindex(np.arange(len(distinct)))  # NaN: no renewal fits that distinct row
    per_row = rowf.merge(distinct.assign(first=first.to_numpy()), on=["pid", "size", "is13", "scope", "server"],
                         how="left")
    f = per_row["first"].to_numpy(dtype=np.float64)
    t = ts[per_row["row"].to_numpy(dtype=np.int64)].astype(np.float64)
    ok = ~np.isnan(f) & ((t < 0) | (f <= t + window_ns))
    out[per_row["row"].to_numpy(dtype=np.int64)[ok]] = True
    return out
