"""A pin set to start from, per server name, from the chains the network saw. Pure: a table in, a table out.

Per name: the intermediate's SPKI (the CA that signed the leaf: it survives a leaf renewal) and the
leaf's, each marked, with the connections that showed them. Never a backup pin: a backup is a key
that has never been in any chain (RFC 7469 section 4.3), generated offline and kept off the server,
so no traffic can show it; :func:`pinfile_text` says so in the file it writes.
"""

from __future__ import annotations

import datetime as dt
import re

import pandas as pd

from tlsdetect.pins.chains import chain_facts, host_names

__all__ = ["BACKUP_REMINDER", "SUGGEST_COLUMNS", "pinfile_text", "suggest"]

_HOST = re.compile(r"[a-z0-9_-]+(\.[a-z0-9_-]+)*")
SUGGEST_COLUMNS = ("domain", "kind", "role", "pin", "subject", "connections")
BACKUP_REMINDER = ("no backup pin: generate a backup key offline (openssl genpkey), keep it off the server, and add "
                   "its SPKI pin marked 'backup'; tlsdetect never invents one")


def suggest(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(pins, unseen): per server name its leaf and intermediate SPKIs with connection counts; and the names
    whose connections never showed a chain (``domain``, ``connections``), for which nothing can be suggested."""
    hosts = host_names(df).reset_index(drop=True)
    facts = chain_facts(df)
    rows = []
    named = hosts.notna().to_numpy(dtype=bool)
    pairs = pd.DataFrame({"domain": hosts[named].to_numpy(dtype=object), "chain": facts.codes[named]})
    counted = pairs.value_counts(sort=False).reset_index(name="n")
    for domain, code, n in counted[counted["chain"] >= 0].itertuples(index=False, name=None):
        chain = facts.chains[int(code)]
        if chain.spkis and chain.spkis[0]:
            rows.append((domain, "leaf", "leaf", chain.spkis[0], chain.subjects[0], int(n)))
        if len(chain.spkis) > 1 and chain.spkis[1]:
            rows.append((domain, "ca", "intermediate", chain.spkis[1], chain.subjects[1], int(n)))
    out = pd.DataFrame(rows, columns=list(SUGGEST_COLUMNS))
    out = (out.groupby(["domain", "kind", "role", "pin"], sort=False, dropna=False)
           .agg(subject=("subject", "first"), connections=("connections", "sum")).reset_index())
    out = out.sort_values(["domain", "kind", "connections"], ascending=[True, True, False], kind="stable")
    seen = set(out["domain"])
    unseen = (pairs[~pairs["domain"].isin(seen)].groupby("domain").size().rename("connections").reset_index())
    return out[list(SUGGEST_COLUMNS)].reset_index(drop=True), unseen


def pinfile_text(pins: pd.DataFrame, expires: dt.date) -> str:
    """The suggestion in tlsdetect's own pin-set format (``tlsdetect-pins 1``), one ``domain`` block per name."""
    lines = ["tlsdetect-pins 1", f"# suggested from observed chains; {BACKUP_REMINDER}"]
    for domain, group in pins.groupby("domain", sort=True):
        if not _HOST.fullmatch(str(domain)):  # a name off the wire that is no host name: never into the file
            lines.append(f"# skipped a server name that is not a host name ({len(group)} pin(s))")
            continue
        lines.append(f"domain {domain} expires {expires.isoformat()}")
        for kind, role, pin, subject, n in group[["kind", "role", "pin", "subject", "connections"]].itertuples(
                index=False, name=None):
            safe = "".join(ch if ch.isprintable() else "?" for ch in str(subject))
            lines.append(f"# {role}: {safe} ({int(n)} connection(s))")
            lines.append(f"pin {kind} {pin}")
    return "\n".join(lines) + "\n"
