#!/usr/bin/env python3
"""Evaluate detection on the labelled corpus of real stacks: per vantage point, per product, per signal.

    .venv/bin/python benchmarks/evaluate.py [--corpus DIR] [--make] [--per-stack N] [--out FILE] [--jsonl FILE]

The corpus is made by ``scripts/make_eval_corpus.py`` (``--make`` runs it when ``DIR`` has none). Each
file is one sensor: ``clean.pcapng`` + ``intercepted.pcapng`` (the *capture* view: direct legs and
mitmproxy's upstream leg from the client's own address), ``envoy_access.jsonl`` (Envoy mTLS logs),
``inline_client.pcapng`` (between the clients and an inline interceptor: the clients' genuine hellos,
answered by the interceptor) and ``inline_server.pcapng`` (between the interceptor and the servers: its
own upstream connections, from its own address); *inline_both* reads the two inline captures together
with one baseline over both, which is where a proxy host shows. A view whose files are missing is
reported as not measured. ``labels.csv`` gives every connection its ``label``, ``split``, ``vantage``
and ``product`` (derived for an older corpus, see :func:`tlsdetect.detect.evaluation.with_vantage`).

Each view is fitted on ITS OWN clean train rows and scored on its test rows. An intercepted row of
product P is scored with every knowledge row naming P held out (mitmproxy's CA and measured hellos,
sslsplit's, ...): what catches it is evidence that never saw P. Clean rows are scored with the full
knowledge base less the corpus's own measured fingerprints. The ablation scores again with each
signal switched off (knowledge of every corpus product held out). The five interception captures of
``../shared`` are scored with the knowledge learned from them held out, with a baseline of clean
traffic and with no baseline at all.

Output: JSON lines on stdout (and ``--jsonl``), one record per table row, ``"table"`` naming the table;
a markdown report (``--out``). Exit status 0 only when every issue-16 and issue-17 target is met.

Issue 17's views (``benchmarks/evaluate_sources.py``) read part 5, ``sources.pcapng`` and two Envoy logs
of one listener: a baseline fitted on the capture is scored on each log, each log on itself, and the
capture on clients it never saw. Their targets join the exit status; a corpus without part 5 leaves
them NOT MEASURED, which fails it (nothing passes unmeasured).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import evaluate_sources as sources  # noqa: E402  (issue 17's views, beside this script)

from tlsdetect import schema  # noqa: E402
from tlsdetect.detect.baseline import Baseline  # noqa: E402
from tlsdetect.detect.evaluation import (  # noqa: E402
    group_rates,
    hold_out,
    metrics,
    muted,
    note_kind,
    note_tag,
    per_signal,
    target,
    to_markdown,
    with_vantage,
)
from tlsdetect.detect.evidence import SIGNALS  # noqa: E402
from tlsdetect.detect.knowledge import Knowledge, load_knowledge  # noqa: E402
from tlsdetect.detect.mesh import parse_mesh_ca  # noqa: E402
from tlsdetect.detect.scoring import score  # noqa: E402
from tlsdetect.readers.inputs import Inputs  # noqa: E402

DEFAULT_CORPUS = Path.home() / ".cache" / "tlsdetect" / "eval-corpus"
SHARED = REPO.parent / "shared"
#: labels.csv ``source`` -> the corpus files it labels
FILES = {
    "pcap": ("clean.pcapng", "intercepted.pcapng"),
    "envoy": ("envoy_access.jsonl",),
    "inline_client": ("inline_client.pcapng",),
    "inline_server": ("inline_server.pcapng",),
    **sources.FILES,
}
#: Fingerprints the knowledge base learned from an earlier run of the corpus script (mitmproxy's among
#: them): held out everywhere, so the evaluation measures what the baseline and the other signals catch.
CORPUS_SOURCE = "docs/captures/STACKS.json"
#: The knowledge rows made from the five shared interception captures.
CAPTURES_SOURCE = "pcaps/interception"
KEY = ["_source", "client_ip", "_port"]


@dataclass(frozen=True)
class View:
    """One sensor: the corpus sources it reads (together), fitted and scored as one table."""

    name: str
    sources: tuple[str, ...]
    meaning: str


VIEWS = (
    View("capture", ("pcap",), "direct legs and mitmproxy's upstream leg from the client's own address"),
    View("envoy", ("envoy",), "Envoy mTLS access logs (client = mTLS subject, the corpus's mesh CA given)"),
    View("inline_client", ("inline_client",), "between the clients and an inline interceptor"),
    View("inline_server", ("inline_server",), "between an inline interceptor and the servers"),
    View("inline_both", ("inline_client", "inline_server"), "both inline captures, one baseline over both"),
)


def without_sources(kb: Knowledge, needle: str) -> Knowledge:
    """The knowledge base minus every row whose product, stack or source names ``needle`` (see hold_out)."""
    return hold_out(kb, needle)


def _counts(frame: pd.DataFrame, keys: list[str]) -> dict[str, int]:
    """Rows per combination of ``keys``, named 'a/b' (JSON keys)."""
    size = frame.groupby(keys).size()
    return {"/".join(str(x) for x in (k if isinstance(k, tuple) else (k,))): int(v) for k, v in size.items()}


def labelled(corpus: Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Every connection read from the corpus joined to its label, and what could not be joined (counted)."""
    labels = with_vantage(pd.read_csv(corpus / "labels.csv", dtype={"client_port": "int64", "server_port": "int64"},
                                      keep_default_na=False))
    labels["note_kind"] = note_kind(labels["note"])
    parts = []
    for source, files in FILES.items():
        paths = [str(corpus / f) for f in files if (corpus / f).exists()]
        if not paths:
            continue
        df = Inputs(paths).read_all()
        df["_source"] = source
        parts.append(df)
    data = schema.concat(parts)  # certificate columns stay categorical across the sources
    data["_port"] = data["client_port"].astype("int64")
    keyed = labels.rename(columns={"source": "_source", "client_port": "_port"})
    keep = [*KEY, "stack", "label", "split", "path", "vantage", "product", "note", "note_kind"]
    keyed = keyed[[c for c in keep if c in keyed.columns]]
    out = data.merge(keyed, on=KEY, how="left", validate="many_to_one", indicator=True)
    unlabelled = out["_merge"] == "left_only"
    seen = pd.MultiIndex.from_frame(out[KEY])
    unread = ~pd.MultiIndex.from_frame(keyed[KEY]).isin(seen)
    sources_read = {p["_source"].iloc[0] for p in parts}
    missing_file = ~keyed["_source"].isin(sources_read)
    problems = {
        "unlabelled_connections": int(unlabelled.sum()),
        "unlabelled_examples": out.loc[unlabelled, KEY].head(3).to_dict("records"),
        "labelled_not_read": _counts(keyed[unread & ~missing_file], ["_source", "label"]),
        "labelled_file_missing": _counts(keyed[missing_file], ["_source"]),
    }
    out = out[~unlabelled].drop(columns="_merge").reset_index(drop=True)
    for col in ("stack", "path", "vantage", "product", "note", "note_kind"):
        if col in out.columns:
            out[col] = out[col].fillna("").astype(str)
    return out, problems


def _keep_rows(base: pd.DataFrame, other: pd.DataFrame, mask: np.ndarray) -> pd.DataFrame:
    """``base`` with the rows of ``mask`` taken from ``other`` (both scored from one table, same order)."""
    return pd.concat([base[~mask], other[mask]]).sort_index()


def score_view(view: View, data: pd.DataFrame, corpus: Path, kb: Knowledge) -> dict[str, Any] | None:
    """Fit the view's baseline on its clean train rows; score its test rows, each product held out."""
    part = data[data["_source"].isin(list(view.sources))]
    if not set(view.sources) <= set(part["_source"]):
        return None
    part = part.sort_values("ts", kind="stable").reset_index(drop=True)
    train = part[(part["split"] == "train") & (part["label"] == "clean")]
    test = part[part["split"] == "test"].reset_index(drop=True)
    mesh = parse_mesh_ca(str(corpus / "mesh_ca.pem")) if view.name == "envoy" else "learn"
    return fit_and_score(view.name, train, test, mesh, kb)


def score_cross_view(view: sources.CrossView, data: pd.DataFrame, corpus: Path,
                     kb: Knowledge) -> dict[str, Any] | None:
    """An issue-17 view: fitted on one source's clean train rows, scored on another's (or its own) test rows."""
    rows = sources.split(view, data)
    if rows is None:
        return None
    train, test = rows
    return fit_and_score(view.name, train, test, sources_mesh(view, corpus), kb)


def sources_mesh(view: sources.CrossView, corpus: Path) -> Any:
    """The mesh CA a view scoring an Envoy log is given (the deployment names it): part 5's, else learned."""
    if not view.score_source.startswith("envoy"):
        return "learn"
    for name in (sources.MESH_CA, "mesh_ca.pem"):
        if (corpus / name).exists():
            return parse_mesh_ca(str(corpus / name))
    return "learn"


def fit_and_score(name: str, train: pd.DataFrame, test: pd.DataFrame, mesh: Any, kb: Knowledge) -> dict[str, Any]:
    """Fit a baseline on ``train``; score ``test`` with each intercepting product's knowledge held out; ablate."""
    test = test.reset_index(drop=True)
    t0 = time.perf_counter()
    fitted = Baseline(mesh_ca=mesh).fit(train)
    t_fit = time.perf_counter() - t0
    t0 = time.perf_counter()
    headline = score(test, fitted, kb)
    runs = 1
    intercepted = (test["label"] == "intercepted").to_numpy()
    products = sorted({p for p in test.loc[intercepted, "product"] if p})
    held_rows = {}
    for product in products:
        rows = intercepted & (test["product"] == product).to_numpy()
        held = hold_out(kb, product)
        held_rows[product] = _rows(kb) - _rows(held)
        headline = _keep_rows(headline, score(test, fitted, held), rows)
        runs += 1
    t_score = (time.perf_counter() - t0) / runs
    all_out = hold_out(kb, products)
    reference = score(test, fitted, all_out)
    fired = {r["code"] for rs in reference["reasons"] for r in rs}
    ablation = [{"view": name, "signal_off": "(none)", **_ablation_row(reference)}]
    for code in SIGNALS:
        if code not in fired:
            continue
        with muted([code]):
            ablation.append({"view": name, "signal_off": code, **_ablation_row(score(test, fitted, all_out))})
    return {"scored": headline.assign(view=name), "ablation": ablation, "products": products,
            "held_out_rows": ", ".join(f"{p} {n}" for p, n in held_rows.items()),
            "train": len(train), "test": len(test), "fit_s": t_fit, "score_s": t_score}


def _rows(kb: Knowledge) -> int:
    return sum(len(t) for t in vars(kb).values() if isinstance(t, pd.DataFrame))


def _ablation_row(scored: pd.DataFrame) -> dict[str, Any]:
    m = metrics(scored)
    per = group_rates(scored[scored["label"] == "intercepted"], ["vantage", "product"], signals=False)
    by = ", ".join(f"{r['vantage']}/{r['product'] or '-'} {r['recall']:.3f}" for r in per.to_dict("records"))
    return {"recall": m["recall"], "fpr": m["fpr"], "tp": m["tp"], "fp": m["fp"], "recall_by_vantage": by}


def interception_captures(train: pd.DataFrame | None) -> pd.DataFrame | None:
    """The five shared captures, with and without their own knowledge, with a clean baseline and with none."""
    folder = SHARED / "pcaps" / "interception"
    if not folder.is_dir():
        return None
    full = load_knowledge()
    held = hold_out(full, CAPTURES_SOURCE)
    fitted = Baseline().fit(train) if train is not None and len(train) else None
    variants: list[tuple[str, Knowledge, Baseline | None]] = []
    if fitted is not None:
        variants += [("full", full, fitted), ("held out", held, fitted)]
    variants.append(("held out", held, None))
    rows = []
    for f in sorted(folder.glob("*.pcap")):
        conns = Inputs([str(f)]).read_all()
        for kb_name, kb, b in variants:
            s = score(conns, b, kb)
            codes = pd.Series([r["code"] for rs in s["reasons"] for r in rs], dtype=object)
            rows.append({"knowledge": kb_name, "baseline": "clean capture train" if b is not None else "none",
                         "capture": f.name, "connections": len(s), "flagged": int((s["verdict"] != "ok").sum()),
                         "intercepted": int((s["verdict"] == "intercepted").sum()),
                         "products": ", ".join(sorted(set(s["known_product"].dropna().astype(str)))),
                         "signals": ", ".join(f"{c} ({n})" for c, n in codes.value_counts().items())})
    return pd.DataFrame(rows)


def _recall(scored: pd.DataFrame, mask: pd.Series) -> tuple[float | None, int]:
    part = scored[mask & (scored["label"] == "intercepted")]
    return (metrics(part)["recall"] if len(part) else None), len(part)


def targets(scored: pd.DataFrame, captures: pd.DataFrame | None, products: list[str]) -> list[dict[str, Any]]:
    """Issue 16's targets beside the measured values (PASS / FAIL / NOT MEASURED, never hidden)."""
    out = []
    v, prod = scored["view"], scored["product"]
    c2p = (v == "inline_client") & (scored["vantage"] == "client_to_proxy")
    host = (v == "inline_both") & (scored["vantage"] == "proxy_upstream")
    host_alone = (v == "inline_server") & (scored["vantage"] == "proxy_upstream")
    for name, mask, goal in (("client-to-proxy recall (inline_client)", c2p, 0.99),
                             ("proxy-host recall (inline_both)", host, 0.9)):
        r, n = _recall(scored, mask)
        each = []
        for p in products:
            rp, np_ = _recall(scored, mask & (prod == p))
            if np_:
                each.append(f"{p} {rp:.3f} of {np_}")
        if mask is host:
            ra, na = _recall(scored, host_alone)
            each.append(f"inline_server alone {ra:.3f} of {na}" if na else "inline_server alone: no rows")
        out.append(target(name, r, at_least=goal, n=n, detail="; ".join(each)))
        for p in products:
            rp, np_ = _recall(scored, mask & (prod == p))
            if np_:
                out.append(target(f"{name}, {p}", rp, at_least=goal, n=np_))
    # the mimic target is the client's leg (server-side evidence: its own stack and certificate answer);
    # the mimic's upstream leg carries the client's own hello bytes, given beside it, never dropped
    mimic = (prod == "mimic") & c2p
    r, n = _recall(scored, mimic)
    up, n_up = _recall(scored, (prod == "mimic") & host_alone)
    both, n_both = _recall(scored, (prod == "mimic") & host)
    detail = (f"its upstream legs (the client's own hello from the proxy host): inline_server {up} of {n_up}, "
              f"inline_both {both} of {n_both}")
    out.append(target("mimicking proxy recall (client-to-proxy, inline_client)", r, at_least=0.95, n=n,
                      detail=detail))
    clean = scored[scored["label"] == "clean"]
    m = metrics(clean)
    kinds = []
    for kind in ("renewal", "pool"):
        part = clean[clean["note_kind"].str.startswith(kind)]
        kinds.append(f"{kind} {metrics(part)['fpr']:.4f} of {len(part)}" if len(part) else f"{kind}: no rows")
    per_view = ", ".join(f"{k} {int(g['verdict'].ne('ok').sum())}/{len(g)}" for k, g in clean.groupby("view"))
    out.append(target("clean FPR, every view", m["fpr"], at_most=0.005, n=len(clean),
                      detail="; ".join(kinds) + f"; flagged/clean per view: {per_view}"))
    out.append(target("flagged rows without a reason", float(metrics(scored)["flagged_without_reason"]), at_most=0,
                      n=len(scored)))
    if captures is None:
        out.append(target("shared captures flagged, no baseline, own knowledge held out", None, at_least=1.0))
    else:
        nb = captures[(captures["baseline"] == "none") & (captures["knowledge"] == "held out")]
        full = int((nb["flagged"] == nb["connections"]).sum())
        out.append(target("shared captures flagged, no baseline, own knowledge held out",
                          full / len(nb) if len(nb) else None, at_least=1.0, n=len(nb),
                          detail=f"{full} of {len(nb)} captures with every connection flagged; connections "
                                 f"{int(nb['flagged'].sum())}/{int(nb['connections'].sum())}"))
    return out


def _records(table: str, frame: pd.DataFrame | list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = frame.to_dict("records") if isinstance(frame, pd.DataFrame) else frame
    return [{"table": table, **{str(k): v for k, v in r.items()}} for r in rows]


def _json_default(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    return str(v)


def tree_commit() -> str:
    """The checkout's commit, with ``+changes`` when tracked files differ from it (the run measured those)."""
    def git(*a: str) -> str:
        r = subprocess.run(["git", "-C", str(REPO), *a], capture_output=True, text=True, check=False)
        return r.stdout.strip() if r.returncode == 0 else ""
    head = git("rev-parse", "--short", "HEAD") or "unknown"
    return head + ("+changes" if git("status", "--porcelain", "--untracked-files=no") else "")


def corpus_built(corpus: Path) -> dict[str, str]:
    """When each part of the corpus was built, from its manifest (``generated_at``, else the file's mtime)."""
    out = {}
    for name in ("MANIFEST.json", "INLINE.json", "SOURCES.json"):
        f = corpus / name
        if not f.exists():
            continue
        try:
            meta = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            meta = {}
        when = next((str(meta[k]) for k in ("generated_at", "built_at", "finished_at", "started_at")
                     if isinstance(meta, dict) and k in meta), None)
        out[name] = when or dt.datetime.fromtimestamp(f.stat().st_mtime, dt.UTC).isoformat(
            timespec="seconds")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    ap.add_argument("--make", action="store_true", help="make the corpus first if the folder has no labels.csv")
    ap.add_argument("--per-stack", type=int, help="passed to make_eval_corpus.py with --make")
    ap.add_argument("--out", type=Path, help="write the markdown report here (default: benchmarks/results/"
                                             "evaluation-<date>.md)")
    ap.add_argument("--jsonl", type=Path, help="also write the JSON lines here")
    args = ap.parse_args()

    if not (args.corpus / "labels.csv").exists():
        if not args.make:
            print(f"no corpus at {args.corpus}: run with --make, or scripts/make_eval_corpus.py --out {args.corpus}",
                  file=sys.stderr)
            return 2
        cmd = [sys.executable, str(REPO / "scripts" / "make_eval_corpus.py"), "--out", str(args.corpus)]
        if args.per_stack:
            cmd += ["--per-stack", str(args.per_stack)]
        subprocess.run(cmd, check=True)

    load_before = os.getloadavg()
    t0 = time.perf_counter()
    data, problems = labelled(args.corpus)
    t_read = time.perf_counter() - t0
    kb = hold_out(load_knowledge(), CORPUS_SOURCE)
    results = {v.name: score_view(v, data, args.corpus, kb) for v in VIEWS}
    done = [r for r in results.values() if r is not None]
    scored = pd.concat([r["scored"] for r in done], ignore_index=True) if done else sources.frame(pd.DataFrame())
    cross = {v.name: score_cross_view(v, data, args.corpus, kb) for v in sources.VIEWS}
    cross_done = [r for r in cross.values() if r is not None]
    scored17 = sources.frame(pd.concat([r["scored"] for r in cross_done], ignore_index=True) if cross_done
                             else pd.DataFrame())
    products = sorted({p for r in done for p in r["products"]})
    train_capture = data[(data["_source"] == "pcap") & (data["split"] == "train") & (data["label"] == "clean")]
    captures = interception_captures(train_capture if len(train_capture) else None)
    elapsed = time.perf_counter() - t0
    load_after = os.getloadavg()

    meanings = {v.name: v.meaning for v in (*VIEWS, *sources.VIEWS)}
    views = [{"view": name, "issue": 17 if name in cross else 16, "meaning": meanings[name],
              **({"measured": False} if r is None else {
                  "measured": True, "train": r["train"], "test": r["test"], "products": ", ".join(r["products"]),
                  "knowledge_rows_held_out": r["held_out_rows"],
                  "fit_s": round(r["fit_s"], 3), "score_s": round(r["score_s"], 3)})}
             for name, r in (*results.items(), *cross.items())]
    per_vantage = group_rates(scored, ["view", "vantage", "label", "product"])
    notes = group_rates(scored[scored["label"] == "clean"], ["view", "note_kind"], signals=False)
    fired = [per_signal(g).assign(view=k) for k, g in scored.groupby("view", sort=False)]
    fired = [f for f in fired if len(f)]  # an empty frame would turn the counts into floats
    signals = pd.concat(fired, ignore_index=True) if fired else pd.DataFrame()
    ablation = [row for r in (*done, *cross_done) for row in r["ablation"]]
    goals = [{"issue": 16, **g} for g in targets(scored, captures, products)]
    goals += [{"issue": 17, **g} for g in sources.targets(scored17)]
    groups17 = group_rates(scored17.assign(note_tag=note_tag(scored17["note"])),
                           ["view", "vantage", "label", "stack", "note_tag"]) if len(scored17) else pd.DataFrame()
    fired17 = [per_signal(g.assign(note_tag=note_tag(g["note"])), where=("label", "vantage", "stack", "note_tag"))
               .assign(view=k) for k, g in scored17.groupby("view", sort=False)]
    fired17 = [f for f in fired17 if len(f)]
    signals17 = pd.concat(fired17, ignore_index=True) if fired17 else pd.DataFrame()
    measured17 = sources.measures(scored17)
    run = {"date": dt.date.today().isoformat(), "corpus": str(args.corpus), "connections": len(data),
           "commit": tree_commit(), "corpus_built": corpus_built(args.corpus),
           "elapsed_s": round(elapsed, 1), "read_s": round(t_read, 1),
           "load_before": [round(x, 2) for x in load_before], "load_after": [round(x, 2) for x in load_after],
           "cpus": os.cpu_count(), "signals": list(SIGNALS), **problems}

    records = [{"table": "run", **run}, *_records("view", views), *_records("vantage", per_vantage),
               *_records("clean_by_note", notes), *_records("signal", signals), *_records("ablation", ablation),
               *_records("target", goals), *_records("sources_group", groups17),
               *_records("sources_signal", signals17), *_records("measure", measured17)]
    if captures is not None:
        records += _records("shared_capture", captures)
    lines = [json.dumps(r, default=_json_default) for r in records]
    print("\n".join(lines))
    if args.jsonl:
        args.jsonl.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = args.out or REPO / "benchmarks" / "results" / f"evaluation-{dt.date.today().isoformat()}.md"
    out.write_text(report(run, views, per_vantage, notes, signals, ablation, goals, captures)
                   + sources.report_section([g for g in goals if g["issue"] == 17], groups17, signals17, measured17),
                   encoding="utf-8")
    return 0 if all(g["status"] == "PASS" for g in goals) else 1


def report(run: dict[str, Any], views: list[dict[str, Any]], per_vantage: pd.DataFrame, notes: pd.DataFrame,
           signals: pd.DataFrame, ablation: list[dict[str, Any]], goals: list[dict[str, Any]],
           captures: pd.DataFrame | None) -> str:
    """The markdown report: targets first, then the tables they come from."""
    rate = ["intercepted", "clean", "tp", "fp", "fn", "recall", "fpr"]
    view_cols = ["view", "issue", "meaning", "measured", "train", "test", "products", "knowledge_rows_held_out",
                 "fit_s", "score_s"]
    goals16 = [g for g in goals if g["issue"] == 16]
    met = sum(g["status"] == "PASS" for g in goals16)
    met_all = sum(g["status"] == "PASS" for g in goals)
    lines = [
        f"# Detection evaluation per vantage point and source — {run['date']}",
        "",
        f"Corpus `{run['corpus']}`: {run['connections']} connections read and labelled. Command: "
        f"`.venv/bin/python benchmarks/evaluate.py --corpus {run['corpus']}`; {run['elapsed_s']} s in all "
        f"(reading {run['read_s']} s); load average {run['load_before']} before, {run['load_after']} after, "
        f"{run['cpus']} CPUs. Tree: {run['commit']}. Corpus built: "
        f"{', '.join(f'{k} {v}' for k, v in run['corpus_built'].items()) or 'unknown'}. "
        f"Signals at run time: {', '.join(run['signals'])}.",
        f"Unlabelled connections skipped: {run['unlabelled_connections']}; labelled but not read: "
        f"{run['labelled_not_read'] or 'none'}; labelled, file absent: {run['labelled_file_missing'] or 'none'}.",
        "",
        f"All targets (issues 16 and 17, the exit status): {met_all} of {len(goals)} met.",
        "",
        f"## Issue 16 targets: {met} of {len(goals16)} met",
        "",
        to_markdown(pd.DataFrame(goals16), ["target", "goal", "measured", "rows", "status", "detail"]),
        "",
        "## Views (issue 16: each sensor fitted on its own clean train rows, scored on its test rows; "
        "issue 17: fitted on one source, scored on another)",
        "",
        to_markdown(pd.DataFrame([{k: v.get(k) for k in view_cols} for v in views], dtype=object)),
        "",
        "## Per view, vantage point and product (intercepted rows scored with the product's knowledge held out)",
        "",
        to_markdown(per_vantage, ["view", "vantage", "label", "product", *rate, "signals"]),
        "",
        "## Clean rows by kind (renewal: a server's new certificate; pool: two stacks behind one name)",
        "",
        to_markdown(notes, ["view", "note_kind", "clean", "fp", "fpr"]),
        "",
        "## Per signal: where it fired (true and false positives)",
        "",
        to_markdown(signals, ["view", "signal", "weight", "tp", "fp", "recall", "fpr", "fired_on"])
        if len(signals) else "-",
        "",
        "## Ablation: each signal switched off (knowledge of every corpus product held out)",
        "",
        to_markdown(pd.DataFrame(ablation), ["view", "signal_off", "recall", "fpr", "tp", "fp", "recall_by_vantage"]),
        "",
    ]
    if captures is not None:
        lines += ["## The five interception captures of ../shared", "",
                  "`held out`: every knowledge row made from these captures removed.", "",
                  to_markdown(captures), ""]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
