"""QUIC transport parameters that do not fit the client: ``quic_params_changed`` and ``quic_params_ua_mismatch``.

An interception product that terminates QUIC (rather than blocking it) opens its own QUIC connection to the
server, with its own stack's transport parameters; even one that copies the browser's TLS hello rarely copies
the QUIC layer's windows and limits. The fingerprint (:mod:`~tlsdetect.detect.quic_tp_fingerprint`) of a
row is compared

* with the client's own in the baseline (``quic_params``): a client with at least :data:`MIN_LEARNED` QUIC
  connections whose fingerprint was read never sent this one (``quic_params_changed``, 60, as a new JA4 for
  a stable client);
* with its User-Agent family's (``quic_param_families``): a family seen with at least :data:`MIN_LEARNED`
  QUIC connections never sent it (``quic_params_ua_mismatch``, 50, as ``ua_fingerprint_mismatch``).

The evidence says what differs: the client's (or family's) most common normal form against the row's, as ids
added, ids missing and values changed. Computed per distinct (key, fingerprint) pair, broadcast by codes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from tlsdetect.detect.columns import text_column
from tlsdetect.detect.evidence import Evidence
from tlsdetect.detect.quic_tp_fingerprint import quic_tp_fingerprints

__all__ = ["MIN_LEARNED", "difference", "quic_params_signals"]

#: QUIC connections with a fingerprint a client (or a User-Agent family) needs in the baseline to be compared.
MIN_LEARNED = 2


def _split(form: str) -> tuple[set[str], dict[str, str]]:
    ids, _, values = form.partition("_")
    pairs = (v.partition("=") for v in values.split(",") if v)
    return set(filter(None, ids.split(","))), {k: val for k, _, val in pairs}


def difference(expected: str, observed: str) -> str:
    """What ``observed`` (a normal form) changes of ``expected``: ids added and missing, values changed."""
    e_ids, e_vals = _split(expected)
    o_ids, o_vals = _split(observed)
    parts = []
    if o_ids - e_ids:
        parts.append("ids added: " + ",".join(sorted(o_ids - e_ids)))
    if e_ids - o_ids:
        parts.append("ids missing: " + ",".join(sorted(e_ids - o_ids)))
    changed = [f"{k}: {e_vals[k]} -> {o_vals[k]}" for k in sorted(e_vals.keys() & o_vals.keys())
               if e_vals[k] != o_vals[k]]
    if changed:
        parts.append("values changed: " + ", ".join(changed))
    return "; ".join(parts) or "same ids and values"


def _check(code: str, key: pd.Series, fp: pd.DataFrame, learned: pd.DataFrame, key_name: str, what: str,
           ev: Evidence) -> None:
    """Fire ``code`` on rows whose (key, fingerprint) is not learned although the key has enough connections."""
    if len(learned) == 0:
        return
    totals = learned.groupby(key_name, observed=True)["count"].sum()
    kc, kuniq = pd.factorize(key.astype("string").reset_index(drop=True), use_na_sentinel=True)
    fc, funiq = pd.factorize(fp["quic_tp"], use_na_sentinel=True)
    ok = (kc >= 0) & (fc >= 0)
    if not ok.any():
        return
    # (key, fingerprint) pairs as int64 codes: one sort of the rows, then Python per distinct pair only
    pair = np.where(ok, kc.astype(np.int64) * max(len(funiq), 1) + fc, -1)
    upair, first_rows, inv = np.unique(pair[ok], return_index=True, return_inverse=True)
    pair_key = np.asarray(kuniq, dtype=object)[upair // max(len(funiq), 1)]
    pair_fp = np.asarray(funiq, dtype=object)[upair % max(len(funiq), 1)]
    armed = set(map(str, totals[totals >= MIN_LEARNED].index))
    known = set(zip(learned[key_name].astype(str), learned["fingerprint"].astype(str), strict=True))
    new_pair = np.array([str(k) in armed and (str(k), str(f)) not in known for k, f in zip(pair_key, pair_fp,
                                                                                           strict=True)], dtype=bool)
    if not new_pair.any():
        return
    rows_ok = np.flatnonzero(ok)
    mask = np.zeros(len(kc), dtype=bool)
    mask[rows_ok] = new_pair[inv.reshape(-1)]
    top = learned.sort_values("count", ascending=False, kind="stable").drop_duplicates(key_name)
    top_form = dict(zip(top[key_name].astype(str), top["params"].astype(str), strict=True))
    top_fp = {str(k): f"{f} ({c} of {int(totals[k])} connections)"
              for k, f, c in zip(top[key_name], top["fingerprint"], top["count"], strict=True)}
    forms = fp["quic_tp_params"]
    expected = np.empty(len(upair) + 1, dtype=object)
    observed = np.empty(len(upair) + 1, dtype=object)
    for i in np.flatnonzero(new_pair).tolist():  # evidence per distinct flagged pair
        k, f, form = str(pair_key[i]), str(pair_fp[i]), str(forms.iat[int(rows_ok[first_rows[i]])])
        expected[i] = f"{top_fp[k]}: {top_form[k]}"
        observed[i] = f"{f}: {form} ({difference(top_form[k], form)})"
    at = np.full(len(kc), len(upair), dtype=np.int64)
    at[rows_ok] = inv.reshape(-1)
    ev.add(code, mask, f"this QUIC hello's transport parameters match none that {what} sent in the baseline",
           expected=expected[at], observed=observed[at])


def quic_params_signals(df: pd.DataFrame, baseline: Any, cid: pd.Series, family: pd.Series, ev: Evidence) -> None:
    """Add ``quic_params_changed`` and ``quic_params_ua_mismatch`` on QUIC rows whose fingerprint is new."""
    per_client = getattr(baseline, "quic_params_", None)
    per_family = getattr(baseline, "quic_param_families_", None)
    if len(df) == 0 or "quic_transport_params" not in df.columns or not (
            (per_client is not None and len(per_client)) or (per_family is not None and len(per_family))):
        return  # nothing learned to compare with: no fingerprint computed
    fp = quic_tp_fingerprints(text_column(df, "quic_transport_params"))
    if fp["quic_tp"].isna().all():
        return
    if per_client is not None:
        _check("quic_params_changed", cid, fp, per_client, "client_id", "this client", ev)
    if per_family is not None:
        _check("quic_params_ua_mismatch", family, fp, per_family, "ua_family", "a client of its User-Agent's family",
               ev)
