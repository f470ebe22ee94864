"""Bound-identity signals: a known mTLS workload identity with a certificate, issuing key or network it never had.

The baseline's ``identities`` table (:mod:`tlsdetect.detect.identities`) says, per identity (SPIFFE ID, else
subject), which certificates it presented, signed by which key (AKID) under which issuer DN, valid when,
and from which networks. A look-alike CA (the mesh CA's exact DN, another key) issuing a certificate with
a real workload's name is caught here without a user-given mesh CA (``--mesh-ca``; with one,
``mesh_ca_lookalike`` fires too):

* ``issuer_key_mismatch``: the row's certificate names an issuer DN the identity always had, signed by a
  key (AKID) the identity never had under it; 90 when no identity of the baseline had that key under that
  DN (the look-alike), 45 when another identity did (a second intermediate of the same name). Needs the
  issuing key: ``%DOWNSTREAM_PEER_CERT%`` in an Envoy log, or a certificate in clear in a capture.
* ``client_cert_changed``: a certificate (SHA-256, else serial) the identity never presented. Weighted by
  how stable its certificate was: ``60 x share of its connections on its most used certificate x
  min(1, connections / 5)``, so a workload that used one certificate over many connections weighs 60 and one
  that rotates short-lived certificates (SPIFFE SVIDs) weighs little. Renewal timing: a new certificate
  presented when the identity's latest certificate is in the last third of its validity (``renew_share``),
  within ``renew_days`` of its end, or expired, is

  - a **renewal**, not flagged, when signed by an issuing key the identity had;
  - a **possible renewal**, flagged weakly (at most 10), when the issuing key is not logged (only
    ``%DOWNSTREAM_PEER_FINGERPRINT_256%``) and the identity connects from a network it used; so too when
    the log gives no validity at all (no ``%DOWNSTREAM_PEER_CERT_V_END%``, no PEM): then only the network
    separates a look-alike from a renewal, and a look-alike from the workload's own network is flagged weakly;
  - otherwise flagged at the full weight (another issuing key; or a network it never used with the key
    not logged: a renewal does not move the workload). The same issuing key earlier than that is an
    early re-issue at half the weight. The detail says which.
* ``identity_new_network`` (supporting, 15): the identity from a source network (IPv4 /24, IPv6 /64) it
  never used; counts only beside other evidence.

Vectorised over the distinct (identity, certificate, serial, issuer, key, network) combinations of the
rows that carry a client certificate; only the renewal timing compares per-row times, in numpy.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from tlsdetect.detect.baseline import Baseline
from tlsdetect.detect.columns import combination_codes
from tlsdetect.detect.evidence import Evidence
from tlsdetect.detect.identities import (
    cert_codes,
    identity_codes,
    issuer_key_codes,
    lower_codes,
    network_codes,
    with_missing,
)

__all__ = ["RENEW_DAYS", "RENEW_SHARE", "identity_signals"]

#: A new certificate is on renewal time in the last third of the old one's validity ...
RENEW_SHARE = 1.0 / 3.0
#: ... or within this many days of its end (whichever comes first), or after it.
RENEW_DAYS = 7.0
_FULL = 60.0  # client_cert_changed for a workload with one certificate over >= _STEADY connections
_STEADY = 5.0
_POSSIBLE = 10.0  # a possible renewal whose issuing key is not logged
_KEYS = ["identity", "cert", "serial", "issuer_key", "akid", "network"]


def _in(frame: pd.DataFrame, table: pd.DataFrame, cols: list[str]) -> npt.NDArray[np.bool_]:
    """Whether each row of ``frame`` has its ``cols`` values as a row of ``table`` (missing never matches).

    One factorization per column over both sides, one int64 key per row and a hashed ``isin``: a pandas
    merge per call cost 60 ms on 20,000 combinations, this about a tenth of that."""
    if len(table) == 0 or len(frame) == 0:
        return np.zeros(len(frame), dtype=bool)
    known = table[cols].dropna()
    if len(known) == 0:
        return np.zeros(len(frame), dtype=bool)
    nf = len(frame)
    codes: list[npt.NDArray[np.int64]] = []
    sizes: list[int] = []
    for col in cols:
        both = np.concatenate([frame[col].to_numpy(dtype=object), known[col].to_numpy(dtype=object)])
        c, uniq = pd.factorize(pd.Series(both, dtype=object), use_na_sentinel=True)
        codes.append(np.asarray(c, dtype=np.int64))
        sizes.append(len(uniq) + 1)
    combo, _ = combination_codes(codes, sizes)
    present = np.all(np.stack([c[:nf] >= 0 for c in codes]), axis=0)
    hit: npt.NDArray[np.bool_] = present & np.isin(combo[:nf], combo[nf:])
    return hit


def _profiles(table: pd.DataFrame) -> pd.DataFrame:
    """Per identity with certificates: connections, distinct certificates, most-used share and certificate,
    and the latest certificate's validity (the one a renewal replaces)."""
    certs = table[table["kind"] == "cert"]
    g = certs.groupby("identity", observed=True)
    top = certs.sort_values("count", ascending=False, kind="stable").groupby("identity", observed=True).head(1)
    latest = certs.sort_values(["not_after", "last_seen"], ascending=False, na_position="last", kind="stable")
    latest = latest.groupby("identity", observed=True).head(1)
    out = pd.DataFrame({"connections": g["count"].sum(), "certs": g.size()})
    out["top_share"] = top.set_index("identity")["count"] / out["connections"]
    out["top_cert"] = top.set_index("identity")["value"]
    for c in ("not_before", "not_after", "serial"):
        out[f"old_{c}"] = latest.set_index("identity")[c]
    keys = certs.dropna(subset=["akid"])[["identity", "akid"]].drop_duplicates().sort_values(["identity", "akid"])
    out["old_keys"] = keys.groupby("identity", observed=True)["akid"].agg(", ".join)
    return out.reset_index()


def identity_signals(df: pd.DataFrame, baseline: Baseline, ev: Evidence, *, renew_share: float = RENEW_SHARE,
                     renew_days: float = RENEW_DAYS) -> None:
    """Add ``issuer_key_mismatch``, ``client_cert_changed`` and ``identity_new_network`` (module docstring)."""
    table = getattr(baseline, "identities_", None)
    n = len(df)
    if table is None or len(table) == 0 or n == 0:
        return
    id_coded = identity_codes(df)
    known = np.append(pd.Index(id_coded[1]).isin(table["identity"].unique()), False)
    rows = np.flatnonzero(known[id_coded[0]])
    if len(rows) == 0:
        return
    sub = df.iloc[rows].reset_index(drop=True)  # only rows of a known identity are coded further
    coded = [(id_coded[0][rows], id_coded[1]), cert_codes(sub), lower_codes(sub, "peer_serial"),
             issuer_key_codes(sub), lower_codes(sub, "peer_issuer_akid"), network_codes(sub)]
    code, first = combination_codes([c for c, _ in coded], [len(v) + 1 for _, v in coded])
    # one row per distinct combination, in code order
    u = pd.DataFrame({k: with_missing(v)[c[first]] for k, (c, v) in zip(_KEYS, coded, strict=True)})

    all_certs = table[table["kind"] == "cert"]
    table = table[table["identity"].isin(u["identity"].unique()).to_numpy()]  # only the identities scored here
    certs = table[table["kind"] == "cert"].rename(columns={"value": "cert"})
    nets = table[table["kind"] == "network"].rename(columns={"value": "network"})
    prof = _profiles(table)
    u = u.merge(prof, on="identity", how="left")
    has_certs = u["certs"].notna().to_numpy()
    sha_missing = u["cert"].astype("string").str.startswith("serial:").fillna(True).to_numpy(dtype=bool)
    seen = _in(u, certs, ["identity", "cert"]) | (sha_missing & _in(u, certs, ["identity", "serial"]))
    new_cert = has_certs & u["cert"].notna().to_numpy() & ~seen
    key_known = _in(u, certs, ["identity", "akid"])
    key_other = u["akid"].notna().to_numpy() & u["old_keys"].notna().to_numpy() & ~key_known
    net_seen = _in(u, nets, ["identity", "network"])
    net_new = u["network"].notna().to_numpy() & _in(u, nets, ["identity"]) & ~net_seen
    dn_had_key = _in(u, certs.dropna(subset=["akid"]), ["identity", "issuer_key"])
    mismatch = dn_had_key & u["akid"].notna().to_numpy() & ~_in(u, certs, ["identity", "issuer_key", "akid"])
    anywhere = _in(u, all_certs, ["issuer_key", "akid"])  # the key under that DN for any identity at all
    stable = (u["top_share"].fillna(0).to_numpy(dtype=float)
              * np.minimum(1.0, u["connections"].fillna(0).to_numpy(dtype=float) / _STEADY))
    base = _FULL * stable

    # renewal timing per row: the row's time against its identity's latest certificate
    at = rows
    c = code
    ts = pd.to_datetime(df["ts"], utc=True).iloc[at].to_numpy(dtype="datetime64[ns]").view(np.int64) \
        if "ts" in df.columns else np.full(len(at), np.iinfo(np.int64).min)
    nb = _ns(u["old_not_before"])[c]
    na = _ns(u["old_not_after"])[c]
    nat = np.iinfo(np.int64).min
    valid_t = ts != nat
    day = 86_400 * 10**9
    share_start = np.where(nb != nat, na - (renew_share * (na - nb)).astype(np.int64), na)
    renewal_time = valid_t & (na != nat) & ((ts >= share_start) | (ts >= na - int(renew_days * day)))

    new_r, known_r, other_r, netnew_r = new_cert[c], key_known[c], key_other[c], net_new[c]
    renewal = new_r & known_r & renewal_time
    early = new_r & known_r & ~renewal_time
    unknown_time = na == nat  # the log never gave the old certificate's validity (no V_END, no PEM)
    possible = new_r & ~known_r & ~other_r & (renewal_time | unknown_time) & ~netnew_r
    full = new_r & ~renewal & ~early & ~possible
    weight = np.select([early, possible, full], [base[c] * 0.5, np.minimum(base[c], _POSSIBLE), base[c]], 0.0)
    why = np.select([early, possible & unknown_time, possible, full & other_r, full & renewal_time & netnew_r, full],
                    [0, 5, 1, 2, 3, 4], -1)

    pos = np.full(n, -1, dtype=np.int64)  # df row -> position among the rows with a known identity
    pos[at] = np.arange(len(at))

    def rows_mask(per: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
        out = np.zeros(n, dtype=bool)
        out[at[per]] = True
        return out

    def by_combo(values: npt.NDArray[Any]) -> Any:
        """Evidence taken per distinct combination, built only for the fired rows."""
        return lambda idx: values[c[pos[idx]]]

    def weights(per: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        out = np.zeros(n)
        out[at] = per
        return out

    ident_t, cert_t = u["identity"].to_numpy(dtype=object), u["cert"].to_numpy(dtype=object)
    ends = pd.to_datetime(u["old_not_after"], utc=True).dt.strftime("%Y-%m-%d %H:%M UTC").fillna("an unknown date")
    # one text per distinct combination (a Python step per combination, not per row)
    changed = np.array([
        f"the identity {i} presented certificate {ct}, never seen for it (it used {int(nc or 0)} certificate(s) "
        f"over {int(cn or 0)} connections, {float(sh or 0):.0%} of them on one; its latest ends {e})"
        for i, ct, nc, cn, sh, e in zip(ident_t, cert_t, u["certs"].tolist(), u["connections"].tolist(),
                                        u["top_share"].tolist(), ends.tolist(), strict=True)], dtype=object)
    why_text = np.array([
        "; signed by a key it had, but before the old certificate's last third of validity: an early re-issue, "
        "flagged at half weight",
        "; possibly a renewal (the old certificate is near its end) but the issuing key is not logged: flagged weakly",
        "; signed by another issuing key than its certificates had: not a renewal",
        "; near the old certificate's end, but from a network it never used and with the issuing key not logged: "
        "not excused as a renewal",
        "; not near the old certificate's end: not a renewal",
        "; neither validity nor issuing key is logged (only the fingerprint), from a network it used: possibly a "
        "renewal, flagged weakly", ""], dtype=object)
    ev.add("client_cert_changed", rows_mask(early | possible | full),
           lambda idx: changed[c[pos[idx]]] + why_text[why[pos[idx]]],
           expected=by_combo(u["top_cert"].to_numpy(dtype=object)), observed=by_combo(cert_t), weight=weights(weight))

    akid_t, keys_t, iss_t = (u[k].to_numpy(dtype=object) for k in ("akid", "old_keys", "issuer_key"))
    mis_text = np.array([
        f"the identity {i} presented a certificate naming its usual issuer {iss} but signed by key {ak}, "
        + ("a key another workload's certificates had under that name" if other else
           "never seen under that name: a look-alike CA")
        for i, iss, ak, other in zip(ident_t, iss_t, akid_t, anywhere.tolist(), strict=True)], dtype=object)
    ev.add("issuer_key_mismatch", rows_mask(mismatch[c]), by_combo(mis_text), expected=by_combo(keys_t),
           observed=by_combo(akid_t), weight=weights(np.where(anywhere[c], 45.0, 90.0)))

    net_t = u["network"].to_numpy(dtype=object)
    top3 = nets.sort_values("count", ascending=False, kind="stable").groupby("identity", observed=True).head(3)
    usual = top3.groupby("identity", observed=True, sort=False)["network"].agg(", ".join)
    net_text = np.array([f"the identity {i} connected from {nt}, a network it never used"
                         for i, nt in zip(ident_t, net_t, strict=True)], dtype=object)
    ev.add("identity_new_network", rows_mask(netnew_r), by_combo(net_text),
           expected=by_combo(usual.reindex(u["identity"]).to_numpy(dtype=object)), observed=by_combo(net_t))


def _ns(s: pd.Series) -> npt.NDArray[np.int64]:
    """Times as int64 nanoseconds (NaT: int64 min)."""
    t = pd.to_datetime(s, utc=True).dt.tz_convert(None)
    return np.asarray(t.to_numpy(dtype="datetime64[ns]").view(np.int64))
