"""One cell as the text formats see it: missing as None, lists as lists, times as ISO 8601 UTC text.

Shared by every text writer (JSON lines, CSV, the table, alerts), so a value reads the same in all of them.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["iso_utc", "iso_utc_array", "plain"]


def plain(value: Any) -> Any:
    """A JSON-ready value: missing -> None, tuples/arrays -> lists, timestamps -> ISO 8601."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, pd.Timestamp):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, tuple | list):
        return [plain(v) for v in value]
    if hasattr(value, "tolist"):
        return plain(value.tolist())
    if hasattr(value, "item"):
        return value.item()
    return value


def iso_utc(ts: pd.Series) -> pd.Series:
    """Times as ISO 8601 UTC text ending in ``Z`` (missing -> None), exactly as :func:`plain` writes one.

    Fractions are written as ``Timestamp.isoformat`` does: none for whole seconds, else 6 digits, or 9
    when there are nanoseconds, so CSV, JSON lines, the table and alerts agree character for character.
    Vectorised: one numpy pass per column, not a Timestamp object per row.
    """
    text, missing = iso_utc_array(ts)
    out = text.astype(object)
    out[missing] = None
    return pd.Series(out, index=ts.index, dtype="object")


def iso_utc_array(ts: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """:func:`iso_utc` as a numpy string array (missing rows hold any text) and the mask of missing rows."""
    when = pd.to_datetime(ts, utc=True)
    missing = when.isna().to_numpy()
    ns = when.dt.tz_convert(None).to_numpy(dtype="datetime64[ns]").view(np.int64)
    frac = np.mod(ns, 1_000_000_000)  # non-negative, also before 1970
    seconds = np.datetime_as_string((ns - frac).view("datetime64[ns]").astype("datetime64[s]"), unit="s")
    # the 9 digits of the fraction as bytes, one row each; the first 6 are the microseconds
    digits = (frac[:, None] // 10 ** np.arange(8, -1, -1, dtype=np.int64) % 10 + ord("0")).astype(np.uint8)
    nano = digits.view("S9").reshape(-1).astype("U9")
    micro = np.ascontiguousarray(digits[:, :6]).view("S6").reshape(-1).astype("U6")
    tail = np.where(frac == 0, "Z", np.where(frac % 1000 == 0, np.strings.add(np.strings.add(".", micro), "Z"),
                                             np.strings.add(np.strings.add(".", nano), "Z")))
    return np.strings.add(seconds, tail), missing
