"""``score`` over a Spark DataFrame: the baseline broadcast to every task, ``detect.scoring.score`` inside.

The baseline directory's files are read once on the driver and broadcast as bytes; each Python
worker writes them to a private temporary directory and loads them with :meth:`Baseline.load`
(once per worker and baseline), so executors need no access to the driver's filesystem.

Every signal of ``score`` depends on one row and the baseline, except ``fingerprint_convergence``
(at least three clients on one JA4 the baseline never saw, inside one 1 h window). Rows whose JA4
the baseline knows (or that have none) can never fire it, so they are scored in whatever partition
they are in; the others must be scored with every row of their (hour, JA4). One
``groupBy().applyInPandas`` does both in one scan of the input: a new JA4's rows are keyed by
(hour, JA4), every other row by its run of 65,536 consecutive rows of one read task. So each
window of each new fingerprint is scored together, as the local path scores it, and the rows are
identical; a group holds at most 65,536 rows, except one hour of one *new* fingerprint, the only
unit of work that must sit whole in one executor's memory.

Results are written as Parquet partitioned by ``date`` (UTC, from ``ts``) and ``verdict``; ``ts``
is stored in microseconds (Spark's timestamp), the reasons as structs of four strings.
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from tlsdetect.detect.baseline import Baseline
from tlsdetect.spark.schema import (
    HIDDEN,
    NAT,
    from_spark_frame,
    pack_columns,
    scored_schema,
    to_spark_scored,
    unpack_columns,
)

__all__ = ["HOUR_NS", "score_connections", "write_scored"]

HOUR_NS = 3_600_000_000_000
#: Rows whose JA4 the baseline knows are scored in runs of 2**CHUNK_BITS consecutive rows of one read task.
CHUNK_BITS = 16
_LOADED: dict[str, Baseline] = {}


def _baseline_files(directory: str | Path) -> dict[str, bytes]:
    root = Path(directory)
    Baseline.load(root)  # the same errors as the local CLI, on the driver, before any task runs
    return {p.name: p.read_bytes() for p in sorted(root.iterdir()) if p.is_file()}


def _load(files: dict[str, bytes]) -> Baseline:
    digest = hashlib.sha256(b"".join(hashlib.sha256(files[k]).digest() for k in sorted(files))).hexdigest()
    if digest not in _LOADED:
        with tempfile.TemporaryDirectory(prefix="tlsdetect-baseline-") as tmp:
            for name, data in files.items():
                (Path(tmp) / name).write_bytes(data)
            _LOADED[digest] = Baseline.load(tmp)
    return _LOADED[digest]


def _score_frame(pdf: pd.DataFrame, files: dict[str, bytes]) -> pd.DataFrame:
    from tlsdetect.detect.scoring import score

    df = from_spark_frame(pdf)
    scored = score(df.drop(columns=[c for c in HIDDEN if c in df.columns]), _load(files))
    return to_spark_scored(scored, df[list(HIDDEN)].reset_index(drop=True))


def score_connections(spark: Any, df: Any, baseline_dir: str | Path) -> Any:
    """Score a Spark connections DataFrame (from :func:`read_connections`) against a baseline directory.

    Returns a lazy DataFrame of :func:`tlsdetect.spark.schema.scored_schema`.
    """
    from pyspark.sql import functions as F  # noqa: N812

    files = _baseline_files(baseline_dir)
    known = Baseline.load(baseline_dir).fingerprints_
    ja4s = sorted(set(known.loc[known["kind"] == "ja4", "value"].dropna().astype(str)))
    shared = spark.sparkContext.broadcast(files)
    out_schema = scored_schema(packed=True)

    def by_group(pdf: pd.DataFrame) -> pd.DataFrame:
        return _score_frame(pdf.drop(columns=["_hour", "_fresh", "_chunk", "_ja4"]), shared.value)

    cols = df.columns
    known_df = spark.createDataFrame([(v,) for v in ja4s], "ja4 string").withColumn("_known", F.lit(True))
    flagged = df.join(F.broadcast(known_df), "ja4", "left")
    fresh = F.col("ja4").isNotNull() & F.col("_known").isNull()
    hour = F.when(F.col("_ts_ns") != F.lit(NAT), F.expr(f"(_ts_ns - pmod(_ts_ns, {HOUR_NS})) div {HOUR_NS}"))
    # one scan, one shuffle: a new JA4's rows by (hour, JA4); every other row in runs of consecutive rows
    keyed = flagged.select(*cols, fresh.alias("_fresh")).select(
        *cols, "_fresh",
        F.when(F.col("_fresh"), hour).alias("_hour"),
        F.when(~F.col("_fresh"), F.shiftright(F.col("_order"), CHUNK_BITS)).alias("_chunk"),
    )
    keyed = pack_columns(keyed.withColumn("_ja4", F.when(F.col("_fresh"), F.col("ja4"))))
    return unpack_columns(keyed.groupBy("_fresh", "_hour", "_ja4", "_chunk").applyInPandas(by_group, out_schema))


def write_scored(scored: Any, directory: str, *, mode: str = "overwrite") -> None:
    """Write scored rows as Parquet under ``directory``, partitioned by ``date`` and ``verdict``."""
    from pyspark.sql import functions as F  # noqa: N812

    out = scored.drop(*HIDDEN).withColumn("date", F.date_format(F.col("ts"), "yyyy-MM-dd"))
    out.write.mode(mode).partitionBy("date", "verdict").parquet(directory)
