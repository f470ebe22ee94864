"""Distinguished names from every source to one canonical key.

Envoy prints DNs as RFC 2253 (most specific RDN first, ``,`` separated, ``\\,`` escapes), Zeek
much the same (with ``\\x2c``-style escapes in TSV), Suricata in certificate order (``C=US, O=..,
CN=..``: most general first, ``", "`` separated), and ``cryptography`` as RFC 4514. The same
certificate seen by all of them must give the same :func:`dn_key`.
"""

from __future__ import annotations

import re
from typing import Literal

import numpy as np
import pandas as pd

__all__ = ["add_issuer_keys", "dn_key", "parse_dn"]

Order = Literal["rfc2253", "x509"]

#: Attribute names as different tools spell them -> one short name.
_ALIASES = {
    "commonname": "cn",
    "countryname": "c",
    "organizationname": "o",
    "organizationalunitname": "ou",
    "localityname": "l",
    "stateorprovincename": "st",
    "s": "st",
    "emailaddress": "emailaddress",
    "e": "emailaddress",
    "2.5.4.3": "cn",
    "2.5.4.6": "c",
    "2.5.4.10": "o",
    "2.5.4.11": "ou",
    "2.5.4.7": "l",
    "2.5.4.8": "st",
    "1.2.840.113549.1.9.1": "emailaddress",
    "domaincomponent": "dc",
    "serialnumber": "serialnumber",
}

_HEX_ESCAPE = re.compile(r"\\x([0-9a-fA-F]{2})")


def _split(text: str, separator: str) -> list[str]:
    """Split on ``separator`` outside backslash escapes and double quotes."""
    parts, current, i, quoted = [], [], 0, False
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            current.append(text[i : i + 2])
            i += 2
            continue
        if ch == '"':
            quoted = not quoted
        if not quoted and text.startswith(separator, i):
            parts.append("".join(current))
            current = []
            i += len(separator)
            continue
        current.append(ch)
        i += 1
    parts.append("".join(current))
    return parts


def _unescape(value: str) -> str:
    value = _HEX_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), value)
    out, i = [], 0
    while i < len(value):
        if value[i] == "\\" and i + 1 < len(value):
            out.append(value[i + 1])
            i += 2
            continue
        out.append(value[i])
        i += 1
    text = "".join(out).strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':
        text = text[1:-1]
    return text


def parse_dn(text: str, *, order: Order = "rfc2253") -> list[tuple[str, str]]:
    """(attribute, value) pairs, most specific first, with escapes resolved.

    ``order="x509"`` is certificate order (most general first, as Suricata prints it).
    Multi-valued RDNs (``+``) are flattened in their printed order.
    """
    separator = ", " if order == "x509" and ", " in text else ","
    pairs: list[tuple[str, str]] = []
    for rdn in _split(text, separator):
        for ava in _split(rdn, "+"):
            if "=" not in ava:
                if pairs:  # a separator inside an unescaped value: glue it back
                    name, value = pairs[-1]
                    pairs[-1] = (name, f"{value}{separator.strip()} {ava.strip()}".strip())
                continue
            name, _, value = ava.partition("=")
            key = name.strip().lower()
            pairs.append((_ALIASES.get(key, key), _unescape(value)))
    return pairs[::-1] if order == "x509" else pairs


def dn_key(text: str | None, *, order: Order = "rfc2253") -> str | None:
    """Canonical key of a DN: ``cn=...,o=...,c=..`` lower-case names, values as printed (trimmed)."""
    if text is None or not text.strip():
        return None
    pairs = parse_dn(text, order=order)
    if not pairs:
        return None
    return ",".join(f"{name}={_escape(value)}" for name, value in pairs)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace(",", "\\,")


def add_issuer_keys(df: pd.DataFrame, *, order: Order = "rfc2253") -> pd.DataFrame:
    """Fill ``server_issuer_key``/``peer_issuer_key`` from the issuer columns, once per distinct DN."""
    out = df.copy()
    for src, dst in (("server_issuer", "server_issuer_key"), ("peer_issuer", "peer_issuer_key")):
        if src not in out.columns:
            continue
        codes, uniques = pd.factorize(out[src].astype(object), use_na_sentinel=True)
        keys = np.array([dn_key(str(u), order=order) for u in uniques] + [None], dtype=object)
        out[dst] = pd.array(keys[codes], dtype="string")
    return out
