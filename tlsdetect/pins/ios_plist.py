"""iOS/macOS ``Info.plist`` pins: ATS ``NSPinnedDomains`` (and TrustKit's ``TSKConfiguration``).

``NSAppTransportSecurity`` / ``NSPinnedDomains`` maps a domain to ``NSIncludesSubdomains`` and two
arrays of identities, each a dictionary with ``SPKI-SHA256-BASE64``: ``NSPinnedLeafIdentities``
(the leaf must match: kind ``leaf``) and ``NSPinnedCAIdentities`` (some CA of the chain must:
kind ``ca``). ATS has no expiry and cannot mark a backup. A domain listed with neither array pins
nothing (a row with ``pin`` None). XML and binary plists are read with :mod:`plistlib`, which refuses
entity declarations; a binary plist has no lines (``line`` None), and in an XML plist a pin's line
is found by looking for its ``<string>`` in the text, in document order.
"""

from __future__ import annotations

import plistlib
from typing import Any
from xml.parsers.expat import ExpatError

from tlsdetect.pins import trustkit
from tlsdetect.pins.rows import Collected, PolicyError, normalise_domain
from tlsdetect.pins.yamltree import Y

FORMAT = "ios"
IDENTITY_KINDS = {"NSPinnedLeafIdentities": "leaf", "NSPinnedCAIdentities": "ca"}
SPKI_KEY = "SPKI-SHA256-BASE64"


class _Lines:
    """Where a string value sits in an XML plist's text, searched forward from the last hit."""

    def __init__(self, data: bytes) -> None:
        self.text = data.decode("utf-8", "replace") if not data.startswith(b"bplist00") else None
        self.cursor = 0

    def find(self, value: str) -> int | None:
        if self.text is None:
            return None
        needle = f">{value}<"
        at = self.text.find(needle, self.cursor)
        if at < 0:
            at = self.text.find(needle)
        if at < 0:
            return None
        self.cursor = at + len(needle)
        return self.text.count("\n", 0, at) + 1


def _to_y(value: Any) -> Y:
    if isinstance(value, dict):
        return Y({str(k): _to_y(v) for k, v in value.items()}, None)
    if isinstance(value, list):
        return Y([_to_y(v) for v in value], None)
    return Y(value, None)


def _pinned_domains(domains: Any, path: str, lines: _Lines, out: Collected) -> None:
    if not isinstance(domains, dict):
        raise PolicyError(path, None, "NSPinnedDomains must be a dictionary of domains")
    for raw, conf in domains.items():
        line = lines.find(str(raw))
        name = normalise_domain(str(raw), path, line)
        if not isinstance(conf, dict):
            raise PolicyError(path, line, f"NSPinnedDomains entry {name} must be a dictionary")
        subs = conf.get("NSIncludesSubdomains", False)
        if not isinstance(subs, bool):
            raise PolicyError(path, line, f"NSIncludesSubdomains of {name} must be a boolean")
        count = 0
        for key, idents in conf.items():  # file order, so each pin's line is found in turn
            kind = IDENTITY_KINDS.get(key)
            if kind is None:
                continue
            if not isinstance(idents, list):
                raise PolicyError(path, line, f"{key} of {name} must be an array")
            for ident in idents:
                value = ident.get(SPKI_KEY) if isinstance(ident, dict) else None
                if not isinstance(value, str):
                    raise PolicyError(path, line, f"an entry of {key} of {name} has no {SPKI_KEY} string")
                out.pin(name, subs, value.strip(), kind, None, None, path, lines.find(value), FORMAT)
                count += 1
        if not count:
            out.pin(name, subs, None, None, None, None, path, line, FORMAT)


def read(path: str, data: bytes) -> Collected:
    """The pins of an XML or binary Info.plist; a plist with neither pin dictionary is an error."""
    try:
        top = plistlib.loads(data)
    # plistlib raises many types on hostile input (bpo-42103); each becomes one line, never a trace
    except (plistlib.InvalidFileException, ExpatError, ValueError, TypeError, KeyError, IndexError, OverflowError,
            RecursionError, MemoryError) as exc:
        why = str(exc).splitlines()[0][:120] if str(exc).strip() else type(exc).__name__
        raise PolicyError(path, None, f"not a readable plist: {why}") from None
    if not isinstance(top, dict):
        raise PolicyError(path, None, "the plist's top object is not a dictionary")
    out = Collected()
    lines = _Lines(data)
    ats = top.get("NSAppTransportSecurity")
    found = False
    if isinstance(ats, dict) and "NSPinnedDomains" in ats:
        _pinned_domains(ats["NSPinnedDomains"], path, lines, out)
        found = True
    tsk = top.get("TSKConfiguration")
    if isinstance(tsk, dict) and "TSKPinnedDomains" in tsk:
        trustkit.read_domains(_to_y(tsk["TSKPinnedDomains"]), path, out)
        found = True
    if not found:
        raise PolicyError(path, None, "no NSAppTransportSecurity/NSPinnedDomains nor TSKConfiguration/TSKPinnedDomains")
    return out
