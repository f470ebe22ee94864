"""Inputs to a Spark DataFrame of the connections table: one task per capture, log files split by lines.

The driver expands the PATHs and groups them by format exactly as the local CLI does
(:func:`tlsdetect.readers.inputs.expand_paths`, :func:`tlsdetect.readers.logs.detect_format`), then makes a
list of *read tasks*, each its own Spark partition, read by the package's own readers inside
``mapInPandas``:

* a capture (pcap/pcapng) is one task, read by the native engine in chunks,
  so an executor holds one window of the file and one chunk of rows. Captures are not split: a
  TCP connection's packets span the file and pcapng blocks have no sync marker, so a byte range
  cannot be read on its own (the per-file task is the unit of parallelism; many files scale out);
* a Zeek ssl log, a Suricata EVE file or an Envoy access log larger than ``split_bytes`` (and not
  gzip-compressed) is split into byte ranges aligned to whole lines, the Hadoop text-split rule:
  a range owns every line that *starts* inside it. A task writes its lines to a local temporary
  file (a Zeek TSV range gets the file's ``#`` header lines first) and reads it with the
  registry's reader of its kind (:mod:`tlsdetect.readers.registry`): the very parse of the local
  path, followed by the same enrichment stage (:func:`tlsdetect.fingerprint.enrich`). Zeek x509 and
  conn logs are given whole to every ssl task of the group (they are joined by certificate
  fingerprint and ``uid``; they are small next to ssl.log in practice).

Spark's own readers (``spark.read.json`` for EVE/Envoy JSON lines, ``spark.read.text`` or
``csv(sep="\\t", comment="#")`` for Zeek TSV) could do the splitting, but every column rule of the
package readers (Zeek's escapes and the x509 join, JA4 recomputation from Suricata's
``client_handshake``, Envoy's certificate parsing, canonical issuer keys, JA3N) would then have to
be written a second time in Spark SQL and kept equal; this module uses them only as the model for
the byte-range split and keeps one parser.

Every executor must see the files at the same path as the driver (local mode, or a shared
filesystem such as NFS mounted alike on every node); ``hdfs://``/``s3a://`` URLs are not read.
Unreadable log lines are skipped as by the local readers, but not written to a dead-letter file.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from tlsdetect.readers.inputs import InputError, expand_paths
from tlsdetect.readers.logs import LogFormatError, detect_format
from tlsdetect.spark.schema import connections_schema, to_spark_frame, unpack_columns

__all__ = ["DEFAULT_SPLIT_BYTES", "ReadTask", "plan_tasks", "read_connections", "read_task", "split_size"]

DEFAULT_SPLIT_BYTES = 128 * 1024 * 1024
#: Spark's ``spark.sql.files.openCostInBytes``: the smallest split worth a task.
OPEN_COST_BYTES = 4 * 1024 * 1024
#: Rows per Arrow batch a read task hands to Spark.
BATCH_ROWS = 20_000
_GROUP_SHIFT = 56
_TASK_SHIFT = 32


@dataclass
class ReadTask:
    """One Spark partition's share of the input."""

    group: int  #: position of the format group in the local read order
    task: int  #: position of this task in the group's read order
    kind: str  #: pcap, zeek, suricata, envoy
    path: str
    start: int = 0
    end: int = -1  #: -1: to the end of the file (the whole file)
    side: list[str] = field(default_factory=list)  #: Zeek x509/conn logs read with every ssl range

    def order_base(self) -> int:
        return (self.group << _GROUP_SHIFT) | (self.task << _TASK_SHIFT)


def _zeek_kind(path: Path) -> str | None:
    from tlsdetect.readers.logs import open_text
    from tlsdetect.readers.zeek.fields import kind_from_fields, kind_from_record

    with open_text(path) as fh:
        for _ in range(200):
            line = fh.readline()
            if not line:
                return None
            text = line.rstrip("\r\n")
            if text.startswith("#path\t"):
                kind = text.split("\t", 1)[1].strip()
                if kind in ("ssl", "x509", "conn"):
                    return kind
            elif text.startswith("#fields\t"):
                return kind_from_fields(text.split("\t")[1:])
            elif text.startswith("{"):
                try:
                    obj = json.loads(text)
                except ValueError:
                    continue
                return kind_from_record(obj) if isinstance(obj, dict) else None
    return None


def _splittable(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(2) != b"\x1f\x8b"


def _ranges(path: Path, split_bytes: int) -> list[tuple[int, int]]:
    size = path.stat().st_size
    if size <= split_bytes or not _splittable(path):
        return [(0, -1)]
    return [(s, min(s + split_bytes, size)) for s in range(0, size, split_bytes)]


def split_size(total_bytes: int, parallelism: int, split_bytes: int = DEFAULT_SPLIT_BYTES) -> int:
    """Spark's own rule for file splits (``FilePartition.maxSplitBytes``): at most ``split_bytes``,
    but small enough that the input fills every core (``total / parallelism``), never below 4 MiB."""
    return max(1, min(split_bytes, max(OPEN_COST_BYTES, -(-total_bytes // max(1, parallelism)))))


def plan_tasks(paths: Sequence[str], *, input_format: str | None = None,
               split_bytes: int = DEFAULT_SPLIT_BYTES,
               parallelism: int | None = None) -> tuple[list[ReadTask], list[str]]:
    """The read tasks of ``paths`` in the local CLI's read order, and warnings (skipped files).

    ``parallelism`` (Spark's ``defaultParallelism``): when given, logs are split into ranges of
    :func:`split_size` so that a small input still gives every core a task.
    """
    # absolute: executors run in their own working directories (on a cluster, on other nodes)
    files, warnings = expand_paths([str(Path(p).absolute()) for p in paths])
    if parallelism is not None:
        logs = [f for f in files if f.stat().st_size > 0]
        split_bytes = split_size(sum(f.stat().st_size for f in logs), parallelism, split_bytes)
    try:
        groups = detect_format(files, input_format)
    except LogFormatError as exc:
        raise InputError(str(exc)) from None
    tasks: list[ReadTask] = []
    for g, (kind, group) in enumerate(groups.items()):
        n = 0
        if kind == "pcap":
            for f in group:
                tasks.append(ReadTask(g, n, kind, str(f)))
                n += 1
            continue
        if kind == "zeek":
            kinds = {f: _zeek_kind(f) for f in group}
            side = [str(f) for f in group if kinds[f] in ("x509", "conn")]
            main = [f for f in group if kinds[f] not in ("x509", "conn")]
            if not main:  # only certificates/connections: read as one task (no TLS rows, as locally)
                tasks.append(ReadTask(g, n, kind, side[0], side=side[1:]))
                continue
        else:
            side, main = [], list(group)
        for f in main:
            for start, end in _ranges(f, split_bytes):
                tasks.append(ReadTask(g, n, kind, str(f), start, end, list(side)))
                n += 1
    return tasks, warnings


def _range_bytes(path: Path, start: int, end: int) -> bytes:
    """The whole lines that start in ``[start, end)``."""
    with open(path, "rb") as fh:
        if start > 0:
            fh.seek(start - 1)
            if fh.read(1) != b"\n":
                fh.readline()  # the line in progress belongs to the range before
        pos = fh.tell()
        parts = []
        while pos < end:
            line = fh.readline()
            if not line:
                break
            parts.append(line)
            pos += len(line)
    return b"".join(parts)


def _zeek_header(path: Path) -> bytes:
    head = []
    with open(path, "rb") as fh:
        for line in fh:
            if not line.startswith(b"#"):
                break
            head.append(line)
    return b"".join(head)


def _read(kind: str, files: list[Path]) -> Iterator[pd.DataFrame]:
    """The registry's reader of ``kind``, then the enrichment stage: the local CLI's path."""
    from tlsdetect.fingerprint import enrich
    from tlsdetect.readers.base import ReadStats
    from tlsdetect.readers.registry import readers

    reader = readers()[kind]
    for chunk in reader.read(files, ReadStats()):
        yield enrich(chunk, dn_order=reader.dn_order)


def read_task(task: ReadTask) -> Iterator[pd.DataFrame]:
    """The connections of one task, as conformed chunks with ``_order`` set."""
    path, side = Path(task.path), [Path(s) for s in task.side]
    if task.kind == "pcap" or task.end < 0:
        yield from _numbered(task, _read(task.kind, [path, *side]))
        return
    with tempfile.TemporaryDirectory(prefix="tlsdetect-spark-") as tmp:
        data = _range_bytes(path, task.start, task.end)
        if task.kind == "zeek" and task.start > 0 and data.lstrip()[:1] != b"{":
            data = _zeek_header(path) + data
        part = Path(tmp) / path.name
        part.write_bytes(data)
        chunks = list(_read(task.kind, [part, *side])) if data.strip() else []
    yield from _numbered(task, iter(chunks))


def _numbered(task: ReadTask, chunks: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    """The non-empty chunks with ``_order``: the task's base, then a row counter."""
    row = task.order_base()
    for chunk in chunks:
        if len(chunk):
            yield chunk.assign(_order=range(row, row + len(chunk)))
            row += len(chunk)


def _read_partitions(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    for batch in batches:
        for rec in batch.to_dict("records"):
            task = ReadTask(int(rec["group"]), int(rec["task"]), str(rec["kind"]), str(rec["path"]),
                            int(rec["start"]), int(rec["end"]), json.loads(str(rec["side"])))
            for chunk in read_task(task):
                # Arrow batches of bounded size: a 128 MB log range is ~400k rows, too much for one batch
                for i in range(0, len(chunk), BATCH_ROWS):
                    yield to_spark_frame(chunk.iloc[i:i + BATCH_ROWS])


def read_connections(spark: Any, paths: Sequence[str], *, input_format: str | None = None,
                     split_bytes: int = DEFAULT_SPLIT_BYTES, warnings: list[str] | None = None) -> Any:
    """The connections table of ``paths`` (captures and logs, files or directories) as a Spark DataFrame.

    Columns: :func:`tlsdetect.spark.schema.connections_schema` (the package schema, then
    ``_ts_ns`` and ``_order``). Nothing is read on the driver but the file headers used to
    detect formats; the DataFrame is lazy. ``warnings`` collects skipped-file notices.
    """
    tasks, skipped = plan_tasks(paths, input_format=input_format, split_bytes=split_bytes,
                                parallelism=spark.sparkContext.defaultParallelism)
    if warnings is not None:
        warnings.extend(skipped)
    rows = [{**asdict(t), "side": json.dumps(t.side)} for t in tasks]
    from pyspark.sql import types as st

    task_schema = st.StructType([
        st.StructField("group", st.IntegerType()), st.StructField("task", st.IntegerType()),
        st.StructField("kind", st.StringType()), st.StructField("path", st.StringType()),
        st.StructField("start", st.LongType()), st.StructField("end", st.LongType()),
        st.StructField("side", st.StringType()),
    ])
    ordered = [tuple(r[f.name] for f in task_schema.fields) for r in rows]
    rdd = spark.sparkContext.parallelize(ordered, numSlices=max(1, len(ordered)))
    frame = spark.createDataFrame(rdd, task_schema)
    return unpack_columns(frame.mapInPandas(_read_partitions, connections_schema(packed=True)))
