"""What every pin-set reader shares: the table's columns, the error, and pin/domain normalising.

Kept apart from :mod:`tlsdetect.pins.policy` so the readers can use it while the policy module
imports the readers (no import circle).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

#: The policy table: one row per (rule, pin). A rule with no pins (it *drops* the pins a broader rule
#: would have applied) is one row whose ``pin`` and ``kind`` are None.
POLICY_COLUMNS = ("domain", "include_subdomains", "pin", "kind", "expiry", "backup", "source", "line", "format")
KINDS = frozenset({"leaf", "ca", "any", "cert"})
#: SHA-256 is 32 bytes: 44 base64 characters with one ``=``, or 64 hex digits for Envoy's cert hash.
DIGEST_BYTES = 32


class PolicyError(ValueError):
    """A policy file that cannot be read: one line naming the file and, where known, the line."""

    def __init__(self, path: str, line: int | None, message: str) -> None:
        self.path, self.line, self.message = str(path), line, message
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {message}")


@dataclass
class Collected:
    """What a reader found in one file: its rows, and remarks that are no pins (``overridePins``...)."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    notes: list[dict[str, Any]] = field(default_factory=list)

    def pin(self, domain: str, include_subdomains: bool, pin: str | None, kind: str | None,
            expiry: dt.date | None, backup: bool | None, source: str, line: int | None, fmt: str) -> None:
        """One row; ``pin`` None marks a rule without pins."""
        self.rows.append(dict(zip(POLICY_COLUMNS, (domain, include_subdomains, pin, kind, expiry, backup,
                                                   source, line, fmt), strict=True)))

    def note(self, source: str, line: int | None, domain: str, check: str, message: str) -> None:
        """A remark for ``pins lint`` (a pin-bypassing trust anchor, a debug override...)."""
        self.notes.append({"source": source, "line": line, "domain": domain, "check": check, "message": message})


def frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """The rows as the policy table, with its dtypes even when empty."""
    df = pd.DataFrame(rows, columns=list(POLICY_COLUMNS))
    df["include_subdomains"] = df["include_subdomains"].astype(bool)
    for col in ("domain", "pin", "kind", "expiry", "backup", "source", "format"):
        df[col] = df[col].astype(object).where(df[col].notna(), None)
    df["line"] = df["line"].astype("Int64")
    return df


def normalise_domain(raw: str, path: str, line: int | None) -> str:
    """Lowercase IDNA A-label without the trailing dot; a name that is no host name is an error."""
    name = raw.strip().rstrip(".").lower()
    if not name:
        raise PolicyError(path, line, "empty domain name")
    try:
        name = name.encode("idna").decode("ascii") if not name.isascii() else name
    except UnicodeError:
        raise PolicyError(path, line, f"domain {raw.strip()[:80]!r} is not a valid host name") from None
    labels = name.split(".")
    if len(name) > 253 or any(not lab or len(lab) > 63 for lab in labels) or not all(
            c.isalnum() or c in "-_" for lab in labels for c in lab):
        raise PolicyError(path, line, f"domain {raw.strip()[:80]!r} is not a valid host name")
    return name


def pin_problem(pin: str | None, kind: str | None) -> str | None:
    """Why a pin is malformed (bad base64, not 32 bytes), or None; ``cert`` pins are hex SHA-256."""
    if pin is None:
        return None
    if kind == "cert":
        if len(pin) != 2 * DIGEST_BYTES or any(c not in "0123456789abcdef" for c in pin):
            return f"certificate hash {pin[:80]!r} is not 64 hex digits (SHA-256)"
        return None
    try:
        raw = base64.b64decode(pin, validate=True)
    except (binascii.Error, ValueError):
        return f"pin {pin[:80]!r} is not valid base64"
    if len(raw) != DIGEST_BYTES:
        return f"pin {pin[:80]!r} decodes to {len(raw)} bytes, not the 32 of a SHA-256"
    return None


def strip_sha256(raw: str) -> str:
    """An OkHttp-style ``sha256/...`` pin as plain base64 (other text unchanged, stripped)."""
    text = raw.strip()
    return text[len("sha256/"):] if text.lower().startswith("sha256/") else text


def hex_hash(raw: str) -> str:
    """Envoy's certificate hash (``AB:CD...`` or ``abcd...``) as 64 lowercase hex digits."""
    return raw.strip().replace(":", "").lower()


def parse_date(raw: object, path: str, line: int | None, what: str = "expiration") -> dt.date:
    """A ``yyyy-MM-dd`` date (Android's, TrustKit's and our own form), or a one-line error."""
    if isinstance(raw, dt.datetime):
        return raw.date()
    if isinstance(raw, dt.date):
        return raw
    try:
        return dt.date.fromisoformat(str(raw).strip())
    except ValueError:
        raise PolicyError(path, line, f"{what} {str(raw)[:40]!r} is not a yyyy-MM-dd date") from None
