"""The certificate chains a connections table shows, as pin facts: each distinct chain parsed once.

A row's chain is its ``server_chain`` JSON (leaf first, each certificate with its ``spki``); a source
that logs only the leaf (Envoy's ``%UPSTREAM_PEER_CERT%``) gives a one-certificate chain marked
``partial``: a leaf pin can be checked against it, a CA pin cannot. A row with neither shows no
chain, and :func:`hidden_reason` says why (TLS 1.3 encrypts the Certificate; a resumed session sends
none; a cut capture; a log that does not carry certificates): never read as clean.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from tlsdetect.detect.columns import Unique, combination_codes, raw_column, text_column

__all__ = ["Chain", "ChainFacts", "chain_facts", "hidden_reason", "host_names"]


@dataclass(frozen=True, slots=True)
class Chain:
    """One observed chain: per certificate (leaf first) its SPKI pin, SHA-256, subject and issuer."""

    spkis: tuple[str | None, ...]
    sha256s: tuple[str | None, ...]
    subjects: tuple[str | None, ...]
    issuers: tuple[str | None, ...]
    partial: bool  # only the leaf is known (a log without the chain)

    @property
    def leaf_issuer(self) -> str | None:
        return self.issuers[0] if self.issuers else None

    def describe(self) -> str:
        """The chain's pins for a report: ``leaf:PIN ca:PIN ...`` (``?`` where a certificate has none)."""
        return " ".join(f"{'leaf' if i == 0 else 'ca'}:{s or '?'}" for i, s in enumerate(self.spkis))


@dataclass(frozen=True)
class ChainFacts:
    """``codes[i]`` is row i's chain in ``chains`` (-1: no chain visible)."""

    codes: npt.NDArray[np.int64]
    chains: list[Chain]


def _from_json(text: str) -> Chain | None:
    try:
        doc = json.loads(text)
    except ValueError:
        return None
    if not isinstance(doc, list) or not doc or not all(isinstance(c, dict) for c in doc):
        return None

    def field(key: str) -> tuple[str | None, ...]:
        return tuple(str(c[key]) if c.get(key) is not None else None for c in doc)

    return Chain(field("spki"), tuple(s.lower() if s else None for s in field("sha256")), field("subject"),
                 field("issuer"), partial=False)


def chain_facts(df: pd.DataFrame) -> ChainFacts:
    """Each row's chain, parsed once per distinct (chain JSON, leaf SPKI, leaf SHA-256, subject, issuer)."""
    cols = ["server_chain", "server_spki_sha256", "server_cert_sha256", "server_subject", "server_issuer"]
    uniq = [Unique(raw_column(df, c)) for c in cols]
    if len(df) == 0:
        return ChainFacts(np.zeros(0, dtype=np.int64), [])
    combo, first = combination_codes([u.codes for u in uniq], [len(u.values) + 1 for u in uniq])
    texts = [u.rows(u.values.to_numpy(dtype=object))[first] for u in uniq]  # each combination's values
    chains: list[Chain] = []
    index = np.full(len(first) + 1, -1, dtype=np.int64)
    for j in range(len(first)):
        doc, spki, sha, subject, issuer = (t[j] for t in texts)
        chain = _from_json(str(doc)) if not pd.isna(doc) else None
        if chain is None and not pd.isna(spki):
            chain = Chain((str(spki),), (str(sha).lower() if not pd.isna(sha) else None,),
                          (None if pd.isna(subject) else str(subject),),
                          (None if pd.isna(issuer) else str(issuer),), partial=True)
        if chain is not None:
            index[j] = len(chains)
            chains.append(chain)
    return ChainFacts(index[combo], chains)


def hidden_reason(df: pd.DataFrame) -> npt.NDArray[np.object_]:
    """Why a row shows no chain: ``resumed``, ``tls13_encrypted``, ``truncated``, ``incomplete`` or
    ``not_in_source`` (a log that carries no certificates); first cause wins, in that order."""
    n = len(df)
    resumed = raw_column(df, "resumed").astype("boolean").fillna(False).to_numpy(dtype=bool)
    tls13 = (text_column(df, "tls_version") == "TLSv1.3").fillna(False).to_numpy(dtype=bool)
    cut = text_column(df, "truncated").str.contains("server_chain", regex=False).fillna(False).to_numpy(dtype=bool)
    incomplete = text_column(df, "incomplete").notna().to_numpy(dtype=bool)
    out = np.full(n, "not_in_source", dtype=object)
    for mask, name in ((incomplete, "incomplete"), (cut, "truncated"), (tls13, "tls13_encrypted"),
                       (resumed, "resumed")):
        out[mask] = name  # later assignments win: resumed first
    return out


def host_names(df: pd.DataFrame) -> pd.Series:
    """The server name each row was for: SNI, lowercase, no trailing dot (missing without one)."""
    sni = text_column(df, "sni")
    return sni.str.strip().str.rstrip(".").str.lower().astype(object).where(sni.notna(), None)
