"""``fit`` over a Spark DataFrame: the baseline's tables as Spark aggregations, the rest on the driver.

Every table of :class:`tlsdetect.detect.baseline.Baseline` is a grouped count (per client x fingerprint,
per client x issuer, ...). Spark computes them with ``groupBy``; only those aggregates, whose size
is the number of distinct keys and not of connections, are collected to the driver, where
:meth:`Baseline.from_tables` folds them exactly as ``partial_fit`` folds its own, learns the mesh
CA and fits the hello model. The per-row derivations (client key, User-Agent family, lower-cased
SNI, offered version) run in ``mapInPandas`` with the package's functions, so they cannot drift
from the local path. "First name seen" columns take the value of the earliest row in the local
read order (``_order``), and the hello table is ordered as :func:`tlsdetect.detect.features.hello_codes`
orders it, so the saved baseline equals the local fit's.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd

from tlsdetect import schema
from tlsdetect.detect.baseline import ROLES, Baseline, client_ids
from tlsdetect.detect.baseline_tables import TABLES
from tlsdetect.detect.features import HELLO_COLUMNS
from tlsdetect.detect.mesh import MeshSpec
from tlsdetect.spark.schema import NAT, from_spark_frame, pack_columns, spark_type, unpack_columns

__all__ = ["fit_baseline"]

_DERIVED = ("_cid", "_uaf", "_sni", "_ver")
_ISSUER_COLS = tuple(c for cols in ROLES.values() for c in cols)


def _prepare(client_key: str) -> Any:
    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        from tlsdetect.detect.useragent import ua_family

        for pdf in batches:
            # the packed hello lists ride along untouched (for the hello table); only the rest is decoded
            df = from_spark_frame(pdf.drop(columns=[c for c in schema.LIST_COLUMNS if c in pdf.columns]))
            out = pdf.copy()
            out["_cid"] = client_ids(df, client_key).astype(object).where(lambda s: s.notna(), None).to_numpy()
            uaf = ua_family(df["user_agent"]).astype("string")
            out["_uaf"] = uaf.astype(object).where(uaf.notna(), None).to_numpy()
            sni = df["sni"].astype("string").str.lower()
            out["_sni"] = sni.astype(object).where(sni.notna(), None).to_numpy()
            ver = df["ja4"].astype("string").str.slice(1, 3)
            out["_ver"] = ver.astype(object).where(ver.notna(), None).to_numpy()
            yield out

    return run


def _collect(frame: Any) -> pd.DataFrame:
    out: pd.DataFrame = frame.toPandas()
    return out


def _times(df: pd.DataFrame) -> pd.DataFrame:
    for c in ("first_seen", "last_seen"):
        if c in df.columns:
            ns = df[c].to_numpy(dtype=np.int64).view("datetime64[ns]")
            df[c] = pd.Series(ns, index=df.index).dt.tz_localize("UTC")
    for c in ("count", "connections"):
        if c in df.columns:
            df[c] = df[c].astype("int64")
    return df


def fit_baseline(df: Any, *, client_key: str = "auto", mesh_ca: MeshSpec = None,
                 model: bool = True) -> Baseline:
    """Learn a :class:`Baseline` from a Spark connections DataFrame (from :func:`read_connections`).

    Raises ``ValueError`` as :meth:`Baseline.fit` does (no rows; no fingerprints nor issuers).
    """
    from pyspark import StorageLevel
    from pyspark.sql import functions as F  # noqa: N812
    from pyspark.sql import types as st

    # only the columns the tables need: the input is read (captures parsed) once, into this narrow
    # persisted frame; the hello lists pass through Python packed (see ``schema.pack_columns``)
    needed = ["ts", "client_id", "peer_subject", "client_ip", "user_agent", "ja4", "ja3n", "sni", *_ISSUER_COLS,
              *HELLO_COLUMNS, "ja3_full", "ja4_ro"]
    if client_key in df.columns and client_key not in needed and schema.COLUMNS.get(client_key) != "object":
        needed.append(client_key)
    needed = list(dict.fromkeys(c for c in schema.COLUMNS if c in needed))
    fields = [st.StructField(c, st.StringType() if schema.COLUMNS[c] == "object" else spark_type(c, schema.COLUMNS[c]),
                             True) for c in needed]
    fields += [st.StructField("_ts_ns", st.LongType(), True), st.StructField("_order", st.LongType(), True)]
    fields += [st.StructField(c, st.StringType(), True) for c in _DERIVED]
    packed = pack_columns(df.select(*needed, "_ts_ns", "_order"))
    rows = unpack_columns(packed.mapInPandas(_prepare(client_key), st.StructType(fields)))
    rows = rows.withColumn("_t", F.when(F.col("_ts_ns") != F.lit(NAT), F.col("_ts_ns")))
    rows = rows.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        return _fit(rows, client_key=client_key, mesh_ca=mesh_ca, model=model)
    finally:
        rows.unpersist()


def _first(value: str) -> Any:
    """The value of the earliest row (local read order) where it is not null."""
    from pyspark.sql import functions as F  # noqa: N812

    return F.min_by(F.col(value), F.when(F.col(value).isNotNull(), F.col("_order")))


def _fit(rows: Any, *, client_key: str, mesh_ca: MeshSpec, model: bool) -> Baseline:
    from pyspark.sql import functions as F  # noqa: N812

    c = F.col
    counts = _collect(rows.agg(
        F.count(F.lit(1)).alias("n"),
        F.count(F.when(c("ja4").isNotNull() | c("ja3n").isNotNull(), 1)).alias("fp"),
        F.count(F.when(c("server_issuer_key").isNotNull() | c("peer_issuer_key").isNotNull(), 1)).alias("iss"),
    )).iloc[0]
    if int(counts["n"]) == 0:
        raise ValueError("no connections to learn from")
    if int(counts["fp"]) == 0 and int(counts["iss"]) == 0:
        raise ValueError("no usable rows: the input has neither JA4/JA3N fingerprints nor certificate issuers")
    usable = rows.filter(c("_cid").isNotNull())
    # never null, so the column reaches pandas as int64 (a null would turn it to float64 and lose nanoseconds)
    seen = [F.coalesce(F.min("_t"), F.lit(NAT)).alias("first_seen"),
            F.coalesce(F.max("_t"), F.lit(NAT)).alias("last_seen")]
    tables: dict[str, pd.DataFrame] = {}

    tables["clients"] = _collect(usable.groupBy(c("_cid").alias("client_id"))
                                 .agg(F.count(F.lit(1)).alias("connections"), *seen))
    fps = None
    fams = None
    for kind in ("ja4", "ja3n"):
        part = usable.filter(c(kind).isNotNull()).select(
            c("_cid").alias("client_id"), F.lit(kind).alias("kind"), c(kind).alias("value"), "_t")
        fps = part if fps is None else fps.unionByName(part)
        fam = rows.filter(c(kind).isNotNull() & c("_uaf").isNotNull()).select(
            F.lit(kind).alias("kind"), c(kind).alias("value"), c("_uaf").alias("ua_family"))
        fams = fam if fams is None else fams.unionByName(fam)
    assert fps is not None
    assert fams is not None
    tables["fingerprints"] = _collect(fps.groupBy("client_id", "kind", "value").agg(F.count(F.lit(1)).alias("count"),
                                                                                    *seen))
    tables["fp_families"] = _collect(fams.groupBy("kind", "value", "ua_family").agg(F.count(F.lit(1)).alias("count")))

    iss_parts, akid_parts = [], []
    for role, (key_col, name_col, akid_col) in ROLES.items():
        iss = usable.filter(c(key_col).isNotNull()).groupBy(
            c("_cid").alias("client_id"), F.lit(role).alias("role"), c(key_col).alias("issuer_key")
        ).agg(F.count(F.lit(1)).alias("count"), _first(name_col).alias("issuer"), *seen)
        iss_parts.append(_collect(iss))
        ak = rows.filter(c(key_col).isNotNull() & c(akid_col).isNotNull()).groupBy(
            F.lit(role).alias("role"), c(key_col).alias("issuer_key"), c(akid_col).alias("akid")
        ).agg(F.count(F.lit(1)).alias("count"))
        akid_parts.append(_collect(ak))
    tables["issuers"] = pd.concat(iss_parts, ignore_index=True)
    tables["issuer_akids"] = pd.concat(akid_parts, ignore_index=True)

    tables["snis"] = _collect(usable.filter(c("_sni").isNotNull()).groupBy(
        c("_cid").alias("client_id"), c("_sni").alias("sni")).agg(F.count(F.lit(1)).alias("count"), *seen))
    tables["sni_issuers"] = _collect(rows.filter(c("_sni").isNotNull() & c("server_issuer_key").isNotNull()).groupBy(
        c("_sni").alias("sni"), c("server_issuer_key").alias("issuer_key")
    ).agg(F.count(F.lit(1)).alias("count"), _first("server_issuer").alias("issuer")))
    tables["versions"] = _collect(usable.filter(c("_ver").isNotNull()).groupBy(
        c("_cid").alias("client_id"), c("_ver").alias("max_version")).agg(F.count(F.lit(1)).alias("count")))
    for name, t in tables.items():
        tables[name] = _times(t)[list(TABLES[name])]

    hellos = _hellos(rows)
    learned = Baseline(client_key=client_key, mesh_ca=mesh_ca, model=model)
    return learned.from_tables(tables, hellos, int(counts["n"]))


def _hellos(rows: Any) -> pd.DataFrame:
    """The distinct hellos with their connection counts, ordered and valued as ``hello_codes`` gives them."""
    from pyspark.sql import functions as F  # noqa: N812

    c = F.col
    cols = [*HELLO_COLUMNS, "ja4"]
    has = rows.filter(c("ch_version").isNotNull() & c("ja3_full").isNotNull())
    first = F.min_by(F.struct(*[c(x) for x in cols]), c("_order"))
    hel = has.groupBy("ja3_full", "ja4_ro").agg(F.count(F.lit(1)).alias("connections"), first.alias("h"))
    # hello_codes numbers ja3_full and ja4_ro values by first appearance over all rows (pd.factorize)
    a = rows.filter(c("ja3_full").isNotNull()).groupBy("ja3_full").agg(F.min("_order").alias("_a"))
    b = rows.filter(c("ja4_ro").isNotNull()).groupBy("ja4_ro").agg(F.min("_order").alias("_b"))
    hel = hel.join(a, "ja3_full", "left").join(b, "ja4_ro", "left").withColumn("_b", F.coalesce("_b", F.lit(-1)))
    got = _collect(hel.select("connections", "_a", "_b", *[c("h." + x).alias(x) for x in cols]))
    if len(got) == 0:
        return pd.DataFrame()
    got = got.sort_values(["_a", "_b"], kind="stable").reset_index(drop=True)
    conf = from_spark_frame(got.drop(columns=["_a", "_b", "connections"]))
    table = conf[cols].reset_index(drop=True)
    table["connections"] = got["connections"].astype(np.int64).to_numpy()
    return table
