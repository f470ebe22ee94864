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

The server tables (``server_values``, ``server_certs``: :data:`~tlsdetect.detect.baseline_tables.OPTIONAL_TABLES`)
and the bound identities (``identities``, :func:`~tlsdetect.detect.identities.learn_identities`)
are learned per Arrow batch in ``mapInPandas`` by the local learners themselves
(:func:`~tlsdetect.detect.server_profiles.learn_server_values`,
:func:`~tlsdetect.detect.renewals.learn_server_certs`); only their small partial tables reach the driver,
which folds them as ``partial_fit`` does (counts summed, first/last seen widened). ``rest_bytes``, the one
column that is neither key nor count, is the least over all batches, as one local fit over all rows takes it.

The QUIC transport-parameter tables (``quic_params``, ``quic_param_families``) are grouped counts like the
others: each row's fingerprint and normal form are derived in ``mapInPandas`` by
:func:`~tlsdetect.detect.quic_tp_fingerprint.quic_tp_fingerprints`, the function the local learners call.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd

from tlsdetect import schema
from tlsdetect.detect.baseline import ROLES, Baseline, client_ids
from tlsdetect.detect.baseline_tables import OPTIONAL_KEYS, OPTIONAL_TABLES, TABLES
from tlsdetect.detect.features import HELLO_COLUMNS
from tlsdetect.detect.mesh import MeshSpec
from tlsdetect.spark.schema import NAT, from_spark_frame, pack_columns, spark_type, unpack_columns

__all__ = ["fit_baseline"]

_DERIVED = ("_cid", "_uaf", "_sni", "_ver", "_origin", "_ab", "_c", "_srv", "_tr", "_qfp", "_qpar")
_ISSUER_COLS = tuple(c for cols in ROLES.values() for c in cols)
#: What the server learners read (server_profiles.server_rows and renewals.clear_certs).
_SERVER_COLS = ("sni", "server_ip", "server_port", "ja4", "tls_version", "sh_version", "sh_selected_version",
                "sh_cipher", "ja3s", "resumed", "server_flight", "server_flight_bytes", "server_cert_sha256",
                "server_issuer_key", "server_issuer_akid", "server_chain")
#: What the identity learner reads (identities.learn_identities) beyond the server columns; the first four
#: are not in ``needed`` otherwise.
_IDENTITY_COLS = ("peer_cert_sha256", "peer_serial", "peer_not_before", "peer_not_after", "client_id", "peer_subject",
                  "client_ip", "peer_issuer", "peer_issuer_key", "peer_issuer_akid")
_TIMES = ("first_seen", "last_seen", "not_before", "not_after")
#: Long (int64) columns of the partial server tables; times as nanoseconds (``NAT`` when missing).
_SERVER_LONGS = ("cert_bytes", "chain", "rest_bytes", "count", *_TIMES)
_SERVER_PARTIAL = ("table", *dict.fromkeys(c for name in OPTIONAL_TABLES for c in OPTIONAL_TABLES[name]))


def _prepare(client_key: str) -> Any:
    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        from tlsdetect.detect.columns import text_column
        from tlsdetect.detect.ja4_parts import ja4_parts
        from tlsdetect.detect.quic_tp_fingerprint import quic_tp_fingerprints
        from tlsdetect.detect.transports import server_keys
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
            srv = server_keys(df)  # the transports table's server: the name, else the address
            out["_srv"] = srv.astype(object).where(srv.notna(), None).to_numpy()
            tr = text_column(df, "transport").astype("string").str.lower()
            out["_tr"] = tr.astype(object).where(tr.notna(), None).to_numpy()
            ver = df["ja4"].astype("string").str.slice(1, 3)
            out["_ver"] = ver.astype(object).where(ver.notna(), None).to_numpy()
            # the ja4_stacks table's key, as the local learner derives it (ja4_parts.learn_ja4_stacks)
            parts = ja4_parts(df["ja4"])
            origin = df["fingerprint_origin"].astype("string").fillna("unknown")
            # the quic_params tables' key and evidence, as quic_tp_fingerprint's learners derive them
            qtp = quic_tp_fingerprints(text_column(df, "quic_transport_params"))
            for name, col in (("_origin", origin), ("_ab", parts["ab"]), ("_c", parts["c"]),
                              ("_qfp", qtp["quic_tp"]), ("_qpar", qtp["quic_tp_params"])):
                out[name] = col.astype(object).where(col.notna(), None).to_numpy()
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
    needed = ["ts", "client_id", "peer_subject", "client_ip", "user_agent", "ja4", "ja3n", "fingerprint_origin", "sni",
              "transport", "quic_transport_params",
              *_ISSUER_COLS,
              *HELLO_COLUMNS, "ja3_full", "ja4_ro", *_SERVER_COLS, *_IDENTITY_COLS[:4]]
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
    stacks = usable.filter(c("_ab").isNotNull()).groupBy(
        c("_cid").alias("client_id"), c("_origin").alias("origin"), c("_ab").alias("ja4_ab"), c("_c").alias("ja4_c")
    ).agg(F.count(F.lit(1)).alias("count"), *seen)
    tables["ja4_stacks"] = _times(_collect(stacks))[list(OPTIONAL_TABLES["ja4_stacks"])]
    transports = usable.filter(c("_srv").isNotNull() & c("_tr").isNotNull()).groupBy(
        c("_cid").alias("client_id"), c("_srv").alias("server"), c("_tr").alias("transport")
    ).agg(F.count(F.lit(1)).alias("count"), *seen)
    tables["transports"] = _times(_collect(transports))[list(OPTIONAL_TABLES["transports"])]
    # quic_params per client (rows with a client), quic_param_families per User-Agent family (any row with one)
    qparams = usable.filter(c("_qfp").isNotNull()).groupBy(
        c("_cid").alias("client_id"), c("_qfp").alias("fingerprint")
    ).agg(F.count(F.lit(1)).alias("count"), _first("_qpar").alias("params"), *seen)
    tables["quic_params"] = _times(_collect(qparams))[list(OPTIONAL_TABLES["quic_params"])]
    qfams = rows.filter(c("_qfp").isNotNull() & c("_uaf").isNotNull()).groupBy(
        c("_uaf").alias("ua_family"), c("_qfp").alias("fingerprint")
    ).agg(F.count(F.lit(1)).alias("count"), _first("_qpar").alias("params"))
    tables["quic_param_families"] = _times(_collect(qfams))[list(OPTIONAL_TABLES["quic_param_families"])]

    tables.update(_server_tables(rows))
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


def _partial_rows(name: str, part: pd.DataFrame) -> pd.DataFrame:
    """One learner's table as rows of the partial schema (``table`` names it; other tables' columns null)."""
    out = pd.DataFrame(index=range(len(part)))
    for c in _SERVER_PARTIAL:
        if c == "table":
            # object: pandas would infer its Arrow string dtype, which reaches PySpark as a chunked array
            out[c] = pd.Series(np.full(len(part), name, dtype=object), dtype=object)
        elif c not in part.columns:
            out[c] = pd.Series(None, index=out.index, dtype="Int64" if c in _SERVER_LONGS else object)
        elif c in _TIMES:
            naive = pd.to_datetime(part[c], utc=True).dt.tz_convert(None).reset_index(drop=True)
            out[c] = naive.to_numpy(dtype="datetime64[ns]").view(np.int64)  # NaT is NAT's bit pattern
        elif c in _SERVER_LONGS:
            out[c] = pd.to_numeric(part[c].reset_index(drop=True)).astype("Int64")
        else:
            text = part[c].reset_index(drop=True).astype(object)
            out[c] = text.where(text.notna(), None)
    return out


def _learn_servers(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    """Per Arrow batch: the local server learners' partial tables (a few rows per distinct server answer)."""
    from tlsdetect.detect.identities import learn_identities
    from tlsdetect.detect.renewals import learn_server_certs
    from tlsdetect.detect.server_profiles import learn_server_values

    for pdf in batches:
        if len(pdf) == 0:
            continue
        df = from_spark_frame(pdf)
        parts = [_partial_rows("server_values", learn_server_values(df, df["ts"])),
                 _partial_rows("server_certs", learn_server_certs(df, df["ts"])),
                 _partial_rows("identities", learn_identities(df, df["ts"]))]
        out = pd.concat([p for p in parts if len(p)], ignore_index=True) if any(len(p) for p in parts) else None
        if out is not None:
            yield out


def _server_tables(rows: Any) -> dict[str, pd.DataFrame]:
    """``server_values`` and ``server_certs`` of ``rows``: partial tables per batch, folded on the driver."""
    from pyspark.sql import types as st

    fields = [st.StructField(c, st.LongType() if c in _SERVER_LONGS else st.StringType(), True)
              for c in _SERVER_PARTIAL]
    cols = [c for c in dict.fromkeys([*_SERVER_COLS, *_IDENTITY_COLS]) if c in rows.columns]
    got = _collect(pack_columns(rows.select(*cols, "_ts_ns", "_order")).mapInPandas(_learn_servers,
                                                                                    st.StructType(fields)))
    out: dict[str, pd.DataFrame] = {}
    for name, schema_cols in OPTIONAL_TABLES.items():
        part = got[got["table"] == name].reset_index(drop=True) if len(got) else got
        if len(part) == 0:
            continue
        part = part[list(schema_cols)].copy()
        for c in ("first_seen", "last_seen"):
            part[c] = part[c].astype("Int64").fillna(NAT).astype(np.int64)
        part = _times(part)
        for c in ("not_before", "not_after"):  # the identities table's validity, as nanoseconds
            if c in part.columns:
                ns = part[c].astype("Int64").fillna(NAT).to_numpy(dtype=np.int64).view("datetime64[ns]")
                part[c] = pd.Series(ns, index=part.index).dt.tz_localize("UTC")
        if "rest_bytes" in part.columns:  # not a key: the least over all batches, as one fit over every row has it
            keys = OPTIONAL_KEYS[name]
            part["rest_bytes"] = part.groupby(keys, dropna=False, sort=False)["rest_bytes"].transform("min")
        out[name] = part
    return out
