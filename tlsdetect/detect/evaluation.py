"""Measure detection against ground truth: precision, recall and false-positive rate, overall and per signal.

Pure functions over a scored table that carries a ``label`` column (``clean`` / ``intercepted``):
the evaluation script builds the labelled corpus and the baselines, this module only counts. A row
is *flagged* when its verdict is not ``ok``; a signal *fires* on a row when one of the row's
reasons has its code. Per signal, recall is the share of intercepted rows it fired on and the
false-positive rate the share of clean rows it fired on: a signal with low recall can still be the
only one that catches some path, which the per-path table shows.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from tlsdetect.detect.evidence import SIGNALS

__all__ = ["by_group", "metrics", "per_signal", "to_markdown"]


def _rates(flagged: np.ndarray, label: np.ndarray) -> dict[str, Any]:
    pos = label == "intercepted"
    tp = int((flagged & pos).sum())
    fp = int((flagged & ~pos).sum())
    fn = int((~flagged & pos).sum())
    tn = int((~flagged & ~pos).sum())
    return {
        "intercepted": int(pos.sum()), "clean": int((~pos).sum()), "tp": tp, "fp": fp, "fn": fn, "tn": tn,
        "precision": tp / (tp + fp) if tp + fp else None,
        "recall": tp / (tp + fn) if tp + fn else None,
        "fpr": fp / (fp + tn) if fp + tn else None,
    }


def metrics(scored: pd.DataFrame, *, verdicts: tuple[str, ...] = ("suspicious", "intercepted")) -> dict[str, Any]:
    """Overall rates for rows whose verdict is in ``verdicts``, and whether every flagged row has a reason."""
    flagged = scored["verdict"].isin(list(verdicts)).to_numpy()
    out = _rates(flagged, scored["label"].to_numpy())
    has_reason = scored["reasons"].map(bool).to_numpy()
    out["flagged_without_reason"] = int((flagged & ~has_reason).sum())
    return out


def _fired(scored: pd.DataFrame, code: str) -> np.ndarray:
    return scored["reasons"].map(lambda rs: any(r["code"] == code for r in rs)).to_numpy(dtype=bool)


def per_signal(scored: pd.DataFrame) -> pd.DataFrame:
    """One row per signal that fired at least once: its counts and rates."""
    rows = []
    label = scored["label"].to_numpy()
    for code in SIGNALS:
        fired = _fired(scored, code)
        if not fired.any():
            continue
        rows.append({"signal": code, "weight": SIGNALS[code].weight, **_rates(fired, label)})
    return pd.DataFrame(rows)


def by_group(scored: pd.DataFrame, column: str) -> pd.DataFrame:
    """Rates per value of ``column`` (e.g. ``path`` or ``stack``) and the signals that fired there."""
    rows = []
    for value, part in scored.groupby(column, sort=True, dropna=False):
        rec: dict[str, Any] = {column: value, **metrics(part)}
        codes = pd.Series([r["code"] for rs in part["reasons"] for r in rs], dtype=object)
        rec["signals"] = ", ".join(f"{c} ({n})" for c, n in codes.value_counts().items())
        rows.append(rec)
    return pd.DataFrame(rows)


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return "-"
    if isinstance(v, float):
        return f"{v:.4f}"
    return str(v)


def to_markdown(df: pd.DataFrame, columns: list[str] | None = None) -> str:
    """A small markdown table without the optional ``tabulate`` dependency."""
    cols = columns or list(df.columns)
    lines = ["| " + " | ".join(cols) + " |", "| " + " | ".join("---" for _ in cols) + " |"]
    for rec in df[cols].to_dict("records"):
        lines.append("| " + " | ".join(_fmt(rec[c]) for c in cols) + " |")
    return "\n".join(lines)
