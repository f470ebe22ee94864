"""Resemblance to interception products: an unknown build is named, clean stacks are not, thresholds hold."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import INTERCEPTION, REFERENCE, ROOT, needs_shared
from tlsdetect.detect.evidence import SIGNALS, Evidence
from tlsdetect.detect.knowledge import Knowledge, load_knowledge
from tlsdetect.detect.product_resemblance import (
    DISTINCT_FROM_CLEAN,
    HELLO_KIND,
    MAX_DISTANCE,
    hellos_of_ja3,
    nearest_products,
    resemblance,
    resemblance_signal,
)
from tlsdetect.detect.scoring import SUSPICIOUS_AT, score
from tlsdetect.readers.inputs import Inputs

CODE = "resembles_interception_product"


def without(kb: Knowledge, needle: str) -> Knowledge:
    """``kb`` minus the product and stack rows whose source names ``needle`` (benchmarks/evaluate.py's rule)."""
    pf, st = kb.product_fingerprints, kb.stacks
    return Knowledge(
        interception_cas=kb.interception_cas, interception_keys=kb.interception_keys,
        product_fingerprints=pf[~pf["source"].str.contains(needle, regex=False)].reset_index(drop=True),
        applications=kb.applications, stacks=st[~st["source"].str.contains(needle, regex=False)].reset_index(drop=True),
        public_roots=kb.public_roots,
    )


def drop_one_cipher(ja3_text: str) -> str:
    """Another build of the same stack: the JA3 text with its last cipher suite left out."""
    version, ciphers, *rest = ja3_text.split(",")
    return ",".join([version, "-".join(ciphers.split("-")[:-1]), *rest])


def vendor(product: str) -> str:
    return product.lower().replace("-", " ").split()[0]


def test_ja3_texts_parse_and_malformed_ones_are_flagged() -> None:
    hellos, ok = hellos_of_ja3(pd.Series(["771,4865-49195,0-10-11,29-23,0", "771,1-2", None, "x,1,2,3,4"]))
    assert ok.tolist() == [True, False, False, False]
    assert hellos.loc[0, "ch_ciphers"] == [4865, 49195]
    assert hellos.loc[0, "ch_point_formats"] == [0]
    assert hellos.loc[1, "ch_ciphers"] == []


def test_product_hellos_near_clean_stacks_are_not_used() -> None:
    r = resemblance(load_knowledge())
    assert r.dropped > 0
    assert len(r.products) > 0
    assert (r.products["nearest_clean"] >= DISTINCT_FROM_CLEAN).all()


def distinctive_capture_hellos() -> list[tuple[str, str]]:
    """(product, JA3 text) of each shared capture's hello the knowledge base keeps as distinctive."""
    kb = load_knowledge()
    pf = kb.product_fingerprints
    rows = pf[(pf["kind"] == HELLO_KIND) & pf["source"].str.contains("pcaps/interception", regex=False)]
    near = nearest_products(rows["value"].reset_index(drop=True), kb)
    keep = near["distance"].to_numpy() == 0
    return [(str(p), str(v)) for p, v in zip(rows["product"][keep], rows["value"][keep], strict=True)]


@pytest.mark.parametrize(("product", "hello"), distinctive_capture_hellos())
def test_a_near_build_of_each_product_is_named(product: str, hello: str) -> None:
    kb = load_knowledge()
    other_build = drop_one_cipher(hello)
    near = nearest_products(pd.Series([other_build]), kb)
    # the Kaspersky capture offers exactly the values of mitmengine's Kaspersky record: either row names it
    assert vendor(str(near["product"].iloc[0])) == vendor(product)
    distance = float(near["distance"].iloc[0])
    assert 0 < distance <= MAX_DISTANCE
    assert bool(near.loc[0, "resembles"])
    ev = Evidence(1)
    named = resemblance_signal(pd.Series([other_build]), np.array([None], dtype=object), kb, ev)
    assert named.tolist() == [near.loc[0, "product"]]
    reason = ev.reasons()[0][0]
    assert reason["code"] == CODE
    assert reason["expected"] == near.loc[0, "product"]
    assert float(reason["observed"]) == pytest.approx(distance, abs=1e-3)


def test_the_products_whose_captures_are_named() -> None:
    named = {p for p, _ in distinctive_capture_hellos()}
    # Barracuda's and Cisco WSA's hellos are nearer a clean reference stack (an OpenSSL 1.0 client) than 0.35
    assert {"Sophos", "Forcepoint", "Kaspersky Internet Security 2016"} <= named
    assert not named & {"Barracuda web filter", "Cisco Web Security Appliance"}


def test_an_exact_product_match_is_not_also_a_resemblance() -> None:
    kb = load_knowledge()
    _product, hello = distinctive_capture_hellos()[0]
    ev = Evidence(1)
    out = resemblance_signal(pd.Series([hello]), np.array(["already named"], dtype=object), kb, ev)
    assert out.tolist() == ["already named"]
    assert not ev.parts


def test_one_resemblance_alone_is_suspicious() -> None:
    assert SIGNALS[CODE].weight >= SUSPICIOUS_AT


def _captures(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix in (".pcap", ".pcapng", ".cap"))


@needs_shared("pcaps/interception/SOURCES.md")
@pytest.mark.parametrize("name", [
    "mitmengine_SophosTagged-Win-7-IE-11_handshake.pcap",
    "mitmengine_force-point_forcepoint-chrome48_handshake.pcap",
    "mitmengine_windows-7-kaspersky-internet-security-2016-chrome-49_handshake.pcap",
    pytest.param("mitmengine_barracuda_barracuda-chrome48_handshake.pcap", marks=pytest.mark.xfail(
        strict=True, reason="nearest other product 0.33 away; a clean OpenSSL 1.0 hello is nearer (0.32)")),
    pytest.param("mitmengine_cisco-wsa_ciscoWSA-chrome48_handshake.pcap", marks=pytest.mark.xfail(
        strict=True, reason="nearest other product 0.41 away; a clean OpenSSL 1.0 hello is nearer (0.32)")),
])
def test_held_out_captures_are_flagged_without_a_baseline(name: str) -> None:
    kb = without(load_knowledge(), "pcaps/interception")
    scored = score(Inputs([str(INTERCEPTION / name)]).read_all(), None, kb)
    assert (scored["verdict"] != "ok").any()


@needs_shared("pcaps/interception/SOURCES.md")
def test_held_out_sophos_is_named_after_another_product() -> None:
    kb = without(load_knowledge(), "pcaps/interception")
    scored = score(Inputs([str(INTERCEPTION / "mitmengine_SophosTagged-Win-7-IE-11_handshake.pcap")]).read_all(),
                   None, kb)
    codes = {r["code"] for rs in scored["reasons"] for r in rs}
    assert codes == {CODE}
    assert set(scored["known_product"].dropna()) == {"bitdefender-antivirus-plus-2015"}


def clean_tables() -> list[tuple[str, pd.DataFrame]]:
    paths = _captures(REFERENCE) + sorted((ROOT / "pcaps").glob("tls1*")) + [ROOT / "pcaps" / "edge_cases.pcapng"]
    return [(p.name, Inputs([str(p)]).read_all()) for p in paths]


@needs_shared("pcaps/reference/SOURCES.md")
def test_no_clean_connection_resembles_a_product() -> None:
    tables = clean_tables()
    rows = sum(len(t) for _, t in tables)
    fired = 0
    for _, table in tables:
        scored = score(table, None, load_knowledge())
        fired += sum(any(r["code"] == CODE for r in rs) for rs in scored["reasons"])
    assert rows > 200
    assert fired == 0


@needs_shared("pcaps/reference/SOURCES.md")
def test_leave_one_capture_out_clean_false_positives_within_half_a_percent() -> None:
    """Each reference capture against a knowledge base that never saw it (its clean hellos held out)."""
    full = load_knowledge()
    rows = fired = 0
    for name, table in clean_tables():
        kb = without(full, f"pcaps/reference/{name} ")
        texts = table["ja3_full"] if "ja3_full" in table.columns else pd.Series([], dtype="string")
        rows += len(table)
        if texts.notna().any():
            near = nearest_products(texts.reset_index(drop=True), kb)
            fired += int(near["resembles"].sum())
    assert rows > 200
    assert fired / rows <= 0.005


def test_remembered_answers_equal_computed_ones() -> None:
    from tlsdetect.detect.product_resemblance import _nearest

    kb = load_knowledge()
    texts = pd.Series([*load_knowledge().stacks["value"].head(5).tolist(), "not,a,ja3", "771,4865,0,29,0"])
    first = nearest_products(texts, kb)  # computed (and remembered)
    again = nearest_products(texts.iloc[::-1].reset_index(drop=True), kb)  # every text remembered, other order
    pd.testing.assert_frame_equal(again.iloc[::-1].reset_index(drop=True), first)
    pd.testing.assert_frame_equal(first, _nearest(texts, kb), check_dtype=False)
