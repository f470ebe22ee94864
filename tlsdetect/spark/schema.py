"""Spark types of the connections table and of scored rows, built from :mod:`tlsdetect.schema`.

The conversions here are the only place pandas chunks cross into and out of Spark (Arrow via
``mapInPandas``/``applyInPandas``), so every task of every job agrees on one shape:

* ``string`` -> ``StringType``, ``Int32`` -> ``IntegerType``, ``boolean`` -> ``BooleanType``,
  ``datetime64[ns, UTC]`` -> ``TimestampType`` (UTC session time zone), list (``object``) columns
  -> ``ArrayType(IntegerType)`` (``ch_alpn``: ``ArrayType(StringType)``);
* two hidden columns ride along: ``_ts_ns`` (``LongType``, never null: a missing time is
  :data:`NAT`, NumPy's NaT bit pattern), the exact nanosecond timestamp (Spark
  timestamps hold microseconds; pcapng and Zeek times have more digits, and the baseline's
  first/last seen must equal the local fit's), and ``_order`` (``LongType``), the row's position
  in the order the local CLI reads the same inputs (input group, task, row), so "first value seen"
  aggregations and the order of the baseline's hello table are those of the local path.

Inside the jobs the list columns cross the Python boundary *packed*: one JSON string per cell
(``"[4865,4866]"``, ``"[]"``, null), encoded and decoded once per distinct value on the pandas
side and by ``to_json``/``from_json`` in the JVM. PySpark's Arrow <-> pandas conversion of
``ArrayType`` columns is per element in Python and made Spark scoring ~50x slower than the local
path; the public DataFrames (:func:`read_connections`, scored rows) carry the arrays.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from tlsdetect import lists, schema

__all__ = [
    "HIDDEN",
    "NAT",
    "SCORE_EXTRA",
    "connections_schema",
    "from_spark_frame",
    "pack_columns",
    "scored_schema",
    "to_spark_frame",
    "to_spark_scored",
    "unpack_columns",
]

HIDDEN = ("_ts_ns", "_order")
#: ``_ts_ns`` of a row without a time (``numpy.datetime64("NaT").view("int64")``).
NAT = int(np.iinfo(np.int64).min)
#: Columns :func:`tlsdetect.detect.scoring.score` adds, in its order, with their Spark meaning.
SCORE_EXTRA = ("issuer_class", "known_product", "score", "verdict", "reasons", "compared")
#: The fields of a reason (all text or null, numbers written as text by scoring): :data:`schema.REASON_FIELDS`.
REASON_FIELDS = schema.REASON_FIELDS


def spark_type(column: str, dtype: str) -> Any:
    """The Spark SQL type of one connections-table column."""
    from pyspark.sql import types as st

    if dtype in ("string", "category"):  # category: certificate text, stored once per value in pandas
        return st.StringType()
    if dtype == "Int32":
        return st.IntegerType()
    if dtype == "boolean":
        return st.BooleanType()
    if dtype.startswith("datetime64"):
        return st.TimestampType()
    if dtype == "object":
        return st.ArrayType(st.StringType() if column == "ch_alpn" else st.IntegerType())
    raise ValueError(f"no Spark type for column {column!r} of dtype {dtype!r}")


def connections_schema(hidden: bool = True, *, packed: bool = False) -> Any:
    """``StructType`` of the connections table (plus ``_ts_ns`` and ``_order`` unless ``hidden=False``).

    ``packed``: list columns as JSON strings, the shape pandas batches cross the boundary in.
    """
    from pyspark.sql import types as st

    def typ(c: str, t: str) -> Any:
        return st.StringType() if packed and t == "object" else spark_type(c, t)

    fields = [st.StructField(c, typ(c, t), True) for c, t in schema.COLUMNS.items()]
    if hidden:
        fields += [st.StructField(c, st.LongType(), True) for c in HIDDEN]
    return st.StructType(fields)


def reason_type() -> Any:
    """``ArrayType`` of the reason structs (four strings each): :data:`schema.REASONS_ARROW` in Spark's terms."""
    from pyspark.sql import types as st

    return st.ArrayType(st.StructType([st.StructField(f, st.StringType(), True) for f in REASON_FIELDS]))


def scored_schema(hidden: bool = True, *, packed: bool = False) -> Any:
    """``StructType`` of a scored row: the connections table, then the columns ``score`` adds.

    ``packed``: list columns and ``reasons`` as JSON strings (see :func:`connections_schema`).
    """
    from pyspark.sql import types as st

    base = connections_schema(hidden, packed=packed)
    extra = [
        st.StructField("issuer_class", st.StringType(), True),
        st.StructField("known_product", st.StringType(), True),
        st.StructField("score", st.DoubleType(), True),
        st.StructField("verdict", st.StringType(), True),
        st.StructField("reasons", st.StringType() if packed else reason_type(), True),
        st.StructField("compared", st.StringType(), True),
    ]
    return st.StructType(list(base.fields) + extra)


def pack_columns(df: Any) -> Any:
    """A Spark DataFrame with its list columns (and ``reasons``, if any) as JSON strings, in the JVM."""
    from pyspark.sql import functions as F  # noqa: N812

    packs = {c for c in (*schema.LIST_COLUMNS, "reasons") if c in df.columns}
    return df.select(*[F.to_json(F.col(c)).alias(c) if c in packs else F.col(c) for c in df.columns])


def unpack_columns(df: Any) -> Any:
    """The inverse of :func:`pack_columns`: JSON strings back to arrays (of reason structs), in the JVM."""
    from pyspark.sql import functions as F  # noqa: N812

    types = {c: spark_type(c, "object") for c in schema.LIST_COLUMNS}
    types["reasons"] = reason_type()
    return df.select(*[F.from_json(F.col(c), types[c]).alias(c) if c in types else F.col(c) for c in df.columns])


def _per_distinct(s: pd.Series, fn: Any) -> np.ndarray:
    """``fn`` of each distinct non-null value of ``s``, broadcast back; ``None`` where ``s`` is null."""
    codes, uniques = pd.factorize(s.to_numpy(dtype=object), use_na_sentinel=True)
    values = np.empty(len(uniques) + 1, dtype=object)
    for i, u in enumerate(uniques):  # one by one: a slice assignment would broadcast equal-length tuples
        values[i] = fn(u)
    values[-1] = None
    return values[codes]  # code -1 (null) takes the last slot


def _pack_list(v: Any) -> Any:
    return json.dumps([x if isinstance(x, str) else int(x) for x in v], separators=(",", ":"))


def _unpack_list(v: str) -> Any:
    return tuple(json.loads(v))


def _pack_lists(s: pd.Series) -> np.ndarray:
    """JSON text per cell of a list column (tuples: hashable, so once per distinct tuple)."""
    values = s.to_numpy(dtype=object)
    present = pd.notna(s).to_numpy()
    out = np.full(len(values), None, dtype=object)
    if present.any():
        out[present] = _per_distinct(pd.Series(values[present], dtype=object), _pack_list)
    return out


def _one_chunk(s: pd.Series) -> pd.Series:
    """An Arrow-backed string column over one Arrow chunk: PySpark builds each batch with
    ``RecordBatch.from_arrays``, which rejects the chunked array a concatenated column yields."""
    import pyarrow as pa

    if not isinstance(s.array, pd.arrays.ArrowStringArray):
        return s
    arr = s.array.__arrow_array__()
    if not isinstance(arr, pa.ChunkedArray) or arr.num_chunks == 1:
        return s
    return pd.Series(type(s.array)(pa.chunked_array([arr.combine_chunks()])), dtype=s.dtype, index=s.index)


def to_spark_frame(df: pd.DataFrame, order: Any = None) -> pd.DataFrame:
    """A conformed connections chunk as the pandas frame a ``mapInPandas`` task returns (packed lists).

    ``order``: the ``_order`` values (default: the frame's existing ``_order`` column).
    """
    conf = schema.conform(df)
    out = pd.DataFrame(index=range(len(conf)))
    for col, dtype in schema.COLUMNS.items():
        s = conf[col].reset_index(drop=True)
        if dtype == "object":
            out[col] = _pack_lists(s)
        elif dtype.startswith("datetime64"):
            out[col] = s.dt.floor("us")
        elif dtype == "category":  # Spark's string type: the text (Arrow dictionaries do not cross)
            out[col] = _one_chunk(schema.as_text(s))
        else:
            out[col] = _one_chunk(s)  # Arrow-backed or masked: PySpark takes them as Arrow arrays, no Python objects
    ts = conf["ts"].reset_index(drop=True)
    out["_ts_ns"] = ts.dt.tz_localize(None).to_numpy(dtype="datetime64[ns]").view("int64")
    if order is None:
        order = conf["_order"].to_numpy() if "_order" in conf.columns else np.arange(len(conf))
    out["_order"] = np.asarray(order, dtype=np.int64)
    return out


def from_spark_frame(pdf: pd.DataFrame) -> pd.DataFrame:
    """The pandas batch a Spark task receives, back to the package's connections table.

    ``ts`` is rebuilt from ``_ts_ns`` (nanoseconds, UTC); list columns become tuples of ints /
    hex strings as the readers yield them. The hidden columns stay (last), for the caller.
    """
    out = pdf.copy()
    if "_ts_ns" in out.columns:
        ns = out["_ts_ns"].to_numpy(dtype=np.int64).view("datetime64[ns]")
        out["ts"] = pd.Series(ns, index=out.index).dt.tz_localize("UTC")
    for col in schema.LIST_COLUMNS:
        if col in out.columns:
            col_values = out[col]
            first = col_values.dropna().head(1).tolist()
            if not first:
                out[col] = pd.Series(np.full(len(out), None, dtype=object), index=out.index, dtype=object)
            elif isinstance(first[0], str):  # packed JSON (inside the jobs)
                out[col] = _per_distinct(col_values, _unpack_list)
            else:  # arrays (a public DataFrame's toPandas): one tuple per distinct list
                out[col] = lists.shared(col_values, item=pa.string() if col == "ch_alpn" else None)
    for col, dtype in schema.COLUMNS.items():
        if col in out.columns and dtype in ("string", "boolean") and str(out[col].dtype) != dtype:
            out[col] = out[col].where(out[col].notna(), None).astype(dtype)  # type: ignore[call-overload]
        elif col in out.columns and dtype.startswith("datetime64") and str(out[col].dtype) != dtype:
            # Spark hands timestamps over naive, in the session's time zone (UTC: tlsdetect.spark.session)
            out[col] = pd.to_datetime(out[col], utc=True).astype("datetime64[ns, UTC]")
    return schema.conform(out)


def _text(v: Any) -> str | None:
    if v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v)):
        return None
    return v if isinstance(v, str) else str(v)


def to_spark_scored(scored: pd.DataFrame, hidden: pd.DataFrame) -> pd.DataFrame:
    """A frame from :func:`tlsdetect.detect.scoring.score` as the rows of :func:`scored_schema`.

    ``hidden``: the input rows' ``_order`` column, in the same order (``ts`` still holds the exact
    nanoseconds, so ``_ts_ns`` is recomputed from it). Reason fields are already text or null
    (scoring writes them so), so every row has one struct type and Spark's reasons equal the
    local ones; list columns and ``reasons`` are packed (:func:`scored_schema` with ``packed=True``).
    """
    out = to_spark_frame(scored[list(schema.COLUMNS)], order=hidden["_order"].to_numpy())
    for col in ("issuer_class", "known_product", "verdict", "compared"):
        out[col] = _per_distinct(scored[col], _text)
    out["score"] = scored["score"].to_numpy(dtype=np.float64)
    reasons = [json.dumps([{f: r.get(f) for f in REASON_FIELDS} for r in rs], separators=(",", ":"))
               if len(rs) else "[]" for rs in scored["reasons"]]
    out["reasons"] = pd.Series(reasons, dtype=object)
    return out
