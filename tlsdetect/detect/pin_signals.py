"""Pin and issuer-policy signals: a pinned name answered by a chain its pin set would reject, a name whose
certificate came from an issuer its policy does not allow (``--pins``, ``--issuer-policy``).

The checks are :mod:`tlsdetect.pins.check` and :mod:`tlsdetect.pins.issuer_policy`, the same ones
``pins check`` reports with, so ``score``, ``stream`` and ``serve`` flag exactly the connections the
report names. Where the chain's issuer is a known interception CA the evidence names the product.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from tlsdetect.detect.columns import Codes, raw_column
from tlsdetect.detect.evidence import Evidence
from tlsdetect.detect.knowledge import Knowledge, classify_issuers

__all__ = ["Policies", "pin_signals"]


@dataclass(frozen=True)
class Policies:
    """What a deployment enforces in report-only mode: pin sets (:data:`tlsdetect.pins.policy.POLICY_COLUMNS`)
    and issuer rules (:data:`tlsdetect.pins.issuer_policy.ISSUER_RULE_COLUMNS`), either may be empty.
    ``today``: the date pin-set expiry is judged on (None: the day scoring runs)."""

    pins: pd.DataFrame = field(default_factory=pd.DataFrame)
    issuers: pd.DataFrame = field(default_factory=pd.DataFrame)
    today: dt.date | None = None

    def __bool__(self) -> bool:
        return bool(len(self.pins) or len(self.issuers))


def _interception_names(issuers: pd.Series, kb: Knowledge) -> dict[str, str]:
    """Issuer DN -> the interception product it belongs to, for the distinct DNs given."""
    uniq = pd.Series(pd.unique(issuers.dropna().astype(str)), dtype="string")
    if not len(uniq):
        return {}
    cls = classify_issuers(uniq, kb)
    hit = cls["interception_product"].notna().to_numpy(dtype=bool)
    return dict(zip(uniq[hit].tolist(), cls["interception_product"][hit].astype(str).tolist(), strict=True))


def _named(issuer: object, products: dict[str, str]) -> str:
    if issuer is None or issuer is pd.NA or (isinstance(issuer, float) and np.isnan(issuer)):
        return ""
    product = products.get(str(issuer))
    return f"; the issuer {issuer} is a known interception CA ({product})" if product else f"; issued by {issuer}"


def pin_signals(df: pd.DataFrame, policies: Policies | None, kb: Knowledge, ev: Evidence) -> None:
    """``pin_violation`` and ``issuer_policy_violation`` over a connections table (positions as in ``df``)."""
    if not policies:
        return
    from tlsdetect.pins.check import pair_verdicts
    from tlsdetect.pins.issuer_policy import issuer_violations

    assert policies is not None
    n = len(df)
    if len(policies.pins):
        pv = pair_verdicts(policies.pins, df, today=policies.today)
        # one reason per pair: its first violating file; rows take their pair's by code, no per-row frame
        bad = pv.verdicts[pv.verdicts["status"] == "violation"].drop_duplicates("pair")
        if len(bad):
            at = np.full(int(pv.pair.max(initial=-1)) + 1, -1, dtype=np.int64)
            at[bad["pair"].to_numpy(dtype=np.int64)] = np.arange(len(bad))
            code = np.full(n, -1, dtype=np.int64)
            code[pv.governed] = at[pv.pair]
            products = _interception_names(bad["issuer"], kb)
            sni = raw_column(df, "sni")
            detail = [f"{{sni}}: the chain matches none of the pins for {dom}, so a pinning client would reject it"
                      + _named(iss, products) for dom, iss in zip(bad["domain"], bad["issuer"], strict=True)]
            details = np.array([*detail, None], dtype=object)
            ev.add("pin_violation", code >= 0,
                   lambda i: [str(details[c]).replace("{sni}", str(s), 1) for c, s in
                              zip(code[i].tolist(), sni.iloc[i].tolist(), strict=True)],
                   expected=Codes(code, np.array([*bad["expected"].tolist(), None], dtype=object)),
                   observed=Codes(code, np.array([*bad["observed"].tolist(), None], dtype=object)))
    if len(policies.issuers):
        bad = issuer_violations(policies.issuers, df)
        if len(bad):
            products = _interception_names(bad["issuer"], kb)
            rows = bad["row"].to_numpy(dtype=np.int64)
            mask = np.zeros(n, dtype=bool)
            mask[rows] = True
            why = np.empty(n, dtype=object)
            why[rows] = [f"the issuer is not one the policy allows for {pat}" + _named(iss, products)
                            for pat, iss in zip(bad["pattern"], bad["issuer"], strict=True)]
            expected = np.empty(n, dtype=object)
            expected[rows] = bad["expected"].to_numpy(dtype=object)
            observed = np.empty(n, dtype=object)
            observed[rows] = bad["observed"].to_numpy(dtype=object)
            ev.add("issuer_policy_violation", mask, why, expected=expected, observed=observed)
