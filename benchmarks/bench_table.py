#!/usr/bin/env python3
"""The table view (issue 19 item 3) in two trees: the time to write ``--format table`` of N rows as the CLI does.

Why: rich lays a table out at ~1 ms a row, so the default output of ``fingerprint``/``score`` on a big result
took seconds (4.7 s for 5,000 rows); the view now formats only the rows it shows.

Method: the connections table of a ``make_big_pcap.py`` capture (``--pcap``, built when missing) is read once
with the first tree's reader and pickled; for each size, each tree (``--tree NAME=PATH``, first on
``PYTHONPATH``) runs in its own process: unpickle, then, timed, ``cli.common.open_sink(stack, "table", None,
None)`` (the sink the CLI opens for the default table, to /dev/null) fed the first N rows in the reader's
10,000-row chunks, and closed. A tree whose view can rank is given ``score``'s rank (flagged first) on a
``verdict`` column (every 50th row ``intercepted``), so its time includes the ranking. Trees alternate
round robin; best of ``--rounds`` (``--big-rounds`` for sizes over 20,000 rows: the old tree takes minutes
there), load average beside each.

Output: ``benchmarks/results/table-<date>.md`` and a JSON line per number.

    python benchmarks/bench_table.py --tree new=. --tree old=/tmp/startup-old
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: Run in each tree: time writing the first N rows of the pickled frame through the CLI's table sink.
CHILD = """
import contextlib, os, pickle, sys, time
import pandas as pd
from tlsdetect.cli import common
import tlsdetect
assert tlsdetect.__file__.startswith(sys.argv[3]), tlsdetect.__file__
df = pd.read_pickle(sys.argv[1]).iloc[: int(sys.argv[2])]
out = open(os.devnull, "w")
sys.stdout, real = out, sys.stdout
start = time.perf_counter()
try:  # a tree with a ranked view: score's ranking (flagged first), so its cost is in the time
    from tlsdetect.sinks.table import by_column
    kw = {"rank": by_column("verdict", ("ok", "suspicious", "intercepted"))}
except ImportError:
    kw = {}
with contextlib.ExitStack() as stack:
    sink = common.open_sink(stack, "table", None, None, **kw)
    for i in range(0, len(df), 10_000):
        sink.write(df.iloc[i : i + 10_000])
    sink.close()
took = time.perf_counter() - start
sys.stdout = real
print(took, sink.rows)
"""


#: Run in the first tree: read the capture, add the verdict column, pickle; print the row count.
READ = """
import sys
import pandas as pd
from tlsdetect.readers.inputs import Inputs
df = Inputs([sys.argv[1]]).read_all()
df["verdict"] = pd.Categorical(["intercepted" if i % 50 == 0 else "ok" for i in range(len(df))],
                               categories=["ok", "suspicious", "intercepted"])
df.to_pickle(sys.argv[2])
print(len(df))
"""


def _frame(pcap: Path, connections: int, pickled: Path, tree: Path) -> int:
    """Read the capture once with ``tree``'s reader (the capture built when missing), pickled; its row count."""
    if not pcap.exists():
        subprocess.run([sys.executable, str(ROOT / "benchmarks" / "make_big_pcap.py"), "--connections",
                        str(connections), "--target-mb", "150", "--hello-fraction", "0.5", "-o", str(pcap),
                        "--quiet"], check=True)
    done = subprocess.run([sys.executable, "-c", READ, str(pcap), str(pickled)], cwd=tree,
                          env={**os.environ, "PYTHONPATH": str(tree)}, capture_output=True, text=True, check=True)
    return int(done.stdout.split()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tree", action="append", default=[], metavar="NAME=PATH")
    p.add_argument("--pcap", type=Path, default=Path(tempfile.gettempdir()) / "tlsdetect-bench-table.pcap")
    p.add_argument("--connections", type=int, default=100_000)
    p.add_argument("--sizes", default="5000,100000")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--big-rounds", type=int, default=1)
    p.add_argument("--results", type=Path,
                   default=ROOT / "benchmarks" / "results" / f"table-{dt.date.today().isoformat()}.md")
    args = p.parse_args(argv)
    trees = {n: Path(t).resolve() for n, t in (x.split("=", 1) for x in args.tree)} or {"this": ROOT}
    sizes = [int(s) for s in args.sizes.split(",")]

    with tempfile.TemporaryDirectory() as tmp:
        pickled = Path(tmp) / "frame.pkl"
        total = _frame(args.pcap, args.connections, pickled, next(iter(trees.values())))
        best: dict[tuple[str, int], tuple[float, float]] = {}
        every: dict[tuple[str, int], list[float]] = {}
        for n in sizes:
            for _ in range(args.rounds if n <= 20_000 else args.big_rounds):
                for name, tree in trees.items():
                    load = os.getloadavg()[0]
                    env = {**os.environ, "PYTHONPATH": str(tree)}
                    done = subprocess.run([sys.executable, "-c", CHILD, str(pickled), str(n), str(tree)], cwd=tree,
                                          env=env, capture_output=True, text=True, check=True)
                    secs, rows = done.stdout.split()
                    if int(rows) != min(n, total):
                        raise SystemExit(f"{name}: the sink counted {rows} rows of {min(n, total)}")
                    every.setdefault((name, n), []).append(float(secs))
                    best[(name, n)] = min(best.get((name, n), (float(secs), load)), (float(secs), load))
                    print(json.dumps({"tree": name, "rows": n, "s": round(float(secs), 3), "load": load}))

    names = list(trees)
    lines = [f"# Table view, {dt.date.today().isoformat()}: `--format table` of N rows, {' vs '.join(names)}", "",
             f"`benchmarks/bench_table.py` ({' '.join(f'--tree {n}={trees[n]}' for n in names)}): the first N rows "
             f"of the connections table of a {total:,}-connection `make_big_pcap.py` capture written through the "
             "CLI's table sink (`cli.common.open_sink`, 10,000-row chunks, to /dev/null), one process per run, "
             f"trees round robin; best of {args.rounds} ({args.big_rounds} over 20,000 rows), 1-minute load "
             "average before that run; 2 cores shared with other work.", "",
             "| rows | " + " | ".join(f"{n} s (load)" for n in names)
             + (f" | {names[0]} / {names[1]} |" if len(names) > 1 else " |"),
             "| ---: | " + " | ".join("---:" for _ in names) + (" | ---: |" if len(names) > 1 else " |")]
    for n in sizes:
        cells = [f"{best[(t, n)][0]:.3f} ({best[(t, n)][1]:.2f})" for t in names]
        ratio = f" | {best[(names[0], n)][0] / best[(names[1], n)][0]:.3f}" if len(names) > 1 else ""
        lines.append(f"| {n:,} | " + " | ".join(cells) + ratio + " |")
    lines += ["", "Every run (s): " + "; ".join(f"{t} {n:,}: {', '.join(f'{s:.3f}' for s in v)}"
                                                 for (t, n), v in every.items()), ""]
    args.results.write_text("\n".join(lines))
    print(f"wrote {args.results}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
