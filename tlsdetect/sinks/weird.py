"""The anomaly ledger, like Zeek's ``weird.log``: every place a reader gave up, named and counted.

Three kinds of event, all written as JSON lines to ``--weird FILE`` and summed into one stderr line:

* a connection whose handshake could not be read whole: its ``incomplete`` reason code (see
  :mod:`tlsdetect.schema`) as ``name``, with the time, source, ``conn_id`` and 4-tuple;
* a connection whose hellos were read but a later flight was cut by a truncated record (its
  ``truncated`` column): ``name`` = ``record_truncated``, the same fields, and ``where`` (the
  column's value: ``server_chain``, ``server_flight``, ``client_chain``, ``client_flight``, comma-joined).
  One event per connection, so the count is of connections, as for ``incomplete``; a connection
  that is also ``incomplete`` (say ``overlap_conflict``) is one event of each;
* a counted skip of the read (:attr:`tlsdetect.readers.base.ReadStats.skipped`: packets of an
  unsupported link type, dead-lettered lines by reason...) as ``name`` with its ``count``.

The ledger reads the connections table the command already produces, so the readers keep one
output (rows and their stats) and batch, stream and REST see the same ``incomplete`` column.
Rows are selected and written column-wise, never one Python step per row.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import TextIO

import pandas as pd

from tlsdetect.readers.base import ReadStats

__all__ = ["EVENT_FIELDS", "TRUNCATED", "WeirdLog", "event_counts", "incomplete_counts"]

#: Fields of a connection event, in this order (a ``record_truncated`` event adds ``where``).
EVENT_FIELDS = ("ts", "name", "source", "conn_id", "client_ip", "client_port", "server_ip", "server_port")
#: The event name of a row whose ``truncated`` column is set.
TRUNCATED = "record_truncated"


def incomplete_counts(table: pd.DataFrame) -> dict[str, int]:
    """The connections of ``table`` that say they are incomplete, by reason code (a few codes: one count
    each); empty when the source has no ``incomplete`` column."""
    if "incomplete" not in table.columns or not len(table):
        return {}
    names = table["incomplete"].dropna().astype("string")
    return {str(k): int(v) for k, v in names.value_counts().items()}


def event_counts(table: pd.DataFrame) -> dict[str, int]:
    """The ledger's connection events of ``table`` by name: :func:`incomplete_counts` and the rows with a
    ``truncated`` value as ``record_truncated``. What ``--weird`` and ``stream``'s metrics both count."""
    counts = incomplete_counts(table)
    if "truncated" in table.columns and len(table):
        cut = int(table["truncated"].notna().sum())
        if cut:
            counts[TRUNCATED] = counts.get(TRUNCATED, 0) + cut
    return counts


class WeirdLog:
    """Collects the events of one run; writes them to ``path`` (None: count only)."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = None if path is None else Path(path)
        self.counts: Counter[str] = Counter()
        self._fh: TextIO | None = None
        if self.path is not None:
            self._fh = self.path.open("w", encoding="utf-8")

    def observe(self, table: pd.DataFrame) -> None:
        """Count (and write) the connections of ``table`` that say they are incomplete or truncated."""
        if not len(table):
            return
        self.counts.update(event_counts(table))
        if self._fh is None:
            return
        for column, name in (("incomplete", None), ("truncated", TRUNCATED)):
            if column in table.columns:
                self._write(table, column, name)

    def _write(self, table: pd.DataFrame, column: str, name: str | None) -> None:
        """One line per row whose ``column`` is set: ``name`` (or the cell itself) as the event name, a
        ``truncated`` cell as ``where``."""
        assert self._fh is not None
        hit = table[column].notna().to_numpy(dtype=bool)
        if not hit.any():
            return
        cells = table[column][hit].astype("string")
        out = pd.DataFrame({"name": cells.to_numpy() if name is None else name}, index=cells.index)
        for col in EVENT_FIELDS:
            if col in table.columns and col != "name":
                out[col] = table[col][hit]
        if "ts" in out.columns:
            out["ts"] = pd.to_datetime(out["ts"], utc=True).dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        fields = [c for c in EVENT_FIELDS if c in out.columns]
        if name is not None:
            out["where"] = cells.to_numpy()
            fields.append("where")
        text = out[fields].to_json(orient="records", lines=True, force_ascii=True)
        self._fh.write(text if text.endswith("\n") else text + "\n")

    def finish(self, stats: ReadStats) -> None:
        """Add the read's counted skips (one event each, with its count) and close the file."""
        for name, count in sorted(stats.skipped.items()):
            self.counts[name] += count
            if self._fh is not None:
                self._fh.write(json.dumps({"name": name, "count": count}, ensure_ascii=True) + "\n")
        self.close()

    def close(self) -> None:
        if self._fh is not None and not self._fh.closed:
            self._fh.close()

    def summary(self) -> str | None:
        """One line for stderr, or None when nothing was given up on."""
        if not self.counts:
            return None
        parts = ", ".join(f"{name} {n}" for name, n in sorted(self.counts.items(), key=lambda kv: (-kv[1], kv[0])))
        where = f"; see {self.path}" if self.path is not None else " (add --weird FILE for each one)"
        return f"weird: {sum(self.counts.values())} events: {parts}{where}"

