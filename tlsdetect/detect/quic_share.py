"""``quic_share_dropped``: the network's share of QUIC to QUIC-capable servers fell far below its baseline's.

``quic_blocked`` (:mod:`~tlsdetect.detect.transport_signals`) needs a client that reached one server over QUIC
at least twice before. An interception product that drops UDP/443 does it for the whole network at once:
new clients, clients that met a server once, servers a client never visited all fall back to TCP. What
changed is a population's number: of the connections to servers the baseline saw answering QUIC, the share
that used QUIC. So, over the baseline's ``transports`` table and the scored input (one population: the
sensor's network; the baseline keeps clients, not their subnets):

* QUIC-capable servers: at least :data:`MIN_SERVER_QUIC` QUIC connections in the baseline (any client);
* before: ``X`` = QUIC connections / (QUIC + TCP) to them in the baseline, with at least
  :data:`MIN_BASELINE_QUIC` QUIC connections;
* now: ``k`` QUIC of ``n`` QUIC + TCP connections to them in the input, ``Y = k / n``.

It fires when there is enough evidence that the share fell: ``n >= MIN_INPUT`` connections to at least
:data:`MIN_SERVERS` of those servers, ``Y <= X / 2``, and the Chernoff bound of a binomial's lower tail,
``exp(-n * KL(Y || X'))`` with ``X' = min(X, MAX_SHARE)``, at most :data:`MAX_P`: the chance the input's
share is that low if the network still used QUIC as it did (with ``Y = 0`` the bound is exact,
``(1 - X')^n``). ``X'`` is capped because a browser also opens TCP (the first visit, a lost race): a baseline
of only QUIC would otherwise make one TCP connection impossible. Every TCP row to a QUIC-capable server
carries the evidence (40: ``suspicious`` alone, as QUIC may be blocked by a policy too).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from tlsdetect.detect.columns import text_column
from tlsdetect.detect.evidence import Evidence
from tlsdetect.detect.transports import server_keys

__all__ = ["MAX_P", "MAX_SHARE", "MIN_BASELINE_QUIC", "MIN_INPUT", "MIN_SERVERS", "MIN_SERVER_QUIC", "Share",
           "capable_servers", "quic_share", "quic_share_signal", "tail_bound"]

MIN_SERVER_QUIC = 2
MIN_BASELINE_QUIC = 5
MIN_INPUT = 5
MIN_SERVERS = 2
MAX_SHARE = 0.9
MAX_P = 1e-3


def tail_bound(k: int, n: int, p: float) -> float:
    """Chernoff bound of P(K <= k) for K ~ Binomial(n, p), k/n < p: exp(-n KL(k/n || p)); 1 when k/n >= p."""
    if n == 0 or k / n >= p:
        return 1.0
    y = k / n
    kl = (y * math.log(y / p) if y > 0 else 0.0) + (1 - y) * math.log((1 - y) / (1 - p))
    return math.exp(-n * kl)


@dataclass(frozen=True)
class Share:
    """The population's QUIC share before and now, and whether it fell with enough evidence."""

    servers: frozenset[str]  # QUIC-capable servers of the baseline
    before_quic: int
    before_total: int
    now_quic: int
    now_total: int
    now_servers: int
    now_clients: int
    p: float

    @property
    def dropped(self) -> bool:
        x, y = self.before_quic / max(self.before_total, 1), self.now_quic / max(self.now_total, 1)
        return (self.before_quic >= MIN_BASELINE_QUIC and self.now_total >= MIN_INPUT
                and self.now_servers >= MIN_SERVERS and y <= x / 2 and self.p <= MAX_P)


def capable_servers(table: pd.DataFrame) -> pd.DataFrame:
    """Per QUIC-capable server of a ``transports`` table: its QUIC and TCP connections (columns ``quic``, ``tcp``)."""
    t = table[table["transport"].astype("string").isin(["quic", "tcp"]).to_numpy(dtype=bool)]
    per = t.groupby(["server", "transport"], observed=True)["count"].sum().unstack(fill_value=0)
    per = per.reindex(columns=["quic", "tcp"], fill_value=0)
    return per[per["quic"] >= MIN_SERVER_QUIC]


def quic_share(table: pd.DataFrame, servers: pd.Series, transports: pd.Series, clients: pd.Series) -> Share | None:
    """The :class:`Share` of an input (its rows' server keys, lowercase transports and client ids) against a
    ``transports`` table; None when the table has no QUIC-capable server."""
    capable = capable_servers(table)
    if len(capable) == 0:
        return None
    to_capable = servers.isin(capable.index).to_numpy(dtype=bool)
    quic = (transports == "quic").to_numpy(dtype=bool) & to_capable
    tcp = (transports == "tcp").to_numpy(dtype=bool) & to_capable
    now_quic, now_total = int(quic.sum()), int(quic.sum() + tcp.sum())
    before_quic, before_total = int(capable["quic"].sum()), int(capable.to_numpy().sum())
    x = min(before_quic / before_total, MAX_SHARE)
    return Share(frozenset(map(str, capable.index)), before_quic, before_total, now_quic, now_total,
                 int(servers[quic | tcp].nunique()), int(clients[quic | tcp].nunique()),
                 tail_bound(now_quic, now_total, x))


def quic_share_signal(df: pd.DataFrame, baseline: Any, cid: pd.Series, ev: Evidence) -> None:
    """Add ``quic_share_dropped`` on the TCP rows to QUIC-capable servers when the input's QUIC share fell."""
    table = getattr(baseline, "transports_", None)
    if table is None or len(table) == 0 or len(df) == 0 or len(capable_servers(table)) < MIN_SERVERS:
        return  # before hashing the input's server names: most baselines have no QUIC
    servers = server_keys(df)
    transports = text_column(df, "transport").astype("string").str.lower().fillna("")
    share = quic_share(table, servers, transports, cid.astype("string").reset_index(drop=True))
    if share is None or not share.dropped:
        return
    mask = servers.isin(share.servers).to_numpy(dtype=bool) & (transports == "tcp").to_numpy(dtype=bool)
    before = (f"{100 * share.before_quic / share.before_total:.0f}% QUIC: {share.before_quic} of "
              f"{share.before_total} connections to {len(share.servers)} QUIC-capable servers in the baseline")
    now = (f"{100 * share.now_quic / share.now_total:.0f}% QUIC: {share.now_quic} of {share.now_total} connections "
           f"to {share.now_servers} of those servers from {share.now_clients} clients in this input "
           f"(chance of so few if nothing changed <= {share.p:.1g})")
    ev.add("quic_share_dropped", np.asarray(mask, dtype=bool),
           "this network's connections to QUIC-capable servers fell back to TCP far more than in the baseline "
           "(UDP/443 blocked for many clients at once, as interception products do)", expected=before, observed=now)
