"""The hello list columns (``ch_*``, ``sh_*``, the flights) held once per distinct list.

A network shows a few thousand distinct hellos behind millions of connections. A list column is a
numpy object array whose cells are tuples (``None`` where missing); equal lists are one shared
tuple object, so a row costs a pointer (8 bytes) and each distinct list is stored once. The
readers build them so (the pcap fast lane and Zeek broadcast one tuple per distinct hello); these
functions restore the sharing where lists arrive per row: Parquet and Arrow (one list per row,
turned into numpy arrays by ``to_pandas``) and Spark's ``toPandas``. They hash each row's list in
C (Arrow's dictionary encoding of the list's bytes) and make a Python tuple per distinct list only.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["from_arrow", "shared"]


def _keys(arr: Any) -> Any:
    """One binary value per row that is equal exactly when the rows' lists are equal (null stays null)."""
    n = len(arr)
    valid = np.asarray(arr.is_valid(), dtype=bool) if arr.null_count else None
    validity = pa.py_buffer(np.packbits(valid, bitorder="little")) if valid is not None else None
    item = arr.type.value_type
    if pa.types.is_integer(item):
        offsets = np.asarray(arr.offsets, dtype=np.int64)  # absolute into arr.values, slicing included
        values = arr.values
        if values.null_count or not pa.types.is_int32(values.type):  # a null item differs from every value
            values = values.cast(pa.int64()).fill_null(-(1 << 62))
        width = values.type.bit_width // 8
        raw = np.asarray(values).view(np.uint8)  # no copy: Arrow's buffer
        byte_offsets = (offsets - offsets[0]) * width
        data = raw[offsets[0] * width : offsets[-1] * width]
        return pa.Array.from_buffers(pa.large_binary(), n, [validity, pa.py_buffer(byte_offsets),
                                                            pa.py_buffer(np.ascontiguousarray(data))])
    # text items (ch_alpn: hex): each item's length before it, so no separator can be ambiguous
    texts = arr.values.cast(pa.large_string())
    lengths = pc.cast(pc.fill_null(pc.binary_length(texts), -1), pa.large_string())
    framed = pc.binary_join_element_wise(lengths, pc.fill_null(texts, ""), pa.scalar(":", pa.large_string()))
    framed_list = pa.LargeListArray.from_arrays(pa.array(np.asarray(arr.offsets, dtype=np.int64)), framed)
    joined = pc.binary_join(framed_list, pa.scalar(",", pa.large_string()))
    return pc.if_else(pa.array(valid) if valid is not None else pa.scalar(True), joined,
                      pa.scalar(None, joined.type))


def from_arrow(arr: Any) -> npt.NDArray[np.object_]:
    """An Arrow list column (array or chunked array) as a list column of shared tuples."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks() if arr.num_chunks else pa.array([], type=arr.type)
    n = len(arr)
    out = np.empty(n, dtype=object)
    if arr.null_count == n:  # no rows, or no list at all
        return out
    if not (pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type)):
        raise TypeError(f"not a list column: {arr.type}")
    encoded = pc.dictionary_encode(_keys(arr))
    idx = encoded.indices
    codes = np.asarray(idx.fill_null(-1), dtype=np.int64)
    uniq, first = np.unique(codes, return_index=True)
    present = uniq >= 0
    firsts = first[present]
    cells = np.empty(len(encoded.dictionary) + 1, dtype=object)  # the last slot: code -1 stays None
    values = arr.take(pa.array(firsts)).to_pylist()
    for code, value in zip(uniq[present].tolist(), values, strict=True):
        cells[code] = tuple(value)
    out[:] = cells[codes]
    return out


def shared(values: Any, *, item: Any = None) -> npt.NDArray[np.object_]:
    """A list column (tuples, lists or numpy arrays per cell, ``None``/NaN missing) as shared tuples.

    ``item``: the Arrow type of an element (default: ``int64``; ``string`` for ``ch_alpn``).
    A column that already holds tuples only is factorised as it is (one C hash per row).
    """
    cells = values.to_numpy(dtype=object) if isinstance(values, pd.Series) else np.asarray(values, dtype=object)
    if cells.ndim != 1:  # np.asarray of equal-length tuples makes a 2-D array
        flat = np.empty(len(values), dtype=object)
        flat[:] = list(values)
        cells = flat
    if all(c is None or type(c) is tuple for c in cells.tolist()):
        codes, uniques = pd.factorize(cells, use_na_sentinel=True)
        table = np.empty(len(uniques) + 1, dtype=object)
        for j, u in enumerate(uniques):  # one by one: a slice assignment would broadcast equal tuples
            table[j] = u
        out: npt.NDArray[np.object_] = table[codes]  # code -1 (missing) takes the last slot, None
        return out
    kind = pa.list_(item if item is not None else pa.int64())
    arrow = pa.array(cells, type=kind, from_pandas=True)
    return from_arrow(arrow)
