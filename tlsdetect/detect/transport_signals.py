"""``quic_blocked``: this client used QUIC to this server in the baseline and now reaches it only over TCP.

An interception product that cannot decrypt QUIC blocks UDP/443; the browser falls back to TLS over TCP,
which the product can inspect (its ClientHello is still the browser's own, so no fingerprint signal fires).
What changed is the transport: the baseline's ``transports`` table (:mod:`~tlsdetect.detect.transports`)
says the client reached this server over QUIC, and in the scored input the pair has TCP connections and
not one QUIC connection. Every TCP row of such a pair carries the evidence.

The scored input is the window: a batch (``score``), a stream batch or a REST request. A client that still
uses QUIC to the server anywhere in it is not flagged, so a browser's ordinary TCP connections (the first
visit before Alt-Svc, a race lost to TCP) beside QUIC ones stay clean. A pair needs at least
:data:`MIN_QUIC` QUIC connections in the baseline, so one odd QUIC connection does not arm it. The weight
(35) makes it ``suspicious`` by itself, not ``intercepted``: a network may block QUIC for other reasons
(policy, a broken path), and the browser's own fallback cannot be told from a middlebox's by this alone.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from tlsdetect.detect.columns import Codes, Unique, combination_codes, raw_column
from tlsdetect.detect.evidence import Evidence
from tlsdetect.detect.transports import server_keys

__all__ = ["MIN_QUIC", "quic_blocked_signal"]

#: QUIC connections of a (client, server) pair in the baseline from which a TCP-only window is evidence.
MIN_QUIC = 2


def quic_blocked_signal(df: pd.DataFrame, baseline: Any, cid: pd.Series, ev: Evidence) -> None:
    """Add ``quic_blocked`` on the TCP rows of pairs that used QUIC in the baseline and none in ``df``."""
    table = getattr(baseline, "transports_", None)
    if table is None or len(table) == 0 or len(df) == 0:
        return
    quic = table[table["transport"].astype("string") == "quic"]
    learned = quic.groupby(["client_id", "server"], sort=False, observed=True)["count"].sum()
    learned = learned[learned >= MIN_QUIC]
    if len(learned) == 0:
        return
    # one code per client and per server, the pair one int64 key: hashed over the distinct values, never a
    # Python tuple per row (a MultiIndex of a million text pairs took 5 s of a 1M-row score)
    clients, servers = Unique(cid.reset_index(drop=True)), Unique(server_keys(df))
    known = (clients.codes >= 0) & (servers.codes >= 0)
    pair, first = combination_codes([clients.codes, servers.codes], [len(clients.values) + 1, len(servers.values) + 1])
    tr = Unique(raw_column(df, "transport"))
    names = tr.values.str.lower().to_numpy(dtype=object, na_value="")
    quic, tcp = (np.append(names == name, False)[tr.codes] for name in ("quic", "tcp"))  # code -1: neither
    n_pairs = len(first)
    quic_now = np.bincount(pair[known], weights=quic[known], minlength=n_pairs)
    tcp_now = np.bincount(pair[known], weights=tcp[known], minlength=n_pairs)
    at = pd.MultiIndex.from_arrays([clients.values.to_numpy(dtype=object)[np.maximum(clients.codes[first], 0)],
                                    servers.values.to_numpy(dtype=object)[np.maximum(servers.codes[first], 0)]],
                                   names=["client_id", "server"])
    before_n = learned.reindex(at).fillna(0).to_numpy(dtype=np.float64)
    blocked_pair = (before_n >= MIN_QUIC) & (quic_now == 0) & (tcp_now > 0)
    mask = known & blocked_pair[pair] & tcp
    if not mask.any():
        return
    expected, observed = np.empty(n_pairs, dtype=object), np.empty(n_pairs, dtype=object)  # the blocked pairs' only
    hit = np.flatnonzero(blocked_pair)
    expected[hit] = [f"quic ({int(n)} connections to this server in the baseline)" for n in before_n[hit]]
    observed[hit] = [f"tcp only ({int(n)} tcp, 0 quic connections in this input)" for n in tcp_now[hit]]
    ev.add("quic_blocked", mask, "this client used QUIC to this server before and now reaches it only over TCP "
           "(UDP/443 blocked, as interception products do to force inspectable TLS)",
           expected=Codes(pair, expected), observed=Codes(pair, observed))
