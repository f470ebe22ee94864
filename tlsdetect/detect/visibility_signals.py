"""What the reader could not see, and a hello cut up to hide: two signals from the wire columns.

A row whose handshake the reader gave up on (``incomplete``, see :mod:`tlsdetect.schema`) has no
fingerprint, so no fingerprint signal can fire on it: scored like any other row it would be a quiet
``ok``, and an interceptor or a client that wants to pass unseen only has to make its hello unreadable.
``incomplete_handshake`` makes "could not see" a state of its own (weighted to reach ``suspicious`` by
itself). ``hello_fragmented`` fires on a ClientHello sent in many tiny TLS records (``ch_records``):
stacks send one record (two or three for a hello larger than a record), and dozens are a known way
past inspection that reads one record at a time.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from tlsdetect.detect.columns import raw_column
from tlsdetect.detect.evidence import Evidence

__all__ = ["FRAGMENTED_AT", "REASON_DETAIL", "visibility_signals"]

#: Records a ClientHello came in from which it counts as cut up on purpose. A hello larger than one
#: record (16 KiB) needs two; the reference corpus's largest count is 3 (Arkime's split-hello capture).
FRAGMENTED_AT = 8

#: The analyst's sentence per ``incomplete`` reason code.
REASON_DETAIL = {
    "depth_exceeded": "the handshake went past the reassembly depth before it was whole",
    "hello_cut": "a hello began but never became whole (a gap, the capture's end or an idle flow)",
    "no_client_hello": "only the server's side of the handshake was seen",
    "malformed_hello": "the hello could not be parsed",
    "message_limit": "more handshake messages than the reader follows",
    "pending_evicted": "finished early at the bound on pending handshakes (the capture held too many at once)",
    "overlap_conflict": "TCP segments of the handshake overlapped with different bytes: the server may have read "
                        "another hello than the one fingerprinted (an evasion of inspection)",
}


def visibility_signals(df: pd.DataFrame, ev: Evidence) -> None:
    """Add ``incomplete_handshake`` and ``hello_fragmented`` for the rows of ``df`` (by position)."""
    reason = raw_column(df, "incomplete").astype("string")
    seen = reason.notna().to_numpy(dtype=bool)
    if seen.any():
        detail = reason.astype(object).map(REASON_DETAIL).fillna("the reader gave up on the handshake")
        ev.add("incomplete_handshake", seen, detail, expected="complete", observed=reason.astype(object))
    records = pd.to_numeric(raw_column(df, "ch_records"), errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    many = np.nan_to_num(records, nan=0.0) >= FRAGMENTED_AT
    if many.any():
        ev.add("hello_fragmented", many, "the ClientHello came in many tiny TLS records (inspection evasion)",
               expected="1", observed=records)
