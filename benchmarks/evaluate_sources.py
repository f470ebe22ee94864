"""Issue 17's views of the evaluation: a baseline fitted on one source and scored on another.

Part 5 of the corpus (``scripts/eval_sources.py``, ``docs/eval_corpus.md``) is one loopback capture
(``sources.pcapng``) and two Envoy access logs of the same listener: ``envoy_sources_pem.jsonl`` logs the
client certificate (``%DOWNSTREAM_PEER_CERT%``), ``envoy_sources_fp.jsonl`` only its SHA-256 fingerprint.
A deployment fits its baseline on whatever sensor it had first, so each view names the source it is fitted
on and the source it scores:

- ``pcap->envoy/<fmt>``: fitted on the capture's clean train rows, scored on the log's test rows;
- ``envoy->envoy/<fmt>``: fitted on the log's clean train rows, scored on its test rows;
- ``pcap->pcap``: fitted on the capture's clean train rows **without** the infrastructure clients
  (Envoy's own upstream legs), scored on its test rows and on every infrastructure row: a client the
  baseline never saw, and the resumed legs through mitmproxy.

No view fits on a no-SNI row: the corpus has them in both phases, and a baseline that saw a client's
``t13i`` hello would not measure issue 17's case, a known client's first connection to an IP literal.
They are scored from both phases instead.

:func:`targets` turns a scored table of these views into issue 17's targets (``PASS`` / ``FAIL`` /
``NOT MEASURED``) and :func:`measures` into the numbers the issue asks to report (``REPORTED``). Both are
pure: ``benchmarks/evaluate.py`` reads, fits and scores.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from tlsdetect.detect.evaluation import metrics, note_has, note_tag, reported, target, to_markdown, with_reason

#: labels.csv ``source`` of part 5 -> its corpus file
FILES = {
    "sources_pcap": ("sources.pcapng",),
    "envoy_pem": ("envoy_sources_pem.jsonl",),
    "envoy_fp": ("envoy_sources_fp.jsonl",),
}
#: The Envoy log formats: what the log carries of the client certificate
FORMATS = {"envoy_pem": "pem", "envoy_fp": "fp"}
#: Part 5's mesh CA, given to every view that scores an Envoy log (a deployment names its mesh CA)
MESH_CA = "sources-mesh-ca.pem"
#: Clean rows are flagged in at most this share in every view (issue 17)
MAX_FPR = 0.005


@dataclass(frozen=True)
class CrossView:
    """A baseline fitted on ``fit_source``'s clean train rows, scored on ``score_source``'s test rows."""

    name: str
    fit_source: str
    score_source: str
    meaning: str
    #: vantages left out of the fit and scored from every split: clients the baseline must never have seen
    unseen: tuple[str, ...] = ()
    #: note kinds left out of the fit and scored from every split: each such row is the first of its kind for
    #: its client (a known client's first connection to an IP literal, as issue 17 found it)
    unseen_notes: tuple[str, ...] = ("no-sni",)


VIEWS = (
    *(CrossView(f"pcap->envoy/{fmt}", "sources_pcap", src, f"fitted on sources.pcapng, scored on the Envoy log "
                f"({'client certificate PEM' if fmt == 'pem' else 'certificate fingerprint only'})")
      for src, fmt in FORMATS.items()),
    *(CrossView(f"envoy->envoy/{fmt}", src, src, f"fitted and scored on the Envoy log "
                f"({'client certificate PEM' if fmt == 'pem' else 'certificate fingerprint only'})")
      for src, fmt in FORMATS.items()),
    CrossView("pcap->pcap", "sources_pcap", "sources_pcap", "fitted on sources.pcapng without the infrastructure "
              "clients; scored on its test rows and every infrastructure row", unseen=("infrastructure",)),
)


#: The columns the targets read: an empty or partial scored table gets them (empty), never a KeyError
COLUMNS = ("view", "_source", "label", "split", "stack", "vantage", "product", "note", "verdict", "reasons")


def frame(scored: pd.DataFrame) -> pd.DataFrame:
    """``scored`` with every column of :data:`COLUMNS` (missing ones empty, text columns as text)."""
    out = scored.copy()
    for col in COLUMNS:
        if col not in out.columns:
            out[col] = pd.Series([], dtype=object) if not len(out) else ""
    for col in ("view", "stack", "vantage", "note", "label"):
        out[col] = out[col].fillna("").astype(str)
    return out


def _unseen(view: CrossView, rows: pd.DataFrame) -> np.ndarray:
    out = rows["vantage"].isin(list(view.unseen)).to_numpy(copy=True)
    for kind in view.unseen_notes:
        out |= note_has(rows["note"], kind)
    return out


def split(view: CrossView, data: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """The view's train rows (clean, split train) and test rows, each in time order; None when a source is absent."""
    if not {view.fit_source, view.score_source} <= set(data["_source"]):
        return None
    fit = data[data["_source"] == view.fit_source]
    train = fit[(fit["split"] == "train") & (fit["label"] == "clean") & ~_unseen(view, fit)]
    scored = data[data["_source"] == view.score_source]
    test = scored[(scored["split"] == "test") | _unseen(view, scored)]
    return (train.sort_values("ts", kind="stable").reset_index(drop=True),
            test.sort_values("ts", kind="stable").reset_index(drop=True))


def _flagged(frame: pd.DataFrame) -> pd.Series:
    return frame["verdict"].isin(["suspicious", "intercepted"])


def _fpr(part: pd.DataFrame) -> tuple[float | None, int, int]:
    """Share of clean rows flagged, flagged count, clean count."""
    clean = part[part["label"] == "clean"]
    m = metrics(clean) if len(clean) else {"fpr": None, "fp": 0}
    return m["fpr"], int(m["fp"]), len(clean)


def _codes(part: pd.DataFrame) -> str:
    """The reason codes on the flagged rows of ``part``, most frequent first ('code (n)')."""
    codes = pd.Series([r["code"] for rs in part.loc[_flagged(part), "reasons"] for r in rs], dtype=object)
    return ", ".join(f"{c} ({n})" for c, n in codes.value_counts().items())


def _fpr_detail(part: pd.DataFrame) -> str:
    out = []
    for name, mask in (("no-sni", note_has(part["note"], "no-sni")), ("renewal", note_has(part["note"], "renewal")),
                       ("chromium", (part["stack"] == "chromium").to_numpy())):
        _, fp, n = _fpr(part[mask])
        out.append(f"{name} {fp}/{n}")
    why = _codes(part[part["label"] == "clean"])
    return "; ".join(out) + (f"; fired on clean rows: {why}" if why else "")


def _carries_certificate(part: pd.DataFrame) -> np.ndarray:
    """Rows that carry the client certificate's fingerprint (the PEM format's reader derives it from the PEM)."""
    if "peer_cert_sha256" not in part.columns:
        return np.zeros(len(part), dtype=bool)
    return part["peer_cert_sha256"].astype("string").notna().to_numpy()


def targets(scored: pd.DataFrame) -> list[dict[str, Any]]:
    """Issue 17's targets beside the measured values; a view absent from ``scored`` is NOT MEASURED."""
    out = []
    for prefix in ("pcap->envoy", "envoy->envoy"):
        for fmt in FORMATS.values():
            part = scored[scored["view"] == f"{prefix}/{fmt}"]
            r, fp, n = _fpr(part)
            out.append(target(f"clean FPR, {prefix} ({fmt} log)", r, at_most=MAX_FPR, n=n,
                              detail=f"{fp}/{n} flagged; {_fpr_detail(part)}" if n else ""))
    chromium = scored[scored["view"].str.contains("->envoy/", regex=False) & (scored["stack"] == "chromium")]
    r, fp, n = _fpr(chromium)
    each = ", ".join(f"{v} {f}/{c}" for v, g in chromium.groupby("view") for _, f, c in [_fpr(g)])
    out.append(target("clean FPR, Chromium alone (pcap->envoy and envoy->envoy)", r, at_most=MAX_FPR, n=n,
                      detail=each + (f"; fired: {_codes(chromium[chromium['label'] == 'clean'])}" if fp else "")))
    pcap = scored[scored["view"] == "pcap->pcap"]
    infra = pcap[pcap["vantage"] == "infrastructure"]
    r, fp, n = _fpr(infra)
    stacks = ", ".join(sorted(set(infra["stack"]) - {""})) or "-"
    out.append(target("clean FPR, new infrastructure clients (pcap-fitted without them)", r, at_most=MAX_FPR, n=n,
                      detail=f"stacks {stacks}; {fp}/{n} flagged" + (f" by {_codes(infra)}" if fp else "")))
    for fmt in FORMATS.values():
        part = scored[scored["view"] == f"envoy->envoy/{fmt}"]
        look = part[note_has(part["note"], "lookalike")]
        carried = _carries_certificate(look)
        caught = _flagged(look[carried])
        rec = float(caught.mean()) if carried.any() else None
        out.append(target(f"look-alike identity caught, rows carrying its certificate (envoy->envoy, {fmt} log)",
                          rec, at_least=1.0, n=int(carried.sum()),
                          detail=f"{int(caught.sum())}/{int(carried.sum())} caught; "
                                 f"{int((~carried).sum())} look-alike rows without the certificate; "
                                 f"fired: {_codes(look[carried]) or '-'}"))
    resumed = pcap[(pcap["vantage"] == "client_to_proxy") & note_has(pcap["note"], "resumed")]
    says = with_reason(resumed, "resumed") if len(resumed) else np.zeros(0, dtype=bool)
    out.append(target("resumed legs through mitmproxy carry the 'resumed' reason (pcap->pcap)",
                      float(says.mean()) if len(resumed) else None, at_least=1.0, n=len(resumed),
                      detail=f"{int(says.sum())}/{len(resumed)}"))
    return out


def measures(scored: pd.DataFrame) -> list[dict[str, Any]]:
    """What issue 17 asks to report beside its targets: no-SNI and renewal rows, look-alikes seen from a
    capture-fitted baseline, recall on the resumed and the full legs through mitmproxy."""
    out = []
    views = sorted(set(scored["view"].astype(str)))
    for kind in ("no-sni", "renewal"):
        for v in views:
            part = scored[scored["view"] == v]
            rows = part[note_has(part["note"], kind)]
            r, fp, n = _fpr(rows)
            if n:
                out.append(reported(f"clean {kind} rows flagged, {v}", r, n=n,
                                    detail=f"{fp}/{n}" + (f" by {_codes(rows)}" if fp else "")))
    for fmt in FORMATS.values():
        part = scored[scored["view"] == f"pcap->envoy/{fmt}"]
        look = part[note_has(part["note"], "lookalike")]
        carried = _carries_certificate(look)
        caught = _flagged(look[carried])
        out.append(reported(f"look-alike identity caught, pcap->envoy ({fmt} log: no identity in the baseline)",
                            float(caught.mean()) if carried.any() else None, n=int(carried.sum()),
                            detail=f"fired: {_codes(look[carried]) or '-'}"))
    pcap = scored[scored["view"] == "pcap->pcap"]
    c2p = pcap[(pcap["vantage"] == "client_to_proxy") & (pcap["label"] == "intercepted")]
    for kind in ("resumed", "full"):
        legs = c2p[note_has(c2p["note"], kind)]
        m = metrics(legs) if len(legs) else {"recall": None, "tp": 0}
        out.append(reported(f"recall, {kind} legs through mitmproxy (client_to_proxy, pcap->pcap)", m["recall"],
                            n=len(legs), detail=f"{m['tp']}/{len(legs)}; fired: {_codes(legs) or '-'}"))
    other = pcap[(pcap["label"] == "intercepted") & (pcap["vantage"] != "client_to_proxy")]
    for (vantage, tag), legs in other.groupby([other["vantage"], note_tag(other["note"])], sort=True):
        m = metrics(legs)
        out.append(reported(f"recall, {vantage} {tag or '-'} legs (pcap->pcap)", m["recall"], n=len(legs),
                            detail=f"{m['tp']}/{len(legs)}; fired: {_codes(legs) or '-'}"))
    return out


def report_section(goals: list[dict[str, Any]], groups: pd.DataFrame, signals: pd.DataFrame,
                   measured: list[dict[str, Any]]) -> str:
    """The markdown of issue 17's part of the report: targets, reported measures, groups, signals."""
    cols = ["target", "goal", "measured", "rows", "status", "detail"]
    met = sum(g["status"] == "PASS" for g in goals)
    rate = ["intercepted", "clean", "tp", "fp", "fn", "recall", "fpr", "signals"]
    lines = [
        f"## Issue 17 targets: {met} of {len(goals)} met", "",
        to_markdown(pd.DataFrame(goals, columns=cols), cols), "",
        "## Issue 17: reported beside the targets (no goal of their own)", "",
        to_markdown(pd.DataFrame(measured, columns=cols), cols) if measured else "-", "",
        "## Issue 17: per view, vantage, stack and note (clean rows flagged are the false positives)", "",
        to_markdown(groups, ["view", "vantage", "label", "stack", "note_tag", *rate]) if len(groups) else "-", "",
        "## Issue 17: per signal and view (`fp`: clean rows it gave a reason on; `fp_flagged`: of those, "
        "flagged; `fired_on`: label/vantage/stack/note n/of)", "",
        to_markdown(signals, ["view", "signal", "weight", "tp", "fp", "fp_flagged", "recall", "fpr", "fired_on"])
        if len(signals) else "-", "",
    ]
    return "\n".join(lines)
