"""Is a pin set safe to ship? The checks of ``tlsdetect pins lint``, on the policy table alone.

HPKP taught two lessons: a pin set without a tested backup pin bricks clients when a key rotates,
and pins must expire. Errors (exit status 1) are what would break or already broke clients:

* ``malformed``: a pin that is not base64 of 32 bytes (or an Envoy hash that is not 64 hex digits);
* ``duplicate``: the same pin twice in one rule (a backup that is no backup);
* ``no_backup``: fewer than two distinct pins; with observed certificates, no pin outside every
  observed chain (RFC 7469 section 4.3: the backup is the pin the current chain does not carry);
  in tlsdetect's own format, no pin marked ``backup``;
* ``expired``: the expiry is past (Android then silently stops pinning).

Warnings are risks: ``expiring`` (within ``days``), ``no_expiry`` (the HPKP failure mode; iOS,
OkHttp and Envoy cannot even say one), ``leaf_only`` (no CA pin survives a certificate renewal
with a new key), ``overlap`` (a narrower rule replaces a broader one's pins for its hosts, as
Android, iOS and TrustKit apply only the most specific rule; OkHttp unions, so never there),
``override_pins`` (a trust anchor that bypasses pins), ``no_pins`` (a file that pins nothing),
``backup_in_use`` (a pin marked backup is already in an observed chain). Infos: ``report_only``,
``debug_overrides``, ``client_pins``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pandas as pd

from tlsdetect.pins.policy import RULE_KEYS, UNION_FORMATS, covers
from tlsdetect.pins.rows import pin_problem

FINDING_COLUMNS = ("severity", "check", "source", "line", "domain", "message")
NOTE_SEVERITY = {"override_pins": "warning", "report_only": "info", "debug_overrides": "info",
                 "client_pins": "info"}
SEVERITY_ORDER = {"error": 0, "warning": 1, "info": 2}


def unobserved_pins(pins: set[str], observed: set[str]) -> set[str]:
    """The pins no observed chain carries: per RFC 7469, the candidates for backup pins."""
    return pins - observed


def _finding(severity: str, check: str, rule: Any, line: Any, message: str) -> dict[str, Any]:
    return {"severity": severity, "check": check, "source": rule["source"],
            "line": None if pd.isna(line) else int(line), "domain": rule["domain"] or "*", "message": message}


def _rule_findings(rule: pd.Series, rows: pd.DataFrame, today: dt.date, days: int,
                   observed: set[str] | None, bad: dict[tuple[Any, Any], str | None]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    first = rows["line"].min()
    pinned = rows[rows["pin"].notna()]
    if pinned.empty:
        return out
    valid = pinned[[bad[(p, k)] is None for p, k in zip(pinned["pin"], pinned["kind"], strict=True)]]
    for p, k, line in zip(pinned["pin"], pinned["kind"], pinned["line"], strict=True):
        if bad[(p, k)] is not None:
            out.append(_finding("error", "malformed", rule, line, str(bad[(p, k)])))
    dup = valid[valid["pin"].duplicated()]
    for p, line in zip(dup["pin"], dup["line"], strict=True):
        out.append(_finding("error", "duplicate", rule, line, f"pin {p} appears more than once"))
    distinct = set(valid["pin"])
    if len(distinct) < 2:
        out.append(_finding("error", "no_backup", rule, first,
                            f"{len(distinct)} distinct valid pin(s): a key rotation would lock clients out"))
    elif observed is not None and not unobserved_pins(distinct, observed):
        out.append(_finding("error", "no_backup", rule, first,
                            "every pin is in an observed chain: no backup pin (RFC 7469 section 4.3)"))
    marks = pinned["backup"].dropna()
    if len(distinct) >= 2 and not marks.empty and not marks.astype(bool).any():
        out.append(_finding("error", "no_backup", rule, first, "no pin is marked backup"))
    if observed is not None:
        for p, line in zip(pinned.loc[pinned["backup"].eq(True), "pin"], pinned.loc[pinned["backup"].eq(True), "line"],
                           strict=True):
            if p in observed:
                out.append(_finding("warning", "backup_in_use", rule, line,
                                    f"backup pin {p} is already in an observed chain"))
    expiry = rows["expiry"].dropna()
    if expiry.empty:
        out.append(_finding("warning", "no_expiry", rule, first,
                            "no expiry: pins that never expire are the HPKP failure mode"))
    else:
        when = min(expiry)
        if when < today:
            out.append(_finding("error", "expired", rule, first, f"expired on {when.isoformat()}"))
        elif (when - today).days <= days:
            out.append(_finding("warning", "expiring", rule, first,
                                f"expires on {when.isoformat()}, in {(when - today).days} day(s)"))
    if set(valid["kind"]) and set(valid["kind"]) <= {"leaf", "cert"}:
        out.append(_finding("warning", "leaf_only", rule, first,
                            "only leaf pins: a renewal with a new key breaks them; add a CA pin"))
    return out


def _overlaps(rules: pd.DataFrame, pins_of: dict[tuple[Any, ...], set[str]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    broad = rules[rules["include_subdomains"] & ~rules["format"].isin(UNION_FORMATS)]
    for _, wide in broad.iterrows():
        wide_pins = pins_of[tuple(wide[RULE_KEYS])]
        if not wide_pins:
            continue
        same = rules[(rules["source"] == wide["source"]) & (rules["domain"] != wide["domain"])]
        for _, narrow in same.iterrows():
            if not covers(wide["domain"], True, narrow["domain"]):
                continue
            lost = wide_pins - pins_of[tuple(narrow[RULE_KEYS])]
            if lost:
                out.append(_finding("warning", "overlap", narrow, narrow["line"],
                                    f"narrower rule drops {len(lost)} of the {len(wide_pins)} pins of "
                                    f"{wide['domain'] or '*'} (with subdomains) for its hosts"))
    return out


def lint(policy: pd.DataFrame, *, today: dt.date, days: int = 30,
         observed: set[str] | None = None) -> pd.DataFrame:
    """Every finding, errors first; ``observed`` is the set of SPKI pins (and cert hashes) seen in traffic."""
    found: list[dict[str, Any]] = []
    bad = {(p, k): pin_problem(p, k) for p, k in set(zip(policy["pin"], policy["kind"], strict=True))}
    groups = policy.groupby(RULE_KEYS, sort=False, dropna=False)
    rules = groups["line"].min().reset_index()
    pins_of: dict[tuple[Any, ...], set[str]] = {}
    for key, rows in groups:
        rule = dict(zip(RULE_KEYS, key, strict=True))
        pins_of[tuple(key)] = set(rows["pin"].dropna())
        found += _rule_findings(pd.Series(rule), rows, today, days, observed, bad)
    found += _overlaps(rules, pins_of)
    pinning = set(policy.loc[policy["pin"].notna(), "source"])
    for source in policy.attrs.get("sources", []):
        if source not in pinning:
            found.append({"severity": "warning", "check": "no_pins", "source": source, "line": None, "domain": "*",
                          "message": "no pins in this file: nothing is pinned"})
    for note in policy.attrs.get("notes", []):
        found.append({"severity": NOTE_SEVERITY.get(note["check"], "warning"), "check": note["check"],
                      "source": note["source"], "line": note["line"], "domain": note["domain"] or "*",
                      "message": note["message"]})
    df = pd.DataFrame(found, columns=list(FINDING_COLUMNS))
    df["line"] = df["line"].astype("Int64")
    order = df["severity"].map(SEVERITY_ORDER)
    return df.assign(_o=order).sort_values(["_o", "source", "line"], kind="stable").drop(columns="_o") \
        .reset_index(drop=True)
