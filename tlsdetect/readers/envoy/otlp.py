"""OpenTelemetry log records (OTLP) from Envoy's OpenTelemetry access logger, as Envoy JSON log records.

``envoy.access_loggers.open_telemetry`` exports each access-log entry as an OTLP ``LogRecord`` whose
``attributes`` are formatter strings: configure them with the same keys and ``%...%`` operators as a
JSON file log (``ja4: "%TLS_JA4_FINGERPRINT%"``, ``downstream_peer_fingerprint_256: ...``), and each record
becomes the dict a JSON log line would hold, read by the one Envoy mapping
(:mod:`tlsdetect.readers.envoy.keys`, ``--mapping`` for other names). Unlike the gRPC access-log service's
fixed proto (:mod:`tlsdetect.readers.envoy.als`), this carries JA4, certificate digests and connection ids.

A record's ``body``, when it is a JSON object as text or a key-value list, adds its keys (attributes win).
Without a start-time attribute, the record's ``time_unix_nano`` is the connection's start time. A collector
that forwards Envoy's records (an OpenTelemetry Collector with an ``otlp`` exporter) keeps both as they are.

The generated OpenTelemetry module shipped with xds-protos predates the rename of
``instrumentation_library_logs``/``logs`` to ``scope_logs``/``log_records`` (OTLP 0.15); both are field 2
on the wire, so binary exports read the same under either name, and OTLP/JSON's ``scopeLogs`` and
``logRecords`` are renamed to what the module knows (:func:`otlp_json`) rather than dropped as unknown.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tlsdetect.readers.envoy.records import Records, scalar_text

__all__ = ["any_value", "columns_records", "json_names", "otlp_columns", "otlp_json", "otlp_records"]

_START_KEYS = ("start_time", "START_TIME", "%START_TIME%", "startTime", "ts", "timestamp")


def any_value(value: Any) -> object:
    """An OTLP ``AnyValue`` as a JSON value (bytes as lowercase hex; nested lists and maps as JSON)."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in value.kvlist_value.values}
    if kind == "bytes_value":
        return bytes(value.bytes_value).hex()
    return getattr(value, kind)


def _body(log: Any) -> dict[str, str | None]:
    """A body that is a JSON object (as text) or a key-value list: its keys (attributes, merged later, win)."""
    body = any_value(log.body)
    if isinstance(body, str) and body.lstrip().startswith("{"):
        try:
            body = json.loads(body)
        except ValueError:
            body = None
    return {str(k): scalar_text(v) for k, v in body.items()} if isinstance(body, dict) else {}


def _attributes(log: Any) -> dict[str, str | None]:
    """A record's attributes as text: string values (what Envoy's logger sends) read without asking their kind."""
    cells: dict[str, str | None] = {kv.key: kv.value.string_value for kv in log.attributes}
    if "" in cells.values():  # an empty string, or another kind of value: ask
        for kv in log.attributes:
            if kv.value.WhichOneof("value") != "string_value":
                cells[kv.key] = scalar_text(any_value(kv.value))
    return cells


def otlp_columns(request: Any) -> Records:
    """The records of one decoded ``ExportLogsServiceRequest``, in order, as columns.

    The per-record Python is the protobuf walk (~30 values per Envoy record, ~130 us per record: a wrapper
    object per value); a serialized export of the common shape is read without it by
    :func:`tlsdetect.readers.envoy.otlp_wire.export_records`, into the same :func:`columns_records`.
    """
    columns: dict[str, list[str | None]] = {}
    times: list[int] = []
    for resource in request.resource_logs:
        for scope in _field(resource, "scope_logs", "instrumentation_library_logs"):
            for log in _field(scope, "log_records", "logs"):
                row = _attributes(log)
                if log.HasField("body"):
                    row = {**_body(log), **row}
                i = len(times)
                for key, value in row.items():
                    col = columns.get(key)
                    if col is None:
                        col = columns[key] = []
                    if len(col) < i:
                        col.extend([None] * (i - len(col)))
                    col.append(value)
                times.append(log.time_unix_nano)
    return columns_records(len(times), columns, np.asarray(times, dtype=np.uint64))


def columns_records(n: int, columns: dict[str, list[str | None]], times: np.ndarray[Any, Any]) -> Records:
    """``n`` records from their cells by key (a column may stop short: the rest is missing) and their
    ``time_unix_nano`` (the start time of a record that has no start-time attribute; 0: unset)."""
    rec = Records(n)
    if not n:
        return rec
    rec.arrays = {k: pa.array(v if len(v) == n else v + [None] * (n - len(v)), type=pa.string())
                  for k, v in columns.items()}  # fmt: skip
    if times.any():
        start = None
        for key in _START_KEYS:
            if key in rec.arrays:
                filled = pc.fill_null(pc.greater(pc.utf8_length(rec.arrays[key]), 0), False)
                start = filled if start is None else pc.or_(start, filled)
        ns = times.astype(np.uint64).astype(np.int64)
        unset = ns == 0
        if start is not None:
            unset |= start.to_numpy(zero_copy_only=False)
        ts = pa.array(ns // 1000, type=pa.timestamp("us", tz="UTC"), mask=unset)
        millis = pc.cast(pc.floor_temporal(ts, unit="millisecond"), pa.timestamp("ms", tz="UTC"))
        when = pc.strftime(millis, format="%Y-%m-%dT%H:%M:%SZ")
        given = rec.arrays.get("START_TIME")
        rec.arrays["START_TIME"] = when if given is None else pc.if_else(pc.is_null(when), given, when)
    return rec


def _field(message: Any, new: str, old: str) -> Any:
    value = getattr(message, new, None)
    return value if value is not None else getattr(message, old)


def otlp_records(request: Any) -> list[dict[str, str]]:
    """The records of one ``ExportLogsServiceRequest`` as dicts of their non-empty values (tests)."""
    return otlp_columns(request).dicts()


def json_names(logs_module: Any) -> tuple[str, str]:
    """The JSON names of ``ResourceLogs`` field 2 and of its records' field 2 in the generated module."""
    scope = logs_module.ResourceLogs.DESCRIPTOR.fields_by_number[2]
    return scope.json_name, scope.message_type.fields_by_number[2].json_name


def otlp_json(doc: object, scope_key: str, records_key: str) -> object:
    """An OTLP/JSON export made readable by protobuf's JSON parser with the generated module at hand.

    ``scopeLogs``/``logRecords`` (or the older ``instrumentationLibraryLogs``/``logs``) are renamed to the
    names the module knows (:func:`json_names`); ``traceId``/``spanId`` are dropped: OTLP/JSON spells them
    in hex where protobuf's JSON expects base64, and no column needs them.
    """
    if not isinstance(doc, dict):
        return doc
    for resource in _items(doc.get("resourceLogs") or doc.get("resource_logs")):
        if not isinstance(resource, dict):
            continue
        _rename(resource, ("scopeLogs", "scope_logs", "instrumentationLibraryLogs", "instrumentation_library_logs"),
                scope_key)  # fmt: skip
        for scope in _items(resource.get(scope_key)):
            if not isinstance(scope, dict):
                continue
            _rename(scope, ("logRecords", "log_records", "logs"), records_key)
            for log in _items(scope.get(records_key)):
                if isinstance(log, dict):
                    for key in ("traceId", "spanId", "trace_id", "span_id"):
                        log.pop(key, None)
    return doc


def _items(value: object) -> list[Any]:
    """A JSON list, or nothing (a wrong shape is left for the protobuf parser to refuse)."""
    return value if isinstance(value, list) else []


def _rename(obj: dict[str, Any], names: tuple[str, ...], to: str) -> None:
    for key in names:
        if key in obj and key != to:
            obj[to] = obj.pop(key)
