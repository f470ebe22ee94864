"""The knowledge base: committed CSVs, how they are made, and the lookups the scorer codes against.

Tests that read ``../shared`` skip with the reason when it is absent; the rest check the committed files and the
loader on their own. The mitmproxy test runs the real mitmproxy (``.tools/mitmproxy``) to make its CA.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import re
import subprocess
import time
from pathlib import Path
from types import ModuleType

import pandas as pd
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tlsdetect.detect.knowledge import (
    ChainResult,
    Knowledge,
    classify_issuers,
    fingerprint_matches,
    load_knowledge,
    lookup_application,
    lookup_stack,
    match_fingerprints,
    verify_chain,
)

from .conftest import CAPTURES_MANIFEST, INTERCEPTION, ROOT, SHARED, load_script, needs_interception, needs_shared

KNOWLEDGE_DIR = ROOT / "tlsdetect" / "detect" / "knowledge"
MITMPROXY = ROOT / ".tools" / "mitmproxy" / "bin" / "mitmdump"
COLUMNS = {
    "interception_cas.csv": ["product", "field", "pattern", "source"],
    "interception_keys.csv": ["product", "sha256", "kind", "source"],
    "product_fingerprints.csv": ["product", "product_type", "kind", "value", "missing", "source"],
    "applications.csv": ["application", "family", "kind", "value", "source"],
    "stack_fingerprints.csv": ["stack", "version", "kind", "value", "source"],
}
KEYS = {
    "interception_cas.csv": ["product", "field", "pattern"],
    "interception_keys.csv": ["product", "sha256", "kind"],
    "product_fingerprints.csv": ["product", "kind", "value"],
    "applications.csv": ["application", "kind", "value"],
    "stack_fingerprints.csv": ["stack", "version", "kind", "value"],
}

needs_knowledge = needs_shared("knowledge/SOURCES.md")


def read(name: str) -> pd.DataFrame:
    return pd.read_csv(KNOWLEDGE_DIR / name, dtype=str, keep_default_na=False)


def load_build_script() -> ModuleType:
    return load_script("build_knowledge")


def interception_table() -> list[tuple[str, str]]:
    """(file, product) rows of shared/pcaps/interception/SOURCES.md."""
    rows = []
    for line in (INTERCEPTION / "SOURCES.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0].endswith(".pcap"):
            rows.append((cells[0], cells[1]))
    return rows


# ---------------------------------------------------------------------------------------------------------------
# The committed files


@pytest.mark.parametrize("name", sorted(COLUMNS))
def test_csv_columns_sources_and_no_duplicates(name: str) -> None:
    frame = read(name)
    assert list(frame.columns) == COLUMNS[name]
    assert len(frame) > 0
    assert (frame["source"].str.strip() != "").all(), "every row names its source"
    assert not frame.duplicated().any(), frame[frame.duplicated(keep=False)]
    assert not frame.duplicated(KEYS[name]).any(), frame[frame.duplicated(KEYS[name], keep=False)]


def test_csvs_are_plain_utf8_with_unix_newlines() -> None:
    for name in COLUMNS:
        raw = (KNOWLEDGE_DIR / name).read_bytes()
        assert b"\r\n" not in raw
        raw.decode("utf-8")
        assert raw.endswith(b"\n")


def test_interception_ca_patterns_compile_and_fields() -> None:
    cas = read("interception_cas.csv")
    assert set(cas["field"]) == {"cn", "o"}
    for pattern in cas["pattern"]:
        re.compile(pattern, re.IGNORECASE)
    tools = set(cas["product"])
    assert {"mitmproxy", "Burp Suite", "Fiddler", "Charles", "Zscaler", "AVG", "ESET", "Netskope"} <= tools
    chromium = cas[cas["source"].str.startswith("chromium ssl_error_assistant.asciipb @")]
    assert len(chromium) >= 30


def test_interception_keys_are_sha256() -> None:
    keys = read("interception_keys.csv")
    assert keys["sha256"].str.fullmatch(r"[0-9a-f]{64}").all()
    assert set(keys["kind"]) == {"cert", "spki"}
    assert keys.loc[keys["product"] == "Superfish", "sha256"].tolist() == [
        "b6fe9151402bad1c06d7e66db67a26aa7356f2e6c644dbcf9f98968ff632e1b7"
    ]
    assert (keys["source"].str.contains(r"net/data/ssl/blocklist/") & keys["source"].str.contains("@")).all()


def test_product_fingerprint_formats() -> None:
    fps = read("product_fingerprints.csv")
    assert set(fps["kind"]) == {"ja3", "ja3n", "ja4", "ja4_ab", "ja3_string"}
    by_kind = {str(k): g for k, g in fps.groupby("kind")}
    assert by_kind["ja3"]["value"].str.fullmatch(r"[0-9a-f]{32}").all()
    # the JA3 text (the offered values resemblance compares): five fields of dash-separated decimals
    assert by_kind["ja3_string"]["value"].str.fullmatch(r"\d+,[\d-]*,[\d-]*,[\d-]*,[\d-]*").all()
    assert by_kind["ja3n"]["value"].str.fullmatch(r"[0-9a-f]{32}").all()
    ja4 = r"[tqd][0-9a-z]{2}[di]\d{4}[0-9A-Za-z]{2}_[0-9a-f]{12}_[0-9a-f]{12}"
    assert by_kind["ja4"]["value"].str.fullmatch(ja4).all()
    ab = by_kind["ja4_ab"]
    assert ab["value"].str.fullmatch(r"t[0-9s?]{2}[di]\d{4}[0-9A-Za-z?]{2}_[0-9a-f]{12}").all()
    assert (ab["missing"] != "").all(), "a ja4_ab row says what was missing"
    assert (by_kind["ja4"]["missing"] == "").all()
    # '??' ALPN characters exactly when the ALPN value is what is missing
    alpn_unknown = ab["value"].str.slice(8, 10) == "??"
    assert (alpn_unknown == ab["missing"].str.contains("alpn_value")).all()
    assert set(fps["product_type"]) <= {"Antivirus", "FakeBrowser", "Malware", "Parental", "Proxy", "Unknown"}


def test_ja3_of_a_mitmengine_line_recomputed_by_hand() -> None:
    # mitm.txt line 3 (eset-nod32-antivirus-9), hex: 303 : c028,c027,c014,c013,9f,9e,9d,9c,3d,3c,35,2f,c02c,
    # c02b,c024,c023,c00a,c009,6a,40,38,32,a,13 : 0,a,b,d,17,ff01 : 17,18 : 0
    text = (
        "771,"
        "49192-49191-49172-49171-159-158-157-156-61-60-53-47-49196-49195-49188-49187-49162-49161-106-64-56-50-10-19,"
        "0-10-11-13-23-65281,"
        "23-24,"
        "0"
    )
    expected = hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()
    fps = read("product_fingerprints.csv")
    eset = fps[(fps["product"] == "eset-nod32-antivirus-9") & (fps["kind"].isin(["ja3", "ja3n"]))]
    # the extensions are already in ascending order, so JA3N is the same text
    assert set(eset["value"]) == {expected}
    assert eset["source"].str.contains(r"cloudflare/mitmengine mitm\.txt @b587be9c line 3$").all()
    # JA4: 24 ciphers, 6 extensions, SNI present, no ALPN; signature_algorithms (0x0d) contents are unknown
    ab = fps[(fps["product"] == "eset-nod32-antivirus-9") & (fps["kind"] == "ja4_ab")]
    assert ab["value"].str.startswith("t12d240600_").all()
    assert set(ab["missing"]) == {"signature_algorithms"}


@needs_knowledge
def test_the_hand_computed_line_is_the_shared_one() -> None:
    line3 = (SHARED / "knowledge" / "mitmengine_mitm.txt").read_text().splitlines()[2]
    assert line3.split("|")[1].startswith(
        "303:c028,c027,c014,c013,9f,9e,9d,9c,3d,3c,35,2f,c02c,c02b,c024,c023,c00a,c009,6a,40,38,32,a,13:0,a,b,d,17,ff01:17,18:0:"
    )
    assert line3.endswith("|eset-nod32-antivirus-9:1:0")


@needs_interception
def test_each_interception_capture_contributes_its_product() -> None:
    fps = read("product_fingerprints.csv")
    table = interception_table()
    assert len(table) == 5
    for file, product in table:
        rows = fps[fps["source"].str.startswith(f"shared/pcaps/interception/{file} ")]
        assert (rows["product"] == product).all(), (file, set(rows["product"]))
        for kind in ("ja3", "ja3n", "ja4"):
            assert (rows["kind"] == kind).sum() >= 1, (file, kind)
        assert rows["source"].str.contains(r"\(cloudflare/mitmengine @b587be9c\)$").all()


def test_capture_and_mitmengine_record_agree_for_kaspersky() -> None:
    # Two independent routes to one fingerprint: the engine's JA3 of the real Kaspersky capture (7 connections,
    # one hello) equals the JA3 built from mitmengine's hex record of the same product (mitm.txt line 47).
    fps = read("product_fingerprints.csv")
    kav = fps[(fps["product"] == "Kaspersky Internet Security 2016") & (fps["kind"].isin(["ja3", "ja3n"]))]
    assert len(kav) == 2
    record = fps[(fps["product"] == "kaspersky-internet-security-2016") & fps["kind"].isin(["ja3", "ja3n"])]
    assert set(kav["value"]) <= set(record["value"])
    got = match_fingerprints(pd.Series(kav["value"].tolist()), "ja3")
    assert got["product"].iloc[0] == "kaspersky-internet-security-2016"  # first row in file order
    assert got["product_type"].iloc[0] == "Antivirus"
    assert got["source"].iloc[0].startswith("cloudflare/mitmengine mitm.txt @b587be9c line ")


@needs_knowledge
def test_applications_use_only_foxio_ja4_column() -> None:
    apps = read("applications.csv")
    assert set(apps["kind"]) == {"ja3", "ja4"}
    with (SHARED / "knowledge" / "foxio_ja4plus-mapping.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    others = {(r.get(c) or "").strip() for r in rows for c in r if c not in ("ja4", "Application", "Library",
                                                                           "Device", "OS", "Notes")} - {""}
    assert others, "the FoxIO file has JA4+ columns"
    assert not others & set(apps["value"]), "only the JA4 column of FoxIO's mapping may be used"
    foxio = apps[apps["source"].str.contains("FoxIO-LLC/ja4")]
    assert set(foxio["value"]) <= {(r["ja4"] or "").strip() for r in rows}
    salesforce = apps[apps["source"].str.contains("salesforce/ja3")]
    assert salesforce["value"].str.fullmatch(r"[0-9a-f]{32}").all()
    assert not salesforce["application"].str.contains("Copyright").any()


def test_application_families() -> None:
    apps = read("applications.csv")
    assert apps["family"].str.fullmatch(r"[a-z]+").all()
    fam = dict(zip(apps["application"], apps["family"], strict=False))
    assert fam["Chromium Browser"] == "chromium"
    assert fam["Mozilla Firefox"] == "firefox"
    assert fam["Python"] == "python"
    assert fam["Sliver Agent"] == "malware", "C2 implants in FoxIO's mapping are not benign applications"


def test_stacks_cover_the_manifest() -> None:
    import json

    manifest = json.loads(CAPTURES_MANIFEST.read_text())
    stacks = read("stack_fingerprints.csv")
    clean = {name: c for name, c in manifest["captures"].items() if c["label"] == "clean"}
    assert clean, "no clean capture in the manifest"
    assert len(clean) < len(manifest["captures"]), "the interception demo must not count as a stack's own"
    for name, capture in clean.items():
        for conn in capture["connections"]:
            src = f"pcaps/{name} tcp_stream {conn['tcp_stream']} "
            rows = stacks[stacks["source"].str.contains(src, regex=False)]
            assert set(rows["kind"]) >= {"ja3", "ja3n", "ja4"}, src
            assert set(rows["stack"]) == {conn["stack"]}
            assert set(rows["version"]) == {conn["stack_version"]}


# ---------------------------------------------------------------------------------------------------------------
# The build script


@needs_knowledge
@needs_interception
def test_build_reproduces_committed_csvs(tmp_path: Path) -> None:
    script = load_build_script()
    counts = script.build(SHARED, tmp_path)
    for name in COLUMNS:
        assert (tmp_path / name).read_bytes() == (KNOWLEDGE_DIR / name).read_bytes(), (
            f"{name} is stale: run .venv/bin/python scripts/build_knowledge.py"
        )
        assert counts[name] == len(read(name))
    # idempotent: a second run changes nothing
    before = {name: (tmp_path / name).read_bytes() for name in COLUMNS}
    script.build(SHARED, tmp_path)
    assert before == {name: (tmp_path / name).read_bytes() for name in COLUMNS}


def test_mitmengine_ja4_representation() -> None:
    script = load_build_script()
    # no signature_algorithms, ALPN or supported_versions: a full JA4
    rows = script.mitmengine_fingerprints(0x301, [0x2F, 0x35], [0x00, 0x0A], [0x17], [0])
    assert [k for k, _, _ in rows] == ["ja3_string", "ja3", "ja3n", "ja4"]
    assert rows[0][1] == "769,47-53,0-10,23,0"  # the offered values, decimal, for resemblance
    # ALPN offered, value unknown: '??' and the c part dropped
    rows = script.mitmengine_fingerprints(0x303, [0x2F, 0x35], [0x00, 0x10, 0x0D], [0x17], [0])
    kind, value, missing = rows[-1]
    assert kind == "ja4_ab"
    assert re.fullmatch(r"t12d0203\?\?_[0-9a-f]{12}", value)
    assert missing == "alpn_value;signature_algorithms"
    # supported_versions offered: the version characters are unknown too
    rows = script.mitmengine_fingerprints(0x303, [0x1301], [0x2B], [], [])
    assert rows[-1][1].startswith("t??i0101")
    assert rows[-1][2] == "supported_versions_value"


# ---------------------------------------------------------------------------------------------------------------
# The loader and the lookups


def test_load_knowledge_is_cached_and_typed() -> None:
    kb = load_knowledge()
    assert kb is load_knowledge()
    assert isinstance(kb, Knowledge)
    for frame in (kb.interception_cas, kb.interception_keys, kb.product_fingerprints, kb.applications, kb.stacks):
        assert len(frame) > 0
        assert all(str(t) == "string" for t in frame.dtypes)
    roots = kb.public_roots
    assert list(roots.columns) == ["dn_key", "subject", "organization", "sha256", "source"]
    assert len(roots) > 100
    assert roots["source"].str.fullmatch(r"certifi \S+ \(Mozilla root store\)").all()
    assert roots["sha256"].str.fullmatch(r"[0-9a-f]{64}").all()


def test_public_classification() -> None:
    issuers = pd.Series(
        [
            "CN=ISRG Root X1,O=Internet Security Research Group,C=US",
            "CN=tlsdetect Test Root CA,O=tlsdetect,C=US",
            None,
            "C=US, O=Internet Security Research Group, CN=ISRG Root X1",  # Suricata's order
            "CN=DigiCert Global G2 TLS RSA SHA256 2020 CA1,O=DigiCert Inc,C=US",
            "CN=R3,O=Let's Encrypt,C=US",
        ],
        index=[10, 20, 30, 40, 50, 60],
    )
    got = classify_issuers(issuers)
    assert list(got.index) == [10, 20, 30, 40, 50, 60]
    assert list(got.columns) == [
        "interception_product", "interception_source", "public", "public_match", "public_source",
    ]
    assert str(got["public"].dtype) == "boolean"
    assert bool(got.loc[10, "public"])
    assert got.loc[10, "public_match"] == "root"
    assert got.loc[10, "public_source"].startswith("certifi ")
    assert not bool(got.loc[20, "public"])
    assert pd.isna(got.loc[20, "public_match"])
    assert pd.isna(got.loc[30, "public"])
    assert got.loc[40, "public_match"] == "root"
    assert got.loc[50, "public_match"] == "organization"  # DigiCert intermediates carry the root's O=
    assert not bool(got.loc[60, "public"])  # documented limit of the organization rule
    assert got["interception_product"].isna().all()


def test_interception_classification() -> None:
    issuers = pd.Series(
        [
            "CN=mitmproxy,O=mitmproxy",
            "CN=Sophos SSL CA_ABC-1,O=Sophos",
            "O=Zscaler Inc.,CN=Zscaler Intermediate Root CA",
            "CN=KASPERSKY ANTI-VIRUS PERSONAL ROOT CERTIFICATE",  # case-insensitive
            "CN=Kaspersky Anti-Virus Personal Root Certificate 2",  # full match only
            "CN=Charles Proxy CA (26 Nov 2026\\, host),OU=https://charlesproxy.com/ssl,O=XK72 Ltd,C=NZ",
            "CN=ca.acme.goskope.com,O=Netskope",
            "not a DN at all",
        ]
    )
    got = classify_issuers(issuers)
    assert got["interception_product"].tolist()[:4] == [
        "mitmproxy", "Sophos", "Zscaler", "Kaspersky Internet Security",
    ]
    assert pd.isna(got["interception_product"].iloc[4])
    assert got["interception_product"].iloc[5] == "Charles"
    assert got["interception_product"].iloc[6] == "Netskope"
    assert pd.isna(got["interception_product"].iloc[7])
    assert got["interception_source"].iloc[1].startswith("chromium ssl_error_assistant.asciipb @")
    assert got["interception_source"].iloc[0] == "mitmproxy/certs.py (per shared/knowledge/SOURCES.md)"


def test_classify_repeats_once_per_distinct_value() -> None:
    issuers = pd.Series(["CN=mitmproxy,O=mitmproxy", "CN=x"] * 5000)
    got = classify_issuers(issuers)
    assert (got["interception_product"].iloc[::2] == "mitmproxy").all()
    assert got["interception_product"].iloc[1::2].isna().all()


def test_match_fingerprints_exact_and_ja4_ab() -> None:
    fps = load_knowledge().product_fingerprints
    ab = fps[(fps["kind"] == "ja4_ab") & fps["value"].str.contains("??", regex=False)].iloc[0]
    pattern = str(ab["value"])
    real = pattern.replace("??", "h2") + "_0123456789ab"
    other = "t13d1516h2_8daaf6152771_02713d6af862"  # Chrome, not a product
    got = match_fingerprints(pd.Series([real, other, None], index=["a", "b", "c"]), "ja4")
    assert list(got.index) == ["a", "b", "c"]
    assert got.loc["a", "product"] == ab["product"]
    assert got.loc["a", "source"] == ab["source"]
    assert got["product"].iloc[1:].isna().all()
    full = fps[fps["kind"] == "ja4"].iloc[0]
    assert match_fingerprints(pd.Series([full["value"]]), "ja4")["product"].iloc[0] == full["product"]
    ja3 = fps[fps["kind"] == "ja3"].iloc[0]
    upper = match_fingerprints(pd.Series([str(ja3["value"]).upper()]), "ja3")
    assert upper["product"].iloc[0] == ja3["product"]
    with pytest.raises(ValueError, match="kind"):
        match_fingerprints(pd.Series(["x"]), "ja4_ab")


def test_lookup_application_and_stack() -> None:
    got = lookup_application(pd.Series(["t13d1516h2_8daaf6152771_02713d6af862", "nope"]), "ja4")
    assert got["application"].iloc[0] == "Chromium Browser"
    assert got["family"].iloc[0] == "chromium"
    assert pd.isna(got["application"].iloc[1])
    got = lookup_application(pd.Series(["61d50e7771aee7f2f4b89a7200b4d45e"]), "ja3")
    assert got["application"].iloc[0] == "AcroCEF"
    stacks = load_knowledge().stacks
    row = stacks[(stacks["stack"] == "curl") & (stacks["kind"] == "ja4")].iloc[0]
    got = lookup_stack(pd.Series([row["value"]]), "ja4")
    assert got["stack"].iloc[0] == "curl"


# ---------------------------------------------------------------------------------------------------------------
# Chains


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, cn), x509.NameAttribute(NameOID.ORGANIZATION_NAME, "tlsdetect")]
    )


def _cert(
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool,
    now: dt.datetime,
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    else:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        ).add_extension(x509.SubjectAlternativeName([x509.DNSName("*.sample.tlsdetect.test")]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def test_verify_chain() -> None:
    now = dt.datetime.now(dt.UTC)
    root_key, inter_key, leaf_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    root = _cert(_name("tlsdetect Test Root CA"), root_key, _name("tlsdetect Test Root CA"), root_key, ca=True, now=now)
    inter = _cert(_name("tlsdetect Test Intermediate CA"), inter_key, root.subject, root_key, ca=True, now=now)
    leaf = _cert(_name("a.sample.tlsdetect.test"), leaf_key, inter.subject, inter_key, ca=False, now=now)
    ders = [leaf.public_bytes(Encoding.DER), inter.public_bytes(Encoding.DER)]

    ok = verify_chain(ders, roots=[root])
    assert ok == ChainResult(True, root.subject.rfc4514_string(), None)
    public = verify_chain(ders)  # a private root is not in Mozilla's store
    assert not public.trusted_public
    assert public.error
    late = verify_chain(ders, roots=[root], at=now + dt.timedelta(days=60))
    assert not late.trusted_public
    assert late.error
    assert not verify_chain(ders[:1], roots=[root]).trusted_public  # intermediate missing
    for bad in ([], [b""], [b"not a certificate"], [leaf.public_bytes(Encoding.PEM)]):
        result = verify_chain(bad)
        assert not result.trusted_public
        assert result.error


# ---------------------------------------------------------------------------------------------------------------
# The real mitmproxy CA


@pytest.mark.slow
@pytest.mark.skipif(not MITMPROXY.is_file(), reason=f"mitmproxy not installed at {MITMPROXY} (scripts/setup.sh)")
def test_mitmproxy_generated_ca_is_classified(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [str(MITMPROXY), "--set", f"confdir={tmp_path}", "--listen-host", "127.0.0.1", "-p", "0", "-q"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    pem = tmp_path / "mitmproxy-ca-cert.pem"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if pem.is_file() and b"END CERTIFICATE" in pem.read_bytes():
                break
            time.sleep(0.2)
    finally:
        proc.terminate()
        try:
            _, err = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
    assert pem.is_file(), f"mitmdump made no CA: {err.decode(errors='replace')[-2000:]}"
    cert = x509.load_pem_x509_certificate(pem.read_bytes())
    issuer = cert.subject.rfc4514_string()  # the CA is the issuer of every certificate mitmproxy forges
    got = classify_issuers(pd.Series([issuer, cert.issuer.rfc4514_string()]))
    assert (got["interception_product"] == "mitmproxy").all(), issuer
    assert not got["public"].any()


def test_fingerprint_matches_are_match_fingerprints_per_distinct_value() -> None:
    """Scoring's arrays (issue 18 #15) hold what the frame holds: a product row for a hit, None for a miss."""
    kb = load_knowledge()
    fps = kb.product_fingerprints
    for kind in ("ja3", "ja3n", "ja4"):
        known = fps.loc[fps["kind"] == kind, "value"].astype(str).head(3).tolist()
        values = [*known, "t13d1516h2_8daaf6152771_02713d6af862", "0" * 32, *(v.upper() for v in known[:1])]
        got = fingerprint_matches(values, kind, kb)
        want = match_fingerprints(pd.Series(values, dtype="string"), kind, kb)
        assert set(got) == set(want.columns)
        for col, arr in got.items():
            assert len(arr) == len(values)
            assert [None if pd.isna(v) else v for v in want[col]] == arr.tolist()
        assert got["product"][0] is not None
    with pytest.raises(ValueError, match="kind"):
        fingerprint_matches(["x"], "ja4_ab", kb)
    assert all(len(a) == 0 for a in fingerprint_matches([], "ja3", kb).values())
