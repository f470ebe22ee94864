"""Serialized OTLP logs exports to records: the compiled walk when the export has the common shape.

Envoy's OpenTelemetry logger sends records whose attributes are all strings and which have no body. For
those, ``_pushwire`` (C, built by ``setup.py`` when a compiler is at hand) reads the wire bytes straight
into columns: ~2 us a record where protobuf's classes take ~17 us to parse and ~130 us to walk. Any other
shape (a body, a number or a list as a value, anything the walk is unsure of) is parsed by protobuf and
mapped by :func:`tlsdetect.readers.envoy.otlp.otlp_columns`; both end in the same
:func:`~tlsdetect.readers.envoy.otlp.columns_records`, so a record gives the same cells either way (the
tests compare them). What is not protobuf is refused by protobuf's parser, as before.

The walk skips the fields no column reads (resource, scope, severity, trace ids) without validating them:
an export whose only damage is there is read, where protobuf would refuse it.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

import numpy as np

from tlsdetect.readers.envoy.otlp import columns_records
from tlsdetect.readers.envoy.records import Records

__all__ = ["compiled", "compiled_module", "decode_export", "export_records"]

_pushwire: ModuleType | None
try:
    from tlsdetect.readers.envoy import _pushwire
except ImportError:  # no compiler at install time: protobuf reads every export
    _pushwire = None


def compiled() -> bool:
    """Whether the compiled walk is built (else every export goes through protobuf)."""
    return _pushwire is not None


def compiled_module() -> ModuleType | None:
    """The compiled walks (OTLP and ALS), None when not built."""
    return _pushwire


def _request_type() -> Any:
    return importlib.import_module("opentelemetry.proto.collector.logs.v1.logs_service_pb2").ExportLogsServiceRequest


def decode_export(data: bytes, *, fast: bool = True) -> Records | Any:
    """The export's records (the compiled walk), or the decoded ``ExportLogsServiceRequest`` to map with
    :func:`~tlsdetect.readers.envoy.otlp.otlp_columns`; bytes that are not an export raise protobuf's error."""
    if fast and _pushwire is not None:
        got = _pushwire.otlp_columns(data)
        if got is not None:
            n, times, columns = got
            return columns_records(n, columns, np.frombuffer(times, dtype="<u8"))
    return _request_type().FromString(data)


def export_records(data: bytes, *, fast: bool = True) -> Records:
    """The records of a serialized export, by whichever path reads it (``fast=False``: protobuf's)."""
    from tlsdetect.readers.envoy.otlp import otlp_columns

    got = decode_export(data, fast=fast)
    return got if isinstance(got, Records) else otlp_columns(got)
