"""Zeek values typed: ports outside 16 bits are bad numbers, whole-number fast path equals the generic one."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tlsdetect.readers.zeek import values as zeek_values

from .test_zeek import SSL_FIELDS, _row, _tsv_value, read, ssl_tsv


@pytest.mark.parametrize("as_json", [False, True])
@pytest.mark.parametrize("port", [65536, 99_999_999_999, -1])
def test_port_outside_16_bits_is_a_bad_number_not_a_wrapped_one(tmp_path: Path, as_json: bool, port: int) -> None:
    rows = [_row(i) for i in range(3)]
    rows[1]["id.orig_p"] = port
    path = tmp_path / ("ssl.json" if as_json else "ssl.tsv")
    if as_json:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        path.write_text(ssl_tsv([[_tsv_value(r[f]) for f in SSL_FIELDS] for r in rows]))
    df, letters = read(path)
    assert df["conn_id"].tolist() == ["C0", "C2"]
    assert df["client_port"].tolist() == [40000, 40002]
    assert letters.stats.reasons == {"bad number": 1}


def test_whole_numbers_match_the_generic_checks() -> None:
    ints = pd.Series(np.array([0, 1, -5, 2**53 + 1, 2**62 - 1, 2**62, 2**63 - 1, -(2**63)], dtype=np.int64))
    floats = pd.Series([0.0, np.nan, 1.5, -3.0, 2.0**62, np.inf, -np.inf, 443.0])
    for s in (ints, floats):
        fast, fast_bad = zeek_values.whole_numbers(s)
        slow, slow_bad = zeek_values.to_number(s.astype(object), integer=True)
        pd.testing.assert_series_equal(fast, slow)
        assert (fast_bad == slow_bad).all()
