#!/usr/bin/env python3
"""Start-up of the command line (issue 19 item 4): each command's wall time in two trees, and what it imports.

Why: every command paid for pandas, PyArrow and scikit-learn at start; the target is ``tlsdetect fingerprint
small.pcap`` in under 0.3 s, with scikit-learn only where the model is used. A small input makes the run
mostly start-up, so the commands here are the README's on the project's own captures.

Method: each command runs as ``python -m tlsdetect ...`` in each tree given (``--tree NAME=PATH``, e.g. this
checkout and a ``git worktree`` of the commit before a change; the tree is put first on ``PYTHONPATH`` and the
run checks that ``tlsdetect`` is imported from it), beside bare-interpreter floors (``python -c pass``,
``import numpy``, ``import pandas``, which imports PyArrow too). Everything alternates round robin,
``--rounds`` rounds, best kept; the 1-minute load average is read before every run and written beside
each number. Then ``-X importtime`` of each command in the first tree, best of ``--import-rounds``,
summed per top-level package (self time, so nothing counts twice).

Output: ``benchmarks/results/startup-<date>.md`` (``--results``) and a JSON line per number on stdout.

    python benchmarks/bench_startup.py --tree new=. --tree old=/tmp/startup-old
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PCAP = "pcaps/tls12_stacks.pcap"
#: The JA3 of the OpenSSL 3.0 stack of the project's captures (known to the knowledge base).
JA3 = "22558766122974704364c9c75c5cce0a"

#: name -> tlsdetect arguments; paths are relative to the tree (each tree has its own pcaps and baselines).
COMMANDS = {
    "--version": ["--version"],
    "--help": ["--help"],
    "fingerprint small.pcap -f jsonl": ["fingerprint", PCAP, "-f", "jsonl", "-o", os.devnull, "--no-progress"],
    "fingerprint small.pcap (table)": ["fingerprint", PCAP, "--no-progress"],
    "score pcaps/ --baseline (table)": ["score", "pcaps", "--baseline", "baselines/sample", "--no-progress"],
    "lookup JA3": ["lookup", JA3],
}
FLOORS = {
    "python -c pass": "pass",
    "import numpy": "import numpy",
    "import pandas (+numpy, pyarrow)": "import pandas",
    "import sklearn.neighbors (+scipy)": "import sklearn.neighbors",
}


def _load() -> float:
    return os.getloadavg()[0]


def _timed(argv: list[str], cwd: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def _env(tree: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(tree), "PYTHONDONTWRITEBYTECODE": "", "COLUMNS": "200"}


def _check_tree(tree: Path) -> None:
    """The tree's own ``tlsdetect`` is the one imported (an editable install must not win)."""
    got = subprocess.run([sys.executable, "-c", "import tlsdetect; print(tlsdetect.__file__)"], cwd=tree,
                         env=_env(tree), capture_output=True, text=True, check=True).stdout.strip()
    if not Path(got).resolve().is_relative_to(tree.resolve()):
        raise SystemExit(f"{tree}: imports tlsdetect from {got}")


def _import_self_times(text: str) -> dict[str, float]:
    """``-X importtime`` output summed per top-level package: self microseconds -> milliseconds."""
    out: dict[str, float] = collections.defaultdict(float)
    for line in text.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+\d+ \|\s*(\S+)", line)
        if m:
            out[m.group(2).split(".")[0]] += int(m.group(1)) / 1000
    return dict(out)


def _imports(tree: Path, args: list[str], rounds: int) -> dict[str, float]:
    """Per package, the smallest self time over ``rounds`` runs (ms)."""
    best: dict[str, float] = {}
    for _ in range(rounds):
        done = subprocess.run([sys.executable, "-X", "importtime", "-m", "tlsdetect", *args], cwd=tree,
                              env=_env(tree), capture_output=True, text=True, check=True)
        for k, v in _import_self_times(done.stderr).items():
            best[k] = min(best.get(k, v), v)
    return best


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tree", action="append", default=[], metavar="NAME=PATH",
                   help="a checkout to time (repeat; the first is the one whose imports are listed)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--import-rounds", type=int, default=3)
    p.add_argument("--results", type=Path,
                   default=ROOT / "benchmarks" / "results" / f"startup-{dt.date.today().isoformat()}.md")
    args = p.parse_args(argv)
    trees = dict(t.split("=", 1) for t in args.tree) or {"this": str(ROOT)}
    paths = {name: Path(path).resolve() for name, path in trees.items()}
    for path in paths.values():
        _check_tree(path)

    runs: dict[tuple[str, str], list[tuple[float, float]]] = {}
    jobs: list[tuple[str, str, list[str], Path, dict[str, str]]] = []
    for name, code in FLOORS.items():
        jobs.append(("python", name, [sys.executable, "-c", code], ROOT, dict(os.environ)))
    for cmd, cargs in COMMANDS.items():
        for tree, path in paths.items():
            jobs.append((tree, cmd, [sys.executable, "-m", "tlsdetect", *cargs], path, _env(path)))
    for _ in range(args.rounds):
        for tree, cmd, argv_, cwd, env in jobs:
            load = _load()
            runs.setdefault((tree, cmd), []).append((_timed(argv_, cwd, env), load))

    best = {key: min(v) for key, v in runs.items()}
    for (tree, cmd), (secs, load) in best.items():
        print(json.dumps({"tree": tree, "command": cmd, "best_s": round(secs, 3), "load": load,
                          "all_s": [round(s, 3) for s, _ in runs[(tree, cmd)]]}))

    first = next(iter(paths))
    imports = {cmd: _imports(paths[first], cargs, args.import_rounds) for cmd, cargs in COMMANDS.items()}

    names = list(paths)
    lines = [f"# Start-up, {dt.date.today().isoformat()}: each command, {' vs '.join(names)}",
             "",
             f"`benchmarks/bench_startup.py` ({' '.join(f'--tree {n}={trees[n]}' for n in names)}); "
             f"{args.rounds} rounds round robin, every tree, command and floor once per round; best wall time "
             "per cell with the 1-minute load average read just before that run; 2 cores shared with other "
             "work. Wall time of `python -m tlsdetect ...` from start to exit (output to /dev/null).",
             "",
             "| command | " + " | ".join(f"{n} s (load)" for n in names)
             + (f" | {names[0]} / {names[1]} |" if len(names) > 1 else " |"),
             "| --- | " + " | ".join("---:" for _ in names) + (" | ---: |" if len(names) > 1 else " |")]
    for cmd in COMMANDS:
        cells = [f"{best[(n, cmd)][0]:.3f} ({best[(n, cmd)][1]:.2f})" for n in names]
        ratio = f" | {best[(names[0], cmd)][0] / best[(names[1], cmd)][0]:.2f}" if len(names) > 1 else ""
        lines.append(f"| `tlsdetect {cmd}` | " + " | ".join(cells) + ratio + " |")
    lines += ["", "Floors, same rounds (bare interpreter, nothing of tlsdetect):", "",
              "| floor | s (load) |", "| --- | ---: |"]
    for name in FLOORS:
        secs, load = best[("python", name)]
        lines.append(f"| `{name}` | {secs:.3f} ({load:.2f}) |")
    lines += ["", f"What each command imports ({first} tree; `-X importtime` self time summed per top-level "
              f"package, best of {args.import_rounds}, ms; the five largest, then everything else):", "",
              "| command | total ms | largest |", "| --- | ---: | --- |"]
    for cmd, per in imports.items():
        top = sorted(per.items(), key=lambda kv: -kv[1])
        shown = ", ".join(f"{k} {v:.0f}" for k, v in top[:5])
        rest = sum(v for _, v in top[5:])
        lines.append(f"| `{cmd}` | {sum(per.values()):.0f} | {shown}, other {rest:.0f} |")
    lines.append("")
    args.results.write_text("\n".join(lines))
    print(f"wrote {args.results}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
