"""Bound identities: what each mTLS workload identity presented in the baseline, and from where.

A workload is named by its certificate (the SPIFFE ID of its URI SAN, else its subject DN), so anyone
holding a certificate with that name inherits the workload's baseline unless the name is bound to what
stood behind it. :func:`learn_identities` learns, per identity, each certificate it presented (SHA-256,
else serial), with its serial, issuer DN (canonical key and text), issuing key (AKID) and validity, and
each source network it connected from (IPv4 /24, IPv6 /64), all with counts and first/last seen: the
``identities`` table of a baseline (:data:`~tlsdetect.detect.baseline_tables.OPTIONAL_TABLES`).
:mod:`tlsdetect.detect.identity_signals` compares scored rows with it.

Everything is computed once per distinct value (identity text, address, DN) and grouped, never per row.
"""

from __future__ import annotations

import ipaddress

import numpy as np
import pandas as pd

from tlsdetect import schema
from tlsdetect.detect.issuers import dn_key

__all__ = ["IDENTITY_COLUMNS", "cert_keys", "identity_of", "issuer_keys", "learn_identities", "networks_of"]

#: The ``identities`` table: one row per (identity, kind, value); ``kind`` is ``cert`` (value: the
#: certificate's SHA-256, else ``serial:<hex>``) or ``network`` (value: ``10.1.2.0/24``, ``2001:db8::/64``).
#: The certificate columns are null on network rows.
IDENTITY_COLUMNS = ["identity", "kind", "value", "serial", "issuer_key", "issuer", "akid", "not_before", "not_after",
                    "count", "first_seen", "last_seen"]
_SPIFFE = r"(spiffe://[^,\s]+)"


def _text(df: pd.DataFrame, col: str) -> pd.Series:
    if col in df.columns:
        return schema.as_text(df[col]).reset_index(drop=True)
    return pd.Series(pd.NA, index=range(len(df)), dtype="string")


def identity_of(df: pd.DataFrame) -> pd.Series:
    """Each row's workload identity: the first ``spiffe://`` URI SAN (``peer_uri_san``, or a ``client_id`` a
    source set to one), else the peer subject; missing on a row without a client certificate."""
    has_cert = (_text(df, "peer_subject").notna() | _text(df, "peer_cert_sha256").notna()).to_numpy()
    out = _text(df, "peer_uri_san").str.extract(_SPIFFE, expand=False).astype("string")
    cid = _text(df, "client_id")
    out = out.fillna(cid.where(cid.str.startswith("spiffe://").fillna(False).to_numpy(dtype=bool)))
    out = out.fillna(_text(df, "peer_subject"))
    return out.where(has_cert).rename("identity")


def networks_of(ips: pd.Series) -> pd.Series:
    """The source network of each address (IPv4 /24, IPv6 /64), computed once per distinct address."""
    codes, uniq = pd.factorize(ips.astype(object), use_na_sentinel=True)
    nets = np.empty(len(uniq) + 1, dtype=object)
    for i, ip in enumerate(uniq.tolist()):
        try:
            addr = ipaddress.ip_address(str(ip).split("%", 1)[0])
        except ValueError:
            nets[i] = None
            continue
        prefix = 24 if addr.version == 4 else 64
        nets[i] = str(ipaddress.ip_network(f"{addr}/{prefix}", strict=False))
    nets[-1] = None
    return pd.Series(nets[codes], index=ips.index, dtype="string")


def issuer_keys(df: pd.DataFrame) -> pd.Series:
    """The client certificate's issuer as its canonical DN key: ``peer_issuer_key`` where the table has
    it, else :func:`~tlsdetect.detect.issuers.dn_key` of ``peer_issuer`` (once per distinct DN)."""
    key = _text(df, "peer_issuer_key")
    name = _text(df, "peer_issuer")
    todo = key.isna() & name.notna()
    if todo.any():
        codes, uniq = pd.factorize(name[todo].astype(object))
        keys = np.array([dn_key(str(u)) for u in uniq], dtype=object)
        key = key.copy()
        key[todo] = keys[codes]
    return key.astype("string")


def cert_keys(df: pd.DataFrame) -> pd.Series:
    """Each row's certificate as the table keys it: its SHA-256 (lowercase), else ``serial:<hex>``."""
    sha = _text(df, "peer_cert_sha256").str.lower()
    serial = _text(df, "peer_serial").str.lower()
    return sha.fillna("serial:" + serial).astype("string")


def learn_identities(df: pd.DataFrame, ts: pd.Series) -> pd.DataFrame:
    """The ``identities`` rows of ``df`` (``ts``: its times): per identity, each certificate and network seen."""
    ident = identity_of(df)
    has = ident.notna().to_numpy()
    if not has.any():
        return pd.DataFrame({c: pd.Series(dtype="object") for c in IDENTITY_COLUMNS})
    sub = df.reset_index(drop=True)[has].reset_index(drop=True)
    when = pd.Series(pd.to_datetime(ts, utc=True).to_numpy()[has], dtype="datetime64[ns, UTC]")
    base = pd.DataFrame({"identity": ident[has].reset_index(drop=True), "ts": when})

    def times(col: str) -> pd.Series:
        if col in sub.columns:
            return pd.Series(pd.to_datetime(sub[col], utc=True).to_numpy(), dtype="datetime64[ns, UTC]")
        return pd.Series(pd.NaT, index=sub.index, dtype="datetime64[ns, UTC]")

    certs = base.assign(kind="cert", value=cert_keys(sub), serial=_text(sub, "peer_serial").str.lower(),
                        issuer_key=issuer_keys(sub), issuer=_text(sub, "peer_issuer"),
                        akid=_text(sub, "peer_issuer_akid").str.lower(), not_before=times("peer_not_before"),
                        not_after=times("peer_not_after"))
    nets = base.assign(kind="network", value=networks_of(_text(sub, "client_ip")))
    parts = []
    for whole, extra in ((certs, ["serial", "issuer_key", "issuer", "akid", "not_before", "not_after"]),
                         (nets, [])):
        frame = whole[whole["value"].notna().to_numpy()]
        if len(frame) == 0:
            continue
        g = frame.groupby(["identity", "kind", "value"], sort=True, observed=True)
        agg = g.size().rename("count").to_frame()
        for c in extra:
            agg[c] = g[c].first()  # the first non-missing: one certificate has one serial, issuer and validity
        agg["first_seen"] = g["ts"].min()
        agg["last_seen"] = g["ts"].max()
        parts.append(agg.reset_index())
    out = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=IDENTITY_COLUMNS)
    return out.reindex(columns=IDENTITY_COLUMNS)
