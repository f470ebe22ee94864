"""Measure detection against ground truth: precision, recall and false-positive rate, per vantage point,
per product, per signal, and what each signal is worth when switched off.

Pure functions over a scored table that carries a ``label`` column (``clean`` / ``intercepted``):
the evaluation script reads the labelled corpus, fits a baseline per sensor and scores; this module
only counts. A row is *flagged* when its verdict is not ``ok``; a signal *fires* on a row when one
of the row's reasons has its code. Per signal, recall is the share of intercepted rows it fired on
and the false-positive rate the share of clean rows it fired on: a signal with low recall can still
be the only one that catches some vantage point, which the per-signal table's ``fired_on`` shows.

Two helpers change what scoring knows, so a product is measured by evidence that never saw it:
:func:`hold_out` drops every knowledge row that names a product (or a source), and :func:`muted`
switches signals off for an ablation (their evidence is never added, so the score is what the
other signals make of the row).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from tlsdetect.detect import evidence
from tlsdetect.detect.evidence import SIGNALS
from tlsdetect.detect.knowledge import Knowledge

__all__ = [
    "NOTE_KINDS", "REPORTED", "TARGET_STATUS", "by_group", "fired_codes", "group_rates", "hold_out", "metrics",
    "muted", "note_has", "note_kind", "note_tag", "per_signal", "reported", "target", "to_markdown",
    "with_reason", "with_vantage",
]

#: The clean rows a deployment worries about most, named in ``labels.csv``'s ``note``: a server whose
#: certificate was renewed, and a name served by a pool of two TLS stacks.
NOTE_KINDS = ("renewal", "pool")
#: A target is met, missed, or could not be measured (no rows): never a pass by default.
TARGET_STATUS = ("PASS", "FAIL", "NOT MEASURED")
#: The status of a measure reported beside the targets: read, never part of an exit status.
REPORTED = "REPORTED"
#: Knowledge columns that may name a product (matched by :func:`hold_out`).
_NAMING_COLUMNS = ("product", "stack", "application", "source")


def _rates(flagged: npt.NDArray[np.bool_], label: npt.NDArray[Any]) -> dict[str, Any]:
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


def fired_codes(scored: pd.DataFrame) -> pd.DataFrame:
    """One row per (scored row position, signal code) that fired: ``row``, ``code`` (reasons read once)."""
    rows: list[int] = []
    codes: list[str] = []
    for i, rs in enumerate(scored["reasons"].tolist()):
        for r in rs:
            rows.append(i)
            codes.append(r["code"])
    return pd.DataFrame({"row": np.asarray(rows, dtype=np.int64), "code": pd.Series(codes, dtype=object)})


def _fired_masks(scored: pd.DataFrame) -> dict[str, npt.NDArray[np.bool_]]:
    long = fired_codes(scored)
    out = {}
    for code, part in long.groupby("code", sort=True):
        mask = np.zeros(len(scored), dtype=bool)
        mask[part["row"].to_numpy()] = True
        out[str(code)] = mask
    return out


def _where(scored: pd.DataFrame, mask: npt.NDArray[np.bool_], by: Sequence[str]) -> str:
    """'label vantage/product n/of' for each group a signal fired in, most hits first."""
    keys = [c for c in by if c in scored.columns]
    if not keys or not mask.any():
        return ""
    frame = scored[keys].astype(str).assign(_hit=mask)
    agg = frame.groupby(keys, sort=True)["_hit"].agg(["sum", "size"])
    agg = agg[agg["sum"] > 0].sort_values("sum", ascending=False, kind="stable")
    names = ["/".join(v for v in (idx if isinstance(idx, tuple) else (idx,)) if v) for idx in agg.index]
    return ", ".join(f"{n} {int(s)}/{int(t)}" for n, s, t in zip(names, agg["sum"], agg["size"], strict=True))


def per_signal(scored: pd.DataFrame, where: Sequence[str] = ("label", "vantage", "product")) -> pd.DataFrame:
    """One row per signal that fired at least once: its counts, rates, and the groups (``where``) it fired in.

    Signals are those of :data:`~tlsdetect.detect.evidence.SIGNALS` at call time, so a signal added later is
    counted without a change here; a code no signal declares is counted too (under its own name).
    A signal's reason can stand on a row whose verdict stays ``ok`` (an informational or a down-weighted
    one), so ``fp_flagged`` counts the clean rows it fired on that were also flagged: the false positives
    it took part in, where ``fp`` counts every clean row it fired on.
    """
    masks = _fired_masks(scored)
    label = scored["label"].to_numpy()
    flagged_clean = (scored["verdict"].isin(["suspicious", "intercepted"]).to_numpy() & (label != "intercepted")
                     if "verdict" in scored.columns else np.zeros(len(scored), dtype=bool))
    order = [c for c in SIGNALS if c in masks] + sorted(c for c in masks if c not in SIGNALS)
    rows = []
    for code in order:
        fired = masks[code]
        weight = SIGNALS[code].weight if code in SIGNALS else None
        rows.append({"signal": code, "weight": weight, **_rates(fired, label),
                     "fp_flagged": int((fired & flagged_clean).sum()), "fired_on": _where(scored, fired, where)})
    return pd.DataFrame(rows)


def _signals_text(part: pd.DataFrame) -> str:
    codes = fired_codes(part)["code"]
    return ", ".join(f"{c} ({n})" for c, n in codes.value_counts().items())


def group_rates(scored: pd.DataFrame, keys: Sequence[str], *, signals: bool = True) -> pd.DataFrame:
    """Rates per combination of ``keys`` (e.g. vantage, label, product), with the signals that fired there."""
    rows = []
    for value, part in scored.groupby(list(keys), sort=True, dropna=False, observed=True):
        values = value if isinstance(value, tuple) else (value,)
        rec: dict[str, Any] = dict(zip(keys, values, strict=True))
        rec.update(metrics(part))
        if signals:
            rec["signals"] = _signals_text(part)
        rows.append(rec)
    return pd.DataFrame(rows)


def by_group(scored: pd.DataFrame, column: str) -> pd.DataFrame:
    """Rates per value of ``column`` (e.g. ``path`` or ``stack``) and the signals that fired there."""
    return group_rates(scored, [column])


def note_kind(notes: pd.Series) -> pd.Series:
    """Each note's first ``;``-separated part when it is of a kind in :data:`NOTE_KINDS` (``renewal:new-cert``,
    ``pool:gnutls``, or the bare kind), lower-cased; else the empty string."""
    first = notes.fillna("").astype(str).str.split(";").str[0].str.strip().str.lower()
    kind = first.str.split(":").str[0]
    return first.where(kind.isin(list(NOTE_KINDS)), "").astype(object)


def note_tag(notes: pd.Series) -> pd.Series:
    """The kind of each note's first part (``identity:svc-a;x`` -> ``identity``, ``no-sni`` -> ``no-sni``).

    Unlike :func:`note_kind` it keeps any kind, so a table can be grouped by what a corpus part labels.
    """
    first = notes.fillna("").astype(str).str.split(";").str[0].str.strip().str.lower()
    return first.str.split(":").str[0].astype(object)


def note_has(notes: pd.Series, kind: str) -> npt.NDArray[np.bool_]:
    """Whether any ``;``-separated part of each note is of ``kind`` (``kind`` itself or ``kind:<detail>``)."""
    want = kind.strip().lower()
    if not want:
        raise ValueError("empty note kind")
    uniques, codes = np.unique(notes.fillna("").astype(str).to_numpy(), return_inverse=True)
    hit = np.array([any(p == want or p.startswith(want + ":") for p in (x.strip() for x in u.lower().split(";")))
                    for u in uniques], dtype=bool)
    return hit[codes.reshape(-1)] if len(notes) else np.zeros(0, dtype=bool)


def with_reason(scored: pd.DataFrame, needle: str) -> npt.NDArray[np.bool_]:
    """Rows one of whose reasons is ``needle``: its code starts with it, or its detail does (``resumed: ...``).

    Case-insensitive. The detail counts because a reason may say what it is in words before a signal of that
    name exists (``resumed: no certificate to check`` under another code).
    """
    want = needle.strip().lower()
    if not want:
        raise ValueError("empty reason")
    out = np.zeros(len(scored), dtype=bool)
    for i, rs in enumerate(scored["reasons"].tolist()):
        for r in rs:
            code = str(r.get("code") or "").lower()
            detail = str(r.get("detail") or "").lower()
            if code.startswith(want) or detail.startswith(want):
                out[i] = True
                break
    return out


def with_vantage(labels: pd.DataFrame) -> pd.DataFrame:
    """``labels.csv`` with ``vantage``, ``product`` and ``note`` filled where an older corpus lacks them.

    Older rows: ``clean.pcapng`` (path ``direct``) is ``direct``; mitmproxy's upstream leg
    (``intercepted.pcapng``, path ``mitmproxy``) is ``proxy_upstream`` of product ``mitmproxy``; Envoy rows
    are vantage ``envoy``, with product ``mitmproxy`` on the path whose certificate mitmproxy's CA signed.
    A value the corpus gives is kept.
    """
    out = labels.copy()
    for col in ("vantage", "product", "note", "path"):
        if col not in out.columns:
            out[col] = ""
        out[col] = out[col].fillna("").astype(str)
    source = out["source"].astype(str)
    path = out["path"]
    derived_vantage = np.select(
        [source == "envoy", (source == "pcap") & (path == "mitmproxy"), source == "pcap"],
        ["envoy", "proxy_upstream", "direct"], default="")
    out["vantage"] = out["vantage"].where(out["vantage"] != "", derived_vantage)
    derived_product = np.where(path.str.contains("mitmproxy", regex=False), "mitmproxy", "")
    intercepted = out["label"].astype(str) == "intercepted"
    out["product"] = out["product"].where((out["product"] != "") | ~intercepted, derived_product)
    missing = out["vantage"] == ""
    if missing.any():
        raise ValueError(f"{int(missing.sum())} label row(s) have no vantage and none can be derived, e.g. "
                         f"{out.loc[missing, ['source', 'client_ip', 'client_port']].head(3).to_dict('records')}")
    return out


def hold_out(kb: Knowledge, needles: str | Iterable[str]) -> Knowledge:
    """The knowledge base minus every row whose product, stack, application or source names a needle.

    Matching is a case-insensitive substring (``mitmproxy`` drops mitmproxy's CA rows and the stack rows of
    its measured hellos; ``pcaps/interception`` drops what was learned from those captures). Every table of
    :class:`Knowledge` is filtered, including tables added after this was written; Mozilla's public roots
    name no product and are kept. The result has its own lookup cache.
    """
    wanted = [needles] if isinstance(needles, str) else list(needles)
    wanted = [n.lower() for n in wanted if n]
    changes: dict[str, Any] = {}
    for f in dataclasses.fields(kb):
        table = getattr(kb, f.name)
        if f.name == "public_roots" or not isinstance(table, pd.DataFrame) or not wanted:
            continue
        drop = np.zeros(len(table), dtype=bool)
        for col in _NAMING_COLUMNS:
            if col not in table.columns:
                continue
            text = table[col].fillna("").astype(str).str.lower()
            for needle in wanted:
                drop |= text.str.contains(needle, regex=False).to_numpy(dtype=bool)
        changes[f.name] = table[~drop].reset_index(drop=True)
    return dataclasses.replace(kb, **changes, _cache={})


@contextlib.contextmanager
def muted(codes: Iterable[str]) -> Iterator[None]:
    """Switch signals off while scoring inside the block: their evidence is never added (an ablation).

    Patches :meth:`~tlsdetect.detect.evidence.Evidence.add` for the block and restores it after, so it is for
    an evaluation run in one thread, not for a server. An unknown code is an error (a typo would measure
    nothing).
    """
    off = frozenset(codes)
    unknown = sorted(off - set(SIGNALS))
    if unknown:
        raise KeyError(f"no such signal(s): {', '.join(unknown)}")
    original = evidence.Evidence.add

    def add(self: evidence.Evidence, code: str, *args: Any, **kwargs: Any) -> None:
        if code in off:
            return
        original(self, code, *args, **kwargs)

    evidence.Evidence.add = add  # type: ignore[method-assign]
    try:
        yield
    finally:
        evidence.Evidence.add = original  # type: ignore[method-assign]


def target(name: str, measured: float | None, *, at_least: float | None = None, at_most: float | None = None,
           n: int = 0, detail: str = "") -> dict[str, Any]:
    """One issue target beside its measured value: ``PASS``, ``FAIL`` or ``NOT MEASURED`` (no rows, no value)."""
    if (at_least is None) == (at_most is None):
        raise ValueError("give exactly one of at_least and at_most")
    goal = f">= {at_least:g}" if at_least is not None else f"<= {at_most:g}"
    if measured is None or n == 0:
        status = "NOT MEASURED"
    elif at_least is not None:
        status = "PASS" if measured >= at_least else "FAIL"
    else:
        status = "PASS" if measured <= (at_most or 0.0) else "FAIL"
    return {"target": name, "goal": goal, "measured": measured, "rows": n, "status": status, "detail": detail}


def reported(name: str, measured: float | None, *, n: int = 0, detail: str = "") -> dict[str, Any]:
    """A measure shown beside the targets in the same shape (``goal`` ``report``): ``REPORTED`` or
    ``NOT MEASURED`` (no rows), never ``PASS``, so it cannot turn an exit status green by itself."""
    status = "NOT MEASURED" if measured is None or n == 0 else REPORTED
    return {"target": name, "goal": "report", "measured": measured, "rows": n, "status": status, "detail": detail}


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return "-"
    if isinstance(v, float):
        return f"{v:.4f}"
    return str(v).replace("|", "\\|")


def to_markdown(df: pd.DataFrame, columns: list[str] | None = None) -> str:
    """A small markdown table without the optional ``tabulate`` dependency."""
    cols = columns or list(df.columns)
    lines = ["| " + " | ".join(cols) + " |", "| " + " | ".join("---" for _ in cols) + " |"]
    for rec in df[cols].to_dict("records"):
        lines.append("| " + " | ".join(_fmt(rec[c]) for c in cols) + " |")
    return "\n".join(lines)
