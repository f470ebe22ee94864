"""``tlsdetect stream``: follow an Envoy access log, score each line, deliver alerts to sinks, checkpoint.

Pipeline
--------
:class:`~tlsdetect.stream.follow.Follower` reads whole lines from the log at a byte offset, surviving
rotation; any other :class:`~tlsdetect.stream.source.Source` (standard input, the receivers) hands lines
or records already in columns. The streamer groups them into micro-batches (up to ``batch_lines``, or
whatever is there when the source has no more yet, or after ``batch_ms``; queued receiver messages are
merged into one batch: a batch's typing and scoring have a fixed cost); a :class:`Processor` parses each
batch with :func:`tlsdetect.readers.envoy.parse_envoy_lines` (lines) or
:func:`~tlsdetect.readers.envoy.read.parse_envoy_records` (records: the same key map) and scores it with
:func:`tlsdetect.detect.scoring.score` (the same code as ``tlsdetect detect``), in worker processes
on a catch-up run. The rows whose verdict is not ``ok`` become alerts
(:func:`tlsdetect.sinks.alerts.alerts.alerts_of`), offered to every sink's lane
(:mod:`tlsdetect.stream.fanout`: a sink that is down holds back only itself, up to its buffer and its
``when_full``). The checkpoint (:mod:`tlsdetect.stream.checkpoint`) moves to the newest batch every
sink acknowledged (delivered, or spooled on disk for a sink that is down), once the dead letters are on
disk, in one transaction with the ids of the alerts each sink took (:mod:`tlsdetect.stream.dedupe`). A
crash between delivery and commit replays that batch: at-least-once; a replay of what a sink took
before the last commit is not sent to it again.

Size: one module because the batching, the worker pool and the checkpoint's order share the
streamer's state; the sources, sinks, checkpoint and metrics live in modules of their own.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import pandas as pd
import pyarrow as pa

from tlsdetect.detect.baseline import Baseline
from tlsdetect.detect.pin_signals import Policies
from tlsdetect.detect.scoring import score
from tlsdetect.fingerprint import enrich
from tlsdetect.readers.envoy import parse_envoy_lines
from tlsdetect.readers.envoy.read import parse_envoy_records
from tlsdetect.readers.envoy.records import record_text
from tlsdetect.readers.logs import DeadLetter
from tlsdetect.sinks.alerts.alerts import alerts_of
from tlsdetect.sinks.alerts.spool import AlertSink, SinkError, Spooled
from tlsdetect.sinks.weird import event_counts
from tlsdetect.stream.checkpoint import Checkpoint, CheckpointStore, Recover
from tlsdetect.stream.dedupe import DEFAULT_WINDOW, DeliveredIds
from tlsdetect.stream.fanout import SinkLane
from tlsdetect.stream.follow import STDIN, Batch, Follower, StdinFollower
from tlsdetect.stream.isolate import InFlight, isolated
from tlsdetect.stream.metrics import Metrics
from tlsdetect.stream.scored import DeadRecord, Scored
from tlsdetect.stream.source import Source

__all__ = ["Processor", "Scored", "StreamConfig", "Streamer", "ledger_events"]

log = logging.getLogger("tlsdetect.stream.loop")


class _Collect(DeadLetter):
    """Dead letters kept in memory (a worker process hands them back to the writer), named by the batch's source
    as the source names itself (``envoy-als://127.0.0.1:9001``, which a ``Path`` would make ``envoy-als:/...``)."""

    def __init__(self, name: str) -> None:
        super().__init__(None)
        self.name = name
        self.records: list[DeadRecord] = []

    def add(self, file: str | os.PathLike[str], line_no: int, reason: str, line: str | bytes) -> None:
        super().add(self.name, line_no, reason, line)
        self.records.append((self.name, line_no, reason, line))


class _DeadLetters(DeadLetter):
    """The stream's dead-letter file: unreadable lines (:meth:`add`) and alerts a sink refused (:meth:`refused`)."""

    def refused(self, sink: str, alerts: Sequence[Mapping[str, Any]], reason: str) -> None:
        """One record per alert: its file, ``line`` null, the sink, the reason, the alert as JSON in ``text``."""
        for a in alerts:
            self.write({"file": a.get("file"), "line": None, "sink": sink, "reason": f"refused by the sink: {reason}",
                        "text": json.dumps(a, ensure_ascii=False, default=str)})


class Processor:
    """Parse + score one batch (picklable: runs in worker processes too)."""

    def __init__(
        self, baseline: Baseline | None, mapping: Mapping[str, str] | None = None, text_format: str | None = None,
        policies: Policies | None = None,
    ) -> None:
        self.baseline, self.mapping, self.text_format = baseline, dict(mapping or {}), text_format
        self.policies = policies  # pin sets and issuer rules (--pins, --issuer-policy)

    def __call__(self, data: bytes, first_line: int, file: str, records: pa.Table | None = None) -> Scored:
        """Lines (``data``) or a source's decoded records (``records``): the same mapping, scoring and alerts."""
        dead = _Collect(file)
        try:
            if records is not None:
                table = parse_envoy_records(records, source=Path(file), first_line=first_line, dead_letter=dead,
                                            mapping=self.mapping or None)  # fmt: skip
            else:
                table = parse_envoy_lines(data, source=Path(file), first_line=first_line, dead_letter=dead,
                                          mapping=self.mapping or None, text_format=self.text_format)  # fmt: skip
            df = enrich(table)
            newest: float | None = None
            alerts: list[dict[str, Any]] = []
            if len(df):
                ts = df["ts"].max()
                newest = None if pd.isna(ts) else float(ts.timestamp())
                alerts = alerts_of(score(df, self.baseline, policies=self.policies), file)
        except Exception as exc:  # a bug must not stop the stream: the batch's lines go to the dead letters, loudly
            log.exception("parsing/scoring failed for %s lines %d..: dead-lettering the batch", file, first_line)
            dead = _Collect(file)
            texts: list[str | bytes] = list(data.split(b"\n"))
            if records is not None:
                texts = [record_text(records, i) for i in range(records.num_rows)]
            for i, raw in enumerate(texts):
                if raw.strip():
                    dead.stats.lines += 1
                    dead.add(file, first_line + i, f"internal error: {type(exc).__name__}: {exc}", raw)
            return Scored([], 0, dead.stats.lines, dead.records, None, ledger_events(dead.records, None))
        return Scored(alerts, len(df), dead.stats.lines, dead.records, newest, ledger_events(dead.records, df))


def ledger_events(dead: Sequence[DeadRecord], table: pd.DataFrame | None) -> dict[str, int]:
    """The anomaly ledger's events of one batch by name, as ``tlsdetect fingerprint --weird`` names them: each
    dead letter by its reason (the text before the first colon: a few names, not one per line) and each
    connection by its ``incomplete`` reason code, or as ``record_truncated`` (:func:`.weird.event_counts`)."""
    events: Counter[str] = Counter(reason.split(":", maxsplit=1)[0] for _, _, reason, _ in dead)
    if table is not None:
        events.update(event_counts(table))
    return dict(events)


def _lines_of(batch: Batch) -> bytes:
    """A batch as JSON lines: records made lines again (one each, same numbers) for line-by-line isolation."""
    if batch.records is None:
        return batch.data
    return "".join(record_text(batch.records, i) + "\n" for i in range(batch.records.num_rows)).encode()


_WORKER: Processor | None = None


def _init_worker(proc: Processor) -> None:
    global _WORKER  # noqa: PLW0603
    _WORKER = proc
    import pyarrow as pa

    pa.set_cpu_count(1)  # the processes are the parallelism: no Arrow thread pools competing for the cores
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _run_worker(data: bytes, first_line: int, file: str, records: pa.Table | None = None) -> Scored:
    assert _WORKER is not None
    return _WORKER(data, first_line, file) if records is None else _WORKER(data, first_line, file, records)


@dataclass
class StreamConfig:
    follow: bool = False
    batch_lines: int = 5000
    batch_ms: int = 200
    poll_ms: int = 20
    workers: int = 1
    #: Where to start without a usable checkpoint (None: a first run from the start; a broken one is an error).
    recover: Recover | None = None
    #: Alert ids kept per sink so that a replay does not send them twice (0: no dedupe).
    dedupe_window: int = DEFAULT_WINDOW


class Streamer:
    """The loop: follower -> micro-batches -> processor -> sinks -> dead letters flushed -> checkpoint."""

    def __init__(
        self,
        source: Path | BinaryIO | Source,
        processor: Processor,
        sinks: Sequence[AlertSink | Spooled | SinkLane],
        store: CheckpointStore,
        *,
        dead_letter: Path | None = None,
        config: StreamConfig | None = None,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.processor = processor
        self.lanes = [s if isinstance(s, SinkLane) else SinkLane(s) for s in sinks]
        self.sinks = [lane.sink for lane in self.lanes]
        self.store = store
        self.config = config or StreamConfig()
        self.dedupe = DeliveredIds(store.db, self.config.dedupe_window)
        self._seq = 0  # batches handed to the lanes
        self._ends: dict[int, Checkpoint] = {}  # batch number -> the checkpoint after it, until committed
        self.metrics = metrics or Metrics()
        self.clock = clock
        self.dead_path = dead_letter
        self.dead = _DeadLetters(dead_letter)
        self.stopping = False
        self.follower: Source
        if isinstance(source, str | os.PathLike):
            self.source = Path(source)
            follower = Follower(self.source, store.load(str(self.source.resolve())), recover=self.config.recover)
            if self.config.recover is not None and follower.fd is not None:
                store.commit(follower.key, follower.checkpoint)  # where --from-start/--from-end put us, kept
            self.follower = follower
        elif isinstance(source, Source):  # a receiver, a capture: see tlsdetect.stream.source
            self.source = Path(source.file)
            self.follower = source
        else:  # a stream (standard input): no checkpoint, see StdinFollower
            self.source = Path(STDIN)
            self.follower = StdinFollower(source)
        self.key = self.follower.key  # "" for a source without offsets: nothing is committed
        self._log_events()
        self.inflight = InFlight(store.state_dir, self.key) if self.key else None
        self.suspect = self.inflight.left_behind() if self.inflight else None
        if self.suspect is not None:
            log.error("the previous run stopped while scoring lines %d-%d of %s (a crash, an OOM kill or kill -9): "
                      "those lines are scored in child processes now; a line that kills one goes to the dead "
                      "letters", self.suspect.first, self.suspect.last, self.suspect.file)  # fmt: skip
        for s in self.sinks:
            self.metrics.sink_up[s.name] = 1
            self.metrics.sink_sent[s.name] = 0
            self.metrics.sink_rejected[s.name] = 0
            self.metrics.sink_dropped[s.name] = 0
            self.metrics.sink_held[s.name] = 0
            self.metrics.sink_deduped[s.name] = 0

    def _log_events(self) -> None:
        for e in self.follower.events:
            log.warning("%s", e)
        self.follower.events.clear()

    def stop(self, *_: object) -> None:
        self.stopping = True

    # -- batches
    def batches(self) -> Iterator[Batch]:
        """Micro-batches: up to ``batch_lines`` lines of one file; at the end of data whatever is pending."""
        cfg = self.config
        parts: list[Batch] = []

        def merged() -> Batch:
            first, last = parts[0], parts[-1]
            data = first.data if len(parts) == 1 else b"".join(p.data for p in parts)
            tables = [p.records for p in parts if p.records is not None]
            records = (tables[0] if len(tables) == 1 else pa.concat_tables(tables, promote_options="default")
                       if tables else None)  # fmt: skip
            return Batch(data, first.first_line, first.file, last.end, sum(p.lines for p in parts), first.born,
                         records)  # fmt: skip

        while not self.stopping:
            want = cfg.batch_lines - sum(p.lines for p in parts)
            got = self.follower.read(want, final=not cfg.follow)
            self._log_events()
            if got is not None:
                last = parts[-1] if parts else None
                if last is not None and (got.file != last.file or got.end.ino != last.end.ino
                                         or got.first_line != last.end.line + 1):  # fmt: skip
                    yield merged()  # another file: a batch never spans two
                    parts = []
                parts.append(got)
            lines = sum(p.lines for p in parts)
            if parts and (got is None or lines >= cfg.batch_lines
                          or (self.clock() - parts[0].born) * 1000 >= cfg.batch_ms):  # fmt: skip
                yield merged()
                parts = []
            if got is None:
                if self.follower.ended or not (cfg.follow or self.follower.live):
                    return
                self.idle()
                time.sleep(cfg.poll_ms / 1000)
        if parts:
            yield merged()

    def idle(self) -> None:
        """Between batches: retry lanes and drain spools when their backoff allows, refresh the lag."""
        for s in self.sinks:
            if isinstance(s, Spooled):
                s.drain()
        self._pump()
        self._commit()
        self._sink_metrics()
        self.metrics.lag_bytes = self.follower.lag_bytes()

    def _sink_metrics(self) -> None:
        for lane in self.lanes:
            s = lane.sink
            self.metrics.sink_sent[s.name] = s.sent
            self.metrics.sink_up[s.name] = 0 if lane.down or (isinstance(s, Spooled) and s.down) else 1
            self.metrics.sink_dropped[s.name] = lane.dropped
            self.metrics.sink_held[s.name] = lane.held
            if isinstance(s, Spooled):
                self.metrics.spool_bytes[s.name] = s.spooled_bytes

    # -- dead letters
    def _reject(self, sink: str, alerts: Sequence[Mapping[str, Any]], reason: str) -> None:
        """Alerts a sink refused for good: one dead letter each (``text`` is the alert as JSON), and counted."""
        self.metrics.sink_rejected[sink] = self.metrics.sink_rejected.get(sink, 0) + len(alerts)
        if not self.dead.writes:
            log.error("sink %s refused %d alert(s) (%s) and there is no dead-letter file: they are lost",
                      sink, len(alerts), reason)  # fmt: skip
        elif alerts:
            self.dead.refused(sink, alerts, reason)
            self.dead.sync()

    def _dead_letter_rejected(self) -> None:
        for lane in self.lanes:
            for alerts, reason in lane.rejected:
                self._reject(lane.name, alerts, reason)
            lane.rejected = []
            if isinstance(lane.sink, Spooled):
                for alerts, reason in lane.sink.take_rejected():
                    self._reject(lane.name, alerts, reason)

    # -- delivery
    def _pump(self, *, force: bool = False) -> None:
        """Lanes send what they hold (when their backoff allows, or now with ``force``); ids of what they took."""
        for lane in self.lanes:
            for alerts in lane.pump(force=force):
                self.dedupe.took(lane.name, alerts)
        self._dead_letter_rejected()

    def _commit(self) -> None:
        """Checkpoint the newest batch every lane finished with, with the staged dedupe ids, in one transaction."""
        done = min((lane.done_through for lane in self.lanes), default=self._seq)
        cp = self._ends.get(done)
        if cp is None and not self.dedupe.pending:
            return  # nothing new to write
        with self.store.transaction():
            self.dedupe.commit()
            if cp is not None and self.key:  # not standard input
                self.store.commit(self.key, cp)
        for seq in [k for k in self._ends if k <= done]:
            del self._ends[seq]

    def _wait(self, lane: SinkLane, batch: Batch) -> None:
        """``when_full=block``: wait (retrying with backoff) until the lane's buffer has room again."""
        delay = 0.5
        log.error("sink %s holds %d alerts, more than its buffer (%d) (%s): holding at %s line %d until it takes "
                  "them (when_full=block)", lane.name, lane.held, lane.max_alerts, lane.error or "down",
                  batch.file, batch.first_line)  # fmt: skip
        while lane.full:
            self._commit()  # what every lane has is checkpointed while we wait
            self._sink_metrics()
            if self.stopping:
                raise SystemExit(1)
            time.sleep(delay)
            delay = min(delay * 2, 30.0)
            self._pump()
            for alerts in lane.pump(force=True):
                self.dedupe.took(lane.name, alerts)
            self._dead_letter_rejected()

    def deliver(self, batch: Batch, result: Scored) -> None:
        """Dead letters on disk, the alerts to every sink's lane (each without what it already took), then
        the checkpoint as far as every lane got."""
        for file, line_no, reason, text in result.dead:
            self.dead.add(file, line_no, reason, text)
        if result.dead and self.dead.writes:
            self.dead.sync()  # on disk before the checkpoint moves past the lines
        self._seq += 1
        self._ends[self._seq] = batch.end
        for lane in self.lanes:
            fresh = self.dedupe.unseen(lane.name, result.alerts)
            self.metrics.sink_deduped[lane.name] += len(result.alerts) - len(fresh)
            for alerts in lane.offer(self._seq, fresh):
                self.dedupe.took(lane.name, alerts)
        self._dead_letter_rejected()
        for lane in self.lanes:
            if lane.full:
                self._wait(lane, batch)
        self._commit()
        m = self.metrics
        m.lines_read += result.lines
        m.records_in += result.lines
        for _, _, reason, _ in result.dead:
            name = reason.split(":", maxsplit=1)[0]
            m.skipped[name] = m.skipped.get(name, 0) + 1
        m.rows += result.rows
        m.alerts += len(result.alerts)
        m.dead_letters += len(result.dead)
        for name, n in result.weird.items():
            m.weird[name] = m.weird.get(name, 0) + n
        m.batches += 1
        if result.newest_ts is not None:
            m.lag_seconds = max(0.0, time.time() - result.newest_ts)
        m.lag_bytes = self.follower.lag_bytes()
        self._sink_metrics()

    def finish(self) -> None:
        """The end of a run: spools drained; a lane that still holds alerts is waited for (``block``) or gives
        them up, counted (``drop``); the checkpoint as far as every lane got."""
        for s in self.sinks:
            if isinstance(s, Spooled):
                s.drain(force=True)
        self._pump(force=True)
        for lane in self.lanes:
            if lane.queue and lane.when_full == "drop":
                lane.drop_held()
            delay = 0.5
            while lane.queue:
                self._commit()
                self._sink_metrics()
                if self.stopping:
                    log.error("sink %s still holds %d alerts at the stop: the checkpoint stays before them; they are "
                              "read again at the next start", lane.name, lane.held)  # fmt: skip
                    raise SystemExit(1)
                time.sleep(delay)
                delay = min(delay * 2, 30.0)
                for alerts in lane.pump(force=True):
                    self.dedupe.took(lane.name, alerts)
                self._dead_letter_rejected()
        self._commit()
        self._sink_metrics()

    def run(self) -> Metrics:
        """Until the end of the source (batch mode) or :meth:`stop` (follow mode)."""
        # worker processes pay off on a backlog (a catch-up run); following, batches are small and latency counts
        workers = 1 if self.config.follow else max(1, self.config.workers)
        if workers == 1:
            for batch in self.batches():
                self.deliver(batch, self._score(batch))
        else:
            self._run_pool(workers)
        self.finish()
        if self.inflight is not None:
            self.inflight.clear()  # a clean end: no batch was left half scored
        return self.metrics

    def _score(self, batch: Batch) -> Scored:
        """One batch in this process; in child processes when a previous run died on its lines
        (:mod:`tlsdetect.stream.isolate`)."""
        if self.inflight is not None:
            self.inflight.mark(batch.file, batch.first_line, batch.lines)
        if self.suspect is not None:
            if self.suspect.overlaps(batch.file, batch.first_line, batch.lines):
                return isolated(self.processor, _lines_of(batch), batch.first_line, batch.file)
            if batch.file != self.suspect.file or batch.first_line > self.suspect.last:
                self.suspect = None  # past the lines the previous run died on
        if batch.records is None:  # a processor for lines only (three arguments) serves line sources
            return self.processor(batch.data, batch.first_line, batch.file)
        return self.processor(batch.data, batch.first_line, batch.file, batch.records)

    def _run_pool(self, workers: int) -> None:
        """Batches scored by worker processes (a catch-up run); a worker's death breaks the pool: the batches
        it held are scored with :func:`~tlsdetect.stream.isolate.isolated` and a new pool starts."""
        import multiprocessing as mp

        ctx = mp.get_context("fork")

        def start() -> ProcessPoolExecutor:
            return ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=(self.processor,))

        pool = start()
        inflight: list[tuple[Batch, Future[Scored] | None]] = []

        def result(b: Batch, fut: Future[Scored] | None) -> Scored:
            nonlocal pool
            try:
                if fut is None:
                    raise BrokenProcessPool("submitted to a broken pool")
                return fut.result()
            except BrokenProcessPool:
                log.error("a worker process died scoring %s lines %d..: scoring them in child processes",
                          b.file, b.first_line)  # fmt: skip
                pool.shutdown(wait=False, cancel_futures=True)
                pool = start()
                return isolated(self.processor, _lines_of(b), b.first_line, b.file)

        try:
            for batch in self.batches():
                try:
                    fut: Future[Scored] | None = pool.submit(_run_worker, batch.data, batch.first_line, batch.file,
                                                                  batch.records)
                except BrokenProcessPool:
                    fut = None
                inflight.append((batch, fut))
                while len(inflight) > 2 * workers or (inflight and (inflight[0][1] is None or inflight[0][1].done())):
                    b, f = inflight.pop(0)
                    self.deliver(b, result(b, f))
            for b, f in inflight:
                self.deliver(b, result(b, f))
        finally:
            pool.shutdown()

    def close(self) -> None:
        self.follower.close()
        for s in self.sinks:
            try:
                s.close()
            except (SinkError, OSError) as exc:
                log.warning("sink %s: %s at close", s.name, exc)
        self._dead_letter_rejected()
        self.dead.close()
        self.store.close()
