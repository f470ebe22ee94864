"""The joins of ssl.log: its certificate columns from x509.log, its ``conn_*`` extras from conn.log.

Certificates are linked through one cache over every x509 record of the call (x509.log logs a
certificate once a day, so the record may sit in another file than the connection):

* ``cert_chain_fps`` -> ``x509.fingerprint`` (Zeek >= 4.1),
* ``cert_chain_fuids`` -> ``x509.id`` (older Zeek),
* the inline ``subject``/``issuer_subject`` columns of Bro 2.2 (filled in by the mapping).

``*_cert_sha256`` only ever holds a 64-hex SHA-256 (old Zeek's SHA-1 fingerprints are not put
there). The join is done once per distinct chain, then broadcast by the chain column's codes.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from tlsdetect import schema
from tlsdetect.readers.zeek.fields import codes, column, split_vector

__all__ = ["CertCache", "coalesce", "join_conn", "link"]

_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
#: What a chain element links to: (subject, issuer, SHA-256), each missing when unknown.
_Cert = tuple[str | None, str | None, str | None]


@dataclass(slots=True)
class CertCache:
    """Every x509 record of the call, by fingerprint and by file id."""

    by_fp: dict[str, _Cert]
    by_id: dict[str, _Cert]

    @classmethod
    def build(cls, frames: list[pd.DataFrame]) -> CertCache:
        by_fp: dict[str, _Cert] = {}
        by_id: dict[str, _Cert] = {}
        for frame in frames:
            subj = column(frame, "certificate.subject")
            iss = column(frame, "certificate.issuer")
            fps = column(frame, "fingerprint")
            ids = column(frame, "id")
            # one entry per distinct certificate: drop repeated log lines before the loop
            keyed = pd.DataFrame({"fp": fps, "id": ids, "s": subj, "i": iss}).drop_duplicates()
            for fp, fid, s, i in keyed.itertuples(index=False, name=None):
                fp_s = None if pd.isna(fp) else str(fp)
                sha = fp_s.lower() if fp_s is not None and _HEX64.fullmatch(fp_s) else None
                rec = (None if pd.isna(s) else str(s), None if pd.isna(i) else str(i), sha)
                if fp_s is not None:
                    by_fp[fp_s.lower()] = rec
                if not pd.isna(fid):
                    by_id[str(fid)] = rec
        return cls(by_fp, by_id)

    def chain(self, cell: str, *, by_fp: bool) -> list[_Cert]:
        out = []
        for key in split_vector(cell):
            if by_fp:
                k = key.lower()
                rec = self.by_fp.get(k)
                sha = k if _HEX64.fullmatch(k) else None
                out.append(rec if rec is not None else (None, None, sha))
            else:
                out.append(self.by_id.get(key, (None, None, None)))
        return out



def link(raw: pd.DataFrame, cache: CertCache, fps_col: str, fuids_col: str) -> dict[str, pd.Series]:
    """subject, issuer, sha256 of the leaf and the chain JSON, once per distinct chain cell.

    Certificate columns are categoricals: the per-cell values become the categories and the
    chain column's codes the rows' codes, so no text is written per row. Fingerprint links win;
    the fuid links fill what they left missing.
    """
    n = len(raw)
    keys = ("subject", "issuer", "sha256", "chain")
    result: dict[str, pd.Series] = {k: pd.Series(schema.null_categories(n), index=raw.index) for k in keys}
    for col, by_fp in ((fps_col, True), (fuids_col, False)):
        if col not in raw.columns:
            continue
        chain_codes, uniques = codes(raw[col])
        if len(uniques) == 0:
            continue
        per: list[tuple[str | None, str | None, str | None, str | None]] = []
        for cell in uniques:
            chain = cache.chain(str(cell), by_fp=by_fp)
            if not chain:
                per.append((None, None, None, None))
                continue
            leaf = chain[0]
            doc = json.dumps([{"subject": s, "issuer": i, "sha256": h} for s, i, h in chain])
            per.append((leaf[0], leaf[1], leaf[2], doc))
        for j, key in enumerate(keys):
            values = pd.Series(schema.category_from_codes([p[j] for p in per], chain_codes), index=raw.index)
            result[key] = coalesce(result[key], values) if not by_fp else values
    return result


def coalesce(first: pd.Series, second: pd.Series) -> pd.Series:
    """``first.fillna(second)`` for certificate columns: a categorical cannot take a value it has no
    category for, so the two are recoded onto the union of their categories."""
    a, b = schema.as_category(first), schema.as_category(second)
    union = a.cat.categories.append(b.cat.categories).unique()
    recoded = []
    for s in (a, b):
        own = np.asarray(s.cat.codes, dtype=np.int64)
        recoded.append(np.append(union.get_indexer(s.cat.categories), -1)[own])  # own -1 -> the last slot: -1
    picked = np.where(recoded[0] >= 0, recoded[0], recoded[1])
    return pd.Series(pd.Categorical.from_codes(picked, categories=union, validate=False), index=first.index)


def join_conn(out: pd.DataFrame, conn: pd.DataFrame) -> pd.DataFrame:
    """conn.log's duration and byte counts as ``conn_*`` extras, by uid; QUIC from proto/service."""
    cols = {"uid": "conn_id", "duration": "conn_duration", "orig_bytes": "conn_orig_bytes",
            "resp_bytes": "conn_resp_bytes", "proto": "conn_proto", "service": "conn_service"}
    have = {k: v for k, v in cols.items() if k in conn.columns}
    if "uid" not in have:
        return out
    right = conn[list(have)].rename(columns=have).drop_duplicates("conn_id", keep="last")
    merged = out.merge(right, on="conn_id", how="left")
    if "conn_service" in merged.columns:
        quic = merged["conn_service"].astype("string").str.contains("quic", regex=False).fillna(False)
        # as text: ``transport`` may be a categorical without a "quic" category (conformed again after)
        merged["transport"] = schema.as_text(merged["transport"]).mask(quic.to_numpy(dtype=bool), "quic")
    return merged
