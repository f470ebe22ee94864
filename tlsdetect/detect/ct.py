"""Certificate Transparency evidence in the connections table, and the per-domain listing of leaves without it.

:func:`add_sct_columns` is part of the enrichment after reading (:func:`tlsdetect.fingerprint.enrich`): each
distinct leaf (``server_cert_sha256``) is looked up once in the SCTs its parser recorded
(:mod:`tlsdetect.wire.sct`) and the result broadcast by codes. Sources that never held the certificate's
bytes (Zeek, Suricata, Envoy without the PEM fields, TLS 1.3 captures without ``--keylog``) leave both
columns null: not seen is not "no SCTs".

:func:`sct_findings` is the ``pins lint``-style listing (``tlsdetect pins ct``): per server name, its leaves
seen without embedded SCTs, whether their issuer is a public CA, and how many connections they served.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from tlsdetect import schema
from tlsdetect.wire import sct

__all__ = ["CT_REQUIRED_FROM", "SCT_COLUMNS", "add_sct_columns", "is_public_name", "sct_findings"]

#: ``server_sct_count`` (Int32: embedded SCTs of the leaf, 0 = none) and ``server_sct_logs`` (their log IDs,
#: base64, comma-separated, in certificate order); both null where the leaf's bytes were never seen. And the
#: leaf's ``server_not_before`` (UTC), which says whether CT was required of it (public leaves from 2018-04-30).
SCT_COLUMNS = ("server_sct_count", "server_sct_logs", "server_not_before")
#: Chrome required SCTs of every public leaf issued from this day on (Apple soon after): before it, a leaf
#: without SCTs was normal, so an older leaf (or one whose validity start is unknown) is not judged.
CT_REQUIRED_FROM = pd.Timestamp("2018-04-30", tz="UTC")
#: Top-level names that are never public (RFC 2606, 6761, 6762, 8375, ICANN's .internal) or are used as
#: private suffixes so often that a leaf for them says nothing about the public web.
PRIVATE_TLDS = frozenset({"test", "example", "invalid", "localhost", "local", "internal", "arpa", "lan", "home",
                          "corp", "intranet", "private", "localdomain", "svc", "cluster"})


def add_sct_columns(df: pd.DataFrame) -> pd.DataFrame:
    """``server_sct_count`` and ``server_sct_logs`` from the leaves the readers parsed; rows that already have
    a count (a reader filled it) keep it."""
    if not len(df) or "server_cert_sha256" not in df.columns or df["server_cert_sha256"].isna().all():
        return df
    sha = schema.as_category(df["server_cert_sha256"])
    cats = [str(c).lower() for c in sha.cat.categories]
    found = sct.lookup(cats)
    if all(f is None for f in found):  # a log source's digests: no bytes were parsed here, no per-row work
        return df
    ids = [None if f is None else f.log_ids for f in found]
    per_count = np.array([-1 if f is None else len(f) for f in ids] + [-1], dtype=np.int64)
    per_logs = [None if f is None else ",".join(f) for f in ids]
    starts = pd.DatetimeIndex([None if f is None else f.not_before for f in found] + [None]).as_unit("ns")
    if starts.tz is None:
        starts = starts.tz_localize("UTC")
    codes = np.asarray(sha.cat.codes, dtype=np.int64)
    counts = per_count[codes]  # code -1 (no leaf) takes the trailing -1
    have = df["server_sct_count"].notna().to_numpy() if "server_sct_count" in df.columns else np.zeros(len(df), bool)
    fill = ~have & (counts >= 0)
    if not fill.any():
        return df
    out = df.copy(deep=False)
    new_count = pd.Series(pd.arrays.IntegerArray(np.maximum(counts, 0).astype(np.int32), ~fill), index=out.index)
    new_logs = pd.Series(schema.category_from_codes(per_logs, np.where(fill, codes, -1)), index=out.index)
    if have.any():  # keep what a reader said, fill the rest
        out["server_sct_count"] = out["server_sct_count"].astype("Int32").where(have, new_count)
        logs = schema.as_text(out["server_sct_logs"]).where(have, schema.as_text(new_logs))
        out["server_sct_logs"] = schema.as_category(logs)
    else:
        out["server_sct_count"], out["server_sct_logs"] = new_count, new_logs
    if "server_not_before" not in out.columns or out["server_not_before"].isna().all():
        out["server_not_before"] = pd.Series(starts[codes], index=out.index).where(fill)
    return out


def is_public_name(names: pd.Series) -> np.ndarray:
    """Which server names are DNS names under a public top-level name (not an IP literal, not ``.test``,
    ``.internal``, ``.local``, ...): only there does a missing SCT mean anything."""
    text = schema.as_text(names) if isinstance(names.dtype, pd.CategoricalDtype) else names.astype("string")
    lower = text.str.lower().str.rstrip(".")
    tld = lower.str.rsplit(".", n=1).str[-1]
    dotted = lower.str.contains(".", regex=False).fillna(False).to_numpy(dtype=bool)
    numeric = tld.str.fullmatch(r"[0-9]+").fillna(True).to_numpy(dtype=bool) | \
        lower.str.contains(":", regex=False).fillna(False).to_numpy(dtype=bool)
    private = tld.isin(list(PRIVATE_TLDS)).fillna(True).to_numpy(dtype=bool)
    out: np.ndarray = dotted & ~numeric & ~private & text.notna().to_numpy(dtype=bool)
    return out


def sct_findings(df: pd.DataFrame) -> pd.DataFrame:
    """Per server name with a public name: the leaves seen without embedded SCTs.

    Columns: ``sni``, ``leaf`` (``server_cert_sha256``), ``subject``, ``issuer``, ``public_issuer`` (the issuer
    is a public CA by :func:`tlsdetect.detect.knowledge.classify_issuers`), ``connections`` (rows that leaf
    served), ``not_before``, ``first_seen``, ``last_seen``, ``level`` (``error`` when a non-public issuer vouches
    for a public name with no SCTs on a leaf issued since CT was required: what a forged interception leaf looks
    like, the :mod:`~tlsdetect.detect.ct_signals` signal; ``warning`` for the others: a public issuer's leaf
    without SCTs, or one older than :data:`CT_REQUIRED_FROM`). Leaves never seen (no certificate bytes) are
    left out, as is every leaf with SCTs.
    """
    from tlsdetect.detect.knowledge import classify_issuers, load_knowledge

    cols = ["sni", "leaf", "subject", "issuer", "public_issuer", "not_before", "connections", "first_seen", "last_seen",
            "level"]
    df = add_sct_columns(df)
    if not len(df) or "server_sct_count" not in df.columns:
        return pd.DataFrame({c: [] for c in cols})
    lacking = (df["server_sct_count"] == 0).fillna(False).to_numpy(dtype=bool) & is_public_name(df["sni"])
    rows = df[lacking]
    if not len(rows):
        return pd.DataFrame({c: [] for c in cols})
    view = pd.DataFrame({
        "sni": rows["sni"].astype("string").str.lower(), "leaf": schema.as_text(rows["server_cert_sha256"]),
        "subject": schema.as_text(rows["server_subject"]), "issuer": schema.as_text(rows["server_issuer"]),
        "ts": rows["ts"], "not_before": rows["server_not_before"],
    })
    grouped = view.groupby(["sni", "leaf"], dropna=False, sort=True).agg(
        subject=("subject", "first"), issuer=("issuer", "first"), not_before=("not_before", "first"),
        connections=("ts", "size"),
        first_seen=("ts", "min"), last_seen=("ts", "max")).reset_index()
    public = classify_issuers(grouped["issuer"], load_knowledge())["public"].astype("boolean").fillna(False)
    grouped["public_issuer"] = public.to_numpy(dtype=bool)
    required = (grouped["not_before"] >= CT_REQUIRED_FROM).fillna(False).to_numpy(dtype=bool)
    grouped["level"] = np.where(~grouped["public_issuer"].to_numpy(dtype=bool) & required, "error", "warning")
    return grouped[cols]
