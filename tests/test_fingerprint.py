"""Fingerprint rules, and the vectorised table path against the scalar reference."""

from __future__ import annotations

import hashlib

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tlsdetect import schema
from tlsdetect.detect.issuers import add_issuer_keys
from tlsdetect.fingerprint import (
    FP_COLUMNS,
    add_fingerprints,
    client_fingerprints,
    enrich,
    ja3_string,
    ja4,
    ja4_alpn_chars,
)
from tlsdetect.readers.pcap.engine import iter_connections
from tlsdetect.wire.tls import ClientHello

from .conftest import PROJECT_PCAPS


@pytest.mark.parametrize(
    ("alpn", "chars"),
    [
        (None, "00"),
        (b"", "00"),
        (b"h2", "h2"),
        (b"http/1.1", "h1"),
        (b"z", "zz"),
        (b"\xab", "ab"),
        (b"\xab\xcd", "ad"),
        (b"z\xab", "7b"),
        (b"z\xab\xcdy", "zy"),
        (b"-+", "2b"),
        (b"_", "5f"),
        (b"\xba\xad", "bd"),
        (b"H2", "H2"),
        (b"spdy/3", "s3"),
    ],
)
def test_alpn_rule_of_the_written_spec(alpn: bytes | None, chars: str) -> None:
    assert ja4_alpn_chars(alpn) == chars


def test_ja4_by_hand() -> None:
    """Every part computed independently from the JA4 specification."""
    ciphers = (0x0A0A, 0x1301, 0x1302, 0xC02B)
    exts = (0x1A1A, 0x0000, 0x0010, 0x000A, 0x000D, 0x002B)
    sigs = (0x0A0A, 0x0403, 0x0804)
    got = ja4("t", 0x0303, ciphers, exts, b"h2", sigs, (0x2A2A, 0x0304, 0x0303))
    b = hashlib.sha256(b"1301,1302,c02b").hexdigest()[:12]
    c = hashlib.sha256(b"000a,000d,002b_0403,0804").hexdigest()[:12]
    assert got.ja4 == f"t13d0305h2_{b}_{c}"
    assert got.ja4_r == "t13d0305h2_1301,1302,c02b_000a,000d,002b_0403,0804"
    assert got.ja4_ro == "t13d0305h2_1301,1302,c02b_0000,0010,000a,000d,002b_0403,0804"


def test_empty_lists_hash_to_zeros_and_counts_cap_at_99() -> None:
    assert ja4("t", 0x0303, (), (), None, (), ()).ja4 == "t12i000000_000000000000_000000000000"
    many = tuple(range(1, 150))
    assert ja4("t", 0x0303, many, many, None, (), ()).ja4.startswith("t12i9999")


def test_ja3_removes_grease_and_ja3n_sorts() -> None:
    text = ja3_string(771, (0x0A0A, 4865), (0x1A1A, 43, 0, 10), (0x2A2A, 29), (0,))
    assert text == "771,4865,43-0-10,29,0"
    assert ja3_string(771, (4865,), (43, 0, 10), (29,), (0,), sort_extensions=True) == "771,4865,0-10-43,29,0"


u16 = st.integers(min_value=0, max_value=0xFFFF)
grease = st.sampled_from([0x0A0A + 0x1010 * i for i in range(16)])
hellos = st.builds(
    ClientHello,
    legacy_version=st.sampled_from([0x0300, 0x0301, 0x0302, 0x0303, 0xFEFD]),
    ciphers=st.lists(st.one_of(u16, grease), max_size=20).map(tuple),
    extensions=st.lists(
        st.one_of(st.sampled_from([0, 10, 11, 13, 16, 43, 51, 65281]), grease, u16), max_size=20
    ).map(tuple),
    alpn=st.lists(st.binary(min_size=0, max_size=5), max_size=3).map(tuple),
    groups=st.lists(st.one_of(u16, grease), max_size=6).map(tuple),
    point_formats=st.lists(st.integers(0, 2), max_size=3).map(tuple),
    sig_algs=st.lists(st.one_of(u16, grease), max_size=8).map(tuple),
    supported_versions=st.lists(st.one_of(st.sampled_from([0x0304, 0x0303, 0x7F12]), grease), max_size=3).map(tuple),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(hellos, min_size=1, max_size=12), st.lists(st.integers(0, 11), max_size=30))
def test_table_path_equals_scalar_path(unique: list[ClientHello], picks: list[int]) -> None:
    """Rows repeat hellos; each row must get exactly the scalar fingerprints of its hello."""
    chosen = [unique[i % len(unique)] for i in picks] or unique
    df = pd.DataFrame(
        {
            "transport": ["tcp"] * len(chosen),
            "ch_version": [h.legacy_version for h in chosen],
            "ch_ciphers": [h.ciphers for h in chosen],
            "ch_extensions": [h.extensions for h in chosen],
            "ch_groups": [h.groups for h in chosen],
            "ch_point_formats": [h.point_formats for h in chosen],
            "ch_sig_algs": [h.sig_algs for h in chosen],
            "ch_supported_versions": [h.supported_versions for h in chosen],
            "ch_alpn": [tuple(a.hex() for a in h.alpn) for h in chosen],
            "sh_version": [None] * len(chosen),
            "sh_cipher": [None] * len(chosen),
            "sh_extensions": [None] * len(chosen),
        }
    )
    out = add_fingerprints(schema.conform(df))
    for i, hello in enumerate(chosen):
        expected = client_fingerprints("t", hello)
        for field in expected._fields:
            assert out[field].iloc[i] == getattr(expected, field)
    assert out["ja3s"].isna().all()


@pytest.mark.parametrize("fast_lane", [True, False])
def test_enrich_is_fingerprints_then_issuer_keys_and_idempotent(fast_lane: bool) -> None:
    """The stage after reading gives what add_fingerprints + add_issuer_keys give, once or twice."""
    for path in sorted(PROJECT_PCAPS.glob("*.pcap*")):
        for raw in iter_connections(path, fast_lane=fast_lane):
            once = enrich(raw)
            expected = add_issuer_keys(add_fingerprints(raw))
            for col in (*FP_COLUMNS, "server_issuer_key", "peer_issuer_key"):
                assert once[col].equals(expected[col]), (path.name, col)
            assert enrich(once).equals(once)


def test_enrich_fills_only_rows_without_computed_fingerprints() -> None:
    """Rows the fast lane fingerprinted are kept; the others (here: blanked) are computed in place."""
    raw = pd.concat(list(iter_connections(PROJECT_PCAPS / "tls13_stacks.pcapng")), ignore_index=True)
    assert (raw["fingerprint_origin"] == "computed").all()
    blank = raw.copy()
    some = blank.index % 3 == 0
    for col in FP_COLUMNS:
        blank[col] = blank[col].mask(some)
    out = enrich(blank)
    for col in FP_COLUMNS:
        assert out[col].equals(raw[col]), col
