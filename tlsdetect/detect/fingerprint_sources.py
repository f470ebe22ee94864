"""Which source computes which fingerprint how, and which JA4 parts two sources can compare.

A row's ``fingerprint_origin`` names the source of its fingerprints (``computed``: tlsdetect computed them
from the hello lists; else the tool whose log carried them). Sources differ where the spec is easy to get
wrong: GREASE values. Envoy 1.40's tls_inspector keeps GREASE in JA4's signature algorithms (``c``) and in
JA3's supported groups, so a Chromium >= 152 hello (a fresh GREASE value in signature_algorithms on every
handshake) gets a new Envoy JA4_c on every connection; its ``a`` (counts exclude GREASE) and ``b`` are the
spec's. A hash cannot be turned back into its list, so such values are compared on the parts that agree:
:data:`C_GROUPS` says which sources share a JA4_c computation. The log does not carry Envoy's version, so
every ``envoy`` row is taken as Envoy <= 1.40 (its JA4_c is compared only with other ``envoy`` rows).

README.md's table "Which source computes which fingerprint how" is :func:`markdown_table` (a test keeps the
two equal).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from tlsdetect.detect.columns import Unique

__all__ = ["C_GROUPS", "SOURCES", "SPEC", "UNKNOWN", "SourceFacts", "c_group", "markdown_table"]

#: The JA4_c computation of the spec (GREASE dropped from every list).
SPEC = "spec"
#: The origin a baseline records for a row without ``fingerprint_origin`` (taken as the spec's).
UNKNOWN = "unknown"


@dataclass(frozen=True)
class SourceFacts:
    """How one ``fingerprint_origin`` computes each fingerprint (``exact``: as the spec says)."""

    origin: str
    tools: str
    ja3: str
    ja3n: str
    ja4_ab: str
    ja4_c: str
    c_group: str


SOURCES: tuple[SourceFacts, ...] = (
    SourceFacts("computed", "tlsdetect from the hello lists: pcap (native engine and `--engine tshark`), "
                "Suricata EVE with `client_handshake` and no logged JA4", "exact", "exact", "exact", "exact", SPEC),
    SourceFacts("zeek", "Zeek `ja3` package (salesforce) and `ja4` package (FoxIO) in ssl.log", "exact (GREASE "
                "dropped)", "not logged", "exact", "exact", SPEC),
    SourceFacts("suricata", "Suricata EVE `tls.ja3` (>= 4.1) and `tls.ja4` (>= 8)", "exact (GREASE dropped)",
                "exact (from `tls.ja3.string`)", "exact", "exact", SPEC),
    SourceFacts("envoy", "Envoy tls_inspector `%TLS_JA3_FINGERPRINT%`, `%TLS_JA4_FINGERPRINT%` (<= 1.40; the log "
                "does not say the version)", "GREASE kept in supported groups: differs for Chromium and other "
                "GREASE senders", "not logged", "exact (counts exclude GREASE)",
                "GREASE kept in signature algorithms: differs for Chromium >= 152, and varies per connection",
                "envoy"),
)
#: ``fingerprint_origin`` -> the JA4_c computation it shares with others (a missing origin is the spec's; an
#: origin not listed is compared only with itself).
C_GROUPS: dict[str, str] = {**{s.origin: s.c_group for s in SOURCES}, UNKNOWN: SPEC}


def c_group(origins: pd.Series) -> npt.NDArray[np.object_]:
    """The JA4_c group of each row's ``fingerprint_origin``, looked up once per distinct origin."""
    u = Unique(origins)
    per = np.array([C_GROUPS.get(str(v).lower(), str(v).lower()) for v in u.values.tolist()], dtype=object)
    out: npt.NDArray[np.object_] = u.rows(per, fill=SPEC)
    return out


def markdown_table() -> str:
    """The README table, one row per source."""
    head = ("| `fingerprint_origin` | computed by | JA3 | JA3N | JA4_a, JA4_b | JA4_c | JA4_c compared with |\n"
            "| --- | --- | --- | --- | --- | --- | --- |\n")
    rows = []
    for s in SOURCES:
        peers = ", ".join(f"`{o.origin}`" for o in SOURCES if o.c_group == s.c_group)
        rows.append(f"| `{s.origin}` | {s.tools} | {s.ja3} | {s.ja3n} | {s.ja4_ab} | {s.ja4_c} | {peers} |")
    return head + "\n".join(rows) + "\n"
