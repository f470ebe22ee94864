"""The knowledge base: interception CAs and keys, product and application fingerprints, real stacks, public roots.

The CSV files beside this module are made by ``scripts/build_knowledge.py`` from ``../shared`` and the project's
own captures (see README.md here); every row names its source. Public roots come from ``certifi`` (Mozilla's root
store) at run time. Lookups work on a whole column at once: each distinct value is looked up once and the result
is broadcast back to every row, so a million rows from a few hundred clients cost a few hundred lookups.

Matching rules:

* interception CAs: each ``pattern`` must match the *whole* CN or O value of the issuer, case-insensitively
  (Chromium's rule); the first matching row (file order) names the product;
* public issuers: the issuer DN's canonical key (:func:`tlsdetect.detect.issuers.dn_key`) equals a Mozilla root's
  (``public_match='root'``), or its O= equals a root's O= case-insensitively (``'organization'``: intermediates of
  DigiCert, Sectigo, ... carry their root's organization; Let's Encrypt's ``R3`` does not, and is not called public
  by this rule -- verify the chain with :func:`verify_chain` when the certificates are at hand);
* fingerprints: exact value; for JA4 also the ``ja4_ab`` rows of products known only from mitmengine's records,
  compared with the first 23 characters of the JA4 (``a_b``), ``?`` in the pattern matching any one character.
"""

from __future__ import annotations

import datetime as dt
import io
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509.oid import NameOID

from tlsdetect.detect.issuers import dn_key, parse_dn

__all__ = [
    "MATCH_COLUMNS",
    "ChainResult",
    "Knowledge",
    "classify_issuers",
    "fingerprint_matches",
    "load_knowledge",
    "lookup_application",
    "lookup_stack",
    "match_fingerprints",
    "public_roots",
    "verify_chain",
]

FINGERPRINT_KINDS = ("ja3", "ja3n", "ja4")
#: Length of the ``a_b`` prefix of a JA4 (10 + 1 + 12 = 23) that ``ja4_ab`` patterns describe.
JA4_AB_LEN = 23

_FILES = {
    "interception_cas": "interception_cas.csv",
    "interception_keys": "interception_keys.csv",
    "product_fingerprints": "product_fingerprints.csv",
    "applications": "applications.csv",
    "stacks": "stack_fingerprints.csv",
}

Row = tuple[str, ...]


@dataclass(eq=False)
class Knowledge:
    """The loaded tables (string columns, no missing values) and lookup structures built on first use."""

    interception_cas: pd.DataFrame
    interception_keys: pd.DataFrame
    product_fingerprints: pd.DataFrame
    applications: pd.DataFrame
    stacks: pd.DataFrame
    public_roots: pd.DataFrame
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    def _memo(self, key: str, build: Callable[[], Any]) -> Any:
        if key not in self._cache:
            self._cache[key] = build()
        return self._cache[key]


def _read_csv(name: str) -> pd.DataFrame:
    text = resources.files(__name__).joinpath(name).read_text(encoding="utf-8")
    frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    return frame.astype("string")


@lru_cache(maxsize=1)
def _certifi_roots() -> tuple[x509.Certificate, ...]:
    import certifi

    with open(certifi.where(), "rb") as fh, warnings.catch_warnings():
        # a few old roots carry a non-positive serial number; cryptography warns but loads them
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        return tuple(x509.load_pem_x509_certificates(fh.read()))


def _certifi_source() -> str:
    import certifi

    return f"certifi {certifi.__version__} (Mozilla root store)"


@lru_cache(maxsize=1)
def public_roots() -> pd.DataFrame:
    """Mozilla's roots as carried by certifi: dn_key, subject, organization, sha256, source (cached per process)."""
    source = _certifi_source()
    rows = []
    for cert in _certifi_roots():
        subject = cert.subject.rfc4514_string()
        orgs = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
        org = str(orgs[0].value).strip() if orgs else None
        rows.append((dn_key(subject), subject, org, cert.fingerprint(hashes.SHA256()).hex(), source))
    frame = pd.DataFrame(rows, columns=["dn_key", "subject", "organization", "sha256", "source"])
    return frame.astype("string")


#: Stacks of the project's own captures that are interception tools: their measured fingerprints
#: count as known interception products (product type as mitmengine words it).
INTERCEPTION_TOOLS = {"mitmproxy": "Proxy"}


def _tool_products(stacks: pd.DataFrame) -> pd.DataFrame:
    """The measured fingerprints of interception tools, in the product table's columns."""
    tools = stacks[stacks["stack"].isin(list(INTERCEPTION_TOOLS))]
    return pd.DataFrame({
        "product": tools["stack"] + " " + tools["version"].str.replace(r"^\w+:\s*", "", regex=True),
        "product_type": tools["stack"].map(INTERCEPTION_TOOLS),
        "kind": tools["kind"], "value": tools["value"], "missing": "", "source": tools["source"],
    }).astype("string")


@lru_cache(maxsize=1)
def load_knowledge() -> Knowledge:
    """Every table of the knowledge base, read once per process."""
    stacks = _read_csv(_FILES["stacks"])
    products = _read_csv(_FILES["product_fingerprints"])
    return Knowledge(
        interception_cas=_read_csv(_FILES["interception_cas"]),
        interception_keys=_read_csv(_FILES["interception_keys"]),
        product_fingerprints=pd.concat([products, _tool_products(stacks)], ignore_index=True),
        applications=_read_csv(_FILES["applications"]),
        stacks=stacks,
        public_roots=public_roots(),
    )


# ---------------------------------------------------------------------------------------------------------------
# Vectorised plumbing: look up each distinct value once, broadcast to the rows.


def _broadcast(
    values: pd.Series, columns: Sequence[str], one: Callable[[str], Row | None], *, dtypes: dict[str, str] | None = None
) -> pd.DataFrame:
    codes, uniques = pd.factorize(values.astype(object), use_na_sentinel=True)
    results = [one(str(u)) for u in uniques]
    out: dict[str, Any] = {}
    for i, col in enumerate(columns):
        # the extra last slot is what the missing values (code -1) pick up
        arr = np.array([r[i] if r is not None else None for r in results] + [None], dtype=object)
        dtype = (dtypes or {}).get(col, "string")
        out[col] = pd.array(arr[codes], dtype=dtype)  # type: ignore[call-overload]
    return pd.DataFrame(out, index=values.index)


def _first_by_value(frame: pd.DataFrame, kinds: Sequence[str], columns: Sequence[str]) -> dict[str, Row]:
    """value -> columns of the first row (file order) of one of ``kinds``."""
    table: dict[str, Row] = {}
    sub = frame[frame["kind"].isin(list(kinds))]
    for rec in sub[["value", *columns]].itertuples(index=False):
        table.setdefault(str(rec[0]), tuple(str(v) for v in rec[1:]))
    return table


def _check_kind(kind: str) -> None:
    if kind not in FINGERPRINT_KINDS:
        raise ValueError(f"kind must be one of {FINGERPRINT_KINDS}, not {kind!r}")


def _normal(value: str, kind: str) -> str:
    text = value.strip()
    return text.lower() if kind in ("ja3", "ja3n") else text


# ---------------------------------------------------------------------------------------------------------------
# Issuers


def _ca_matchers(kb: Knowledge) -> list[tuple[str, Any, str, str]]:
    import re

    def build() -> list[tuple[str, Any, str, str]]:
        cas = kb.interception_cas
        return [
            (str(f), re.compile(str(p), re.IGNORECASE), str(prod), str(src))
            for f, p, prod, src in zip(cas["field"], cas["pattern"], cas["product"], cas["source"], strict=True)
        ]

    return kb._memo("ca_matchers", build)  # type: ignore[no-any-return]


def _root_index(kb: Knowledge) -> tuple[dict[str, str], dict[str, str]]:
    def build() -> tuple[dict[str, str], dict[str, str]]:
        roots = kb.public_roots
        keys: dict[str, str] = {}
        orgs: dict[str, str] = {}
        for key, org, src in zip(roots["dn_key"], roots["organization"], roots["source"], strict=True):
            if isinstance(key, str):
                keys.setdefault(key, str(src))
            if isinstance(org, str) and org.strip():
                orgs.setdefault(org.strip().casefold(), str(src))
        return keys, orgs

    return kb._memo("root_index", build)  # type: ignore[no-any-return]


def _classify_one(text: str, kb: Knowledge) -> Row:
    try:
        avas = parse_dn(text)
        keys = {dn_key(text), dn_key(text, order="x509")} - {None}
    except Exception:  # an unparseable DN is simply not recognised
        avas, keys = [], set()
    values: dict[str, list[str]] = {"cn": [], "o": []}
    for name, value in avas:
        if name in values:
            values[name].append(value)
    product: str | None = None
    product_source: str | None = None
    for fld, regex, prod, src in _ca_matchers(kb):
        if any(regex.fullmatch(v) for v in values.get(fld, [])):
            product, product_source = prod, src
            break
    root_keys, root_orgs = _root_index(kb)
    public, match, public_source = False, None, None
    hit = next((k for k in keys if k in root_keys), None)
    if hit is not None:
        public, match, public_source = True, "root", root_keys[hit]
    else:
        org = next((o for o in values["o"] if o.strip().casefold() in root_orgs), None)
        if org is not None:
            public, match, public_source = True, "organization", root_orgs[org.strip().casefold()]
    return (product, product_source, public, match, public_source)  # type: ignore[return-value]


def classify_issuers(issuers: pd.Series, kb: Knowledge | None = None) -> pd.DataFrame:
    """Interception product and public-CA status of issuer DNs (any tool's printing; ``<NA>`` allowed).

    Returns a frame with the same index and the columns ``interception_product``, ``interception_source``
    (``<NA>`` when no interception CA matches), ``public`` (boolean; ``<NA>`` for a missing issuer),
    ``public_match`` (``'root'``, ``'organization'`` or ``<NA>``) and ``public_source``.
    """
    know = kb if kb is not None else load_knowledge()
    columns = ["interception_product", "interception_source", "public", "public_match", "public_source"]
    return _broadcast(issuers, columns, lambda text: _classify_one(text, know), dtypes={"public": "boolean"})


# ---------------------------------------------------------------------------------------------------------------
# Fingerprints


def _ja4_ab_candidates(value: str) -> list[str]:
    """The ``ja4_ab`` patterns a JA4 can meet: its ``a_b`` prefix with the version and/or ALPN characters unknown."""
    p = value[:JA4_AB_LEN]
    if len(p) < JA4_AB_LEN:
        return []
    no_version = p[0] + "??" + p[3:]
    return [p, no_version, p[:8] + "??" + p[10:], no_version[:8] + "??" + no_version[10:]]


#: The columns of :func:`match_fingerprints` and :func:`fingerprint_matches`.
MATCH_COLUMNS = ("product", "product_type", "source")


def match_fingerprints(values: pd.Series, kind: str, kb: Knowledge | None = None) -> pd.DataFrame:
    """Interception products whose fingerprint equals each value: columns product, product_type, source.

    ``kind`` is ``ja3``, ``ja3n`` or ``ja4``; the first matching row (file order) wins; ``<NA>`` when none does.
    For ``ja4`` an exact JA4 is preferred; otherwise the ``ja4_ab`` patterns (unknown characters ``?``) are
    tried against the value's first 23 characters.
    """
    _check_kind(kind)
    know = kb if kb is not None else load_knowledge()
    one = _fingerprint_matcher(kind, know)
    return _broadcast(values, list(MATCH_COLUMNS), one)


def fingerprint_matches(uniques: Sequence[str], kind: str, kb: Knowledge) -> dict[str, npt.NDArray[np.object_]]:
    """:func:`match_fingerprints` of distinct non-missing texts, as one object array (``None``: no match) per
    column of :data:`MATCH_COLUMNS`: scoring has the distinct values already and wants arrays, and the three
    string columns of a frame cost ~1 ms of fixed time per kind for a one-row request (issue 18 #15)."""
    _check_kind(kind)
    one = _fingerprint_matcher(kind, kb)
    results = [one(str(u)) for u in uniques]
    out: dict[str, npt.NDArray[np.object_]] = {}
    for i, col in enumerate(MATCH_COLUMNS):
        arr = np.empty(len(results), dtype=object)  # filled with None
        arr[:] = [r[i] if r is not None else None for r in results]
        out[col] = arr
    return out


def _fingerprint_matcher(kind: str, know: Knowledge) -> Callable[[str], Row | None]:
    """The match of one fingerprint text of ``kind``: the exact value first, then (JA4) its ``ja4_ab`` patterns."""
    columns = list(MATCH_COLUMNS)
    exact: dict[str, Row] = know._memo(
        f"fp_{kind}", lambda: _first_by_value(know.product_fingerprints, [kind], columns)
    )
    patterns: dict[str, Row] = know._memo(
        "fp_ja4_ab", lambda: _first_by_value(know.product_fingerprints, ["ja4_ab"], columns)
    )

    def one(text: str) -> Row | None:
        value = _normal(text, kind)
        if value in exact:
            return exact[value]
        if kind == "ja4":
            for candidate in _ja4_ab_candidates(value):
                if candidate in patterns:
                    return patterns[candidate]
        return None

    return one


def lookup_application(values: pd.Series, kind: str, kb: Knowledge | None = None) -> pd.DataFrame:
    """Known applications (salesforce JA3, FoxIO JA4) of each value: columns application, family, source."""
    _check_kind(kind)
    know = kb if kb is not None else load_knowledge()
    columns = ["application", "family", "source"]
    table: dict[str, Row] = know._memo(f"app_{kind}", lambda: _first_by_value(know.applications, [kind], columns))
    return _broadcast(values, columns, lambda text: table.get(_normal(text, kind)))


def lookup_stack(values: pd.Series, kind: str, kb: Knowledge | None = None) -> pd.DataFrame:
    """Real TLS stacks measured by the project with each value: columns stack, version, source."""
    _check_kind(kind)
    know = kb if kb is not None else load_knowledge()
    columns = ["stack", "version", "source"]
    table: dict[str, Row] = know._memo(f"stack_{kind}", lambda: _first_by_value(know.stacks, [kind], columns))
    return _broadcast(values, columns, lambda text: table.get(_normal(text, kind)))


# ---------------------------------------------------------------------------------------------------------------
# Chains


@dataclass(frozen=True, slots=True)
class ChainResult:
    """Outcome of :func:`verify_chain`: ``error`` says why a chain is not trusted (None when it is)."""

    trusted_public: bool
    root_subject: str | None
    error: str | None


def _san_subject(leaf: x509.Certificate) -> x509.verification.Subject | None:
    """A name the leaf's SAN covers (``*.example.com`` -> ``a.example.com``), or None."""
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (x509.ExtensionNotFound, ValueError):
        return None
    for name in san.get_values_for_type(x509.DNSName):
        host = "a." + name[2:] if name.startswith("*.") else name
        try:
            return x509.DNSName(host)
        except ValueError:
            continue
    for ip in san.get_values_for_type(x509.IPAddress):
        return x509.IPAddress(ip)
    return None


@lru_cache(maxsize=1)
def _default_store() -> x509.verification.Store:
    return x509.verification.Store(list(_certifi_roots()))


def verify_chain(
    ders: Sequence[bytes],
    roots: Sequence[x509.Certificate] | None = None,
    *,
    at: dt.datetime | None = None,
) -> ChainResult:
    """Verify a presented chain (leaf first, DER) against Mozilla's roots (certifi) or ``roots``.

    Uses cryptography's RFC 5280 / CA/B Forum path builder with the WebPKI rules for the CA certificates; the
    leaf's own extensions are not judged (a server name is not known here, and the question is only whether a
    public root vouches for the chain). ``at`` is the validation time (default: now; pass the capture time for old
    traffic). Never raises: bad input gives ``trusted_public=False`` and an ``error``.
    """
    try:
        if not ders:
            return ChainResult(False, None, "no certificates")
        certs = [x509.load_der_x509_certificate(bytes(d)) for d in ders]
        store = _default_store() if roots is None else x509.verification.Store(list(roots))
        when = at if at is not None else dt.datetime.now(dt.UTC)
        v = x509.verification
        base = v.PolicyBuilder().store(store).time(when)
        ca_policy = v.ExtensionPolicy.webpki_defaults_ca()
        # A server verifier checks the CAs' EKU for serverAuth (what a TLS server chain needs); its subject is
        # taken from the leaf's own SAN so the name check always passes. Without a SAN, the client verifier.
        # The leaf's other extensions are not judged.
        ee_server = v.ExtensionPolicy.permit_all().require_present(
            x509.SubjectAlternativeName, v.Criticality.AGNOSTIC, None
        )
        server = base.extension_policies(ca_policy=ca_policy, ee_policy=ee_server)
        client = base.extension_policies(ca_policy=ca_policy, ee_policy=v.ExtensionPolicy.permit_all())
        errors: list[str] = []
        subject = _san_subject(certs[0])
        attempts: list[Callable[[], Sequence[x509.Certificate]]] = []
        if subject is not None:
            attempts.append(lambda: server.build_server_verifier(subject).verify(certs[0], certs[1:]))
        attempts.append(lambda: client.build_client_verifier().verify(certs[0], certs[1:]).chain)
        for attempt in attempts:
            try:
                chain = attempt()
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
                continue
            return ChainResult(True, chain[-1].subject.rfc4514_string(), None)
        return ChainResult(False, None, errors[0])
    except Exception as exc:  # VerificationError, ValueError on bad DER, TypeError on bad input, ...
        return ChainResult(False, None, f"{type(exc).__name__}: {exc}")

