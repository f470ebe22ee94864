#!/usr/bin/env python3
"""Time ``read_zeek`` (ssl.log + x509.log join) against plain table readers of the same ssl.log.

Generates a Zeek TSV ssl.log of ``--rows`` connections (default 1M; the field layout of Zeek
>= 4.1's ``ssl.log`` with the FoxIO ``ja4`` column, as in the shared samples) and a matching
x509.log of ``--certs`` distinct certificates (leaf + intermediate per chain, DNs with ``\\\\,``
escapes like the AWS RDS sample), then, after one untimed call of ``read_zeek`` (imports, first
calls), times in one run, best of ``--repeat`` (the readers take turns, so a change in the machine's
load hits all of them alike; wall and process CPU seconds, the 1-minute load average and every
round are shown):

* ``enrich(read_zeek([ssl, x509]))`` -- the full connections table, certificate join and issuer keys
  included (the reader, then the enrichment stage every reader's output passes);
* ``pandas.read_csv(ssl, sep="\\t", comment="#", header=None)`` -- the plainest pandas read, no join;
* zat's ``LogToDataFrame`` recipe, re-done here from the log's own header: ``pandas.read_csv`` with
  the field names, Zeek types as pandas dtypes (ports ``UInt16``, counts ``UInt64``, times ``float``,
  other text ``category``, uids ``object``), ``na_values="-"``, then ``time`` fields to datetimes; no join;
* ``pyarrow.csv.read_csv(ssl)`` -- the bare columnar read (header lines skipped), no join.

Below the table: the memory of the columns the certificate join adds (leaf subject, issuer,
SHA-256, chain JSON, issuer key) as the table holds them (categoricals: codes plus each distinct
value once) and spelled out per row, as they were before the schema made them categorical.

Prints a Markdown table and writes it to ``benchmarks/results/zeek-<date>.md`` (``--results`` to
write elsewhere). ``--keep DIR`` keeps the generated logs in DIR (reused when already there).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tlsdetect.fingerprint import enrich  # noqa: E402
from tlsdetect.readers.zeek import read_zeek  # noqa: E402

SSL_FIELDS = ["ts", "uid", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "version", "cipher", "curve",
              "server_name", "resumed", "last_alert", "next_protocol", "established", "ssl_history",
              "cert_chain_fps", "client_cert_chain_fps", "sni_matches_cert", "ja4", "ja4s"]
SSL_TYPES = ["time", "string", "addr", "port", "addr", "port", "string", "string", "string", "string", "bool",
             "string", "string", "bool", "string", "vector[string]", "vector[string]", "bool", "string", "string"]
X509_FIELDS = ["ts", "fingerprint", "certificate.version", "certificate.serial", "certificate.subject",
               "certificate.issuer", "certificate.not_valid_before", "certificate.not_valid_after",
               "certificate.key_alg", "certificate.sig_alg", "certificate.key_type", "certificate.key_length",
               "certificate.exponent", "certificate.curve", "san.dns", "san.uri", "san.email", "san.ip",
               "basic_constraints.ca", "basic_constraints.path_len", "host_cert", "client_cert"]
X509_TYPES = ["time", "string", "count", "string", "string", "string", "time", "time", "string", "string",
              "string", "count", "string", "string", "vector[string]", "vector[string]", "vector[string]",
              "vector[addr]", "bool", "count", "bool", "bool"]


def header(path: str, fields: list[str], types: list[str]) -> str:
    return (f"#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n#path\t{path}\n"
            f"#open\t2024-05-01-00-00-00\n#fields\t{chr(9).join(fields)}\n#types\t{chr(9).join(types)}\n")


def generate(folder: Path, rows: int, certs: int, seed: int = 7) -> tuple[Path, Path]:
    rng = np.random.default_rng(seed)
    n_chains = max(1, certs // 2)
    leaf_fp = [f"{rng.integers(0, 2**63):016x}" * 4 for _ in range(n_chains)]
    ca_fp = [f"{rng.integers(0, 2**63):016x}" * 4 for _ in range(max(1, n_chains // 10))]
    hosts = [f"svc{i}.example{i % 37}.com" for i in range(n_chains)]
    x509 = folder / "x509.log"
    with open(x509, "w") as fh:
        fh.write(header("x509", X509_FIELDS, X509_TYPES))
        for j, fp in enumerate(ca_fp):
            dn = f"CN=Example Issuing CA {j},OU=PKI,O=Example Trust Services\\\\, Inc.,L=Seattle,ST=Washington,C=US"
            fh.write(f"1714521600.000000\t{fp}\t3\t{j:04X}\t{dn}\tCN=Example Root CA,O=Example Trust,C=US\t"
                     f"1568917013.000000\t1824346530.000000\trsaEncryption\tsha256WithRSAEncryption\trsa\t2048\t"
                     f"65537\t-\t-\t-\t-\t-\tT\t0\tF\tF\n")
        for i, fp in enumerate(leaf_fp):
            j = i % len(ca_fp)
            issuer = f"CN=Example Issuing CA {j},OU=PKI,O=Example Trust Services\\\\, Inc.,L=Seattle,ST=Washington,C=US"
            fh.write(f"1714521600.000000\t{fp}\t3\t{i:08X}\tCN={hosts[i]},O=Example\\\\, Inc.,C=US\t{issuer}\t"
                     f"1670687517.000000\t1824346530.000000\tid-ecPublicKey\tsha256WithRSAEncryption\tecdsa\t256\t"
                     f"-\tprime256v1\t{hosts[i]},www.{hosts[i]}\t-\t-\t-\tF\t-\tT\tF\n")
        fh.write("#close\t2024-05-01-01-00-00\n")
    chain_of = [f"{leaf_fp[i]},{ca_fp[i % len(ca_fp)]}" for i in range(n_chains)]
    pick = rng.integers(0, n_chains, rows)
    ts = 1714521600.0 + np.sort(rng.random(rows)) * 3600
    clients = [f"10.{a}.{b}.{c}" for a, b, c in rng.integers(0, 255, (2000, 3))]
    cli = rng.integers(0, len(clients), rows)
    ports = rng.integers(1024, 65535, rows)
    versions = np.array(["TLSv13", "TLSv12"])[(rng.random(rows) < 0.2).astype(int)]
    ja4s = ["t13d1516h2_8daaf6152771_02713d6af862", "t13d1517h2_8daaf6152771_b1ff8ab2d16f",
            "t12d1209h2_d34a8e72043a_b39be8c56a14"]
    ssl = folder / "ssl.log"
    with open(ssl, "w") as fh:
        fh.write(header("ssl", SSL_FIELDS, SSL_TYPES))
        out = []
        for k in range(rows):
            i = int(pick[k])
            v = versions[k]
            out.append(
                f"{ts[k]:.6f}\tC{k:017x}\t{clients[cli[k]]}\t{ports[k]}\t52.{i % 250}.{i // 250 % 250}.7\t443\t{v}\t"
                f"TLS_AES_128_GCM_SHA256\tx25519\t{hosts[i]}\tF\t-\t-\tT\tCsiI\t{chain_of[i]}\t(empty)\tT\t"
                f"{ja4s[k % 3]}\tt130200_1301_234ea6891581\n"
            )
            if len(out) == 50_000:
                fh.write("".join(out))
                out = []
        fh.write("".join(out))
        fh.write("#close\t2024-05-01-01-00-00\n")
    return ssl, x509


#: The columns the x509 join adds (certificate columns: categoricals in the connections table).
JOINED = ("server_subject", "server_issuer", "server_cert_sha256", "server_chain", "server_issuer_key")


def joined_megabytes(df: pd.DataFrame) -> tuple[float, float]:
    """The join's columns in memory: as held (codes + categories) and spelled out per row as Arrow text."""
    held = int(df[list(JOINED)].memory_usage(index=False, deep=True).sum())
    spelled = sum(pa.array(df[c].astype("string").array).nbytes for c in JOINED)
    return held / 1e6, spelled / 1e6


#: zat's first-level type map (Zeek type -> pandas dtype); other types are ``category`` (``object`` for uids).
ZAT_TYPES = {"bool": "category", "count": "UInt64", "int": "Int32", "double": "float", "time": "float",
             "interval": "float", "port": "UInt16"}


def zeek_header(path: Path) -> tuple[list[str], list[str]]:
    """The ``#fields`` and ``#types`` of a Zeek TSV log."""
    fields: list[str] = []
    types: list[str] = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if not line.startswith("#"):
                break
            key, _, rest = line.rstrip("\n").partition("\t")
            if key == "#fields":
                fields = rest.split("\t")
            elif key == "#types":
                types = rest.split("\t")
    return fields, types


def timed(fn: Callable[[], int]) -> tuple[float, float, int]:
    """Wall and process CPU seconds (all threads) of one call, and the rows it read."""
    t0, c0 = time.perf_counter(), time.process_time()
    n = fn()
    return time.perf_counter() - t0, time.process_time() - c0, n


def load() -> float:
    return os.getloadavg()[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--certs", type=int, default=400)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--results", type=Path, default=None)
    ap.add_argument("--keep", type=Path, default=None, help="keep (or reuse) the generated logs in this folder")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        ssl, x509 = folder / "ssl.log", folder / "x509.log"
        reused = bool(args.keep and ssl.is_file() and x509.is_file())
        if not reused:
            ssl, x509 = generate(folder, args.rows, args.certs)
        gen = time.perf_counter() - t0
        size = ssl.stat().st_size
        n_header = 8

        def run_ours() -> int:
            df = enrich(read_zeek([ssl, x509]))
            assert df["server_issuer"].notna().all(), "certificate join failed"
            return len(df)

        def run_pandas() -> int:
            return len(pd.read_csv(ssl, sep="\t", comment="#", header=None))

        def run_zat() -> int:
            fields, types = zeek_header(ssl)
            dtypes = {f: ZAT_TYPES.get(t, "object" if "uid" in f else "category")
                      for f, t in zip(fields, types, strict=True)}
            df = pd.read_csv(ssl, sep="\t", names=fields, dtype=dtypes, comment="#", na_values="-")
            for f, t in zip(fields, types, strict=True):
                if t == "time":
                    df[f] = pd.to_datetime(df[f], unit="s")
            return len(df)

        def run_arrow() -> int:
            t = pacsv.read_csv(ssl, read_options=pacsv.ReadOptions(skip_rows=n_header, autogenerate_column_names=True),
                               parse_options=pacsv.ParseOptions(delimiter="\t", quote_char=False,
                                                                invalid_row_handler=lambda r: "skip"))
            return int(t.num_rows)

        ssl.read_bytes()  # warm the page cache
        held_mb, spelled_mb = joined_megabytes(enrich(read_zeek([ssl, x509])))  # also a warm-up: imports, first calls
        names = ["tlsdetect `read_zeek` (ssl + x509 join, full schema)",
                 '`pandas.read_csv(sep="\\t", comment="#", header=None)` (ssl only)',
                 "`pyarrow.csv.read_csv` (ssl only)",
                 "zat's `LogToDataFrame` recipe: `pandas.read_csv` with Zeek types, times to datetimes (ssl only)"]
        runs: list[list[tuple[float, float, int]]] = [[], [], [], []]
        loads = [load()]
        for _ in range(args.repeat):  # round robin: ours, pandas, pyarrow, ours, ...
            for i, fn in enumerate((run_ours, run_pandas, run_arrow, run_zat)):
                runs[i].append(timed(fn))
            loads.append(load())
        rows = [r[-1][2] for r in runs]
        results = [(name, min(w for w, _, _ in r), min(c for _, c, _ in r), n)
                   for name, r, n in zip(names, runs, rows, strict=True)]
    arrow, arrow_cpu = results[2][1], results[2][2]
    lines = [
        f"# Zeek reader benchmark, {dt.date.today().isoformat()}",
        "",
        f"ssl.log: {args.rows:,} rows, {size / 1e6:.0f} MB TSV; x509.log: {args.certs} certificates; "
        f"best of {args.repeat}; " + (f"reused from {args.keep}." if reused else f"generated in {gen:.1f} s."),
        f"Machine: {platform.machine()}, {platform.python_implementation()} {platform.python_version()}, "
        f"pandas {pd.__version__}, pyarrow {pa.__version__}, CPUs {len(os.sched_getaffinity(0))}.",
        "",
        f"1-minute load average during the runs: {min(loads):.2f}-{max(loads):.2f} "
        f"(readers timed in turn, best of each).",
        "",
        "| reader | rows | seconds | MB/s | x pyarrow | CPU seconds | CPU x pyarrow |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, secs, cpu, n in results:
        lines.append(f"| {name} | {n:,} | {secs:.2f} | {size / 1e6 / secs:.0f} | {secs / arrow:.2f} | {cpu:.2f} | "
                     f"{cpu / arrow_cpu:.2f} |")
    short = ["read_zeek", "pandas plain", "pyarrow", "zat recipe"]
    lines += ["", "Every round (wall seconds; the readers ran one after another within a round, so the ratios of a "
              "round compare like with like):", "",
              "| round | " + " | ".join(short) + " | read_zeek / pyarrow | read_zeek / pandas plain |",
              "| ---: |" + " ---: |" * (len(short) + 2)]
    for k in range(args.repeat):
        wall = [r[k][0] for r in runs]
        lines.append(f"| {k + 1} | " + " | ".join(f"{w:.2f}" for w in wall)
                     + f" | {wall[0] / wall[2]:.2f} | {wall[0] / wall[1]:.2f} |")
    lines += ["", f"The columns the certificate join adds ({', '.join(JOINED)}) hold {held_mb:,.1f} MB as the "
              f"table's categoricals; spelled out per row they would be {spelled_mb:,.0f} MB."]
    text = "\n".join(lines) + "\n"
    print(text)
    path = args.results or ROOT / "benchmarks" / "results" / f"zeek-{dt.date.today().isoformat()}.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    print(f"written to {path}")


if __name__ == "__main__":
    main()
