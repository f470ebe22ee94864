"""Report-only pinning: which observed connections a pin set would have rejected. Pure: tables in, tables out.

Per row whose server name a pinned rule governs (:func:`tlsdetect.pins.policy.most_specific`; OkHttp
rules unite the pins of every matching pattern, as its ``CertificatePinner`` does), one status:

* ``match``: a pin of the rule is in the chain: a ``leaf`` pin on the leaf, a ``ca`` pin on a CA
  certificate (any but the leaf), an ``any`` pin anywhere, a ``cert`` pin (Envoy's
  ``verify_certificate_hash``) is the leaf certificate's SHA-256;
* ``violation``: the chain was seen whole and no pin is in it: the client would reject it. A root the
  server does not send is not on the wire, so a pin on a root only matches where the server sends it
  (the report says whether the chain ends in a self-signed certificate: ``root_sent``);
* ``hidden``: no chain visible (``reason``: ``tls13_encrypted``, ``resumed``, ``truncated``,
  ``incomplete``, ``not_in_source``), or only the leaf logged and no leaf pin matched
  (``leaf_only``): counted, never assumed clean;
* ``expired``: the rule's ``expiry`` is before the check date: Android and the other platforms fall back
  to ordinary validation, so nothing is rejected; counted apart;
* ``unpinned``: the governing rule has no pins (it exempts the name from a broader rule).

Rows no rule governs are left out. Everything is computed once per distinct (name, chain) pair.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from tlsdetect.detect.columns import text_column
from tlsdetect.pins.chains import Chain, chain_facts, hidden_reason, host_names
from tlsdetect.pins.policy import covers, most_specific

__all__ = ["CHECK_COLUMNS", "STATUSES", "CheckReport", "chain_matches", "check", "governing_rules"]

STATUSES = ("violation", "hidden", "match", "expired", "unpinned")
#: One row per governed connection.
CHECK_COLUMNS = ("row", "ts", "sni", "client_ip", "server_ip", "server_port", "domain", "status", "reason",
                 "observed", "issuer", "subject", "root_sent", "matched", "expected")


@dataclass(frozen=True)
class CheckReport:
    """``connections``: :data:`CHECK_COLUMNS`; ``domains``: per rule domain the count of each status;
    ``pins``: per (domain, pin, kind, backup) how many connections it matched (``matched``)."""

    connections: pd.DataFrame
    domains: pd.DataFrame
    pins: pd.DataFrame

    @property
    def violations(self) -> int:
        return int((self.connections["status"] == "violation").sum())


def governing_rules(policies: pd.DataFrame, hosts: pd.Series) -> tuple[pd.Series, pd.DataFrame]:
    """Per host the governing rule's id (NA: none), and the rules (``rule``, ``domain``,
    ``include_subdomains``, ``expiry``, ``format``), one row each."""
    rules = (policies.drop_duplicates(["domain", "include_subdomains", "format"])
             [["domain", "include_subdomains", "expiry", "format"]].reset_index(drop=True))
    rules.index.name = "rule"
    return most_specific(rules, hosts), rules


def _pins_of(policies: pd.DataFrame, rule: pd.Series, rules: pd.DataFrame, host: str) -> pd.DataFrame:
    """The pins a rule applies to a host (OkHttp: every matching OkHttp pattern's)."""
    pinned = policies[policies["pin"].notna()]
    if rule["format"] == "okhttp":
        okhttp = rules[rules["format"] == "okhttp"]
        keys = [(d, s) for d, s in zip(okhttp["domain"], okhttp["include_subdomains"], strict=True)
                if covers(str(d), bool(s), host)]
        mask = [(d, s) in keys and f == "okhttp" for d, s, f in
                zip(pinned["domain"], pinned["include_subdomains"], pinned["format"], strict=True)]
        chosen: pd.DataFrame = pinned[np.asarray(mask, dtype=bool)] if len(pinned) else pinned
        return chosen
    same = ((pinned["domain"] == rule["domain"]) & (pinned["include_subdomains"] == rule["include_subdomains"])
            & (pinned["format"] == rule["format"]))
    own: pd.DataFrame = pinned[same]
    return own


def chain_matches(pins: pd.DataFrame, chain: Chain) -> list[tuple[str, str, int]]:
    """Each (pin, kind, chain position) of ``pins`` found in the chain, by the kind's rule."""
    found = []
    for pin, kind in zip(pins["pin"], pins["kind"], strict=True):
        if kind == "cert":
            spots = [0] if chain.sha256s and chain.sha256s[0] == str(pin).lower() else []
        else:
            lo = 1 if kind == "ca" else 0
            hi = 1 if kind == "leaf" else len(chain.spkis)
            spots = [i for i in range(lo, hi) if chain.spkis[i] == pin]
        found += [(str(pin), str(kind), i) for i in spots]
    return found


def _root_sent(chain: Chain) -> bool:
    return len(chain.subjects) > 1 and chain.subjects[-1] is not None and chain.subjects[-1] == chain.issuers[-1]


def check(policies: pd.DataFrame, df: pd.DataFrame, *, today: dt.date | None = None) -> CheckReport:
    """Check every connection of ``df`` (a connections table) against the policy table ``policies``."""
    today = today or dt.datetime.now(dt.UTC).date()
    hosts = host_names(df).reset_index(drop=True)
    rule_of, rules = governing_rules(policies, hosts)
    facts = chain_facts(df)
    reasons = hidden_reason(df)
    governed = np.flatnonzero(rule_of.notna().to_numpy(dtype=bool))
    pair_codes, _ = pd.factorize(pd.MultiIndex.from_arrays([hosts.iloc[governed].to_numpy(dtype=object),
                                                            facts.codes[governed]]))
    inverse = np.asarray(pair_codes, dtype=np.int64)
    first = np.unique(inverse, return_index=True)[1]  # the first governed row of each (name, chain) pair
    verdicts: list[dict[str, Any]] = []
    matched_counts: dict[tuple[Any, ...], int] = {}
    for k in range(len(first)):
        row = int(governed[first[k]])
        host, code = str(hosts.iloc[row]), int(facts.codes[row])
        rule = rules.loc[rule_of.iloc[row]]
        pins = _pins_of(policies, rule, rules, host)
        expected = " ".join(f"{kd}:{p}" for p, kd in zip(pins["pin"], pins["kind"], strict=True))
        v: dict[str, Any] = {"domain": rule["domain"], "expected": expected or None, "observed": None,
                             "issuer": None, "subject": None, "root_sent": None, "matched": None, "reason": None}
        expiry = rule["expiry"]
        if not len(pins):
            v["status"] = "unpinned"
        elif expiry is not None and not pd.isna(expiry) and expiry < today:
            v.update(status="expired", reason=f"pin set expired {expiry.isoformat()}")
        elif code < 0:
            v.update(status="hidden", reason=None)  # per row: hidden_reason
        else:
            chain = facts.chains[code]
            found = chain_matches(pins, chain)
            v.update(observed=chain.describe(), issuer=chain.leaf_issuer, subject=chain.subjects[0],
                     root_sent=_root_sent(chain) if not chain.partial else None)
            if found:
                v.update(status="match", matched=" ".join(f"{kd}:{p}@{i}" for p, kd, i in found))
                for p, kd, _ in found:
                    matched_counts[(rule["domain"], p, kd)] = matched_counts.get((rule["domain"], p, kd), 0)
            elif chain.partial and (pins["kind"] != "leaf").any():
                v.update(status="hidden", reason="leaf_only")
            else:
                v.update(status="violation")
        verdicts.append(v)
    per = pd.DataFrame(verdicts, columns=["domain", "status", "reason", "observed", "issuer", "subject",
                                          "root_sent", "matched", "expected"])
    out = per.iloc[inverse].reset_index(drop=True)
    out["row"] = governed
    for col in ("ts", "sni", "client_ip", "server_ip", "server_port"):
        out[col] = text_column(df, col).iloc[governed].to_numpy(dtype=object)
    hid = (out["status"] == "hidden") & out["reason"].isna()
    out.loc[hid, "reason"] = reasons[governed[hid.to_numpy()]]
    out = out[list(CHECK_COLUMNS)]
    # per matched (domain, pin): the number of connections, counted per row not per pair
    for p_key in list(matched_counts):
        domain, pin, kind = p_key
        hit = (out["domain"] == domain) & out["matched"].fillna("").str.contains(f"{kind}:{pin}@", regex=False)
        matched_counts[p_key] = int(hit.sum())
    return CheckReport(out, _domain_counts(out), _pin_table(policies, matched_counts))


def _domain_counts(out: pd.DataFrame) -> pd.DataFrame:
    counts = pd.crosstab(out["domain"], pd.Categorical(out["status"], categories=list(STATUSES)), dropna=False)
    counts = counts.reindex(columns=list(STATUSES), fill_value=0)
    counts.columns = list(STATUSES)
    return counts.reset_index().rename(columns={"index": "domain"})


def _pin_table(policies: pd.DataFrame, matched: dict[tuple[Any, ...], int]) -> pd.DataFrame:
    pins = policies[policies["pin"].notna()][["domain", "pin", "kind", "backup", "source", "line"]].copy()
    pins["matched"] = [matched.get((d, p, k), 0) for d, p, k in zip(pins["domain"], pins["pin"], pins["kind"],
                                                                     strict=True)]
    return pins.reset_index(drop=True)
