#!/usr/bin/env python3
"""Peak RSS per row of read + fingerprint + score on two 1M-row connections tables (issue 19, item 5).

Why: a network shows a few thousand distinct hellos behind millions of connections, so the hello
lists (``ch_*``, ``sh_*``) and the long fingerprint strings should cost bytes per distinct hello,
not per row. ``benchmarks/bench_memory.py`` measures the capture reader's bound instead.

``build DIR``: the train and test tables of :mod:`bench_detect` (real hellos of ``pcaps/`` and the
shared reference captures, ``--rows`` each), written to ``DIR/train.parquet`` and ``DIR/test.parquet``
with the project's Parquet sink, so every tree measured reads the same bytes.

``measure DIR``: in this process (run it with ``PYTHONPATH`` set to the tree under test): read
both files (``pd.read_parquet`` then ``schema.conform``; ``schema.read_parquet`` where the tree
has it), recompute the fingerprints from the hello lists (``add_fingerprints``), fit
``Baseline()`` on train and score test. Prints one JSON line: ``ru_maxrss`` after each step (MiB),
the deep bytes of each column group of the test table after reading, and the score's seconds.

``compare DIR --old TREE --new TREE``: ``measure`` in a child process per tree, alternating
old/new for ``--rounds`` rounds, with the 1-minute load average beside each run.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def rss_mib() -> int:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def build(out: Path, rows: int, seed: int) -> None:
    """The two tables of bench_detect, written as Parquet by the project's sink."""
    import numpy as np
    import pandas as pd

    sys.path.insert(0, str(HERE))
    import bench_detect as bd

    from tlsdetect import schema
    from tlsdetect.sinks.files import _ParquetSink

    rng = np.random.default_rng(seed)
    real, _ = bd.read_rows([*bd.clean_captures(), bd.SHARED / "reference" / "*.pcap*"])
    icpt, _ = bd.read_rows([bd.SHARED / "interception" / "*.pcap*"])
    pool = schema.concat([real, icpt]) if len(icpt) else real
    code, ja3n = pd.factorize(real["ja3n"].fillna(real["ja3_full"]), sort=True)
    sizes = np.bincount(code, minlength=len(ja3n))
    stacks = bd.make_clients(len(ja3n), np.array([], dtype=np.int64), 20_000, rng)
    stacks.update(order=np.argsort(code, kind="stable"), sizes=sizes,
                  starts=np.concatenate([[0], np.cumsum(sizes)[:-1]]))
    out.mkdir(parents=True, exist_ok=True)
    for name, day in (("train", 0), ("test", 2)):
        df, _ = bd.build(pool, stacks, rows, day, rng)
        if name == "test" and len(icpt):
            bd.inject(df, pool, np.arange(len(real), len(pool)), 0.01, 0.005, rng)
        sink = _ParquetSink(str(out / f"{name}.parquet"))
        sink.write(schema.conform(df))
        sink.close()
        print(f"{name}: {len(df):,} rows, {len(real)} real hellos", file=sys.stderr)


GROUPS = {
    "hello lists": lambda c, s: c.startswith(("ch_", "sh_")) and s["dtype"] == "object",
    "long fingerprint strings": lambda c, s: c in ("ja3_full", "ja4_r", "ja4_ro", "ja3s_full", "ja4_o"),
    "short fingerprints": lambda c, s: c in ("ja3", "ja3n", "ja4", "ja3s"),
    "certificate columns": lambda c, s: c.startswith(("server_", "peer_")) and c not in ("server_ip", "server_port",
                                                                                         "server_flight",
                                                                                         "server_flight_bytes"),
}


def _deep_bytes(s: Any) -> int:
    """Bytes of one column, a shared object counted once (pandas' ``deep`` counts it per row)."""
    import numpy as np

    if s.dtype != object:
        return int(s.memory_usage(deep=True, index=False))
    cells = s.to_numpy(dtype=object)
    ids = np.fromiter(map(id, cells), dtype=np.uint64, count=len(cells))
    _, first = np.unique(ids, return_index=True)
    return 8 * len(cells) + sum(sys.getsizeof(c) + sum(map(sys.getsizeof, c)) if isinstance(c, (tuple, list))
                                 else sys.getsizeof(c) for c in cells[first].tolist() if c is not None)


def column_bytes(df: Any) -> dict[str, int]:
    """Bytes per column group (MiB), shared objects once; what no group claims is ``other``."""
    out = dict.fromkeys([*GROUPS, "other"], 0)
    for col in df.columns:
        info = {"dtype": str(df[col].dtype)}
        group = next((g for g, pick in GROUPS.items() if pick(col, info)), "other")
        out[group] += _deep_bytes(df[col])
    return {g: round(n / 2**20) for g, n in out.items()}


def measure(src: Path) -> dict[str, Any]:
    """read, fingerprint, fit, score in this process; RSS high water after each step.

    ``read`` on a tree without ``schema.read_parquet`` makes a tuple per row of each list column, as
    that tree's fingerprinting did (``_hashable_column``) and as Spark's ``toPandas`` hands them over.
    """
    import pandas as pd

    from tlsdetect import schema
    from tlsdetect.detect.baseline import Baseline
    from tlsdetect.detect.knowledge import load_knowledge
    from tlsdetect.detect.scoring import score
    from tlsdetect.fingerprint import add_fingerprints

    def read(path: Path) -> pd.DataFrame:
        reader = getattr(schema, "read_parquet", None)
        if reader:
            return reader(path)
        # a tree without it: what its fingerprinting does to Parquet's lists (numpy arrays, which
        # cannot be hashed): a tuple per row
        df = pd.read_parquet(path)
        for col in schema.LIST_COLUMNS:
            df[col] = df[col].map(lambda v: None if v is None else tuple(v.tolist()))
        return schema.conform(df)

    line: dict[str, Any] = {"tree": str(Path(schema.__file__).resolve().parents[1]), "rss_start": rss_mib()}
    t0 = time.perf_counter()
    train, test = read(src / "train.parquet"), read(src / "test.parquet")
    line["read_s"] = round(time.perf_counter() - t0, 2)
    line["rss_read"] = rss_mib()
    line["test_bytes_mib"] = column_bytes(test)
    t0 = time.perf_counter()
    train, test = add_fingerprints(train), add_fingerprints(test)
    line["fingerprint_s"] = round(time.perf_counter() - t0, 2)
    line["rss_fingerprint"] = rss_mib()
    line["test_bytes_after_fp_mib"] = column_bytes(test)
    base = Baseline().fit(train)
    line["rss_fit"] = rss_mib()
    del train
    load_knowledge()
    t0 = time.perf_counter()
    scored = score(test, base)
    line["score_s"] = round(time.perf_counter() - t0, 2)
    line["rows"] = len(test)
    line["score_rows_per_s"] = round(len(test) / line["score_s"])
    line["rss_score"] = rss_mib()
    line["verdicts"] = {str(k): int(v) for k, v in scored["verdict"].value_counts().items()}
    return line


def compare(src: Path, trees: dict[str, Path], rounds: int) -> None:
    for r in range(rounds):
        for label, tree in trees.items():
            env = dict(os.environ, PYTHONPATH=str(tree))
            load = os.getloadavg()[0]
            proc = subprocess.run([sys.executable, __file__, "measure", str(src)], env=env, cwd=tree,
                                  capture_output=True, text=True, check=False)
            if proc.returncode:
                print(json.dumps({"round": r, "label": label, "rc": proc.returncode, "stderr": proc.stderr[-2000:]}))
                continue
            line = json.loads(proc.stdout.strip().splitlines()[-1])
            print(json.dumps({"round": r, "label": label, "load": round(load, 2), **line}), flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build")
    b.add_argument("dir", type=Path)
    b.add_argument("--rows", type=int, default=1_000_000)
    b.add_argument("--seed", type=int, default=7)
    m = sub.add_parser("measure")
    m.add_argument("dir", type=Path)
    c = sub.add_parser("compare")
    c.add_argument("dir", type=Path)
    c.add_argument("--old", type=Path, required=True)
    c.add_argument("--new", type=Path, required=True)
    c.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    if args.cmd == "build":
        build(args.dir, args.rows, args.seed)
    elif args.cmd == "measure":
        print(json.dumps(measure(args.dir)))
    else:
        compare(args.dir, {"old": args.old, "new": args.new}, args.rounds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
