"""Which alerts each sink already took, kept in the checkpoint's SQLite database: a replay sends nothing twice.

A replay happens after a crash between delivery and the checkpoint commit, after a checkpoint that could
not be trusted (``--from-start``), when one sink was behind the others (the checkpoint waits for the
slowest, the others already had the batch), and when a file is read again from its start. Before a batch
goes to a sink, the alert ids that sink already took are removed (:meth:`DeliveredIds.unseen`); once the
sink acknowledged, its ids are staged (:meth:`DeliveredIds.took`) and written with the next checkpoint
commit, in the same transaction (:meth:`DeliveredIds.commit`).

The window: the newest ``window`` ids per sink (1,000,000 by default; 16-byte keys, about 50 MB at the
full window). An id older than the window may be sent again by a replay that reaches that far back.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = ["DEFAULT_WINDOW", "DeliveredIds"]

DEFAULT_WINDOW = 1_000_000
#: Host parameters per ``IN (...)`` query (SQLite's limit is 32,766 on recent versions, 999 on old ones).
_CHUNK = 900


def _key(alert_id: object) -> bytes:
    """The id as the table keeps it: 16 bytes for the 32 hex digits of an alert id, else its UTF-8."""
    text = str(alert_id)
    if len(text) == 32:
        try:
            return bytes.fromhex(text)
        except ValueError:
            pass
    return text.encode("utf-8", "surrogateescape")


class DeliveredIds:
    """The ids each sink took (newest ``window`` per sink), in the checkpoint database ``db``."""

    def __init__(self, db: sqlite3.Connection, window: int = DEFAULT_WINDOW) -> None:
        if window < 0:
            raise ValueError(f"dedupe window must be >= 0, got {window}")
        self.db, self.window = db, window
        db.execute("CREATE TABLE IF NOT EXISTS dedupe_sink (name TEXT PRIMARY KEY, no INTEGER UNIQUE NOT NULL)")
        db.execute("CREATE TABLE IF NOT EXISTS dedupe (sink INTEGER NOT NULL, id BLOB NOT NULL, n INTEGER NOT NULL,"
                   " PRIMARY KEY (sink, id)) WITHOUT ROWID")  # fmt: skip
        db.execute("CREATE INDEX IF NOT EXISTS dedupe_age ON dedupe (sink, n)")
        self._no: dict[str, int] = dict(db.execute("SELECT name, no FROM dedupe_sink").fetchall())
        self._n: dict[int, int] = dict(db.execute("SELECT sink, MAX(n) FROM dedupe GROUP BY sink").fetchall())
        self._staged: dict[int, dict[bytes, int]] = {}

    def _sink(self, name: str) -> int:
        no = self._no.get(name)
        if no is None:
            no = max(self._no.values(), default=0) + 1
            self.db.execute("INSERT INTO dedupe_sink VALUES (?, ?)", (name, no))
            self._no[name] = no
        return no

    def unseen(self, sink: str, alerts: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
        """The alerts whose id the sink has not taken (committed or staged); a repeat within ``alerts`` once."""
        if not alerts or self.window == 0:
            return list(alerts)
        no = self._sink(sink)
        keys = [_key(a.get("id")) for a in alerts]
        seen = set(self._staged.get(no, {}))
        distinct = list(set(keys) - seen)
        for i in range(0, len(distinct), _CHUNK):
            part = distinct[i : i + _CHUNK]
            marks = ",".join("?" * len(part))
            seen.update(r[0] for r in self.db.execute(
                f"SELECT id FROM dedupe WHERE sink = ? AND id IN ({marks})", (no, *part)))  # fmt: skip
        out: list[Mapping[str, Any]] = []
        for key, alert in zip(keys, alerts, strict=True):
            if key not in seen:
                seen.add(key)
                out.append(alert)
        return out

    def took(self, sink: str, alerts: Iterable[Mapping[str, Any]]) -> None:
        """The sink acknowledged these alerts: stage their ids for the next :meth:`commit`."""
        if self.window == 0:
            return
        no = self._sink(sink)
        staged = self._staged.setdefault(no, {})
        n = self._n.get(no, 0)
        for a in alerts:
            n += 1
            staged[_key(a.get("id"))] = n
        self._n[no] = n

    @property
    def pending(self) -> bool:
        """Ids are staged and not yet committed."""
        return any(self._staged.values())

    def commit(self) -> int:
        """Write the staged ids and drop those older than the window; the caller holds the transaction.

        Returns how many ids were written.
        """
        written = 0
        for no, staged in self._staged.items():
            if not staged:
                continue
            self.db.executemany("INSERT INTO dedupe VALUES (?, ?, ?) ON CONFLICT(sink, id) DO UPDATE SET n=excluded.n",
                                [(no, key, n) for key, n in staged.items()])  # fmt: skip
            written += len(staged)
            self.db.execute("DELETE FROM dedupe WHERE sink = ? AND n <= ?", (no, self._n[no] - self.window))
        self._staged = {}
        return written

    def count(self, sink: str) -> int:
        """Ids kept for the sink (committed)."""
        no = self._no.get(sink)
        if no is None:
            return 0
        return int(self.db.execute("SELECT COUNT(*) FROM dedupe WHERE sink = ?", (no,)).fetchone()[0])
