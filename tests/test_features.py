"""Hello features: distinct hellos, GREASE, weak ciphers, value sets, and the novelty model's Jaccard distance."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tlsdetect.detect.features import HelloNovelty, has_grease, hello_codes, hello_tokens, weak_cipher_count


def _hello(ciphers: tuple[int, ...], exts: tuple[int, ...] = (0, 10), ja4: str = "t13d") -> dict[str, object]:
    return {"ch_version": 0x0303, "ch_ciphers": ciphers, "ch_extensions": exts, "ch_groups": (29,),
            "ch_sig_algs": (0x0403,), "ch_point_formats": (0,), "ch_supported_versions": (0x0304,),
            "ch_alpn": ("h2",), "ja4": ja4}


def _table(hellos: list[dict[str, object] | None]) -> pd.DataFrame:
    rows = []
    for h in hellos:
        if h is None:
            rows.append({"ch_version": None, "ja3_full": None, "ja4_ro": None})
        else:  # the identity of a hello is (ja3_full, ja4_ro): spelled out from its lists here
            rows.append({**h, "ja3_full": f"{h['ch_ciphers']}-{h['ch_extensions']}", "ja4_ro": str(h["ch_ciphers"])})
    return pd.DataFrame(rows)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.one_of(st.none(), st.sampled_from([(1,), (1, 2), (2, 1), (0x1301,)])), max_size=20))
def test_hello_codes_number_distinct_hellos_in_order_of_first_appearance(ciphers: list[tuple[int, ...] | None]) -> None:
    df = _table([None if c is None else _hello(c) for c in ciphers])
    codes, table = hello_codes(df)
    order = list(dict.fromkeys(c for c in ciphers if c is not None))
    assert codes.tolist() == [-1 if c is None else order.index(c) for c in ciphers]
    assert [tuple(x) for x in table["ch_ciphers"]] == order
    assert table["connections"].tolist() == [ciphers.count(c) for c in order]


def test_hello_codes_without_hello_columns() -> None:
    codes, table = hello_codes(pd.DataFrame({"sni": ["a", "b"]}))
    assert codes.tolist() == [-1, -1]
    assert len(table) == 0


def test_grease_weak_ciphers_and_tokens_by_hand() -> None:
    # 0x0a0a and 0xfafa are GREASE (RFC 8701); 0x0004 RC4-MD5 and 0x000a 3DES are weak; 0x1301 is not
    hellos = pd.DataFrame([_hello((0x0A0A, 0x1301, 0x0004, 0x000A)), _hello((0x1301, 0x1302), exts=(0xFAFA, 0))])
    assert has_grease(hellos).tolist() == [True, True]
    assert has_grease(pd.DataFrame([_hello((0x1301,))])).tolist() == [False]
    assert weak_cipher_count(hellos).tolist() == [2, 0]
    tokens = hello_tokens(hellos)
    assert "ciphers:2570" not in tokens[0]  # GREASE dropped
    assert {"ciphers:4865", "ciphers:4", "ciphers:10", "extensions:0", "extensions:10", "groups:29",
            "sig_algs:1027", "point_formats:0", "supported_versions:772", "alpn:h2"} == tokens[0]
    assert hello_tokens(pd.DataFrame([_hello((2, 1))])) == hello_tokens(pd.DataFrame([_hello((1, 2))]))  # no order


def _jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    return 1 - len(a & b) / len(a | b)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.integers(1, 12), min_size=1, max_size=6, unique=True), min_size=1, max_size=5),
       st.lists(st.integers(1, 20), min_size=1, max_size=6, unique=True))
def test_novelty_is_the_jaccard_distance_to_the_nearest_hello(population: list[list[int]], query: list[int]) -> None:
    train = pd.DataFrame([_hello(tuple(c), ja4=f"h{i}") for i, c in enumerate(population)])
    model = HelloNovelty.fit(train)
    q = pd.DataFrame([_hello(tuple(query))])
    dist, nearest = model.distances(q)
    sets, want = hello_tokens(train), hello_tokens(q)[0]
    by_hand = [_jaccard(want, s) for s in sets]
    assert dist[0] == pytest.approx(min(by_hand))
    assert by_hand[int(nearest[0])] == pytest.approx(min(by_hand))
    assert model.distances(train)[0] == pytest.approx(np.zeros(len(train)))  # a learned hello is at 0


def test_model_saves_plain_arrays_and_refuses_anything_else(tmp_path: Path) -> None:
    train = pd.DataFrame([_hello((1, 2)), _hello((3,), ja4="other")])
    model = HelloNovelty.fit(train)
    model.save(tmp_path / "m.npz")
    back = HelloNovelty.load(tmp_path / "m.npz")
    assert (back.tokens, back.labels) == (model.tokens, model.labels)
    assert (back.matrix == model.matrix).all()
    np.savez(tmp_path / "bad.npz", tokens=np.array(["a"]), matrix=np.zeros((1, 1), dtype=bool),
             labels=np.array(["x"]), extra=np.zeros(1))
    with pytest.raises(ValueError, match="extra"):
        HelloNovelty.load(tmp_path / "bad.npz")
    np.savez(tmp_path / "shape.npz", tokens=np.array(["a", "b"]), matrix=np.zeros((1, 1), dtype=bool),
             labels=np.array(["x"]))
    with pytest.raises(ValueError, match="does not fit"):
        HelloNovelty.load(tmp_path / "shape.npz")


def test_tokens_of_hellos_without_some_columns_or_values() -> None:
    """hello_tokens reads only its list columns (issue 18 #15): a missing column, a missing value and a
    missing ALPN add nothing, and each row keeps its own tokens."""
    full = _hello((0x1301,))
    bare = {"ch_ciphers": (0x1302,), "ch_alpn": None, "ch_extensions": pd.NA}
    got = hello_tokens(pd.DataFrame([full, bare]))
    assert got[1] == frozenset({"ciphers:4866"})
    assert got[0] == hello_tokens(pd.DataFrame([full]))[0]
    assert hello_tokens(pd.DataFrame({"ch_ciphers": [(1, 2)]})) == [frozenset({"ciphers:1", "ciphers:2"})]
    assert hello_tokens(pd.DataFrame({"ch_ciphers": []})) == []
