"""Score a batch that is already a connections table (a live capture's rows), for the stream's loop.

The loop hands a processor ``(data, first_line, file)``; for a log ``data`` is lines to parse,
for :mod:`tlsdetect.stream.live_capture` it is the pickled rows the engine settled from one ring
file (pickled in this process or its own worker: never bytes from outside). Enrichment and scoring
are :class:`~tlsdetect.stream.loop.Processor`'s: the same baseline, policies and alerts.
"""

from __future__ import annotations

import logging
import pickle

import pandas as pd
import pyarrow as pa

from tlsdetect.detect.scoring import score
from tlsdetect.fingerprint import enrich
from tlsdetect.sinks.alerts.alerts import alerts_of
from tlsdetect.stream.loop import Processor, ledger_events
from tlsdetect.stream.scored import Scored

__all__ = ["RowsProcessor"]

log = logging.getLogger("tlsdetect.stream.loop")


class RowsProcessor(Processor):
    """Enrich + score a pickled table of rows (picklable, like :class:`Processor`)."""

    def __call__(self, data: bytes, first_line: int, file: str, records: pa.Table | None = None) -> Scored:
        """``records`` (a receiver's decoded records) never comes from a capture: the rows are in ``data``."""
        del records
        rows = pickle.loads(data)  # our own engine's table, pickled by this program
        assert isinstance(rows, pd.DataFrame)
        try:
            df = enrich(rows)
            alerts = alerts_of(score(df, self.baseline, policies=self.policies), file) if len(df) else []
            ts = df["ts"].max() if len(df) else None
            newest = None if ts is None or pd.isna(ts) else float(ts.timestamp())
        except Exception as exc:  # a bug must not stop the capture: the batch is counted as lost, loudly
            log.exception("scoring failed for %s rows %d..: %d rows not scored", file, first_line, len(rows))
            return Scored([], 0, 0, [], None, {f"internal_error: {type(exc).__name__}": len(rows)})
        return Scored(alerts, len(df), len(df), [], newest, ledger_events([], df))
