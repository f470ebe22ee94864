"""Android's ``network_security_config.xml``: ``<domain-config>`` pin sets, inheritance and overrides.

What Android does, and so what the rows say:

* A ``<domain-config>`` names hosts with ``<domain includeSubdomains="true|false">`` and may nest;
  a nested one inherits what it does not set itself (its parent's ``<pin-set>`` and
  ``<trust-anchors>``, then ``<base-config>``'s trust anchors). A host is governed by the most
  specific matching ``<domain>`` (see :func:`tlsdetect.pins.policy.most_specific`).
* ``<pin-set expiration="yyyy-MM-dd">`` holds ``<pin digest="SHA-256">`` SPKI hashes; a pin matches
  any certificate of the validated chain (kind ``any``). After ``expiration`` Android stops
  checking the pins. Android cannot mark a backup pin (``backup`` None).
* A domain-config with no pin-set, own or inherited, is a rule without pins (``pin`` None).
* ``<certificates overridePins="true">`` in the effective trust anchors lets that source bypass the
  pins; ``<debug-overrides>`` apply only to debuggable builds. Both are notes, never applied.
"""

from __future__ import annotations

import datetime as dt
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from tlsdetect.pins.rows import Collected, PolicyError, normalise_domain, parse_date
from tlsdetect.pins.safexml import Tree, parse

FORMAT = "android"
#: Deeper ``<domain-config>`` nesting than this is no real config (and would exhaust the stack).
MAX_NESTING = 32


@dataclass(frozen=True)
class _Inherited:
    pins: list[tuple[str, int | None]] | None
    expiry: dt.date | None
    overrides: list[str]


def _bool_attr(elem: ET.Element, name: str, tree: Tree, path: str) -> bool:
    raw = elem.get(name, "false").strip().lower()
    if raw not in ("true", "false"):
        raise PolicyError(path, tree.line(elem), f"{name} must be true or false, not {raw[:20]!r}")
    return raw == "true"


def _overrides(elem: ET.Element | None, tree: Tree, path: str) -> list[str] | None:
    """The certificate sources of a ``<trust-anchors>`` that override pins (None: no trust-anchors)."""
    if elem is None:
        return None
    return [c.get("src", "?") for c in elem.findall("certificates") if _bool_attr(c, "overridePins", tree, path)]


def _pin_set(elem: ET.Element, tree: Tree, path: str) -> tuple[list[tuple[str, int | None]], dt.date | None]:
    raw = elem.get("expiration")
    expiry = parse_date(raw, path, tree.line(elem)) if raw is not None else None
    pins = []
    for pin in elem.findall("pin"):
        digest = pin.get("digest")
        if digest is None:
            raise PolicyError(path, tree.line(pin), "<pin> without a digest attribute")
        if digest.upper() != "SHA-256":
            raise PolicyError(path, tree.line(pin), f"digest {digest[:20]!r}: Android supports only SHA-256")
        pins.append(("".join(pin.itertext()).strip(), tree.line(pin)))
    return pins, expiry


def _domain_config(elem: ET.Element, parent: _Inherited, tree: Tree, path: str, out: Collected,
                   depth: int = 1) -> None:
    if depth > MAX_NESTING:
        raise PolicyError(path, tree.line(elem), f"<domain-config> nested deeper than {MAX_NESTING}")
    domains = elem.findall("domain")
    if not domains:
        raise PolicyError(path, tree.line(elem), "<domain-config> without a <domain>")
    pin_sets = elem.findall("pin-set")
    if len(pin_sets) > 1:
        raise PolicyError(path, tree.line(pin_sets[1]), "more than one <pin-set> in a <domain-config>")
    if pin_sets:
        pins, expiry = _pin_set(pin_sets[0], tree, path)
        here = _Inherited(pins, expiry, parent.overrides)
    else:
        here = parent
    own = _overrides(elem.find("trust-anchors"), tree, path)
    if own is not None:
        here = _Inherited(here.pins, here.expiry, own)
    for d in domains:
        name = normalise_domain("".join(d.itertext()), path, tree.line(d))
        subs = _bool_attr(d, "includeSubdomains", tree, path)
        if here.pins:
            for value, line in here.pins:
                out.pin(name, subs, value, "any", here.expiry, None, path, line, FORMAT)
        else:
            out.pin(name, subs, None, None, here.expiry, None, path, tree.line(d), FORMAT)
        if here.pins and here.overrides:
            out.note(path, tree.line(d), name, "override_pins",
                     f"trust anchors {', '.join(here.overrides)} have overridePins=true: they bypass these pins")
    for child in elem.findall("domain-config"):
        _domain_config(child, here, tree, path, out, depth + 1)


def read(path: str, data: bytes) -> Collected:
    """The rows of a network security config; structure errors are one line with the element's line."""
    tree = parse(path, data)
    root = tree.root
    if root.tag != "network-security-config":
        raise PolicyError(path, tree.line(root), f"root element is <{root.tag[:40]}>, not <network-security-config>")
    base = root.find("base-config")
    base_overrides: list[str] = []
    if base is not None:
        bad = base.find("pin-set")
        if bad is not None:
            raise PolicyError(path, tree.line(bad), "<pin-set> is not allowed in <base-config>")
        base_overrides = _overrides(base.find("trust-anchors"), tree, path) or []
    start = _Inherited(None, None, base_overrides)
    out = Collected()
    for dc in root.findall("domain-config"):
        _domain_config(dc, start, tree, path, out)
    debug = root.find("debug-overrides")
    if debug is not None:
        srcs = _overrides(debug.find("trust-anchors"), tree, path) or []
        extra = f"; {', '.join(srcs)} override pins there" if srcs else ""
        out.note(path, tree.line(debug), "", "debug_overrides",
                 f"<debug-overrides> apply to debuggable builds only (not applied here){extra}")
    return out
