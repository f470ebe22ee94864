"""The connections table's schema: conform, concat, certificate columns as categories, strings from codes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tlsdetect import schema

SETTINGS = settings(max_examples=150, deadline=None)


_DTYPES = {"string": ["a", None], "category": ["a", None], "Int32": [1, None], "boolean": [True, None],
           "object": [(1, 2), None]}


@SETTINGS
@given(st.lists(st.sampled_from(list(schema.COLUMNS)), unique=True, max_size=12),
       st.lists(st.sampled_from(list(schema.COLUMNS)), unique=True, max_size=4),
       st.booleans())
def test_conform_in_one_step_equals_column_by_column(present: list[str], as_object: list[str], extra: bool) -> None:
    """Columns missing, present with the schema dtype or as plain objects needing a cast, extras."""
    data: dict[str, pd.Series] = {}
    for col in present:
        dtype = schema.COLUMNS[col]
        if dtype == "datetime64[ns, UTC]":
            data[col] = pd.Series(pd.to_datetime([0, None], utc=True))
        else:
            values = _DTYPES[dtype]
            data[col] = pd.Series(values, dtype=object if col in as_object or dtype == "object" else dtype)
    if extra:
        data["conn_extra"] = pd.Series([1.5, 2.5])
    df = pd.DataFrame(data, index=pd.RangeIndex(2)) if data else pd.DataFrame(index=pd.RangeIndex(2))
    pd.testing.assert_frame_equal(schema.conform(df), schema._conform_by_column(df))


_DN = st.one_of(st.none(), st.sampled_from(["CN=a", "CN=b", "O=Ex\\, Inc.,CN=c", "", "CN=é"]), st.text(max_size=6))


@SETTINGS
@given(st.lists(st.lists(_DN, max_size=6), min_size=1, max_size=4))
def test_concat_keeps_certificate_columns_and_equals_plain_concat(parts: list[list[str | None]]) -> None:
    """schema.concat: the same values as pd.concat spelled out, the certificate column still categorical."""
    frames = [schema.conform(pd.DataFrame({"server_issuer": pd.Series(p, dtype="string"), "sni": "x"}))
              for p in parts]
    got = schema.concat(frames)
    schema.validate(got)
    want = schema.conform(pd.concat(frames, ignore_index=True))
    pd.testing.assert_series_equal(schema.as_text(got["server_issuer"]), schema.as_text(want["server_issuer"]))
    assert got["server_issuer"].astype("string").tolist() == [v for p in parts for v in pd.array(p, dtype="string")]
    assert list(got.columns) == list(frames[0].columns)


@SETTINGS
@given(st.lists(_DN, max_size=8), st.lists(st.integers(-1, 7), max_size=40))
def test_category_from_codes_and_as_text_equal_a_lookup_by_hand(values: list[str | None], picks: list[int]) -> None:
    codes = np.array([c if c < len(values) else -1 for c in picks], dtype=np.int64)
    col = pd.Series(schema.category_from_codes(values, codes))
    want = [values[c] if c >= 0 else None for c in codes]
    assert [None if v is pd.NA else v for v in schema.as_text(col).tolist()] == want
    assert col.cat.categories.is_unique
    assert str(col.cat.categories.dtype) == "string"


_TEXT = st.one_of(st.none(), st.text(max_size=5))


@SETTINGS
@given(st.lists(_TEXT, max_size=6), st.lists(st.integers(-1, 5), max_size=30), st.booleans())
def test_strings_from_codes_equal_a_lookup_by_hand_on_both_paths(values: list[str | None], picks: list[int],
                                                                 join: bool) -> None:
    """Arrow's dictionary decode (small outputs) and the bytes.join path (large ones) give the same values."""
    codes = np.array([c if c < len(values) else -1 for c in picks], dtype=np.int64)
    with pytest.MonkeyPatch.context() as mp:
        if join:
            mp.setattr(schema, "_JOIN_BYTES", 0)  # every output counts as large
        got = pd.Series(schema.strings_from_codes(values, codes), dtype="string")
    want = [values[c] if c >= 0 else None for c in codes]
    assert [None if v is pd.NA else v for v in got.tolist()] == want


@pytest.mark.parametrize("dtype", sorted(set(schema.COLUMNS.values())))
def test_missing_is_all_missing_of_the_dtype(dtype: str) -> None:
    col = schema.missing(dtype, pd.RangeIndex(3))
    assert schema.dtype_name(col.dtype) == dtype
    assert col.isna().all()
    assert len(col) == 3


def test_validate_names_each_missing_column_and_wrong_dtype() -> None:
    df = schema.empty()
    schema.validate(df)
    broken = df.drop(columns=["sni"]).assign(server_port=pd.Series([], dtype="float64"))
    with pytest.raises(ValueError, match="missing column 'sni'") as err:
        schema.validate(broken)
    assert "column 'server_port' is float64, expected Int32" in str(err.value)


def test_concat_of_nothing_is_the_empty_table() -> None:
    got = schema.concat([])
    assert len(got) == 0
    assert list(got.columns) == list(schema.COLUMNS)


def _project_rows() -> pd.DataFrame:
    from tlsdetect.readers.pcap.engine import iter_pcap

    root = Path(__file__).resolve().parents[1] / "pcaps"
    return schema.concat([c for f in sorted(root.glob("*.pcap*")) for c in iter_pcap(f)])


def test_read_parquet_gives_back_the_written_table_with_lists_shared(tmp_path: Path) -> None:
    """The Parquet sink's file read back: every value equal (in two chunks: one dictionary over both),
    the long fingerprint texts categorical, equal hello lists one tuple object."""
    from tlsdetect.sinks.files import Sink

    rows = schema.conform(_project_rows())
    assert len(rows) > 20
    path = tmp_path / "t.parquet"
    sink = Sink("parquet", path=str(path))
    half = len(rows) // 2
    sink.write(rows.iloc[:half].reset_index(drop=True))
    sink.write(rows.iloc[half:].reset_index(drop=True))
    sink.close()
    back = schema.read_parquet(path)
    schema.validate(back)
    assert list(back.columns) == list(rows.columns)
    for col in schema.COLUMNS:
        if schema.COLUMNS[col] == "category":
            assert schema.as_text(back[col]).tolist() == schema.as_text(rows[col]).tolist(), col
        elif schema.COLUMNS[col] == "object":
            want = [None if v is None else tuple(v) for v in rows[col]]
            assert back[col].tolist() == want, col
            present = [v for v in back[col] if v is not None]
            assert len({id(v) for v in present}) == len(set(present)), col
        else:
            pd.testing.assert_series_equal(back[col], rows[col], check_dtype=False, obj=col)
    assert back["ja4_ro"].dtype == "category"
    assert back["ja4_ro"].notna().any()


#: Text columns of few distinct values (versions, transports, origins, reason codes): categoricals, not text per row.
_LOW_CARDINALITY = schema.LOW_CARDINALITY_COLUMNS


def test_low_cardinality_text_columns_are_categoricals_and_parquet_dictionaries(tmp_path: Path) -> None:
    """Conformed from text they become string categoricals with the same values; the Parquet sink writes them
    as dictionaries and ``read_parquet`` gives them back as categoricals of the same text."""
    import pyarrow.parquet as pq

    from tlsdetect.sinks.files import Sink

    text = pd.DataFrame({c: pd.array(["x1", None, "x2", "x1"], dtype="string") for c in _LOW_CARDINALITY})
    rows = schema.conform(text)
    schema.validate(rows)
    path = tmp_path / "t.parquet"
    sink = Sink("parquet", path=str(path))
    sink.write(rows)
    sink.close()
    arrow = pq.read_schema(path)
    back = schema.read_parquet(path)
    for col in _LOW_CARDINALITY:
        assert schema.COLUMNS[col] == "category", col
        assert isinstance(rows[col].dtype, pd.CategoricalDtype), col
        assert str(arrow.field(col).type).startswith("dictionary<"), col
        assert schema.as_text(back[col]).fillna("-").tolist() == ["x1", "-", "x2", "x1"], col
        assert rows[col].cat.codes.tolist() == [rows[col].cat.categories.get_loc("x1"), -1,
                                                rows[col].cat.categories.get_loc("x2"),
                                                rows[col].cat.categories.get_loc("x1")], col
