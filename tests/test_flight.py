"""Flight assembly (:mod:`tlsdetect.readers.pcap.flight`): its shortcut against the general search."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from tlsdetect.readers.pcap.flight import assemble_prefix

SETTINGS = settings(max_examples=150, deadline=None)


@st.composite
def _segments(draw: st.DrawFn) -> tuple[np.ndarray, ...]:
    """A small window: a payload buffer, segments of a few flows (retransmitted, overlapping, out
    of order, some far off in sequence space) and a few distinct owners with their start seq."""
    buf = np.frombuffer(draw(st.binary(min_size=64, max_size=256)), dtype=np.uint8)
    n_flows = draw(st.integers(1, 4))
    flow_keys = np.array(draw(st.lists(st.integers(1, 2**63), min_size=n_flows, max_size=n_flows, unique=True)),
                         dtype=np.uint64)
    base = np.array(draw(st.lists(st.integers(0, 2**32 - 1), min_size=n_flows, max_size=n_flows)), dtype=np.int64)
    rows = draw(st.lists(st.tuples(st.integers(0, n_flows - 1), st.integers(-8, 40), st.integers(0, 200),
                                   st.integers(1, 30)), min_size=0, max_size=24))
    keys = np.array([flow_keys[f] for f, _, _, _ in rows], dtype=np.uint64)
    seq = np.array([(base[f] + rel) & 0xFFFFFFFF for f, rel, _, _ in rows], dtype=np.int64)
    plen = np.array([min(ln, len(buf) - p) if p < len(buf) else 0 for _, _, p, ln in rows], dtype=np.int64)
    payload = np.array([min(p, len(buf)) for _, _, p, _ in rows], dtype=np.int64)
    owners = draw(st.lists(st.integers(0, n_flows - 1), min_size=1, max_size=n_flows, unique=True))
    owner_key = flow_keys[owners]
    owner_seq = base[owners]
    return buf, owner_key, owner_seq, keys, seq, payload, plen


@SETTINGS
@given(_segments(), st.sampled_from([4, 16, 64]))
def test_segments_found_by_key_order_equal_the_general_search(seg: tuple[np.ndarray, ...], limit: int) -> None:
    buf, owner_key, owner_seq, keys, seq, payload, plen = seg
    general = assemble_prefix(buf, owner_key, owner_seq, keys, seq, payload, plen, limit)
    by_key = assemble_prefix(buf, owner_key, owner_seq, keys, seq, payload, plen, limit,
                             np.argsort(keys, kind="stable"))
    for a, b in zip(general, by_key, strict=True):
        np.testing.assert_array_equal(a, b)
