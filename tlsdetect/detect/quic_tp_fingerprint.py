"""A stable fingerprint of a QUIC client's transport parameters, and what the baseline learns of it.

The ``quic_transport_params`` column (:mod:`tlsdetect.wire.quic_tp`) is the client stack's own: which ids it
sends and the values it sets (flow-control windows, UDP payload size, stream and connection-id limits). Its
text is not stable per stack, so the fingerprint hashes a normal form of it:

* the ids **sorted**, not in wire order: Chromium 156 sends its 13 parameters in a new random order on every
  connection (three connections in ``tests/data/quic``, three orders), as it permutes its TLS extensions;
  JA4 sorts those for the same reason. aioquic keeps one order, so the order tells the stacks apart no better
  than the set does;
* GREASE as one flag, not its ids (random per connection); ``version_information`` as its id and whether it
  carries a GREASE version (the versions follow the version the connection chose: v1 and v2 differ);
* the values of :data:`tlsdetect.wire.quic_tp.VALUED` (per id, sorted): stacks that send the same ids differ
  in them (aioquic's initial_max_data 1048576, Chromium's 15728640).

The fingerprint is ``<ids:02d><g|n>_<sha256(ids)[:12]>_<sha256(values)[:12]>``, JA4-shaped: its first part
says how many ids and whether GREASE was there, the second which ids, the third their values, so "same ids,
other values" reads off the text. ``params`` is the normal form itself (ids, then values), kept beside it
as the evidence an analyst reads. Computed once per distinct column value and broadcast by codes.

Learned per client (``quic_params``) and per User-Agent family (``quic_param_families``) as JA4 is learned in
``fingerprints`` and ``fp_families``: rows without a fingerprint or a client are left out.
"""

from __future__ import annotations

import hashlib

import numpy as np
import numpy.typing as npt
import pandas as pd

from tlsdetect.detect.columns import text_column
from tlsdetect.wire.quic_tp import VALUED, VERSION_INFORMATION

__all__ = ["learn_quic_param_families", "learn_quic_params", "normal_form", "quic_tp_fingerprints"]


def _sha12(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def normal_form(column_text: str) -> tuple[str, str, int, bool] | None:
    """(sorted ids, sorted values, id count, GREASE seen) of one column value; None if a token does not parse."""
    ids: dict[int, str] = {}
    values: dict[int, str] = {}
    grease = False
    for token in column_text.split(","):
        if token == "grease":
            grease = True
            continue
        pid_text, _, value = token.partition("=")
        try:
            pid = int(pid_text, 16)
        except ValueError:
            return None
        if pid == VERSION_INFORMATION:
            ids[pid] = f"{pid:x}" + (":g" if "grease" in value.split("/") else "")
        else:
            ids[pid] = f"{pid:x}"
        if pid in VALUED and value:
            values[pid] = f"{pid:x}={value}"
    if not ids and not grease:
        return None
    order = sorted(ids)
    return (",".join(ids[i] for i in order) + (",grease" if grease else ""),
            ",".join(values[i] for i in sorted(values)), len(ids), grease)


def _fingerprint(column_text: str) -> tuple[str | None, str | None]:
    form = normal_form(column_text)
    if form is None:
        return None, None
    ids, values, n, grease = form
    return f"{min(n, 99):02d}{'g' if grease else 'n'}_{_sha12(ids)}_{_sha12(values)}", f"{ids}_{values}"


def quic_tp_fingerprints(params: pd.Series) -> pd.DataFrame:
    """Per row: ``quic_tp`` (the fingerprint) and ``quic_tp_params`` (its normal form), as categoricals; missing
    where the column is missing or does not parse. One computation per distinct value, rows by codes."""
    codes, uniq = pd.factorize(params.astype("string").reset_index(drop=True), use_na_sentinel=True)
    fps = np.empty(len(uniq), dtype=object)
    forms = np.empty(len(uniq), dtype=object)
    for i, text in enumerate(uniq):
        fps[i], forms[i] = _fingerprint(str(text))
    out = {}
    for name, per_unique in (("quic_tp", fps), ("quic_tp_params", forms)):
        # Chromium's many wire orders are one fingerprint: categories are the distinct results, not inputs
        u_codes, cats = pd.factorize(pd.Series(per_unique, dtype=object), use_na_sentinel=True)
        row_codes: npt.NDArray[np.int64] = np.where(codes < 0, -1, np.append(u_codes, -1)[codes])
        out[name] = pd.Categorical.from_codes(row_codes, categories=pd.Index(cats, dtype="string"))
    return pd.DataFrame(out)


def _frame(df: pd.DataFrame, key: pd.Series, key_name: str, ts: pd.Series | None) -> pd.DataFrame:
    fp = quic_tp_fingerprints(text_column(df, "quic_transport_params"))
    frame = pd.DataFrame({key_name: key.astype("string").reset_index(drop=True), "fingerprint": fp["quic_tp"],
                          "params": fp["quic_tp_params"]})
    if ts is not None:
        frame["ts"] = ts.reset_index(drop=True)
    return frame[frame[[key_name, "fingerprint"]].notna().all(axis=1).to_numpy(dtype=bool)]


def learn_quic_params(df: pd.DataFrame, cid: pd.Series, ts: pd.Series) -> pd.DataFrame:
    """The baseline's ``quic_params`` rows: per client, each transport-parameter fingerprint with its normal
    form, connections and first and last seen."""
    frame = _frame(df, cid, "client_id", ts)
    g = frame.groupby(["client_id", "fingerprint"], sort=False, observed=True)
    out = g.size().rename("count").to_frame()
    out["params"] = g["params"].first()
    out["first_seen"] = g["ts"].min()
    out["last_seen"] = g["ts"].max()
    return out.reset_index()


def learn_quic_param_families(df: pd.DataFrame, family: pd.Series) -> pd.DataFrame:
    """The baseline's ``quic_param_families`` rows: per User-Agent family, each fingerprint and its connections."""
    frame = _frame(df, family, "ua_family", None)
    g = frame.groupby(["ua_family", "fingerprint"], sort=False, observed=True)
    out = g.size().rename("count").to_frame()
    out["params"] = g["params"].first()
    return out.reset_index()
