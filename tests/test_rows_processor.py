"""Scoring a live capture's batch (a pickled table of rows) as ``tlsdetect detect`` scores it."""

from __future__ import annotations

import pickle

import pandas as pd

from tests.conftest import INTERCEPTION, needs_interception
from tlsdetect.detect.scoring import score
from tlsdetect.fingerprint import enrich
from tlsdetect.readers.pcap.engine import iter_connections
from tlsdetect.sinks.alerts.alerts import alerts_of
from tlsdetect.stream.rows_processor import RowsProcessor


@needs_interception
def test_a_batch_of_rows_gives_the_alerts_of_the_scored_table() -> None:
    rows = pd.concat([c for f in sorted(INTERCEPTION.glob("*.pcap")) for c in iter_connections(f)],
                     ignore_index=True)  # fmt: skip
    got = RowsProcessor(None)(pickle.dumps(rows), 1, "pcap:lo/ring_00001_0.pcapng")
    want = alerts_of(score(enrich(rows), None), "pcap:lo/ring_00001_0.pcapng")
    assert got.rows == got.lines == len(rows) > 0
    assert got.alerts == want
    assert got.alerts  # the interception captures do alert
    assert got.newest_ts is not None


def test_a_failure_is_counted_not_raised() -> None:
    broken = pd.DataFrame({"ts": ["not a time"]})
    got = RowsProcessor(None)(pickle.dumps(broken), 1, "pcap:-/x")
    assert (got.rows, got.alerts) == (0, [])
    assert sum(got.weird.values()) == 1
    assert next(iter(got.weird)).startswith("internal_error")
