"""The certificates one run has seen, by SHA-256: a log that gives only a fingerprint gets the SPKI pin.

Envoy's ``%UPSTREAM_PEER_FINGERPRINT_256%`` without ``%UPSTREAM_PEER_CERT%``, or Zeek's x509 hashes,
name a certificate without its bytes; a capture, a Suricata ``tls.chain`` or an Envoy PEM field
read in the same run may have shown that very certificate. The store learns every certificate's
SHA-256 -> SPKI pin from the chains and leaf columns it is shown (each distinct chain parsed once)
and fills ``server_spki_sha256``/``peer_spki_sha256`` where a row has the SHA-256 only. A SHA-256
is the certificate's whole DER, so the pin is the certificate's own, not a guess; the chain around
it is not inferred (it may differ from connection to connection).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from tlsdetect import schema
from tlsdetect.detect.columns import Unique, raw_column

__all__ = ["CertStore"]

_SIDES = (("server_cert_sha256", "server_spki_sha256"), ("peer_cert_sha256", "peer_spki_sha256"))


class CertStore:
    """SHA-256 (lowercase hex) -> SPKI pin of every certificate shown to :meth:`learn`."""

    def __init__(self) -> None:
        self.pins: dict[str, str] = {}
        self._chains_seen: set[str] = set()
        self.filled = 0  # rows :meth:`fill` gave a pin to

    def learn(self, df: pd.DataFrame) -> None:
        """Every certificate of the table's chains and leaf columns."""
        if "server_chain" in df.columns:
            for text in Unique(raw_column(df, "server_chain")).values.dropna().tolist():
                if text in self._chains_seen:
                    continue
                self._chains_seen.add(text)
                try:
                    doc = json.loads(text)
                except ValueError:
                    continue
                for cert in doc if isinstance(doc, list) else []:
                    if isinstance(cert, dict) and isinstance(cert.get("sha256"), str) and isinstance(
                            cert.get("spki"), str):
                        self.pins.setdefault(cert["sha256"].lower(), cert["spki"])
        for sha_col, spki_col in _SIDES:
            if sha_col not in df.columns or spki_col not in df.columns:
                continue
            both = pd.DataFrame({"sha": raw_column(df, sha_col).astype("string"),
                                 "spki": raw_column(df, spki_col).astype("string")}).dropna().drop_duplicates()
            for sha, spki in zip(both["sha"].tolist(), both["spki"].tolist(), strict=True):
                self.pins.setdefault(str(sha).lower(), str(spki))

    def fill(self, df: pd.DataFrame) -> pd.DataFrame:
        """The table with each side's missing SPKI pin taken from the store where its SHA-256 is known."""
        if not self.pins or not len(df):
            return df
        out = df
        for sha_col, spki_col in _SIDES:
            if sha_col not in df.columns:
                continue
            u = Unique(raw_column(df, sha_col))
            found = np.array([self.pins.get(str(v).lower()) for v in u.values.tolist()], dtype=object)
            per_row = u.rows(found)
            have = raw_column(df, spki_col).notna().to_numpy(dtype=bool) if spki_col in df.columns else np.zeros(
                len(df), dtype=bool)
            take = ~have & pd.notna(per_row)
            if not take.any():
                continue
            current = schema.as_text(raw_column(df, spki_col)).to_numpy(dtype=object) if spki_col in df.columns \
                else np.full(len(df), None, dtype=object)
            merged = np.where(take, per_row, current)
            if out is df:
                out = df.copy(deep=False)
            out[spki_col] = schema.as_category(pd.Series(merged, index=df.index, dtype="string"))
            self.filled += int(take.sum())
        return out
