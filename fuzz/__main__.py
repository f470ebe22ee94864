"""``python -m fuzz``: fuzz the parsers of untrusted bytes for a time budget; exit 1 on any finding.

    .venv/bin/python -m fuzz --seconds 15            # every target, 15 s each (what CI runs)
    .venv/bin/python -m fuzz --minutes 60 --target pcap --corpus .fuzz-corpus   # a long run, resumable
    .venv/bin/python -m fuzz --list
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from fuzz.runner import CRASHES, run_target, shared_corpus
from fuzz.sanitized import UnavailableError
from fuzz.targets import TARGETS, load_targets

#: Under CI a target that cannot run is a failure (as the missing corpus is in tests/conftest.py).
ON_CI = os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m fuzz", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--target", action="append", help="a target to run (repeatable; default: all)")
    budget = ap.add_mutually_exclusive_group()
    budget.add_argument("--seconds", type=float, help="time per target (default 15)")
    budget.add_argument("--minutes", type=float, help="time per target, in minutes")
    ap.add_argument("--seed", type=int, default=1, help="libFuzzer's random seed (default 1: CI runs are repeatable)")
    ap.add_argument("--corpus", type=Path, help="keep the grown corpus here, one folder per target (resumes)")
    ap.add_argument("--crashes", type=Path, default=CRASHES, help="where findings go (default fuzz/crashes)")
    ap.add_argument("--timeout", type=int, default=30, help="seconds one input may take before it is a finding")
    ap.add_argument("--no-shared", action="store_true", help="do not read ../shared as seeds")
    ap.add_argument("--list", action="store_true", help="list the targets and exit")
    args = ap.parse_args(argv)
    targets = load_targets()
    if args.list:
        for t in targets.values():
            print(f"{t.name:12} {t.about}")
        return 0
    names = args.target or list(TARGETS)
    unknown = [n for n in names if n not in targets]
    if unknown:
        ap.error(f"unknown target(s) {', '.join(unknown)}; --list shows them")
    seconds = args.minutes * 60 if args.minutes is not None else (args.seconds if args.seconds is not None else 15.0)
    shared = None if args.no_shared else shared_corpus()
    findings = 0
    for name in names:
        try:
            stats = run_target(name, seconds, seed=args.seed, corpus=args.corpus, shared=shared,
                               crashes=args.crashes, timeout=args.timeout,
                               targets_module=os.environ.get("TLSDETECT_FUZZ_TARGETS"))
        except UnavailableError as exc:  # a sanitized target without a compiler: skipped here, a failure in CI
            print(f"{name}: skipped: {exc}", flush=True)
            findings += ON_CI
            continue
        print(stats.line(), flush=True)
        findings += len(stats.findings)
    if findings:
        print(f"{findings} finding(s): replayed by tests/test_fuzz_regressions.py; commit them with the fix",
              file=sys.stderr)
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
