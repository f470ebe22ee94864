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
import re
from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import pandas as pd

from tlsdetect import schema
from tlsdetect.detect.issuers import dn_key

__all__ = ["IDENTITY_COLUMNS", "Coded", "cert_codes", "cert_keys", "identity_codes", "identity_of", "issuer_key_codes",
           "issuer_keys", "learn_identities", "lower_codes", "network_codes", "networks_of", "with_missing"]

#: The ``identities`` table: one row per (identity, kind, value); ``kind`` is ``cert`` (value: the
#: certificate's SHA-256, else ``serial:<hex>``) or ``network`` (value: ``10.1.2.0/24``, ``2001:db8::/64``).
#: The certificate columns are null on network rows.
IDENTITY_COLUMNS = ["identity", "kind", "value", "serial", "issuer_key", "issuer", "akid", "not_before", "not_after",
                    "count", "first_seen", "last_seen"]
_SPIFFE = r"(spiffe://[^,\s]+)"


Coded = tuple[npt.NDArray[np.int64], npt.NDArray[np.object_]]


def _text(df: pd.DataFrame, col: str) -> pd.Series:
    if col in df.columns:
        return schema.as_text(df[col]).reset_index(drop=True)
    return pd.Series(pd.NA, index=range(len(df)), dtype="string")


def _coded(df: pd.DataFrame, col: str) -> Coded:
    """A column as (codes, distinct values): a categorical's own codes, else one hash pass; -1 = missing."""
    if col not in df.columns:
        return np.full(len(df), -1, dtype=np.int64), np.zeros(0, dtype=object)
    s = df[col]
    if isinstance(s.dtype, pd.CategoricalDtype):
        return np.asarray(s.cat.codes, dtype=np.int64), np.asarray(s.cat.categories.astype(str), dtype=object)
    codes, uniq = pd.factorize(s.reset_index(drop=True), use_na_sentinel=True)  # Arrow strings hash in C
    return np.asarray(codes, dtype=np.int64), np.asarray(uniq, dtype=object)


def _mapped(coded: Coded, fn: Callable[[str], str | None]) -> Coded:
    """``fn`` applied once per distinct value (None: missing), the codes renumbered to the distinct results."""
    codes, values = coded
    out = [fn(str(v)) for v in values.tolist()]
    new, uniq = pd.factorize(pd.Series(out, dtype=object), use_na_sentinel=True)
    remap = np.append(np.asarray(new, dtype=np.int64), -1)
    return remap[codes], np.asarray(uniq, dtype=object)


def _first(*coded: Coded) -> Coded:
    """Per row the first present of several coded columns, as codes into their merged distinct values."""
    vocab = np.concatenate([v for _, v in coded]) if coded else np.zeros(0, dtype=object)
    canon, uniq = pd.factorize(pd.Series(vocab, dtype=object), use_na_sentinel=True)
    canon = np.asarray(canon, dtype=np.int64)
    out = np.full(len(coded[0][0]), -1, dtype=np.int64)
    offset = 0
    for codes, values in coded:
        take = (out < 0) & (codes >= 0)
        out[take] = canon[offset + codes[take]]
        offset += len(values)
    return out, np.asarray(uniq, dtype=object)


def with_missing(values: npt.NDArray[np.object_]) -> npt.NDArray[np.object_]:
    """``values`` with a trailing None, so code -1 reads as missing."""
    return np.concatenate([values, np.array([None], dtype=object)])


def _spiffe(text: str) -> str | None:
    found = re.search(_SPIFFE, text)
    return found.group(1) if found else None


def identity_codes(df: pd.DataFrame) -> Coded:
    """Each row's workload identity as codes (see :func:`identity_of`), computed per distinct value."""
    subject = _coded(df, "peer_subject")
    has_cert = (subject[0] >= 0) | (_coded(df, "peer_cert_sha256")[0] >= 0)
    uri = _mapped(_coded(df, "peer_uri_san"), _spiffe)
    cid = _mapped(_coded(df, "client_id"), lambda v: v if v.startswith("spiffe://") else None)
    codes, values = _first(uri, cid, subject)
    return np.where(has_cert, codes, -1), values


def identity_of(df: pd.DataFrame) -> pd.Series:
    """Each row's workload identity: the first ``spiffe://`` URI SAN (``peer_uri_san``, or a ``client_id`` a
    source set to one), else the peer subject; missing on a row without a client certificate."""
    codes, values = identity_codes(df)
    return pd.Series(with_missing(values)[codes], dtype="string", name="identity")


def _network(ip: str) -> str | None:
    try:
        addr = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return None
    return str(ipaddress.ip_network(f"{addr}/{24 if addr.version == 4 else 64}", strict=False))


#: A dotted IPv4 address as :mod:`ipaddress` accepts it (no leading zeros), its first three octets captured
#: (RE2 syntax, for Arrow's vectorised matcher).
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4 = rf"^(?P<prefix>(?:{_OCTET}\.){{3}}){_OCTET}$"


def _networks(values: npt.NDArray[np.object_]) -> npt.NDArray[np.object_]:
    """:func:`_network` of each distinct address: IPv4 by one vectorised RE2 match in Arrow (the common case,
    20k distinct addresses in ~20 ms instead of 1.4 s through :mod:`ipaddress`), anything else through
    :mod:`ipaddress`."""
    import pyarrow as pa
    import pyarrow.compute as pc

    text = pa.array([v if isinstance(v, str) else None for v in values.tolist()], type=pa.string())
    prefix = pc.struct_field(pc.extract_regex(text, pattern=_IPV4), [0])
    nets = pc.binary_join_element_wise(prefix, "0/24", "")
    out: npt.NDArray[np.object_] = np.array(nets.to_numpy(zero_copy_only=False), dtype=np.object_)
    for i in np.flatnonzero(pc.is_null(prefix).to_numpy(zero_copy_only=False)):
        out[i] = _network(str(values[i])) if isinstance(values[i], str) else None
    return out


def network_codes(df: pd.DataFrame) -> Coded:
    """The source network of each row (IPv4 /24, IPv6 /64) as codes, computed once per distinct address."""
    codes, values = _coded(df, "client_ip")
    nets = _networks(values)
    new, uniq = pd.factorize(pd.Series(nets, dtype=object), use_na_sentinel=True)
    return np.append(np.asarray(new, dtype=np.int64), -1)[codes], np.asarray(uniq, dtype=object)


def networks_of(ips: pd.Series) -> pd.Series:
    """The source network of each address (IPv4 /24, IPv6 /64), computed once per distinct address."""
    codes, values = network_codes(pd.DataFrame({"client_ip": ips.reset_index(drop=True)}))
    return pd.Series(with_missing(values)[codes], index=ips.index, dtype="string")


def issuer_key_codes(df: pd.DataFrame) -> Coded:
    """The client certificate's issuer as its canonical DN key: ``peer_issuer_key`` where the table has it,
    else :func:`~tlsdetect.detect.issuers.dn_key` of ``peer_issuer`` (once per distinct DN)."""
    return _first(_coded(df, "peer_issuer_key"), _mapped(_coded(df, "peer_issuer"), dn_key))


def issuer_keys(df: pd.DataFrame) -> pd.Series:
    """:func:`issuer_key_codes` as text per row."""
    codes, values = issuer_key_codes(df)
    return pd.Series(with_missing(values)[codes], dtype="string")


def cert_codes(df: pd.DataFrame) -> Coded:
    """Each row's certificate as the table keys it: its SHA-256 (lowercase), else ``serial:<hex>``."""
    return _first(_mapped(_coded(df, "peer_cert_sha256"), str.lower),
                  _mapped(_coded(df, "peer_serial"), lambda v: "serial:" + v.lower()))


def cert_keys(df: pd.DataFrame) -> pd.Series:
    """:func:`cert_codes` as text per row."""
    codes, values = cert_codes(df)
    return pd.Series(with_missing(values)[codes], dtype="string")


def lower_codes(df: pd.DataFrame, col: str) -> Coded:
    """A hex column (serial, AKID) lowercased, as codes."""
    return _mapped(_coded(df, col), str.lower)


def _utc(values: pd.Series) -> pd.Series:
    """Times as ``datetime64[ns, UTC]`` on a fresh index (never through an object array of Timestamps: 1M rows
    of those cost 1.8 s)."""
    t = pd.to_datetime(values.reset_index(drop=True), utc=True)
    return t.astype("datetime64[ns, UTC]")


def learn_identities(df: pd.DataFrame, ts: pd.Series) -> pd.DataFrame:
    """The ``identities`` rows of ``df`` (``ts``: its times): per identity, each certificate and network seen."""
    ident = identity_of(df)
    has = ident.notna().to_numpy()
    if not has.any():
        return pd.DataFrame({c: pd.Series(dtype="object") for c in IDENTITY_COLUMNS})
    sub = df.reset_index(drop=True)[has].reset_index(drop=True)
    when = _utc(ts)[has].reset_index(drop=True)
    base = pd.DataFrame({"identity": ident[has].reset_index(drop=True), "ts": when})

    def times(col: str) -> pd.Series:
        if col in sub.columns:
            return _utc(sub[col])
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
