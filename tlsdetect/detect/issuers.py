"""Distinguished names from every source to one canonical key.

How each source prints a DN (checked against the tools' code and real certificates):

* ``cryptography``'s ``Name.rfc4514_string()`` (tlsdetect's pcap engine): most specific RDN first,
  ``,`` between RDNs, ``+`` inside a multi-valued RDN, RFC 4514 escapes (``\\,`` ``\\+``
  ``\\"`` ``\\\\`` ``\\<`` ``\\>`` ``\\;``, ``\\ `` for a leading/trailing space, ``\\#`` for a
  leading ``#``), non-ASCII kept as is, short names only for CN, L, ST, O, OU, C, STREET, DC,
  UID; every other attribute as its dotted OID (``1.2.840.113549.1.9.1=..``, ``2.5.4.97=..``).
* OpenSSL ``X509_NAME_print_ex(.., XN_FLAG_RFC2253)`` (Zeek's ``x509.log``, Envoy/BoringSSL's
  ``%..._PEER_ISSUER%``): the same order and separators; OpenSSL short names (``emailAddress``,
  ``serialNumber``, ``organizationIdentifier``, ``jurisdictionC``, ..); bytes >= 0x80 escaped
  as ``\\C3\\A9`` hex pairs (ESC_MSB); unknown attributes as ``1.2.3.4=#0C03616263`` (DER hex).
  Zeek's TSV writer then escapes a backslash as ``\\\\`` (``O=Amazon Web Services\\\\, Inc.``)
  and, inside vector fields, a comma as ``\\x2c`` -- separators included.
* Suricata (``rust/src/x509``, x509-parser's ``X509Name`` display): certificate order (most
  general RDN first), ``", "`` between RDNs, ``" + "`` inside a multi-valued RDN, and **no
  escaping at all** (``O=Example, Inc.``); names ``CN C L ST O OU DC Email``, then the OID
  registry's short name, else ``OID(2.5.4.97)``.

:func:`dn_key` maps all of these to one string: RDNs most specific first, attribute names
lower-case and de-aliased (``emailaddress``, ``2.5.4.97`` -> ``organizationidentifier``, ..),
the attributes of a multi-valued RDN sorted, values unescaped and trimmed (case kept), then
re-escaped minimally (``\\`` ``,`` ``+`` ``=``) so the key is unambiguous.

Known limits: an unescaped Suricata value that itself contains ``", X=..."`` cannot be told
apart from a separator; a value ending in a backslash followed by a separator (``\\\\,`` in
RFC 4514) is read as Zeek's TSV-escaped comma.
"""

from __future__ import annotations

import re
from typing import Any, Literal

import numpy as np
import pandas as pd

from tlsdetect import schema

__all__ = ["add_issuer_keys", "dn_key", "parse_dn"]

Order = Literal["rfc2253", "x509"]

_CANONICAL: dict[str, tuple[str, ...]] = {
    # canonical name: spellings (lower-case) used by cryptography, OpenSSL, x509-parser, RFCs
    "cn": ("cn", "commonname", "2.5.4.3"),
    "c": ("c", "countryname", "2.5.4.6"),
    "o": ("o", "organizationname", "2.5.4.10"),
    "ou": ("ou", "organizationalunitname", "2.5.4.11"),
    "l": ("l", "localityname", "2.5.4.7"),
    "st": ("st", "s", "stateorprovincename", "2.5.4.8"),
    "street": ("street", "streetaddress", "2.5.4.9"),
    "dc": ("dc", "domaincomponent", "0.9.2342.19200300.100.1.25"),
    "uid": ("uid", "userid", "0.9.2342.19200300.100.1.1"),
    "emailaddress": ("emailaddress", "email", "e", "1.2.840.113549.1.9.1"),
    "serialnumber": ("serialnumber", "2.5.4.5"),
    "surname": ("surname", "sn", "2.5.4.4"),
    "givenname": ("givenname", "gn", "2.5.4.42"),
    "title": ("title", "2.5.4.12"),
    "initials": ("initials", "2.5.4.43"),
    "generationqualifier": ("generationqualifier", "2.5.4.44"),
    "dnqualifier": ("dnqualifier", "2.5.4.46"),
    "pseudonym": ("pseudonym", "2.5.4.65"),
    "name": ("name", "2.5.4.41"),
    "businesscategory": ("businesscategory", "2.5.4.15"),
    "postalcode": ("postalcode", "2.5.4.17"),
    "organizationidentifier": ("organizationidentifier", "2.5.4.97"),
    "jurisdictionc": ("jurisdictionc", "jurisdictioncountryname", "jurisdictionofincorporationcountryname",
                      "1.3.6.1.4.1.311.60.2.1.3"),
    "jurisdictionst": ("jurisdictionst", "jurisdictionstateorprovincename",
                       "jurisdictionofincorporationstateorprovincename", "1.3.6.1.4.1.311.60.2.1.2"),
    "jurisdictionl": ("jurisdictionl", "jurisdictionlocalityname", "jurisdictionofincorporationlocalityname",
                      "1.3.6.1.4.1.311.60.2.1.1"),
    "unstructuredname": ("unstructuredname", "1.2.840.113549.1.9.2"),
}
#: Attribute names as different tools spell them -> one name.
_ALIASES = {spelling: canonical for canonical, spellings in _CANONICAL.items() for spelling in spellings}

#: Zeek's TSV escaping: ``\xHH`` anywhere, or a doubled backslash before a DN special or a
#: hex pair (OpenSSL's ``\C3\A9`` for non-ASCII, doubled by the TSV writer).
_TSV_HINT = re.compile(r"\\x[0-9a-fA-F]{2}|\\\\(?:[,+=;<>\"# ]|[0-9a-fA-F]{2})")
_TSV_ESCAPE = re.compile(r"\\x([0-9a-fA-F]{2})|\\\\")
#: An attribute name: a keyword (``CN``, ``emailAddress``), a dotted OID, or ``OID(..)``.
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9-]*|[0-9]+(?:\.[0-9]+)*|(?:OID|oid)\.[0-9.]+|OID\([0-9.]+\)")
_HEX = frozenset("0123456789abcdefABCDEF")
#: Characters RFC 4514 / RFC 2253 escape with a backslash.
_SPECIALS = frozenset(',+"\\<>;=# ')
#: DER string tags a ``#hex`` value may hold, and how to decode them.
_DER_STRINGS = {0x0C: "utf-8", 0x13: "latin-1", 0x16: "latin-1", 0x14: "latin-1", 0x1A: "latin-1",
                0x12: "latin-1", 0x1E: "utf-16-be", 0x1C: "utf-32-be"}


def _tsv_decode(text: str) -> str:
    """Undo Zeek's TSV escaping when the text shows it (``\\x2c``, ``\\\\,``)."""
    if not _TSV_HINT.search(text):
        return text
    return _TSV_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)) if m.group(1) else "\\", text)


def _split(text: str, separator: str, *, quotes: bool = True) -> list[str]:
    """Split on ``separator`` outside backslash escapes and RFC 2253 quoted values.

    A double quote opens a quoted value only right after ``=``; an unbalanced one (Suricata
    prints values raw) is read as an ordinary character.
    """
    parts: list[str] = []
    current: list[str] = []
    i, quoted = 0, False
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            current.append(text[i : i + 2])
            i += 2
            continue
        if quotes and ch == '"' and (quoted or "".join(current).rstrip().endswith("=")):
            quoted = not quoted
        if not quoted and text.startswith(separator, i):
            parts.append("".join(current))
            current = []
            i += len(separator)
            continue
        current.append(ch)
        i += 1
    if quoted:
        return _split(text, separator, quotes=False)
    parts.append("".join(current))
    return parts


def _der_string(hexed: str) -> str | None:
    """The text of a ``#``-prefixed hex DER string value (OpenSSL's dump of unknown attributes)."""
    try:
        der = bytes.fromhex(hexed)
    except ValueError:
        return None
    if len(der) < 2 or der[0] not in _DER_STRINGS:
        return None
    length, pos = der[1], 2
    if length & 0x80:
        n = length & 0x7F
        if n == 0 or n > 4 or len(der) < 2 + n:
            return None
        length, pos = int.from_bytes(der[2 : 2 + n], "big"), 2 + n
    if pos + length != len(der):
        return None
    try:
        return der[pos:].decode(_DER_STRINGS[der[0]])
    except UnicodeDecodeError:
        return None


def _unescape(value: str) -> str:
    """Resolve RFC 4514 escapes (``\\,`` and ``\\C3\\A9`` hex pairs) and ``#hex``; trim; unquote."""
    raw = value.lstrip()
    while raw.endswith(" ") and not raw.endswith("\\ "):
        raw = raw[:-1]
    if raw.startswith("#") and len(raw) > 1:
        decoded = _der_string(raw[1:])
        if decoded is not None:
            return decoded.strip()
    out = bytearray()
    i = 0
    while i < len(raw):
        ch = raw[i]
        if ch == "\\" and i + 1 < len(raw):
            nxt = raw[i + 1]
            if nxt in _HEX and i + 2 < len(raw) and raw[i + 2] in _HEX:
                out.append(int(raw[i + 1 : i + 3], 16))
                i += 3
                continue
            if nxt in _SPECIALS:
                out.extend(nxt.encode())
                i += 2
                continue
        out.extend(ch.encode("utf-8", "surrogateescape"))
        i += 1
    text = out.decode("utf-8", "replace").strip()
    # An RFC 2253 quoted value, or a value that is itself in quotes (same key either way).
    return text[1:-1].strip() if len(text) >= 2 and text[0] == text[-1] == '"' else text


def _name(raw: str) -> str:
    key = raw.strip().lower()
    if key.startswith("oid(") and key.endswith(")"):
        key = key[4:-1].strip()
    elif key.startswith("oid."):
        key = key[4:]
    return _ALIASES.get(key, key)


def _rdns(text: str, *, quotes: bool) -> list[list[tuple[str, str]]]:
    """RDNs in printed order, each a list of (name, value).

    Splits on every unescaped ``,`` and ``+`` (with or without the spaces Suricata adds); a
    piece without ``name=`` is a separator that was part of an unescaped value (Suricata
    prints ``O=Example, Inc.``) and is glued back onto the value before it.
    """
    rdns: list[list[tuple[str, str]]] = []
    for rdn_text in _split(_tsv_decode(text), ",", quotes=quotes):
        avas: list[tuple[str, str]] = []
        continued = False  # this piece began inside the previous RDN's last value
        for ava in _split(rdn_text, "+", quotes=quotes):
            name, eq, value = ava.partition("=")
            if not eq or not _NAME.fullmatch(name.strip()):
                if avas:
                    avas[-1] = (avas[-1][0], f"{avas[-1][1]}+{ava}")
                elif rdns:
                    rdns[-1][-1] = (rdns[-1][-1][0], f"{rdns[-1][-1][1]},{ava}")
                    continued = True
                continue
            avas.append((name, value))
        if continued:
            rdns[-1].extend(avas)
        elif avas:
            rdns.append(avas)
    return [[(_name(n), _unescape(v)) for n, v in rdn] for rdn in rdns]


def _ordered(text: str, order: Order) -> list[list[tuple[str, str]]]:
    rdns = _rdns(text, quotes=order != "x509")  # Suricata never quotes, so a quote is data
    return rdns[::-1] if order == "x509" else rdns


def parse_dn(text: str, *, order: Order = "rfc2253") -> list[tuple[str, str]]:
    """(attribute, value) pairs, most specific first, with escapes resolved.

    ``order="x509"`` is certificate order (most general first, as Suricata prints it).
    Multi-valued RDNs (``+``) are flattened in their printed order.
    """
    return [ava for rdn in _ordered(text, order) for ava in rdn]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("+", "\\+").replace("=", "\\=")


def dn_key(text: str | None, *, order: Order = "rfc2253") -> str | None:
    """Canonical key of a DN: ``cn=..,o=..,c=..``; None for an empty or unparseable DN."""
    if text is None or not isinstance(text, str) or not text.strip():
        return None
    rdns = _ordered(text, order)
    if not rdns:
        return None
    return ",".join("+".join(f"{n}={_escape(v)}" for n, v in sorted(rdn)) for rdn in rdns)


def add_issuer_keys(df: pd.DataFrame, *, order: Order = "rfc2253") -> pd.DataFrame:
    """Fill ``server_issuer_key``/``peer_issuer_key`` from the issuer columns, once per distinct DN."""
    out = df.copy(deep=False)  # only whole columns are replaced (and pandas copies on write)
    for src, dst in (("server_issuer", "server_issuer_key"), ("peer_issuer", "peer_issuer_key")):
        if src not in out.columns:
            continue
        col = out[src]
        uniques: Any
        if isinstance(col.dtype, pd.CategoricalDtype):  # the schema's form: its codes already factorise it
            codes, uniques = np.asarray(col.cat.codes, dtype=np.int64), col.cat.categories
        else:
            codes, uniques = pd.factorize(col, use_na_sentinel=True)
        keys = [dn_key(str(u), order=order) for u in uniques]
        out[dst] = pd.Series(schema.category_from_codes(keys, codes), index=out.index)
    return out
