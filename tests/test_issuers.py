"""The same certificate seen by every source gives the same ``dn_key``.

Certificates are real: the server chains in ``pcaps/tls12_stacks.pcap`` and the third-party
ones in the reference corpus (``latest.pcapng``, ``browsers-x509.pcapng``, extracted with
tshark), plus certificates made here with ``cryptography`` to carry the awkward cases
(multi-valued RDNs, escaped specials, unknown OIDs, non-ASCII). Each DN is rendered:

* RFC 4514 by ``cryptography`` (tlsdetect's pcap engine);
* RFC 2253 by the real OpenSSL (``openssl x509 -nameopt RFC2253`` is ``X509_NAME_print_ex``
  with ``XN_FLAG_RFC2253``, what Zeek and Envoy call), then also with Zeek's TSV escaping;
* Suricata's certificate order, emulated from x509-parser's ``X509Name`` display (``", "``
  between RDNs, ``" + "`` inside one, no escaping), and the same with ``\\,`` escapes, spaced
  and unspaced, in case a build escapes.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
from functools import cache

import pandas as pd
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tlsdetect.detect.issuers import add_issuer_keys, dn_key, parse_dn

from .conftest import PROJECT_PCAPS, REFERENCE

CAPTURES = [PROJECT_PCAPS / "tls12_stacks.pcap", REFERENCE / "latest.pcapng", REFERENCE / "browsers-x509.pcapng"]
needs_tools = pytest.mark.skipif(
    shutil.which("tshark") is None or shutil.which("openssl") is None, reason="tshark and openssl are needed"
)

# x509-parser's ABBREV_MAP, then oid-registry short names; anything else prints as OID(..).
_SURICATA_NAMES = {
    "2.5.4.3": "CN", "2.5.4.6": "C", "2.5.4.7": "L", "2.5.4.8": "ST", "2.5.4.10": "O", "2.5.4.11": "OU",
    "0.9.2342.19200300.100.1.25": "DC", "1.2.840.113549.1.9.1": "Email", "2.5.4.5": "serialNumber",
    "2.5.4.15": "businessCategory", "2.5.4.9": "street", "2.5.4.17": "postalCode",
    "1.3.6.1.4.1.311.60.2.1.3": "jurisdictionOfIncorporationCountryName",
}


@cache
def capture_certificates() -> tuple[bytes, ...]:
    ders: set[bytes] = set()
    for capture in CAPTURES:
        if not capture.is_file():
            continue
        out = subprocess.run(
            ["tshark", "-r", str(capture), "-Y", "tls.handshake.certificate", "-T", "fields",
             "-e", "tls.handshake.certificate"],
            capture_output=True, text=True, check=True, timeout=60,
        ).stdout
        ders.update(bytes.fromhex(h) for line in out.split() for h in line.split(",") if h)
    return tuple(sorted(ders))


def _name(*rdns: list[tuple[x509.ObjectIdentifier, str]]) -> x509.Name:
    return x509.Name([x509.RelativeDistinguishedName([x509.NameAttribute(o, v) for o, v in rdn]) for rdn in rdns])


CN, ORG, OU, C = NameOID.COMMON_NAME, NameOID.ORGANIZATION_NAME, NameOID.ORGANIZATIONAL_UNIT_NAME, NameOID.COUNTRY_NAME
ORG_ID = x509.ObjectIdentifier("2.5.4.97")
UNKNOWN = x509.ObjectIdentifier("1.3.6.1.4.1.99999.1")
TRICKY_NAMES = {
    "escaped-comma": _name([(C, "US")], [(ORG, "Example, Inc.")], [(CN, "Example CA")]),
    "multi-valued": _name([(C, "DE")], [(ORG, "Mesh"), (OU, "Platform")], [(CN, "Mesh Issuing CA")]),
    "specials": _name([(ORG, 'A+B "quoted" <x>; back\\slash')], [(CN, "#hash = start")]),
    "email-and-orgid": _name(
        [(C, "BE")], [(ORG_ID, "VATBE-0123456789")], [(NameOID.EMAIL_ADDRESS, "pki@example.be")], [(CN, "Qualified CA")]
    ),
    "non-ascii": _name([(C, "FR")], [(ORG, "Société Générale")], [(CN, "Zürich Ålesund CA")]),
    "unknown-oid": _name([(UNKNOWN, "custom value")], [(CN, "Lab CA")]),
    "surrounding-spaces": _name([(ORG, " padded ")], [(CN, "CA")]),
}


@cache
def made_certificates() -> tuple[bytes, ...]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    ders = []
    for name in TRICKY_NAMES.values():
        cert = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
            .sign(key, hashes.SHA256())
        )
        ders.append(cert.public_bytes(serialization.Encoding.DER))
    return tuple(ders)


def openssl_rfc2253(der: bytes) -> tuple[str, str]:
    out = subprocess.run(
        ["openssl", "x509", "-inform", "DER", "-noout", "-issuer", "-subject", "-nameopt", "RFC2253"],
        input=der, capture_output=True, check=True, timeout=30,
    ).stdout.decode("utf-8")
    lines = dict(line.split("=", 1) for line in out.splitlines())
    return lines["issuer"], lines["subject"]


def suricata(name: x509.Name, *, escape: bool = False, spaced: bool = True) -> str:
    def value(v: str) -> str:
        return v.replace(",", "\\,") if escape else v

    rdns = [
        " + ".join(f"{_SURICATA_NAMES.get(a.oid.dotted_string, f'OID({a.oid.dotted_string})')}={value(str(a.value))}"
                   for a in rdn)
        for rdn in name.rdns
    ]
    return (", " if spaced else ",").join(rdns)


def zeek_tsv(rfc2253: str, *, vector: bool = False) -> str:
    text = rfc2253.replace("\\", "\\\\")
    return text.replace(",", "\\x2c") if vector else text


def renderings(der: bytes) -> list[tuple[str, str, str]]:
    """(tool, order, text) for the issuer and the subject of one certificate."""
    cert = x509.load_der_x509_certificate(der)
    issuer_ssl, subject_ssl = openssl_rfc2253(der)
    out = []
    for name, ssl in ((cert.issuer, issuer_ssl), (cert.subject, subject_ssl)):
        out += [
            ("cryptography", "rfc2253", name.rfc4514_string()),
            ("openssl/zeek-json/envoy", "rfc2253", ssl),
            ("zeek-tsv", "rfc2253", zeek_tsv(ssl)),
            ("zeek-tsv-vector", "rfc2253", zeek_tsv(ssl, vector=True)),
            ("suricata", "x509", suricata(name)),
            ("suricata-escaped", "x509", suricata(name, escape=True)),
            ("suricata-escaped-unspaced", "x509", suricata(name, escape=True, spaced=False)),
        ]
    return out


def assert_same_keys(der: bytes) -> None:
    views = renderings(der)
    for half in (views[:7], views[7:]):
        keys = {tool: dn_key(text, order=order) for tool, order, text in half}  # type: ignore[arg-type]
        assert len(set(keys.values())) == 1, json.dumps({t: [txt, keys[t]] for t, _, txt in half}, indent=1)
        assert next(iter(keys.values())) is not None


@needs_tools
def test_real_capture_certificates_give_one_key_per_dn() -> None:
    ders = capture_certificates()
    if len(ders) < 5:
        pytest.skip("captures with certificates not found")
    for der in ders:
        assert_same_keys(der)


@needs_tools
@pytest.mark.parametrize("case", list(TRICKY_NAMES))
def test_tricky_names_give_one_key(case: str) -> None:
    der = made_certificates()[list(TRICKY_NAMES).index(case)]
    assert_same_keys(der)


def test_pcap_reader_issuer_keys_match_openssl() -> None:
    """What tlsdetect's own pcap engine stores equals the key of OpenSSL's rendering."""
    from tlsdetect.readers.pcap.engine import read_pcap

    capture = PROJECT_PCAPS / "tls12_stacks.pcap"
    if not capture.is_file() or shutil.which("openssl") is None:
        pytest.skip("tls12_stacks.pcap or openssl missing")
    df, _ = read_pcap(capture)
    issuers = set(df["server_issuer"].dropna())
    assert issuers
    chain_issuers = {c["issuer"] for chain in df["server_chain"].dropna() for c in json.loads(chain)}
    assert issuers <= chain_issuers
    keys = {dn_key(i) for i in issuers}
    expected = set()
    for der in capture_certificates() if shutil.which("tshark") else ():
        expected.add(dn_key(openssl_rfc2253(der)[0]))
    if expected:
        assert keys <= expected


# -- unit cases -------------------------------------------------------------------------------

SAME: list[tuple[str, tuple[tuple[str, str], ...]]] = [
    ("escaped comma", (("rfc2253", "CN=Amazon RDS CA,O=Amazon Web Services\\, Inc.,C=US"),
                       ("rfc2253", "CN=Amazon RDS CA,O=Amazon Web Services\\\\, Inc.,C=US"),  # Zeek TSV
                       ("rfc2253", 'CN=Amazon RDS CA,O="Amazon Web Services, Inc.",C=US'),  # quoted
                       ("rfc2253", "CN=Amazon RDS CA,O=Amazon Web Services\\2C Inc.,C=US"),  # hex pair
                       ("x509", "C=US, O=Amazon Web Services, Inc., CN=Amazon RDS CA"),
                       ("x509", "C=US,O=Amazon Web Services\\, Inc.,CN=Amazon RDS CA"))),
    ("multi-valued, any order", (("rfc2253", "CN=ca+OU=ops,O=x"), ("rfc2253", "OU=ops+CN=ca,O=x"),
                                 ("x509", "O=x, CN=ca + OU=ops"), ("x509", "O=x, OU=ops + CN=ca"))),
    ("plus/quote/backslash", (("rfc2253", 'O=A\\+B \\"q\\" back\\\\slash'), ("x509", 'O=A+B "q" back\\slash'))),
    ("aliases", (("rfc2253", "emailAddress=a@b,CN=x"), ("rfc2253", "1.2.840.113549.1.9.1=a@b,CN=x"),
                 ("rfc2253", "E=a@b,CN=x"), ("x509", "CN=x, Email=a@b"),
                 ("rfc2253", "EMAILADDRESS=a@b,commonName=x"), ("rfc2253", "OID.1.2.840.113549.1.9.1=a@b,2.5.4.3=x"))),
    ("organizationIdentifier", (("rfc2253", "2.5.4.97=VATDE-1,CN=x"),
                                ("rfc2253", "organizationIdentifier=VATDE-1,CN=x"),
                                ("x509", "CN=x, OID(2.5.4.97)=VATDE-1"))),
    ("whitespace", (("rfc2253", "CN=a b,O=c"), ("rfc2253", " CN = a b , O = c "), ("x509", "O=c,   CN=a b"),
                    ("rfc2253", "CN=\\ a b\\ ,O=c"))),
    ("non-ascii", (("rfc2253", "O=Soci\\C3\\A9t\\C3\\A9"), ("rfc2253", "O=Société"), ("x509", "O=Société"))),
    ("der hex value", (("rfc2253", "1.2.3.4=#0C03616263,CN=x"), ("rfc2253", "1.2.3.4=abc,CN=x"),
                       ("x509", "CN=x, OID(1.2.3.4)=abc"))),
    ("zeek vector escape", (("rfc2253", "O=SomeOrg\\x2cL=Somewhere\\x2cC=US"),
                            ("x509", "C=US, L=Somewhere, O=SomeOrg"))),
]


@pytest.mark.parametrize(("case", "forms"), SAME, ids=[c for c, _ in SAME])
def test_equivalent_forms(case: str, forms: tuple[tuple[str, str], ...]) -> None:
    keys = {text: dn_key(text, order=order) for order, text in forms}  # type: ignore[arg-type]
    assert len(set(keys.values())) == 1, keys
    assert None not in keys.values()


@pytest.mark.parametrize("text", [None, "", "   ", "no equals sign here"])
def test_empty_or_unparseable_is_none(text: str | None) -> None:
    assert dn_key(text) is None
    assert dn_key(text, order="x509") is None


def test_key_shape_and_different_dns_differ() -> None:
    assert dn_key("CN=Example CA,O=Example\\, Inc.,C=US") == "cn=Example CA,o=Example\\, Inc.,c=US"
    assert dn_key("CN=a+OU=b") == "cn=a+ou=b"
    assert dn_key("CN=a\\+OU=b") == "cn=a\\+OU\\=b"
    assert dn_key("CN=Example CA,O=Example") != dn_key("CN=Example CA,O=Examp1e")
    assert dn_key("CN=a,O=b") != dn_key("CN=a,O=b", order="x509")  # order matters


def test_parse_dn_pairs() -> None:
    assert parse_dn("C=US, O=Example, Inc., CN=x", order="x509") == [("cn", "x"), ("o", "Example, Inc."), ("c", "US")]
    assert parse_dn("CN=a+OU=b,O=c") == [("cn", "a"), ("ou", "b"), ("o", "c")]


def test_add_issuer_keys_columns() -> None:
    df = pd.DataFrame({"server_issuer": ["C=US, O=A, CN=x", None, "C=US, O=A, CN=x"],
                       "peer_issuer": [None, "O=Mesh, CN=Mesh CA", None]})
    out = add_issuer_keys(df, order="x509")
    assert out["server_issuer_key"].tolist() == ["cn=x,o=A,c=US", pd.NA, "cn=x,o=A,c=US"]
    assert out["peer_issuer_key"].tolist() == [pd.NA, "cn=Mesh CA,o=Mesh", pd.NA]
    assert str(out["server_issuer_key"].dtype) == "category"
    assert "server_issuer_key" not in df.columns  # input untouched



# -- properties --------------------------------------------------------------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_ATTRS = [CN, ORG, OU, NameOID.LOCALITY_NAME, NameOID.EMAIL_ADDRESS, ORG_ID, NameOID.SERIAL_NUMBER]
# Suricata does not escape, so a value holding ``=`` or ``+`` next to a separator is ambiguous
# there; everything else, commas and quotes included, must round-trip.
_values = st.text(
    alphabet=st.characters(blacklist_characters="=+\\\x00", blacklist_categories=("Cs", "Cc", "Zl", "Zp")),
    min_size=1, max_size=12,
).filter(lambda v: v.strip() != "" and not v.strip().startswith("#"))
_rdn = st.lists(st.tuples(st.sampled_from(_ATTRS), _values), min_size=1, max_size=2, unique_by=lambda t: t[0])


@settings(max_examples=150, deadline=None)
@given(st.lists(_rdn, min_size=1, max_size=4))
def test_cryptography_and_suricata_forms_agree(rdns: list[list[tuple[x509.ObjectIdentifier, str]]]) -> None:
    name = _name(*rdns)
    expected = dn_key(name.rfc4514_string())
    assert expected is not None
    assert dn_key(suricata(name, escape=True), order="x509") == expected
    assert dn_key(zeek_tsv(name.rfc4514_string()), order="rfc2253") == expected
    assert dn_key(suricata(name), order="x509") == expected


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60), st.sampled_from(["rfc2253", "x509"]))
def test_arbitrary_text_never_raises(text: str, order: str) -> None:
    key = dn_key(text, order=order)  # type: ignore[arg-type]
    assert key is None or isinstance(key, str)
    parse_dn(text, order=order)  # type: ignore[arg-type]


def test_real_zeek_tsv_samples() -> None:
    """Zeek's own TSV output (``\\\\,`` and ``\\x2c`` escapes) keys like the other tools' forms."""
    from .conftest import require_shared

    x509_log = require_shared("samples/zeek/zeek_aws-rds_escaped-comma_x509.log")
    ssl_log = require_shared("samples/zeek/zeek_cert-request-info_vector-escape_ssl.log")
    issuers = {line.split("\t")[5] for line in x509_log.read_text().splitlines() if not line.startswith("#")}
    zeek = "CN=Amazon RDS us-east-1 2019 CA,OU=Amazon RDS,O=Amazon Web Services\\\\, Inc.,L=Seattle,ST=Washington,C=US"
    assert zeek in issuers
    assert dn_key(zeek) == dn_key(
        "C=US, ST=Washington, L=Seattle, O=Amazon Web Services, Inc., OU=Amazon RDS, CN=Amazon RDS us-east-1 2019 CA",
        order="x509",
    ) == "cn=Amazon RDS us-east-1 2019 CA,ou=Amazon RDS,o=Amazon Web Services\\, Inc.,l=Seattle,st=Washington,c=US"
    vector_line = next(line for line in ssl_log.read_text().splitlines() if "\\x2c" in line)
    dn = next(f for f in vector_line.split("\t") if f.startswith("O=SomeOrg"))
    assert dn_key(dn) == dn_key("C=US, ST=Some-State, L=Somewhere, O=SomeOrg", order="x509")
