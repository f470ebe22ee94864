"""The API's pydantic models: the request rows, the answers, and the errors, as the OpenAPI document shows them.

The routes answer with bytes they serialise themselves (a cached lookup is sent as it was stored),
so the answer models document and test the answers rather than build them. The request models
validate every field before anything reads it: a connection is a row of the connections table
(:data:`tlsdetect.schema.COLUMNS`), every column optional, each of its JSON type with no coercion
(``"yes"`` is no boolean, ``"443"`` no port), addresses as IP addresses, ports and 16-bit code points
in range, fingerprints and digests in their shape, text bounded (issue 18 #15).
"""

from __future__ import annotations

import ipaddress
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, create_model

from tlsdetect import schema
from tlsdetect.detect.scoring import SCORE_OUTPUT_COLUMNS

__all__ = [
    "FINGERPRINT_PATTERN", "Connection", "ErrorBody", "FingerprintInfo", "Health", "Reason", "ScoreResponse",
    "ScoredConnection", "connections_frame", "score_request_model",
]

#: A JA4 or a JA3/JA3N by shape (either case): the path parameter's documented and enforced pattern.
_JA4_A = r"[tqdTQD](?:1[0-3]|[sS][23]|[dD][0-3]|00)[diDI][0-9]{4}[0-9a-zA-Z]{2}"  # JA4's first part
_JA4_HASHED = _JA4_A + r"_[0-9a-fA-F]{12}_[0-9a-fA-F]{12}"
FINGERPRINT_PATTERN = rf"^(?:{_JA4_HASHED}|[0-9a-fA-F]{{32}})$"


class ErrorBody(BaseModel):
    """Every error answer: a stable machine-readable code and a human-readable detail."""

    error: str = Field(description="machine-readable code, e.g. not_a_fingerprint, invalid_request, unauthorized")
    detail: Any = Field(description="what was wrong: a message, or the list of invalid fields")


class KnownProduct(BaseModel):
    product: str
    product_type: str | None
    kind: str
    source: str | None


class KnownApplication(BaseModel):
    application: str
    family: str | None
    kind: str
    source: str | None


class KnownStack(BaseModel):
    stack: str
    version: str | None
    kind: str
    source: str | None


class Prevalence(BaseModel):
    kind: str
    connections: int
    clients: int
    share_of_connections: float
    first_seen: str | None
    last_seen: str | None


class ClientUse(BaseModel):
    client_id: str
    count: int
    first_seen: str | None
    last_seen: str | None


class SimilarFingerprint(BaseModel):
    name: str = Field(description="the application, stack or baseline client (\"baseline client ID\") that sends it")
    value: str = Field(description="its JA4")
    match: Literal["stack", "ja4_ab"] = Field(description="stack: only the SNI flag differs; ja4_ab: JA4_c differs")
    source: str | None


class FingerprintInfo(BaseModel):
    """What the knowledge base and the baseline say about one fingerprint (``tlsdetect lookup --json``)."""

    fingerprint: str = Field(description="the fingerprint, lower case")
    kind: str = Field(description="ja4, or ja3/ja3n for 32 hex digits (the two cannot be told apart by shape)")
    verdict: Literal["intercepted", "suspicious", "ok", "unknown"]
    known_products: list[KnownProduct] = Field(description="interception products with this fingerprint, and sources")
    applications: list[KnownApplication]
    stacks: list[KnownStack]
    prevalence: Prevalence | None = Field(description="use in the baseline; null when never seen there")
    clients: list[ClientUse] = Field(description="the baseline's clients that send it most")
    similar: list[SimilarFingerprint] = Field(
        default_factory=list, description="for a JA4 without an exact match: known JA4s of its stack or JA4_ab")
    why: list[str]
    baseline_generation: int


class Health(BaseModel):
    status: Literal["ok", "degraded"] = Field(description="degraded: the last reload failed, an older baseline serves")
    version: str
    baseline: str
    baseline_generation: int
    baseline_loaded_at: str
    baseline_connections: int
    last_reload_error: str | None


def _timestamp(value: str | None) -> str | None:
    """An ISO 8601 time (UTC when no offset is given), kept to the nanosecond, as ISO text in UTC."""
    if value is None:
        return None
    if not value[:4].isdigit():
        raise ValueError("not an ISO 8601 time (YYYY-MM-DDTHH:MM:SS[.fraction][offset])")
    try:
        ts = pd.Timestamp(value).as_unit("ns")
    except (ValueError, TypeError, OverflowError, AttributeError) as exc:
        raise ValueError(f"not an ISO 8601 time within 1677..2262 ({exc})") from None
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return str(ts.isoformat())


def _ip(value: str | None) -> str | None:
    """An IPv4 or IPv6 address, kept as it was written (the outputs carry it as sent)."""
    if value is not None:
        try:
            ipaddress.ip_address(value)
        except ValueError:
            raise ValueError("not an IPv4 or IPv6 address") from None
    return value


_MD5 = r"^[0-9a-fA-F]{32}$"
_JA4 = rf"^{_JA4_HASHED}$"
_JA4_RAW = rf"^{_JA4_A}_[0-9a-fA-F,]*_[0-9a-fA-F,_]*$"  # JA4_r/JA4_ro: the lists before hashing
_JA3_TEXT = r"^[0-9,\-]*$"  # JA3/JA3S before hashing: decimal numbers joined by , and -
#: Text columns with a shape: (pattern, most characters, what it is), by the columns that have it.
_SHAPES: tuple[tuple[tuple[str, ...], tuple[str, int, str]], ...] = (
    (("ja3", "ja3n", "ja3s", "ja3_retry"), (_MD5, 32, "an MD5 (32 hex digits)")),
    (("ja4", "ja4_o", "ja4_retry"), (_JA4, 36, "a JA4 (t13d1516h2_8daaf6152771_02713d6af862)")),
    (("ja4_r", "ja4_ro"), (_JA4_RAW, 65_536, "a raw JA4 (its lists in hex before hashing)")),
    (("ja3_full", "ja3s_full"), (_JA3_TEXT, 65_536, "a JA3 string (771,4865-4866,...)")),
    (("server_cert_sha256", "peer_cert_sha256"), (r"^[0-9a-fA-F]{64}$", 64, "a SHA-256 (64 hex digits)")),
    (("server_issuer_akid", "peer_issuer_akid"), (r"^[0-9a-fA-F]*$", 128, "a key identifier in hex")),
    (("server_spki_sha256", "peer_spki_sha256"), (r"^[A-Za-z0-9+/]{43}=$", 44, "an SPKI pin (base64 SHA-256)")),
)
_SHAPED = {column: shape for columns, shape in _SHAPES for column in columns}
_PORTS = frozenset({"client_port", "server_port"})
#: Int32 columns that hold a 16-bit code point of the protocol.
_U16_COLUMNS = frozenset({"ch_version", "sh_version", "sh_cipher", "sh_selected_version"})
_U16 = Annotated[int, Field(ge=0, le=0xFFFF)]
_HEX = Annotated[str, Field(pattern=r"^[0-9a-fA-F]*$", max_length=510)]
_INT32 = Annotated[int | None, Field(ge=-(2**31), le=2**31 - 1)]
#: A handshake message is at most 2**24 - 1 bytes plus its 4-byte header; records are shorter.
_LENGTH = Annotated[int, Field(ge=0, le=2**24 + 3)]
#: List columns of lengths (a flight's records or messages), not 16-bit code points.
_LENGTH_LISTS = frozenset({"server_flight", "client_flight"})


def _input_field(name: str, dtype: str) -> tuple[Any, Any]:
    if name in ("client_ip", "server_ip"):
        return (Annotated[str | None, AfterValidator(_ip)],
                Field(default=None, max_length=64, description="an IPv4 or IPv6 address"))
    if name in _SHAPED:
        pattern, longest, what = _SHAPED[name]
        return (str | None, Field(default=None, pattern=pattern, max_length=longest, description=what))
    if dtype in ("string", "category"):  # category: the certificate columns, text on the wire
        return (str | None, Field(default=None, max_length=65_536))
    if name in _PORTS or name in _U16_COLUMNS:
        return (_U16 | None, Field(default=None, description="a TCP/UDP port" if name in _PORTS else "16-bit value"))
    if dtype == "Int32":
        return (_INT32, None)
    if dtype == "boolean":
        return (bool | None, None)  # strict (the model's config): true/false, not "yes" or 1
    if dtype.startswith("datetime64"):
        return (Annotated[str | None, AfterValidator(_timestamp)],
                Field(default=None, max_length=64, description="ISO 8601 (to the nanosecond); UTC when no offset"))
    if name == "ch_alpn":
        return (list[_HEX] | None, Field(default=None, max_length=256,
                                         description="each offered protocol as hex (e.g. 6832 for h2)"))
    if name in _LENGTH_LISTS:
        return (list[_LENGTH] | None, Field(default=None, max_length=4096,
                                            description="record or handshake message lengths in wire order"))
    return (list[_U16] | None, Field(default=None, max_length=4096, description="16-bit values in wire order"))


#: One row of the connections table (``tlsdetect fingerprint --format jsonl``); every column optional.
Connection: type[BaseModel] = create_model(  # type: ignore[call-overload]
    "Connection",
    __config__=ConfigDict(extra="forbid", strict=True),
    __doc__="One TLS connection: the columns of the connections table (tlsdetect fingerprint -f jsonl), all optional.",
    **{name: _input_field(name, dtype) for name, dtype in schema.COLUMNS.items()},
)


class Reason(BaseModel):
    """One piece of evidence for a verdict; every field is text (numbers too), see ``schema.REASON_FIELDS``."""

    code: str = Field(description="the signal that fired (tlsdetect.detect.evidence.SIGNALS)")
    detail: str = Field(description="what was seen, in a sentence for an analyst")
    expected: str | None = Field(default=None, description="what the baseline or knowledge predicts, as text")
    observed: str | None = Field(default=None, description="what this connection shows, as text (numbers too)")


def _output_field(name: str) -> tuple[Any, Any]:
    if name == "score":
        return (float, ...)
    if name == "verdict":
        return (Literal["ok", "suspicious", "intercepted"], ...)
    if name == "reasons":
        return (list[Reason], ...)
    if schema.COLUMNS.get(name) == "Int32":
        return (int | None, None)
    if schema.COLUMNS.get(name) == "boolean":
        return (bool | None, None)
    return (str | None, None)


ScoredConnection: type[BaseModel] = create_model(  # type: ignore[call-overload]
    "ScoredConnection",
    __doc__="A scored connection: the columns tlsdetect score --format jsonl writes.",
    **{name: _output_field(name) for name in SCORE_OUTPUT_COLUMNS},
)


class ScoreSummary(BaseModel):
    connections: int
    verdicts: dict[str, int]
    top_reasons: dict[str, int]
    top_flagged_clients: dict[str, int]


class ScoreResponse(BaseModel):
    rows: list[ScoredConnection]  # type: ignore[valid-type]
    summary: ScoreSummary
    baseline_generation: int


def score_request_model(max_batch: int) -> type[BaseModel]:
    """The body of ``POST /v1/score`` for one app: at most ``max_batch`` connections (in its OpenAPI schema too;
    a longer batch fails validation with ``too_long``, which the app answers with 413)."""
    model: type[BaseModel] = create_model(
        "ScoreRequest",
        __config__=ConfigDict(extra="forbid"),
        __doc__=f"A batch of at most {max_batch} connections to score.",
        connections=(list[Connection], Field(max_length=max_batch)),  # type: ignore[valid-type]
    )
    return model


def connections_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Validated request rows -> a connections table with the schema's dtypes.

    Each column is built once in its dtype, and a column no row gives is the schema's missing column: a
    request row names a few of the ~60 columns, and building all of them as objects to cast them
    afterwards cost most of a one-row request's own time (issue 18 #15). The missing columns of one dtype
    share one missing array here: building each (a Series, a categorical's dtype) cost ~6 ms of fixed time
    per request, and the frame constructor copies a dict's arrays, so the table's columns are still apart.
    """
    if not rows:
        return schema.empty()
    index = pd.RangeIndex(len(rows))
    data: dict[str, Any] = {}
    blank: dict[str, Any] = {}  # dtype -> its all-missing array, built once per call
    for col, dtype in schema.COLUMNS.items():
        values = [r.get(col) for r in rows]
        if all(v is None for v in values):
            if dtype not in blank:
                blank[dtype] = schema.missing(dtype, index).array
            data[col] = blank[dtype]
        elif dtype == "object":  # the lists as tuples (hashable, as every reader gives them)
            cells = np.empty(len(values), dtype=object)
            cells[:] = [tuple(v) if isinstance(v, list) else None for v in values]
            data[col] = cells
        elif dtype.startswith("datetime64"):  # ts, peer_not_before/after
            # in the schema's unit: pandas infers microseconds from whole-second ISO text
            data[col] = pd.to_datetime(pd.Series(values, dtype=object), utc=True, format="ISO8601").dt.as_unit(
                "ns").array
        elif dtype == "category":
            data[col] = schema.as_category(pd.Series(values, dtype="string")).array
        else:
            data[col] = pd.array(values, dtype=dtype)  # type: ignore[call-overload]
    return pd.DataFrame(data, index=index)
