"""One cell as text formats see it (:mod:`tlsdetect.sinks.values`): the per-value form and the vectorised
ISO 8601 text of a time column agree."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from tlsdetect.sinks.values import iso_utc, plain


@pytest.mark.parametrize(("value", "want"), [
    (None, None), (pd.NA, None), (pd.NaT, None), (math.nan, None), (np.int32(7), 7), (np.bool_(True), True),
    ((1, (2, np.int64(3))), [1, [2, 3]]), (np.array([4, 5]), [4, 5]), ("x", "x"),
    (pd.Timestamp("2016-01-28T18:37:10.5", tz="UTC"), "2016-01-28T18:37:10.500000Z"),
])
def test_plain_values(value: object, want: object) -> None:
    assert plain(value) == want


def test_iso_utc_equals_plain_per_value() -> None:
    times = pd.Series(pd.to_datetime(["2016-01-28T18:37:10.545976123Z", "1969-12-31T23:59:59Z", None],
                                     format="ISO8601", utc=True))
    assert iso_utc(times).tolist() == [plain(t) for t in times]
