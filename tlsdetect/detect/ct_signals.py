"""The Certificate Transparency signal: a leaf for a public name, from a CA that is not public, with no SCTs.

Why it is evidence: browsers reject a public leaf without embedded signed certificate timestamps, so every
public CA embeds them; an interception CA (a TLS-inspection box, an antivirus web shield, mitmproxy) mints
its leaves on the fly for whatever name the client asked for and logs none of them. A private CA serving
internal names (``.internal``, ``.test``, IP literals) is normal and never fires (see
:func:`tlsdetect.detect.ct.is_public_name`); a private CA on a public name without SCTs is what the forged
leaf looks like. A leaf whose bytes the source never had (``server_sct_count`` null), or issued before CT was
required (``server_not_before`` before 2018-04-30), is not judged.
Masks are computed once per distinct (name, issuer, count) and broadcast by codes.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from tlsdetect import schema
from tlsdetect.detect.ct import CT_REQUIRED_FROM, is_public_name
from tlsdetect.detect.evidence import Evidence
from tlsdetect.detect.knowledge import Knowledge, classify_issuers

__all__ = ["CODE", "ct_signal"]

CODE = "public_name_no_sct"

EXPECTED = "embedded SCTs from public CT logs (every public CA's leaf carries them)"


def ct_signal(df: pd.DataFrame, kb: Knowledge, ev: Evidence) -> None:
    """Fire :data:`CODE` on rows whose leaf has no SCTs, whose SNI is a public name and whose issuer is not
    a public CA."""
    if "server_sct_count" not in df.columns or "sni" not in df.columns:
        return
    none = (df["server_sct_count"] == 0).fillna(False).to_numpy(dtype=bool)
    if "server_not_before" in df.columns:
        none &= (df["server_not_before"] >= CT_REQUIRED_FROM).fillna(False).to_numpy(dtype=bool)
    else:
        none[:] = False
    if not none.any():
        return
    sub = df[none]
    issuer = schema.as_text(sub["server_issuer"]) if "server_issuer" in sub.columns else \
        pd.Series(pd.NA, index=sub.index, dtype="string")
    sni = sub["sni"].astype("string")
    key = pd.MultiIndex.from_arrays([sni.fillna("\x00"), issuer.fillna("\x00")])
    codes, uniq = pd.factorize(key)
    u_sni = pd.Series(uniq.get_level_values(0), dtype="string").replace("\x00", pd.NA)
    u_issuer = pd.Series(uniq.get_level_values(1), dtype="string").replace("\x00", pd.NA)
    public = classify_issuers(u_issuer, kb)["public"].astype("boolean").fillna(False).to_numpy(dtype=bool)
    fires_u = is_public_name(u_sni) & ~public & u_issuer.notna().to_numpy(dtype=bool)
    if not fires_u.any():
        return
    rows = np.flatnonzero(none)
    mask = np.zeros(len(df), dtype=bool)
    mask[rows] = fires_u[codes]
    detail_u = ("the leaf for " + u_sni.fillna("?") + " embeds no signed certificate timestamps and its issuer "
                + u_issuer.fillna("?") + " is not a public CA: what a forged interception certificate looks like")
    observed_u = "0 SCTs; issuer " + u_issuer.fillna("?")
    detail = np.empty(len(df), dtype=object)
    observed = np.empty(len(df), dtype=object)
    detail[rows] = detail_u.to_numpy(dtype=object)[codes]
    observed[rows] = observed_u.to_numpy(dtype=object)[codes]
    ev.add(CODE, mask, detail, expected=EXPECTED, observed=observed)
