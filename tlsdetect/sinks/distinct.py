"""A column as codes into its distinct values, so a text writer formats each distinct value once.

A connections table holds a few thousand distinct hellos, names and certificates behind 100k rows: the
JSON lines, CSV and table writers format the distinct values and repeat the text by code instead of
formatting every cell. Exactness rests on two rules:

* two rows share a code only when their values format the same under *any* writer: text by equality
  (``"a" == "a"`` is exact), numbers by their bits (``0.0`` and ``-0.0`` are equal but print apart; so are
  ``1`` and ``True`` in an object column), other objects (hello tuples, reason lists) by identity (the pcap
  reader broadcasts one tuple to every row of a hello); missing values (None, NaN, NA) of an object column
  of text are one value, as every writer writes them alike (null, an empty cell);
* a distinct value is handed over as iterating the column yields it (``Series.iloc`` then ``list``), the
  same object type a per-row writer (``DataFrame.itertuples``) saw: ``numpy.int32`` for ``Int32``, ``nan``
  for a missing category, ``Timestamp`` for a time.

Dtypes outside these rules get one code per row: slower, never wrong.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

__all__ = ["Distinct", "distinct", "first_rows"]

#: (codes, values): ``values[codes[i]]`` is row ``i``'s value as iterating the column yields it.
Distinct = tuple[np.ndarray, list[Any]]


def _bits(values: np.ndarray) -> np.ndarray | None:
    """Numbers, booleans and times as unsigned integers of their bits, or None for other arrays."""
    if values.dtype.kind not in "biufmM" or values.dtype.itemsize not in (1, 2, 4, 8):
        return None
    return values.view(f"u{values.dtype.itemsize}")


def _keys(s: pd.Series) -> np.ndarray | None:
    """Integer keys equal exactly where the values format the same, or None when no such key is known."""
    dtype, array = s.dtype, s.array
    if isinstance(dtype, pd.CategoricalDtype):
        return s.cat.codes.to_numpy()
    if isinstance(dtype, pd.StringDtype) or isinstance(array, pd.arrays.IntegerArray | pd.arrays.BooleanArray):
        return pd.factorize(s, use_na_sentinel=False)[0]  # text, integers, booleans: equality is exact
    if isinstance(dtype, pd.DatetimeTZDtype):  # the UTC instant's bits (naive times are numpy below)
        return _bits(s.dt.tz_convert(None).to_numpy())
    if isinstance(array, pd.arrays.FloatingArray):
        floats = array.to_numpy(dtype=str(dtype).lower(), na_value=0.0)  # Float64 -> float64
        codes = pd.factorize(floats.view(f"u{floats.dtype.itemsize}"))[0]
        return np.where(s.isna().to_numpy(), -1, codes)
    if isinstance(dtype, np.dtype):
        if dtype.kind == "O":
            values = s.to_numpy()
            if pd.api.types.infer_dtype(values, skipna=True) in ("string", "empty"):
                return pd.factorize(values, use_na_sentinel=False)[0]  # str or missing: equality is exact
            return np.fromiter(map(id, values), dtype=np.uint64, count=len(values))
        return _bits(s.to_numpy())
    return None


def first_rows(s: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """``(codes, first)``: row ``i`` holds the value of row ``first[codes[i]]``, each distinct value's first row."""
    keys = _keys(s)
    if keys is None:  # an unknown dtype: a value per row
        return np.arange(len(s)), np.arange(len(s))
    codes = pd.factorize(keys)[0]  # numbered in order of first appearance: a new code exceeds all before it
    first = np.flatnonzero(codes > np.maximum.accumulate(np.concatenate(([-1], codes[:-1]))))
    return codes, first


def distinct(s: pd.Series) -> Distinct:
    """``s`` as codes into its distinct values (see the module docstring for what counts as one value)."""
    codes, first = first_rows(s)
    return codes, list(s.iloc[first])
