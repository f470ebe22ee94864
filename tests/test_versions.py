"""tlsdetect.wire.versions: one name per protocol version, a number for the rest."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from tlsdetect.wire.versions import VERSION_NAMES, version_name


def test_known_versions_have_the_column_names() -> None:
    assert version_name(0x0304) == "TLSv1.3"
    assert version_name(0x0303) == "TLSv1.2"
    assert version_name(0xFEFD) == "DTLSv1.2"
    assert version_name(np.int64(0x0300)) == "SSLv3"  # numpy ints off a codes array work too


@given(st.integers(min_value=0, max_value=0xFFFF))
def test_every_16_bit_value_has_one_name(v: int) -> None:
    name = version_name(v)
    assert name == VERSION_NAMES[v] if v in VERSION_NAMES else name == f"0x{v:04x}"
