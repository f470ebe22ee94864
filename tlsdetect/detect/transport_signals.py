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

from tlsdetect.detect.columns import text_column
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
    transport = text_column(df, "transport").astype("string").str.lower().fillna("")
    frame = pd.DataFrame({"client_id": cid.astype("string").reset_index(drop=True), "server": server_keys(df),
                          "quic": (transport == "quic").to_numpy(dtype=bool),
                          "tcp": (transport == "tcp").to_numpy(dtype=bool)})
    pairs = pd.MultiIndex.from_frame(frame[["client_id", "server"]].astype(object))
    codes, uniq = pd.factorize(pairs)
    codes = np.asarray(codes, dtype=np.int64)
    n_pairs = len(uniq)
    quic_now = np.bincount(codes[codes >= 0], weights=frame["quic"].to_numpy()[codes >= 0], minlength=n_pairs)
    tcp_now = np.bincount(codes[codes >= 0], weights=frame["tcp"].to_numpy()[codes >= 0], minlength=n_pairs)
    before = learned.reindex(pd.MultiIndex.from_tuples(list(uniq), names=["client_id", "server"]))
    before_n = before.fillna(0).to_numpy(dtype=np.float64)
    blocked_pair = (before_n >= MIN_QUIC) & (quic_now == 0) & (tcp_now > 0)
    if not blocked_pair.any():
        return
    mask = (codes >= 0) & blocked_pair[np.maximum(codes, 0)] & frame["tcp"].to_numpy()
    expected = np.array([f"quic ({int(n)} connections to this server in the baseline)" for n in before_n],
                        dtype=object)
    observed = np.array([f"tcp only ({int(n)} tcp, 0 quic connections in this input)" for n in tcp_now],
                        dtype=object)
    safe = np.maximum(codes, 0)
    ev.add("quic_blocked", mask, "this client used QUIC to this server before and now reaches it only over TCP "
           "(UDP/443 blocked, as interception products do to force inspectable TLS)",
           expected=expected[safe], observed=observed[safe])
