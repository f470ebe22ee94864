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
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .. import schema

__all__ = [
    "HIDDEN",
    "NAT",
    "SCORE_EXTRA",
    "connections_schema",
    "from_spark_frame",
    "scored_schema",
    "to_spark_frame",
    "to_spark_scored",
]

HIDDEN = ("_ts_ns", "_order")
#: ``_ts_ns`` of a row without a time (``numpy.datetime64("NaT").view("int64")``).
NAT = int(np.iinfo(np.int64).min)
#: Columns :func:`tlsdetect.scoring.score` adds, in its order, with their Spark meaning.
SCORE_EXTRA = ("issuer_class", "known_product", "score", "verdict", "reasons", "compared")
REASON_FIELDS = ("code", "detail", "expected", "observed")


def spark_type(column: str, dtype: str) -> Any:
    """The Spark SQL type of one connections-table column."""
    from pyspark.sql import types as st

    if dtype == "string":
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


def connections_schema(hidden: bool = True) -> Any:
    """``StructType`` of the connections table (plus ``_ts_ns`` and ``_order`` unless ``hidden=False``)."""
    from pyspark.sql import types as st

    fields = [st.StructField(c, spark_type(c, t), True) for c, t in schema.COLUMNS.items()]
    if hidden:
        fields += [st.StructField(c, st.LongType(), True) for c in HIDDEN]
    return st.StructType(fields)


def scored_schema(hidden: bool = True) -> Any:
    """``StructType`` of a scored row: the connections table, then the columns ``score`` adds."""
    from pyspark.sql import types as st

    reason = st.StructType([st.StructField(f, st.StringType(), True) for f in REASON_FIELDS])
    base = connections_schema(hidden)
    extra = [
        st.StructField("issuer_class", st.StringType(), True),
        st.StructField("known_product", st.StringType(), True),
        st.StructField("score", st.DoubleType(), True),
        st.StructField("verdict", st.StringType(), True),
        st.StructField("reasons", st.ArrayType(reason), True),
        st.StructField("compared", st.StringType(), True),
    ]
    return st.StructType(list(base.fields) + extra)


def _plain_list(v: Any) -> Any:
    if v is None or v is pd.NA:
        return None
    if isinstance(v, float) and np.isnan(v):
        return None
    return [x if isinstance(x, str) else int(x) for x in v]


def _nullable(s: pd.Series) -> pd.Series:
    """Arrow-friendly object column: Python values, ``None`` for missing."""
    return s.astype(object).where(s.notna().to_numpy(), None)


def to_spark_frame(df: pd.DataFrame, order: Any = None) -> pd.DataFrame:
    """A conformed connections chunk as the pandas frame a ``mapInPandas`` task returns.

    ``order``: the ``_order`` values (default: the frame's existing ``_order`` column).
    """
    conf = schema.conform(df)
    out = pd.DataFrame(index=range(len(conf)))
    for col, dtype in schema.COLUMNS.items():
        s = conf[col].reset_index(drop=True)
        if dtype == "object":
            out[col] = s.map(_plain_list).astype(object)
        elif dtype.startswith("datetime64"):
            out[col] = s.dt.floor("us")
        else:
            out[col] = _nullable(s)
    ts = conf["ts"].reset_index(drop=True)
    out["_ts_ns"] = ts.dt.tz_localize(None).to_numpy(dtype="datetime64[ns]").view("int64")
    if order is None:
        order = conf["_order"].to_numpy() if "_order" in conf.columns else np.arange(len(conf))
    out["_order"] = np.asarray(order, dtype=np.int64)
    return out


def _as_tuple(v: Any) -> Any:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return None
    return tuple(x if isinstance(x, str) else int(x) for x in v)


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
            out[col] = out[col].map(_as_tuple).astype(object)
    for col, dtype in schema.COLUMNS.items():
        if col in out.columns and dtype in ("string", "boolean") and str(out[col].dtype) != dtype:
            out[col] = out[col].where(out[col].notna(), None).astype(dtype)  # type: ignore[call-overload]
    return schema.conform(out)


def _text(v: Any) -> str | None:
    if v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v)):
        return None
    return v if isinstance(v, str) else str(v)


def to_spark_scored(scored: pd.DataFrame, hidden: pd.DataFrame) -> pd.DataFrame:
    """A frame from :func:`tlsdetect.scoring.score` as the rows of :func:`scored_schema`.

    ``hidden``: the input rows' ``_order`` column, in the same order (``ts`` still holds the exact
    nanoseconds, so ``_ts_ns`` is recomputed from it). Reason
    fields become strings (``str()`` of numbers) so every row has one struct type.
    """
    out = to_spark_frame(scored[list(schema.COLUMNS)], order=hidden["_order"].to_numpy())
    for col in ("issuer_class", "known_product", "verdict", "compared"):
        out[col] = [_text(v) for v in scored[col].astype(object)]
    out["score"] = scored["score"].to_numpy(dtype=np.float64)
    reasons = [[{f: _text(r.get(f)) for f in REASON_FIELDS} for r in rs] for rs in scored["reasons"]]
    out["reasons"] = pd.Series(reasons, dtype=object)
    return out
