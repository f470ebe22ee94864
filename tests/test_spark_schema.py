"""Spark types and the pandas <-> Spark conversions (:mod:`tlsdetect.spark.schema`): the package's schema, the
reasons' struct type, and packed list cells that keep (), None and ("",) apart in Python and in the JVM."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("pyspark")

from tlsdetect import schema
from tlsdetect.detect.baseline import Baseline
from tlsdetect.detect.scoring import score
from tlsdetect.readers.inputs import Inputs

from .conftest import PROJECT_PCAPS as PCAPS

pytest_plugins = ["tests.spark_fixtures"]  # spark


def test_spark_schema_matches_package_schema() -> None:
    from pyspark.sql import types as st

    from tlsdetect.spark.schema import connections_schema, scored_schema

    s = connections_schema(hidden=False)
    assert s.fieldNames() == list(schema.COLUMNS)
    assert s["ch_alpn"].dataType == st.ArrayType(st.StringType())
    assert s["ch_ciphers"].dataType == st.ArrayType(st.IntegerType())
    assert s["ts"].dataType == st.TimestampType()
    assert scored_schema().fieldNames()[-6:] == ["issuer_class", "known_product", "score", "verdict", "reasons",
                                                 "compared"]


def test_spark_scored_rows_carry_the_server_side() -> None:
    """issue 16 item 7: Spark's scored rows carry what ``score`` writes of the server's side (``ja3s``, the cipher)."""
    from pyspark.sql import types as st

    from tlsdetect.detect.scoring import SCORE_OUTPUT_COLUMNS
    from tlsdetect.spark.schema import scored_schema

    s = scored_schema(hidden=False)
    assert set(SCORE_OUTPUT_COLUMNS) <= set(s.fieldNames())
    assert s["ja3s"].dataType == st.StringType()
    assert s["sh_cipher"].dataType == st.IntegerType()
    assert s["tls_version"].dataType == st.StringType()


def test_spark_reasons_are_the_local_reasons_and_the_parquet_type() -> None:
    """issue 14 item 1: Spark's reasons hold the very strings local scoring writes (no ``str()`` of its own),
    in the struct type local Parquet files have."""
    import json

    from pyspark.sql.pandas.types import from_arrow_type

    from tlsdetect.fingerprint import add_fingerprints
    from tlsdetect.spark.schema import reason_type, to_spark_scored

    assert reason_type() == from_arrow_type(schema.REASONS_ARROW)
    local = Inputs([str(PCAPS)]).read_all()
    weak = local.iloc[[1]].copy()
    weak["ch_ciphers"] = pd.Series([(5, *weak["ch_ciphers"].iloc[0])], index=weak.index, dtype=object)  # + RC4-SHA
    rows = pd.concat([local, add_fingerprints(weak)], ignore_index=True)
    scored = score(rows, Baseline().fit(local.iloc[:8]))
    assert "weak_ciphers" in {r["code"] for r in scored["reasons"].iloc[-1]}  # numeric evidence (a count)
    packed = to_spark_scored(scored, pd.DataFrame({"_order": np.arange(len(scored), dtype=np.int64)}))
    assert [json.loads(text) for text in packed["reasons"]] == [list(rs) for rs in scored["reasons"]]


LIST_CASES = [None, (), (4865,), (4865, 4866, 0), (2**31 - 1,)]


ALPN_CASES = [None, (), ("",), ("6832",), ("6832", "687474702f312e31"), ("2c",)]


def _list_frame() -> pd.DataFrame:
    n = len(LIST_CASES) * len(ALPN_CASES)
    df = schema.empty()
    df = pd.concat([df, pd.DataFrame(index=range(n))], ignore_index=True)
    df = schema.conform(df)
    for col in schema.LIST_COLUMNS:
        cases = ALPN_CASES if col == "ch_alpn" else LIST_CASES
        reps = len(LIST_CASES) if col == "ch_alpn" else len(ALPN_CASES)
        df[col] = pd.Series([c for c in cases for _ in range(reps)], dtype=object)
    df["sh_extensions"] = pd.Series([None] * n, dtype=object)  # an all-null column takes its own path
    return df


def test_packed_lists_round_trip_in_python() -> None:
    """Inside the jobs list cells cross the boundary as JSON text: (), None and ("",) stay apart."""
    from tlsdetect.spark.schema import from_spark_frame, to_spark_frame

    df = _list_frame()
    packed = to_spark_frame(df)
    assert pd.isna(packed.loc[0, "ch_ciphers"])
    assert packed.loc[len(ALPN_CASES), "ch_ciphers"] == "[]"
    assert set(packed["ch_alpn"].dropna()) >= {"[]", '[""]', '["2c"]'}
    back = from_spark_frame(packed)
    for col in schema.LIST_COLUMNS:
        assert back[col].tolist() == df[col].tolist(), col
    # one distinct list (numpy would broadcast a list of equal-length tuples into a 2-D array)
    same = pd.DataFrame({"ch_ciphers": ["[4865,4866]", None, "[4865,4866]"], "ch_alpn": ['["6832"]'] * 3})
    assert from_spark_frame(same)["ch_ciphers"].tolist() == [(4865, 4866), None, (4865, 4866)]


@pytest.mark.slow
def test_packed_lists_round_trip_through_the_jvm(spark: Any) -> None:
    """``pack_columns``/``unpack_columns`` (to_json/from_json) and the Python side agree on every case."""
    from tlsdetect.spark.schema import (
        connections_schema,
        from_spark_frame,
        pack_columns,
        to_spark_frame,
        unpack_columns,
    )

    df = _list_frame()
    half = len(df) // 2  # a string column over two Arrow chunks, as concatenated reader output is
    df["sni"] = pd.concat([pd.Series(["a.example", None] * (half // 2) + ["a"] * (half % 2), dtype="string"),
                           pd.Series(["b.example"] * (len(df) - half), dtype="string")], ignore_index=True)
    assert df["sni"].array.__arrow_array__().num_chunks == 2
    frame = to_spark_frame(df)
    # PySpark's serializer builds a RecordBatch from the columns: a chunked one fails there
    # ("Cannot convert pyarrow.lib.ChunkedArray to pyarrow.lib.Array", seen on a 100k-row Zeek log)
    assert frame["sni"].array.__arrow_array__().num_chunks == 1

    def batches(_: Any) -> Iterator[pd.DataFrame]:  # mapInPandas: the Arrow path the read tasks take
        yield frame

    sdf = spark.range(1, numPartitions=1).mapInPandas(batches, connections_schema(packed=True))
    arrays = unpack_columns(sdf)
    assert arrays.schema == connections_schema()
    back = from_spark_frame(arrays.toPandas())  # arrays, as a public DataFrame gives them
    again = from_spark_frame(pack_columns(arrays).toPandas())  # and packed again in the JVM
    for col in schema.LIST_COLUMNS:
        assert back[col].tolist() == df[col].tolist(), col
        assert again[col].tolist() == df[col].tolist(), col
    pd.testing.assert_series_equal(back["sni"], df["sni"])
