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

__all__ = ["any_value", "json_names", "otlp_columns", "otlp_json", "otlp_records"]

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


def _body(log: Any, rec: Records, i: int) -> None:
    """A body that is a JSON object (as text) or a key-value list adds its keys (attributes, put later, win)."""
    body = any_value(log.body)
    if isinstance(body, str) and body.lstrip().startswith("{"):
        try:
            body = json.loads(body)
        except ValueError:
            body = None
    if isinstance(body, dict):
        for k, v in body.items():
            rec.put(i, str(k), scalar_text(v))


def otlp_columns(request: Any) -> Records:
    """The records of one ``ExportLogsServiceRequest``, in order, as columns.

    The per-record Python is the attribute walk only; a string attribute (what Envoy's logger sends) is read
    without asking its kind; times are formatted over the whole column.
    """
    rec = Records()
    times: list[int] = []
    i = 0
    put = rec.put
    for resource in request.resource_logs:
        for scope in _field(resource, "scope_logs", "instrumentation_library_logs"):
            for log in _field(scope, "log_records", "logs"):
                if log.HasField("body"):
                    _body(log, rec, i)
                for kv in log.attributes:
                    value = kv.value
                    text = value.string_value
                    if not text and value.WhichOneof("value") != "string_value":
                        text = scalar_text(any_value(value))
                    put(i, kv.key, text)
                times.append(log.time_unix_nano)
                i += 1
    rec.rows = i
    if i and any(times):
        start = None
        for key in _START_KEYS:
            if key in rec.columns:
                cells = pa.array(rec.columns[key] + [None] * (i - len(rec.columns[key])), type=pa.string())
                filled = pc.fill_null(pc.greater(pc.utf8_length(cells), 0), False)
                start = filled if start is None else pc.or_(start, filled)
        ns = np.asarray(times, dtype=np.uint64).astype(np.int64)
        unset = ns == 0
        if start is not None:
            unset |= start.to_numpy(zero_copy_only=False)
        ts = pa.array(ns // 1000, type=pa.timestamp("us", tz="UTC"), mask=unset)
        millis = pc.cast(pc.floor_temporal(ts, unit="millisecond"), pa.timestamp("ms", tz="UTC"))
        rec.arrays["START_TIME"] = pc.strftime(millis, format="%Y-%m-%dT%H:%M:%SZ")
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
