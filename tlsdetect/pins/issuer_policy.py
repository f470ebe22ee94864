"""Issuer policies: per server name, which CAs may issue its certificates (issue 20, item 5a).

Where a pin does not fit (a certificate renewed every few weeks by an ACME CA, a name behind a CDN),
the pinning guidance's other control is to restrict the issuer: the same idea as a cert-manager
issuer restricted by an admission policy, applied here to what the network sees. The file::

    tlsdetect-issuers 1
    # name PATTERN: a host name, '*.example.com' (every name under it, any depth, not itself) or '*'
    name api.example.com
    name *.example.com
    issuer CN=Example Issuing CA 1,O=Example,C=US
    ca-spki r/mIkG3eEpVdm+u/ko/cwxzOMo1bk4TyHIlByibiA5E=

``name`` lines open a rule (several in a row share it); ``issuer`` lines allow a DN (compared in the
canonical form of :func:`tlsdetect.detect.issuers.dn_key`, so any tool's printing matches);
``ca-spki`` lines allow a CA key (a CA certificate of the chain with that SPKI pin: the chain must be
visible). A connection breaks the rule when its leaf's issuer is none of the allowed DNs and no CA of
its chain has an allowed key; without the issuer and the chain it is not judged. The most specific
pattern governs a name (exact beats ``*.``, longer beats shorter). Pure apart from :func:`read_issuer_policy`.
"""

from __future__ import annotations

import base64
import binascii
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd

from tlsdetect.detect.columns import Unique, raw_column, text_column
from tlsdetect.detect.issuers import dn_key
from tlsdetect.pins.chains import chain_facts, host_names
from tlsdetect.pins.rows import PolicyError

__all__ = ["ISSUER_RULE_COLUMNS", "MAGIC", "issuer_violations", "parse_issuer_policy", "read_issuer_policy"]

MAGIC = "tlsdetect-issuers"
#: One row per (rule, allowance): ``pattern``, ``what`` (``issuer``/``ca-spki``), ``value`` (the DN's key or the
#: pin), ``text`` (as written), ``source``, ``line``.
ISSUER_RULE_COLUMNS = ("pattern", "what", "value", "text", "source", "line")
MAX_BYTES = 1024 * 1024


def _pattern(raw: str, path: str, n: int) -> str:
    p = raw.strip().rstrip(".").lower()
    body = p[2:] if p.startswith("*.") else p
    if p != "*" and (not body or not all(ch.isalnum() or ch in "-_." for ch in body) or ".." in body):
        raise PolicyError(path, n, f"{raw[:60]!r} is not a host name, '*.NAME' or '*'")
    return p


def parse_issuer_policy(text: str, path: str = "<text>") -> pd.DataFrame:
    """The rules of one ``tlsdetect-issuers 1`` text; a line that fits no rule is a one-line :class:`PolicyError`."""
    rows: list[tuple[str, str, str, str, str, int]] = []
    patterns: list[str] = []
    opened = False  # a name line opened the rule the next allowances belong to
    seen_magic = False
    for n, line in enumerate(text.splitlines(), 1):
        words = line.split("#", 1)[0].split(None, 1)
        if not words:
            continue
        if not seen_magic:
            if words != [MAGIC, "1"] and " ".join(words) != f"{MAGIC} 1":
                raise PolicyError(path, n, f"the first line must be '{MAGIC} 1'")
            seen_magic = True
            continue
        word, rest = words[0], (words[1].strip() if len(words) > 1 else "")
        if word == "name":
            patterns = patterns if opened else []
            patterns.append(_pattern(rest, path, n))
            opened = True
            continue
        if word not in ("issuer", "ca-spki") or not rest:
            raise PolicyError(path, n, "expected 'name PATTERN', 'issuer DN' or 'ca-spki PIN'")
        if not patterns:
            raise PolicyError(path, n, f"'{word}' before any 'name' line")
        opened = False
        if word == "issuer":
            key = dn_key(rest)
            if key is None:
                raise PolicyError(path, n, f"{rest[:60]!r} is not a distinguished name")
            value = key
        else:
            value = rest.removeprefix("sha256/")
            try:
                ok = len(base64.b64decode(value, validate=True)) == 32
            except (binascii.Error, ValueError):
                ok = False
            if not ok:
                raise PolicyError(path, n, "a CA pin is the base64 SHA-256 of its SubjectPublicKeyInfo (44 characters)")
        rows += [(p, word, value, rest, path, n) for p in patterns]
    if not seen_magic:
        raise PolicyError(path, None, f"empty: the first line must be '{MAGIC} 1'")
    return pd.DataFrame(rows, columns=list(ISSUER_RULE_COLUMNS))


def read_issuer_policy(paths: list[str]) -> pd.DataFrame:
    """Every file's rules in one table (files read here; the parsing is :func:`parse_issuer_policy`)."""
    frames = []
    for path in paths:
        p = Path(path)
        try:
            if p.stat().st_size > MAX_BYTES:
                raise PolicyError(path, None, f"larger than the {MAX_BYTES} bytes an issuer policy may have")
            text = p.read_text(encoding="utf-8")
        except (OSError, UnicodeError) as exc:
            raise PolicyError(path, None, f"cannot read: {exc}") from None
        frames.append(parse_issuer_policy(text, path))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(ISSUER_RULE_COLUMNS))


def _governing(patterns: list[str], host: str) -> str | None:
    best, rank = None, -1
    for p in patterns:
        if p == host:
            score = 2 * len(p) + 1
        elif p == "*":
            score = 0
        elif p.startswith("*.") and host.endswith(p[1:]):
            score = 2 * len(p)
        else:
            continue
        if score > rank:
            best, rank = p, score
    return best


def issuer_violations(rules: pd.DataFrame, df: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``df`` that break their name's issuer rule: ``row``, ``pattern``, ``issuer``, ``observed``
    (issuer DN and the chain's CA pins) and ``expected`` (the allowed DNs and keys, as written)."""
    out_cols = ["row", "pattern", "issuer", "observed", "expected"]
    if not len(rules) or not len(df):
        return pd.DataFrame(columns=out_cols)
    hosts = Unique(host_names(df))
    issuers = Unique(raw_column(df, "server_issuer"))
    issuer_keys = [dn_key(str(v)) for v in issuers.values.tolist()]
    facts = chain_facts(df)
    patterns = list(dict.fromkeys(rules["pattern"]))
    allowed = {p: (set(g.loc[g["what"] == "issuer", "value"]), set(g.loc[g["what"] == "ca-spki", "value"]),
                   "; ".join(f"{w} {t}" for w, t in zip(g["what"], g["text"], strict=True)))
               for p, g in rules.groupby("pattern", sort=False)}
    rule_of = [_governing(patterns, str(h)) for h in hosts.values.tolist()]
    combo = pd.factorize(pd.MultiIndex.from_arrays([hosts.codes, issuers.codes, facts.codes]))[0]
    uniq, first = np.unique(combo, return_index=True)
    bad = np.zeros(len(uniq), dtype=bool)
    for k, row in enumerate(first.tolist()):
        h, i, c = int(hosts.codes[row]), int(issuers.codes[row]), int(facts.codes[row])
        rule = rule_of[h] if h >= 0 else None
        if rule is None or (i < 0 and c < 0):
            continue
        dns, keys, _ = allowed[rule]
        ok_dn = i >= 0 and issuer_keys[i] in dns
        ok_key = c >= 0 and bool(keys.intersection(s for s in facts.chains[c].spkis[1:] if s))
        bad[k] = not (ok_dn or ok_key)
    rows: npt.NDArray[np.int64] = np.flatnonzero(bad[np.searchsorted(uniq, combo)])
    if not len(rows):
        return pd.DataFrame(columns=out_cols)
    pats = [rule_of[int(hosts.codes[r])] for r in rows]
    chains = [facts.chains[int(facts.codes[r])].describe() if facts.codes[r] >= 0 else None for r in rows]
    issuer_text = text_column(df, "server_issuer").iloc[rows].to_numpy(dtype=object)
    observed = [f"issuer {i}" + (f"; chain {c}" if c else "") for i, c in zip(issuer_text, chains, strict=True)]
    return pd.DataFrame({"row": rows, "pattern": pats, "issuer": issuer_text, "observed": observed,
                         "expected": [allowed[str(p)][2] for p in pats]})
