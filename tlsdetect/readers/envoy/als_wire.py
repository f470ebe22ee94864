"""Serialized gRPC access-log service messages to records: the compiled walk when it can read them.

``_pushwire.als_columns`` (C, built by ``setup.py`` when a compiler is at hand) reads a
``StreamAccessLogsMessage``'s entries straight from the wire bytes into the fields
:func:`tlsdetect.readers.envoy.als.entry_columns` formats, with protobuf's merge rules; the generated
classes cost ~40 us a record in attribute reads alone. A message with custom tags, or one the walk is
unsure of, is parsed by protobuf and mapped by :func:`~tlsdetect.readers.envoy.als.als_columns`: the
same cells either way (the tests compare them); what is not protobuf is refused by protobuf's parser.

As for OTLP (:mod:`tlsdetect.readers.envoy.otlp_wire`), fields no column reads (the identifier, the
local certificate, the session id, ...) are skipped without being validated.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tlsdetect.readers.envoy.als import Entries, als_columns, entry_columns
from tlsdetect.readers.envoy.otlp_wire import compiled_module
from tlsdetect.readers.envoy.records import Records

__all__ = ["decode_message", "message_records"]


def decode_message(data: bytes, *, fast: bool = True) -> Entries | Any:
    """The message's entries (the compiled walk; not yet formatted), or the decoded ``StreamAccessLogsMessage``
    to map with :func:`~tlsdetect.readers.envoy.als.als_columns`; bytes that are not a message raise
    protobuf's error."""
    module = compiled_module() if fast else None
    if module is not None:
        got = module.als_columns(data)
        if got is not None:
            n, http, ints, texts = got
            fields = np.frombuffer(ints, dtype="<i8").reshape(n, 9).T
            return Entries(n, http, fields, list(texts))
    from envoy.service.accesslog.v3 import als_pb2

    return als_pb2.StreamAccessLogsMessage.FromString(data)


def message_records(data: bytes, *, fast: bool = True) -> Records:
    """The records of a serialized message, by whichever path reads it (``fast=False``: protobuf's)."""
    got = decode_message(data, fast=fast)
    return entry_columns(got.num_rows, got.http, got.ints, got.texts) if isinstance(got, Entries) else als_columns(got)
