"""The policy table every pin-set format reads into, and which rule governs a host name.

``read_policies(paths)`` sniffs each file's content (not only its name) and hands it to one reader;
the result has :data:`POLICY_COLUMNS`, one row per (rule, pin):

* ``domain``: lowercase IDNA A-label, no trailing dot; ``""`` with ``include_subdomains`` is "every
  host" (an Envoy context with no SNI: its pins apply to whatever it connects to).
* ``pin``: base64 of the SHA-256 of the DER SubjectPublicKeyInfo (Android, iOS, OkHttp, TrustKit
  form), except ``kind == "cert"``: Envoy's ``verify_certificate_hash`` hashes the whole leaf
  certificate, kept as 64 lowercase hex digits. ``pin`` None: a rule with no pins, which matters
  because it *replaces* a broader pinned rule for its hosts.
* ``kind``: ``leaf`` (matches the leaf only), ``ca`` (any CA of the chain), ``any`` (any certificate
  of the chain, as Android, OkHttp and TrustKit match), ``cert`` (leaf certificate hash).
* ``expiry`` ``datetime.date`` or None; ``backup`` True/False, None where the format cannot say;
  ``source`` the file, ``line`` 1-based (None in binary plists), ``format`` the reader's name.

Remarks that are no pins (Android ``overridePins``, ``<debug-overrides>``) are in
``df.attrs["notes"]``, the files read in ``df.attrs["sources"]``; ``pins lint`` reports both.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from tlsdetect.pins import android_nsc, envoy_tls, ios_plist, pinfile, trustkit
from tlsdetect.pins.rows import POLICY_COLUMNS, Collected, PolicyError, frame, pin_problem

__all__ = ["POLICY_COLUMNS", "RULE_KEYS", "PolicyError", "covers", "covers_many", "match_rules", "most_specific",
           "pin_sets", "read_policies", "sniff"]

#: What makes a rule: a file's (format's) domain with or without its subdomains.
RULE_KEYS = ["source", "format", "domain", "include_subdomains"]
#: Formats whose clients take the union of every matching rule's pins (the others: the most specific rule).
UNION_FORMATS = frozenset({"okhttp"})

#: A policy file larger than this is no policy file (and would cost memory to parse).
MAX_BYTES = 8 * 1024 * 1024


def sniff(data: bytes) -> str:
    """The reader for a file's content: the format name, or ``""`` when none recognises it."""
    head = data[:4096].lstrip(b"\xef\xbb\xbf \t\r\n")
    if head.startswith(b"bplist00"):
        return "ios"
    if head.startswith(b"<"):
        if b"<network-security-config" in data[:65536]:
            return "android"
        if b"<plist" in data[:65536]:
            return "ios"
        return ""
    first = next((ln.strip() for ln in head.splitlines() if ln.strip() and not ln.lstrip().startswith(b"#")), b"")
    if first.split()[:1] == [pinfile.MAGIC.encode()]:
        return "tlsdetect"
    if b"verify_certificate_spki" in data or b"verify_certificate_hash" in data:
        return "envoy"
    if b"TSKPinnedDomains" in data or b"okhttp" in data:
        return "trustkit"
    return ""


READERS: dict[str, Callable[[str, bytes], Collected]] = {
    "android": android_nsc.read, "ios": ios_plist.read, "trustkit": trustkit.read, "envoy": envoy_tls.read,
    "tlsdetect": pinfile.read,
}


def _read_one(path: str) -> Collected:
    p = Path(path)
    try:
        size = p.stat().st_size
        if size > MAX_BYTES:
            raise PolicyError(path, None, f"{size} bytes: larger than the {MAX_BYTES} a policy file may have")
        data = p.read_bytes()
    except OSError as exc:
        raise PolicyError(path, None, f"cannot read: {exc.strerror or exc}") from None
    reader = READERS.get(sniff(data))
    if reader is not None:
        return reader(path, data)
    raise PolicyError(path, None, "not a pin policy this tool reads (Android network security config, iOS "
                                  "Info.plist, TrustKit/OkHttp JSON or YAML, Envoy YAML, tlsdetect-pins)")


def read_policies(paths: Iterable[str | Path], *, strict: bool = True) -> pd.DataFrame:
    """Every file's pins in one table; ``strict`` also raises on a malformed pin (``lint`` lists them)."""
    rows: list[dict[str, Any]] = []
    notes: list[dict[str, Any]] = []
    sources: list[str] = []
    for path in paths:
        sources.append(str(path))
        got = _read_one(str(path))
        if strict:
            for r in got.rows:
                problem = pin_problem(r["pin"], r["kind"])
                if problem:
                    raise PolicyError(r["source"], r["line"], problem)
        rows += got.rows
        notes += got.notes
    df = frame(rows)
    df.attrs["notes"] = notes
    df.attrs["sources"] = sources
    return df


def _norm_host(host: str) -> str:
    return host.strip().rstrip(".").lower()


def covers(rule_domain: str, include_subdomains: bool, host: str) -> bool:
    """Whether a rule applies to a host: the same name, or a name under it when ``include_subdomains``.

    This is the match of Android (``<domain includeSubdomains>``), iOS (``NSIncludesSubdomains``),
    TrustKit (``TSKIncludeSubdomains``) and, widened, OkHttp (``*.`` one label, ``**.`` any depth and
    the name itself: both read as include_subdomains). Which of several matching rules wins is
    :func:`most_specific`'s job.
    """
    name, rule = _norm_host(host), rule_domain.lower()
    if name == rule:
        return True
    if not include_subdomains:
        return False
    return rule == "" or name.endswith("." + rule)


def covers_many(rule_domain: str, include_subdomains: bool, hosts: pd.Series) -> pd.Series:
    """:func:`covers` for a column of SNIs, computed once per distinct name; missing names are False."""
    uniq = pd.unique(hosts.dropna())
    hit = {h: covers(rule_domain, include_subdomains, str(h)) for h in uniq}
    return hosts.map(hit).fillna(False).astype(bool)


def most_specific(rules: pd.DataFrame, hosts: pd.Series) -> pd.Series:
    """Per host, the index label of the rule that governs it (the longest matching domain), else NA.

    ``rules`` has ``domain`` and ``include_subdomains`` (one row per rule: drop the pin columns'
    duplicates first). Android resolves a host to the most specific matching ``domain-config`` (an
    exact ``<domain>`` beats an ``includeSubdomains`` parent); iOS ATS and TrustKit likewise apply
    the most specific pinned domain. OkHttp is the exception: its ``CertificatePinner`` takes the
    union of every matching pattern's pins, so for ``format == "okhttp"`` rules use
    :func:`covers_many` on each rule instead.
    """
    keyed = rules[["domain", "include_subdomains"]]
    uniq = pd.unique(hosts.dropna())
    best: dict[Any, Any] = {}
    for h in uniq:
        choice, length = pd.NA, -1
        for label, domain, subs in keyed.itertuples(index=True, name=None):
            if covers(str(domain), bool(subs), str(h)):
                score = len(str(domain)) * 2 + (1 if _norm_host(str(h)) == domain else 0)
                if score > length:
                    choice, length = label, score
        best[h] = choice
    return hosts.map(best)


def pin_sets(policy: pd.DataFrame) -> pd.DataFrame:
    """One row per rule: :data:`RULE_KEYS`, ``pins`` (frozenset of (pin, kind); empty for a rule
    without pins), ``expiry`` (the earliest) and ``line`` (the first)."""
    rows = []
    for key, grp in policy.groupby(RULE_KEYS, sort=False, dropna=False):
        pinned = grp[grp["pin"].notna()]
        expiry = grp["expiry"].dropna()
        rows.append({**dict(zip(RULE_KEYS, key, strict=True)),
                     "pins": frozenset(zip(pinned["pin"], pinned["kind"], strict=True)),
                     "expiry": min(expiry) if len(expiry) else None, "line": grp["line"].min()})
    return pd.DataFrame(rows, columns=[*RULE_KEYS, "pins", "expiry", "line"])


def match_rules(sets: pd.DataFrame, hosts: pd.Series) -> pd.DataFrame:
    """Which rules of :func:`pin_sets` govern each host, long form (``host``, ``rule`` = index label).

    Per file: the most specific matching rule (Android, iOS, TrustKit, Envoy, tlsdetect-pins), or
    every matching rule for OkHttp, whose ``CertificatePinner`` unions their pins. A host no rule
    covers has no row; hosts are matched once per distinct name.
    """
    pairs: list[tuple[str, Any]] = []
    uniq = [str(h) for h in pd.unique(hosts.dropna())]
    for (_source, fmt), grp in sets.groupby(["source", "format"], sort=False):
        if fmt in UNION_FORMATS:
            for label, domain, subs in grp[["domain", "include_subdomains"]].itertuples(index=True, name=None):
                pairs += [(h, label) for h in uniq if covers(str(domain), bool(subs), h)]
            continue
        best = most_specific(grp, pd.Series(uniq, dtype=object))
        pairs += [(h, label) for h, label in zip(uniq, best, strict=True) if not pd.isna(label)]
    return pd.DataFrame(pairs, columns=["host", "rule"])
