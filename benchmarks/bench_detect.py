#!/usr/bin/env python3
"""Time ``Baseline().fit`` and ``score`` on a synthetic connections table built from real hellos.

Reads the project's clean captures (``pcaps/``, as ``docs/captures/MANIFEST.json`` labels them) and,
when present, ``../shared/pcaps/reference`` with :func:`tlsdetect.readers.pcap.engine.iter_pcap`:
every row with a ClientHello is a real connection
(hello lists, JA3/JA3N/JA4, SNI, issuers when the capture shows the certificate). The rows are
grouped into "stacks" by JA3N (one TLS library configuration, whatever the SNI). Then, with numpy
indexing only (no Python per row), ``--rows`` connections are drawn for each of two tables:

* ``--clients`` client IPs ``10.x.y.z`` with a lognormal activity level and a stable stack set
  (80% one stack, 15% two, 5% three; the first carries 90% of the client's connections); every
  connection copies a real row of one of its client's stacks (its SNI, server and issuer with it);
* timestamps spread over two days, in time order; the test table covers the two days after;
* in the test table only, ``--intercept`` of the rows become an interception-like hello (the
  rows of ``../shared/pcaps/interception``, else stacks no client was given) and ``--switch``
  of the rows with a server issuer get another one (half a real issuer of another capture, half
  a known interception CA of the knowledge base), so the scorer has real work.

Times in one run, best of ``--repeat``: ``Baseline().fit(train)``, ``Baseline(model=False).fit``
and ``score(test, baseline)``; ``--profile`` adds a cProfile of one fit and one score (top 15
by cumulative time, and the time of each function ``score`` calls: every signal's share). Prints a
Markdown table and writes it to ``benchmarks/results/detect-<date>.md``.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import io
import json
import os
import platform
import pstats
import resource
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sklearn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tlsdetect import schema  # noqa: E402
from tlsdetect.detect.baseline import Baseline  # noqa: E402
from tlsdetect.detect.issuers import dn_key  # noqa: E402
from tlsdetect.detect.knowledge import load_knowledge  # noqa: E402
from tlsdetect.detect.scoring import score  # noqa: E402
from tlsdetect.readers.pcap.engine import iter_pcap  # noqa: E402

SHARED = ROOT.parent / "shared" / "pcaps"
DAY_NS = 86_400 * 10**9
START = pd.Timestamp("2026-01-05", tz="UTC").value
FIT_TARGET, SCORE_TARGET = 200_000, 500_000
#: Interception CA names from the knowledge base (patterns without regex syntax), as issuer DNs.
KB_CA_DNS = ("CN=avast! Web/Mail Shield Root,O=avast! Web/Mail Shield", "CN=BadSSL MITM Software Test")
#: Columns a connection of the synthetic client keeps from its own draw, not from the copied row.
CLIENT_SIDE = ("ts", "source", "conn_id", "client_ip", "client_port")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def clean_captures() -> list[Path]:
    """The project's captures of clean traffic (docs/captures/MANIFEST.json); pcaps/ also holds an interception demo."""
    manifest = json.loads((ROOT / "docs" / "captures" / "MANIFEST.json").read_text())
    return [ROOT / "pcaps" / name for name, c in manifest["captures"].items() if c["label"] == "clean"]


def read_rows(patterns: list[Path]) -> tuple[pd.DataFrame, int]:
    """Rows with a ClientHello from every capture matching the patterns, and the number of files."""
    files = sorted({p for pat in patterns for p in pat.parent.glob(pat.name) if p.is_file()})
    chunks = [chunk for f in files for chunk in iter_pcap(f)]
    if not chunks:
        return schema.empty(), len(files)
    df = schema.conform(schema.concat(chunks))
    keep = df["ch_version"].notna() & df["ja3_full"].notna() & (df["ja4"].notna() | df["ja3n"].notna())
    return df[keep.to_numpy()].reset_index(drop=True), len(files)


def as_string(values: np.ndarray) -> pd.arrays.StringArray:
    return pd.array(values, dtype="string")


def build(pool: pd.DataFrame, stacks: dict[str, Any], n: int, day0: int, rng: np.random.Generator,
          row_of_client: np.ndarray | None = None) -> tuple[pd.DataFrame, np.ndarray]:
    """``n`` connections of the clients in ``stacks``; returns the table and each row's client."""
    client = rng.choice(len(stacks["ips"]), size=n, p=stacks["activity"]) if row_of_client is None else row_of_client
    k = stacks["k"][client]
    u = rng.random(n)
    slot = np.where((k == 1) | (u < 0.9), 0, 1 + np.minimum((rng.random(n) * (k - 1)).astype(np.int64), k - 2))
    stack = stacks["sets"][client, slot]
    pick = stacks["starts"][stack] + (rng.random(n) * stacks["sizes"][stack]).astype(np.int64)
    rows = stacks["order"][pick]
    df = pool.take(rows).reset_index(drop=True)
    offsets = np.sort(rng.integers(0, 2 * DAY_NS, n))
    df["ts"] = pd.DatetimeIndex((START + day0 * DAY_NS + offsets).astype("datetime64[ns]")).tz_localize("UTC")
    df["source"] = as_string(np.full(n, "bench-synthetic", dtype=object))
    df["conn_id"] = as_string(np.char.add(f"d{day0}-", np.arange(n).astype(str)))
    df["client_ip"] = as_string(stacks["ips"][client])
    df["client_port"] = pd.array(rng.integers(1024, 65536, n), dtype="Int32")
    return df, client


def make_clients(n_stacks: int, reserved: np.ndarray, n_clients: int, rng: np.random.Generator) -> dict[str, Any]:
    """Client IPs, activity and stack sets (indexes of stacks; ``reserved`` stacks are never given)."""
    ints = rng.choice(2**24, size=n_clients, replace=False)
    ips = ("10." + pd.Series(ints >> 16).astype(str) + "." + pd.Series((ints >> 8) & 255).astype(str) + "."
           + pd.Series(ints & 255).astype(str)).to_numpy(dtype=object)
    activity = rng.lognormal(0.0, 1.0, n_clients)
    usable = np.setdiff1d(np.arange(n_stacks), reserved)
    popularity = 1.0 / (1.0 + rng.permutation(len(usable)))  # a few stacks are common, most are rare
    k = rng.choice([1, 2, 3], size=n_clients, p=[0.8, 0.15, 0.05])
    sets = usable[rng.choice(len(usable), size=(n_clients, 3), p=popularity / popularity.sum())]
    return {"ips": ips, "activity": activity / activity.sum(), "k": k, "sets": sets}


def inject(test: pd.DataFrame, pool: pd.DataFrame, icpt_rows: np.ndarray, share: float, switch: float,
           rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Interception-like hellos and switched issuers in the test table (in place); their row numbers."""
    n = len(test)
    for col in schema.CATEGORY_COLUMNS:  # written row by row below: as text here, categorical again after conform
        test[col] = test[col].astype("string")
    hit = np.sort(rng.choice(n, size=int(n * share), replace=False))
    if len(icpt_rows) and len(hit):
        repl = pool.take(icpt_rows[rng.integers(0, len(icpt_rows), len(hit))]).reset_index(drop=True)
        for col in test.columns:
            if col not in CLIENT_SIDE:
                test.iloc[hit, test.columns.get_loc(col)] = repl[col].to_numpy(dtype=object)
    with_issuer = np.setdiff1d(np.flatnonzero(test["server_issuer"].notna().to_numpy()), hit)
    sw = np.sort(rng.choice(with_issuer, size=min(len(with_issuer), int(n * switch)), replace=False))
    if len(sw):
        iss = pool[["server_issuer", "server_issuer_key", "server_issuer_akid"]].dropna(subset=["server_issuer"])
        iss = iss.drop_duplicates("server_issuer").reset_index(drop=True)
        kb_dns = pd.DataFrame({"server_issuer": list(KB_CA_DNS), "server_issuer_key": [dn_key(d) for d in KB_CA_DNS],
                               "server_issuer_akid": [None] * len(KB_CA_DNS)})
        current = pd.Index(iss["server_issuer"]).get_indexer(test["server_issuer"].to_numpy(dtype=object)[sw])
        other = (current + 1 + rng.integers(0, max(1, len(iss) - 1), len(sw))) % max(1, len(iss))
        choice = pd.concat([iss, kb_dns], ignore_index=True)
        to_kb = rng.random(len(sw)) < 0.5
        pick = np.where(to_kb, len(iss) + rng.integers(0, len(kb_dns), len(sw)), other)
        for col in choice.columns:
            test.iloc[sw, test.columns.get_loc(col)] = choice[col].to_numpy(dtype=object)[pick]
    return hit, sw


def best(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(repeat):
        out = None
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def profile(fn: Callable[[], Any], top: int) -> tuple[str, pstats.Stats]:
    prof = cProfile.Profile()
    prof.enable()
    fn()
    prof.disable()
    buf = io.StringIO()
    stats = pstats.Stats(prof, stream=buf)
    stats.sort_stats("cumulative").print_stats(top)
    return buf.getvalue(), stats


def per_callee(stats: pstats.Stats, module: str, caller: str) -> list[tuple[str, float]]:
    """Cumulative seconds of each function ``caller`` (of ``module``, a file name) called, largest first: the
    share of each signal in ``score``."""
    rows = []
    for (f, line, name), (_, _, _, _, callers) in stats.stats.items():  # type: ignore[attr-defined]
        ct = sum(c[3] for (cf, _, cn), c in callers.items() if Path(cf).name == module and cn == caller)
        if ct > 0:
            rows.append((f"{Path(f).name}:{line} {name}", ct))
    return sorted(rows, key=lambda r: -r[1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000, help="connections in each of the train and test tables")
    ap.add_argument("--clients", type=int, default=20_000)
    ap.add_argument("--intercept", type=float, default=0.01, help="share of test rows with an interception hello")
    ap.add_argument("--switch", type=float, default=0.005, help="share of test rows whose issuer is switched")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--profile", action="store_true", help="cProfile one fit and one score, top 15 by cumulative")
    ap.add_argument("--results", type=Path, default=None)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)

    t0 = time.perf_counter()
    real, n_real_files = read_rows([*clean_captures(), SHARED / "reference" / "*.pcap*"])
    icpt, n_icpt_files = read_rows([SHARED / "interception" / "*.pcap*"])
    if len(real) == 0:
        raise SystemExit("no ClientHello in pcaps/ (nor ../shared/pcaps/reference): nothing to build from")
    pool = schema.concat([real, icpt]) if len(icpt) else real
    stack_code, stack_ja3n = pd.factorize(real["ja3n"].fillna(real["ja3_full"]), sort=True)
    order = np.argsort(stack_code, kind="stable")
    sizes = np.bincount(stack_code, minlength=len(stack_ja3n))
    reserved = np.array([], dtype=np.int64)
    if len(icpt):
        icpt_rows = np.arange(len(real), len(pool))
        origin = f"{len(icpt)} hellos of {n_icpt_files} interception captures"
    else:  # stacks no client is given play the interception product
        reserved = rng.choice(len(stack_ja3n), size=max(1, len(stack_ja3n) // 10), replace=False)
        icpt_rows = np.flatnonzero(np.isin(stack_code, reserved))
        origin = f"{len(reserved)} real stacks no client was given"
    stacks = make_clients(len(stack_ja3n), reserved, args.clients, rng)
    stacks.update(order=order, sizes=sizes, starts=np.concatenate([[0], np.cumsum(sizes)[:-1]]))
    train, clients = build(pool, stacks, args.rows, 0, rng)
    test, _ = build(pool, stacks, args.rows, 2, rng)
    hit, sw = inject(test, pool, icpt_rows, args.intercept, args.switch, rng)
    train, test = schema.conform(train), schema.conform(test)
    schema.validate(train)
    schema.validate(test)
    gen = time.perf_counter() - t0
    rss_build = peak_rss_mb()
    used = len(np.unique(stacks["sets"][np.arange(3)[None, :] < stacks["k"][:, None]]))
    print(f"built {args.rows:,} + {args.rows:,} rows from {len(real)} real hellos ({real['ja3n'].nunique()} stacks "
          f"by JA3N, {used} given to clients; {n_real_files} captures) in {gen:.1f} s; "
          f"{len(np.unique(clients)):,} clients in train; interception: {origin}; peak RSS {rss_build:,.0f} MB",
          flush=True)

    fit_s, base = best(lambda: Baseline().fit(train), args.repeat)
    rss_fit = peak_rss_mb()
    fit_nm_s, _ = best(lambda: Baseline(model=False).fit(train), args.repeat)
    load_knowledge()  # read once per process; not part of scoring a table
    score_s, scored = best(lambda: score(test, base), args.repeat)
    rss_score = peak_rss_mb()

    verdicts = scored["verdict"].value_counts().to_dict()
    flagged = (scored["verdict"] != "ok").to_numpy()
    inj_hit = f"{flagged[hit].mean():.1%}" if len(hit) else "n/a"
    inj_sw = f"{flagged[sw].mean():.1%}" if len(sw) else "n/a"
    other = np.ones(len(scored), dtype=bool)
    other[hit] = other[sw] = False
    codes = pd.Series([r["code"] for rs in scored["reasons"].to_numpy()[flagged] for r in rs]).value_counts()
    del scored

    results = [
        ("`Baseline().fit(train)` (tables + novelty model)", args.rows, fit_s, FIT_TARGET),
        ("`Baseline(model=False).fit(train)` (tables only)", args.rows, fit_nm_s, FIT_TARGET),
        ("`score(test, baseline)`", args.rows, score_s, SCORE_TARGET),
    ]
    cpus = len(os.sched_getaffinity(0))
    lines = [
        f"# Detection benchmark (fit and score), {dt.date.today().isoformat()}",
        "",
        f"Command: `{shlex.join(['.venv/bin/python', 'benchmarks/bench_detect.py', *sys.argv[1:]])}`",
        "",
        f"Train and test tables: {args.rows:,} connections each, {args.clients:,} client IPs, built from "
        f"{len(real)} real hellos of {n_real_files} captures ({len(stack_ja3n)} JA3N stacks); timestamps over two "
        f"days each; test: {len(hit):,} rows with an interception-like hello ({origin}), {len(sw):,} rows with a "
        f"switched issuer. Built in {gen:.1f} s. Best of {args.repeat}.",
        f"Machine: {platform.machine()}, {cpus} CPUs (nproc), {platform.python_implementation()} "
        f"{platform.python_version()}, numpy {np.__version__}, pandas {pd.__version__}, scikit-learn "
        f"{sklearn.__version__}.",
        "",
        "| step | rows | seconds | rows/s | target | met? |",
        "| --- | ---: | ---: | ---: | ---: | :---: |",
    ]
    for name, n, secs, target in results:
        rate = n / secs
        lines.append(f"| {name} | {n:,} | {secs:.2f} | {rate:,.0f} | >= {target:,} | "
                     f"{'yes' if rate >= target else 'no'} |")
    lines += [
        "",
        f"Peak RSS: {rss_build:,.0f} MB after building both tables, {rss_fit:,.0f} MB after fitting, "
        f"{rss_score:,.0f} MB after scoring.",
        "",
        f"Verdicts on the test table: {', '.join(f'{k} {v:,}' for k, v in verdicts.items())}; flagged: "
        f"{inj_hit} of the interception-like rows, {inj_sw} of the switched-issuer rows, "
        f"{flagged[other].mean():.2%} of the untouched rows. Reasons: "
        + ", ".join(f"{k} {v:,}" for k, v in codes.items()) + ".",
    ]
    text = "\n".join(lines) + "\n"
    print(text, flush=True)

    if args.profile:
        sections = []
        for what, fn in (("Baseline().fit(train)", lambda: Baseline().fit(train)),
                         ("score(test, baseline)", lambda: score(test, base))):
            report, stats = profile(fn, 15)
            body = report[report.find("   ncalls"):].rstrip() if "   ncalls" in report else report.rstrip()
            sections += [f"### cProfile: {what}, top 15 by cumulative time", "", "```", body, "```", ""]
            if what.startswith("score"):
                sections += ["Score time per function `score` calls (cumulative, cProfile): each signal's share",
                             "", "| function | seconds |", "| --- | ---: |"]
                sections += [f"| `{name}` | {ct:.2f} |" for name, ct in per_callee(stats, "scoring.py", "score")[:16]]
                sections.append("")
        prof_text = "\n".join(["## Profile", "", *sections])
        print(prof_text)
        text += "\n" + prof_text
    path = args.results or ROOT / "benchmarks" / "results" / f"detect-{dt.date.today().isoformat()}.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    print(f"written to {path}")


if __name__ == "__main__":
    main()
