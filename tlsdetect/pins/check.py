"""Report-only pinning: which observed connections a pin set would have rejected. Pure: tables in, tables out.

Per row whose server name a rule governs, one status per policy file (each file is one client's
config; :func:`tlsdetect.pins.policy.match_rules` picks the file's most specific rule, and OkHttp's
matching patterns are united, as its ``CertificatePinner`` does):

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

Rows no rule governs are left out; a row governed by two files has two rows (``source``).
Everything is computed once per distinct (name, chain) pair.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from tlsdetect.detect.columns import raw_column
from tlsdetect.pins.chains import Chain, chain_facts, hidden_reason, host_names
from tlsdetect.pins.policy import match_rules, pin_sets

__all__ = ["CHECK_COLUMNS", "STATUSES", "CheckReport", "PairVerdicts", "Rule", "chain_matches", "check",
           "governing_rules", "pair_verdicts"]

STATUSES = ("violation", "hidden", "match", "expired", "unpinned")
#: One row per governed connection.
CHECK_COLUMNS = ("row", "ts", "sni", "client_ip", "server_ip", "server_port", "domain", "source", "status", "reason",
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


def governing_rules(policies: pd.DataFrame, hosts: pd.Series) -> dict[str, list[Rule]]:
    """Per host the rules that govern it, one per policy file (:func:`tlsdetect.pins.policy.match_rules`:
    the most specific rule of the file; OkHttp's matching patterns united into one)."""
    sets = pin_sets(policies)
    matched = match_rules(sets, hosts)
    out: dict[str, list[Rule]] = {}
    for host, grp in matched.groupby("host", sort=False):
        for _source, rules in sets.loc[grp["rule"].tolist()].groupby("source", sort=False):
            domains = [str(d) for d in rules["domain"].tolist()]
            expiries = [e for e in rules["expiry"].tolist() if e is not None and not pd.isna(e)]
            out.setdefault(str(host), []).append(Rule(
                domain=max(domains, key=len), source=str(_source),
                pins=pd.DataFrame(sorted(set().union(*rules["pins"].tolist())), columns=["pin", "kind"]),
                expiry=min(expiries) if expiries else None))
    return out


@dataclass(frozen=True)
class Rule:
    """What one policy file applies to a host: its governing domain, pins (``pin``, ``kind``) and expiry."""

    domain: str
    source: str
    pins: pd.DataFrame
    expiry: dt.date | None


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


@dataclass(frozen=True)
class PairVerdicts:
    """The check before it is spread over rows: ``governed`` rows, ``pair`` (each governed row's (name, chain)
    pair) and ``verdicts`` (``pair`` plus the :func:`_verdict` fields, one row per pair and governing file)."""

    governed: npt.NDArray[np.int64]
    pair: npt.NDArray[np.int64]
    verdicts: pd.DataFrame


def pair_verdicts(policies: pd.DataFrame, df: pd.DataFrame, *, today: dt.date | None = None) -> PairVerdicts:
    """Each distinct (server name, chain) pair judged once, by every policy file that governs the name."""
    today = today or dt.datetime.now(dt.UTC).date()
    hosts = host_names(df).reset_index(drop=True)
    rules_of = governing_rules(policies, hosts)
    facts = chain_facts(df)
    governed = np.flatnonzero(hosts.isin(list(rules_of)).to_numpy(dtype=bool)).astype(np.int64)
    pair_codes, _ = pd.factorize(pd.MultiIndex.from_arrays([hosts.iloc[governed].to_numpy(dtype=object),
                                                            facts.codes[governed]]))
    inverse = np.asarray(pair_codes, dtype=np.int64)
    first = np.unique(inverse, return_index=True)[1]  # the first governed row of each (name, chain) pair
    verdicts: list[dict[str, Any]] = []
    for k in range(len(first)):
        row = int(governed[first[k]])
        host, code = str(hosts.iloc[row]), int(facts.codes[row])
        for rule in rules_of[host]:
            verdicts.append({"pair": k, **_verdict(rule, facts.chains[code] if code >= 0 else None, today)})
    per = pd.DataFrame(verdicts, columns=["pair", "domain", "source", "status", "reason", "observed", "issuer",
                                          "subject", "root_sent", "matched", "expected"])
    return PairVerdicts(governed, inverse, per)


def check(policies: pd.DataFrame, df: pd.DataFrame, *, today: dt.date | None = None) -> CheckReport:
    """Check every connection of ``df`` (a connections table) against the policy table ``policies``."""
    pv = pair_verdicts(policies, df, today=today)
    order = pd.DataFrame({"row": pv.governed, "pair": pv.pair})
    out = order.merge(pv.verdicts, on="pair", how="inner", sort=False).drop(columns="pair")
    out = out.sort_values(["row", "source"], kind="stable").reset_index(drop=True)
    rows = out["row"].to_numpy(dtype=np.int64)
    out["ts"] = raw_column(df, "ts").iloc[rows].to_numpy()  # as it is: per-row text costs seconds per million
    for col in ("sni", "client_ip", "server_ip", "server_port"):
        out[col] = raw_column(df, col).iloc[rows].to_numpy(dtype=object)
    hid = ((out["status"] == "hidden") & out["reason"].isna()).to_numpy(dtype=bool)
    out.loc[hid, "reason"] = hidden_reason(df)[rows[hid]]
    out = out[list(CHECK_COLUMNS)]
    return CheckReport(out, _domain_counts(out), _pin_table(policies, out))


def _verdict(rule: Rule, chain: Chain | None, today: dt.date) -> dict[str, Any]:
    """One rule's status for one chain (None: no chain visible)."""
    pins = rule.pins
    expected = " ".join(f"{kd}:{p}" for p, kd in zip(pins["pin"], pins["kind"], strict=True))
    v: dict[str, Any] = {"domain": rule.domain, "source": rule.source, "expected": expected or None,
                         "observed": None, "issuer": None, "subject": None, "root_sent": None, "matched": None,
                         "reason": None}
    if not len(pins):
        return {**v, "status": "unpinned"}
    if rule.expiry is not None and rule.expiry < today:
        return {**v, "status": "expired", "reason": f"pin set expired {rule.expiry.isoformat()}"}
    if chain is None:
        return {**v, "status": "hidden"}  # the reason is the row's (hidden_reason)
    found = chain_matches(pins, chain)
    v.update(observed=chain.describe(), issuer=chain.leaf_issuer, subject=chain.subjects[0],
             root_sent=_root_sent(chain) if not chain.partial else None)
    if found:
        return {**v, "status": "match", "matched": " ".join(f"{kd}:{p}@{i}" for p, kd, i in found)}
    if chain.partial and (pins["kind"] != "leaf").any():
        return {**v, "status": "hidden", "reason": "leaf_only"}
    return {**v, "status": "violation"}


def _domain_counts(out: pd.DataFrame) -> pd.DataFrame:
    counts = pd.crosstab(out["domain"], pd.Categorical(out["status"], categories=list(STATUSES)), dropna=False)
    counts = counts.reindex(columns=list(STATUSES), fill_value=0)
    counts.columns = list(STATUSES)
    return counts.reset_index().rename(columns={"index": "domain"})


def _pin_table(policies: pd.DataFrame, out: pd.DataFrame) -> pd.DataFrame:
    """Per pin of the policies, the connections it matched (under its own file's governing rule)."""
    pins = policies[policies["pin"].notna()][["domain", "pin", "kind", "backup", "source", "line"]].copy()
    hits = out.loc[out["status"] == "match", ["source", "matched"]].value_counts(sort=False)  # distinct first
    counted: dict[tuple[str, str, str], int] = {}
    for (source, matched), n in zip(hits.index.tolist(), hits.tolist(), strict=True):
        for token in {t.rsplit("@", 1)[0] for t in str(matched).split()}:
            kind, _, pin = token.partition(":")
            counted[(str(source), pin, kind)] = counted.get((str(source), pin, kind), 0) + int(n)
    pins["matched"] = [counted.get((str(s), str(p), str(k)), 0)
                       for s, p, k in zip(pins["source"], pins["pin"], pins["kind"], strict=True)]
    return pins.reset_index(drop=True)
