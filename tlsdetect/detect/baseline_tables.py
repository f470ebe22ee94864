"""The tables a :class:`~tlsdetect.detect.baseline.Baseline` learns: their columns and dtypes, and how
new aggregates fold into old ones. Saving validates against these too (:mod:`tlsdetect.detect.baseline_dir`)."""

from __future__ import annotations

from typing import Any

import pandas as pd

__all__ = ["OPTIONAL_KEYS", "OPTIONAL_TABLES", "TABLES", "TABLE_KEYS", "empty_table", "merge_table", "typed_table"]

# --- the tables a baseline keeps: name -> column dtypes (validated on load) -----------------------
_TIME = "datetime64[ns, UTC]"
TABLES: dict[str, dict[str, str]] = {
    "clients": {"client_id": "string", "connections": "int64", "first_seen": _TIME, "last_seen": _TIME},
    "fingerprints": {"client_id": "string", "kind": "string", "value": "string", "count": "int64",
                     "first_seen": _TIME, "last_seen": _TIME},
    "fp_families": {"kind": "string", "value": "string", "ua_family": "string", "count": "int64"},
    "issuers": {"client_id": "string", "role": "string", "issuer_key": "string", "issuer": "string",
                "count": "int64", "first_seen": _TIME, "last_seen": _TIME},
    "issuer_akids": {"role": "string", "issuer_key": "string", "akid": "string", "count": "int64"},
    "snis": {"client_id": "string", "sni": "string", "count": "int64", "first_seen": _TIME, "last_seen": _TIME},
    "sni_issuers": {"sni": "string", "issuer_key": "string", "issuer": "string", "count": "int64"},
    "versions": {"client_id": "string", "max_version": "string", "count": "int64"},
    "mesh_cas": {"role": "string", "issuer_key": "string", "issuer": "string", "ski": "string",
                 "sha256": "string", "origin": "string", "connections": "int64"},
}

#: Tables a baseline directory may lack (written by a tlsdetect before them: they load empty) -> their key.
#: ``server_values``: per server (by name and by address) and client hello family, each version, cipher,
#: JA3S, first-flight size and resumption seen (:mod:`tlsdetect.detect.server_profiles`). Kept apart from
#: :data:`TABLES` because they are learned per chunk by their own modules (``tlsdetect.spark`` runs the same
#: learners per partition and folds them here, as ``partial_fit`` does).
OPTIONAL_TABLES: dict[str, dict[str, str]] = {
    "server_values": {"scope": "string", "server": "string", "family": "string", "kind": "string", "value": "string",
                      "count": "int64", "first_seen": _TIME, "last_seen": _TIME},
    # ``server_certs``: per server and family, each certificate seen in clear (TLS <= 1.2) with its Certificate
    # message size, chain length, issuer and the rest of the flight (:mod:`tlsdetect.detect.renewals`)
    "server_certs": {"scope": "string", "server": "string", "family": "string", "cert": "string",
                     "cert_bytes": "int64", "issuer_key": "string", "issuer_akid": "string", "chain": "Int64",
                     "rest_bytes": "Int64", "count": "int64", "first_seen": _TIME, "last_seen": _TIME},
    # ``ja4_stacks``: per client, each fingerprint's source (``fingerprint_origin``) with its normalised JA4_ab
    # and JA4_c (:mod:`tlsdetect.detect.ja4_parts`): which source saw it, and whether its JA4_c varies
    "ja4_stacks": {"client_id": "string", "origin": "string", "ja4_ab": "string", "ja4_c": "string",
                   "count": "int64", "first_seen": _TIME, "last_seen": _TIME},
    # ``identities``: per mTLS workload identity (SPIFFE ID, else subject), each certificate (with its serial,
    # issuer, issuing key and validity) and source network it presented (:mod:`tlsdetect.detect.identities`)
    "identities": {"identity": "string", "kind": "string", "value": "string", "serial": "string",
                   "issuer_key": "string", "issuer": "string", "akid": "string", "not_before": _TIME,
                   "not_after": _TIME, "count": "int64", "first_seen": _TIME, "last_seen": _TIME},
    # ``transports``: per client and server (name, else address), each transport it was reached over (tcp, quic,
    # dtls) with its connections (:mod:`tlsdetect.detect.transports`): a client that used QUIC and now only TCP
    "transports": {"client_id": "string", "server": "string", "transport": "string", "count": "int64",
                   "first_seen": _TIME, "last_seen": _TIME},
    # ``quic_params``: per client, each QUIC transport-parameter fingerprint with its normal form; and
    # ``quic_param_families`` the same per User-Agent family (:mod:`tlsdetect.detect.quic_tp_fingerprint`)
    "quic_params": {"client_id": "string", "fingerprint": "string", "params": "string", "count": "int64",
                    "first_seen": _TIME, "last_seen": _TIME},
    "quic_param_families": {"ua_family": "string", "fingerprint": "string", "params": "string", "count": "int64"},
}
OPTIONAL_KEYS: dict[str, list[str]] = {
    "identities": ["identity", "kind", "value"],
    "ja4_stacks": ["client_id", "origin", "ja4_ab", "ja4_c"],
    "server_values": ["scope", "server", "family", "kind", "value"],
    "server_certs": ["scope", "server", "family", "cert", "cert_bytes", "issuer_key", "issuer_akid", "chain"],
    "transports": ["client_id", "server", "transport"],
    "quic_params": ["client_id", "fingerprint"],
    "quic_param_families": ["ua_family", "fingerprint"],
}
_SCHEMAS = {**TABLES, **OPTIONAL_TABLES}

#: The key of each table learned from connections (``mesh_cas`` is derived from ``issuers``).
TABLE_KEYS: dict[str, list[str]] = {
    "clients": ["client_id"], "fingerprints": ["client_id", "kind", "value"],
    "fp_families": ["kind", "value", "ua_family"], "issuers": ["client_id", "role", "issuer_key"],
    "issuer_akids": ["role", "issuer_key", "akid"], "snis": ["client_id", "sni"], "sni_issuers": ["sni", "issuer_key"],
    "versions": ["client_id", "max_version"],
}


def empty_table(name: str) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in _SCHEMAS[name].items()})


def typed_table(name: str, df: pd.DataFrame) -> pd.DataFrame:
    cols = _SCHEMAS[name]
    out = df[list(cols)].copy()
    for c, t in cols.items():
        if str(out[c].dtype) != t:
            out[c] = out[c].astype(t)  # type: ignore[call-overload]
    return out.reset_index(drop=True)


def merge_table(name: str, old: pd.DataFrame, new: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Fold ``new`` aggregates into ``old``: counts add, first/last seen widen, ``rest_bytes`` takes the least."""
    both = pd.concat([old, new], ignore_index=True) if len(old) else new
    if len(both) == 0:
        return empty_table(name)
    agg: dict[str, Any] = {}
    for c in _SCHEMAS[name]:
        if c in keys:
            continue
        if c in ("count", "connections"):
            agg[c] = "sum"
        elif c == "first_seen":
            agg[c] = "min"
        elif c == "last_seen":
            agg[c] = "max"
        elif c == "rest_bytes":  # the learner keeps each certificate's smallest rest of flight: so does a fold
            agg[c] = "min"
        else:
            agg[c] = "first"
    out = both.groupby(keys, sort=True, dropna=False, observed=True).agg(agg).reset_index()
    return typed_table(name, out)
