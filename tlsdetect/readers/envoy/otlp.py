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

import datetime as dt
import json
from typing import Any

__all__ = ["any_value", "json_names", "otlp_json", "otlp_records"]

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


def _record(log: Any) -> dict[str, object]:
    rec: dict[str, object] = {}
    body = any_value(log.body) if log.HasField("body") else None
    if isinstance(body, str) and body.lstrip().startswith("{"):
        try:
            body = json.loads(body)
        except ValueError:
            body = None
    if isinstance(body, dict):
        rec.update({str(k): v for k, v in body.items()})
    for kv in log.attributes:
        rec[str(kv.key)] = any_value(kv.value)
    if log.time_unix_nano and not any(rec.get(k) for k in _START_KEYS):
        when = dt.datetime.fromtimestamp(log.time_unix_nano // 1_000_000_000, dt.UTC)
        when += dt.timedelta(microseconds=(log.time_unix_nano % 1_000_000_000) // 1000)
        rec["START_TIME"] = when.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return rec


def _field(message: Any, new: str, old: str) -> Any:
    value = getattr(message, new, None)
    return value if value is not None else getattr(message, old)


def otlp_records(request: Any) -> list[dict[str, object]]:
    """The records of one ``ExportLogsServiceRequest``, in order."""
    return [
        _record(log)
        for resource in request.resource_logs
        for scope in _field(resource, "scope_logs", "instrumentation_library_logs")
        for log in _field(scope, "log_records", "logs")
    ]


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
