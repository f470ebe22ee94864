"""The key map: Envoy command operators and JSON keys -> the raw columns every Envoy reader fills.

A JSON log may use any key names: the defaults are the keys of the project's sample configuration
and, for every supported operator, the names derived from it (``downstream_remote_address``,
``DOWNSTREAM_REMOTE_ADDRESS``, ``%DOWNSTREAM_REMOTE_ADDRESS%``, ``downstreamRemoteAddress``);
``mapping={json_key: column}`` adds custom ones, which win. A text log's format string names the
operators themselves.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

__all__ = ["CORE", "OPERATORS", "RAW_COLUMNS", "candidates", "default_mapping"]

#: Envoy command operator -> raw column. ``client_address``/``server_address`` are split later;
#: ``method``, ``response_code`` and ``access_log_type`` only tell HTTP from listener lines.
OPERATORS: Mapping[str, str] = {
    "START_TIME": "ts",
    "DOWNSTREAM_REMOTE_ADDRESS": "client_address",
    "DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT": "client_address",
    "DOWNSTREAM_LOCAL_ADDRESS": "server_address",
    "DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT": "server_address",
    "REQUESTED_SERVER_NAME": "sni",
    "DOWNSTREAM_TLS_VERSION": "tls_version",
    "DOWNSTREAM_TLS_CIPHER": "tls_cipher",
    "TLS_JA3_FINGERPRINT": "ja3",
    "TLS_JA4_FINGERPRINT": "ja4",
    "DOWNSTREAM_PEER_SUBJECT": "peer_subject",
    "DOWNSTREAM_PEER_ISSUER": "peer_issuer",
    "DOWNSTREAM_PEER_FINGERPRINT_256": "peer_cert_sha256",
    "DOWNSTREAM_PEER_URI_SAN": "peer_uri_san",
    "DOWNSTREAM_PEER_CERT": "peer_cert_pem",
    "DOWNSTREAM_PEER_SERIAL": "peer_serial",
    "DOWNSTREAM_PEER_CERT_V_START": "peer_not_before",
    "DOWNSTREAM_PEER_CERT_V_END": "peer_not_after",
    "UPSTREAM_PEER_SUBJECT": "server_subject",
    "UPSTREAM_PEER_ISSUER": "server_issuer",
    "UPSTREAM_PEER_FINGERPRINT_256": "server_cert_sha256",
    "UPSTREAM_PEER_CERT": "server_cert_pem",
    "CONNECTION_ID": "conn_id",
    "REQ(USER-AGENT)": "user_agent",
    "REQ(:METHOD)": "method",
    "RESPONSE_CODE": "response_code",
    "ACCESS_LOG_TYPE": "access_log_type",
}

#: Raw columns a line may carry (mapping targets).
RAW_COLUMNS = (
    "ts", "client_address", "server_address", "client_ip", "client_port", "server_ip", "server_port",
    "sni", "tls_version", "tls_cipher", "alpn", "ja3", "ja4", "peer_subject", "peer_issuer", "peer_cert_sha256",
    "peer_uri_san", "server_subject", "server_issuer", "server_cert_sha256", "conn_id", "user_agent",
    "client_id", "method", "response_code", "access_log_type", "peer_cert_pem", "server_cert_pem", "peer_serial",
    "peer_not_before", "peer_not_after",
)  # fmt: skip

#: Keys seen in the wild for some columns, beyond the operator-derived names.
_EXTRA_KEYS: Mapping[str, str] = {
    "ja3": "ja3",
    "ja4": "ja4",
    "ja3_fingerprint": "ja3",
    "ja4_fingerprint": "ja4",
    "tls_ja3": "ja3",
    "tls_ja4": "ja4",
    "connection_id": "conn_id",
    "sni": "sni",
    "method": "method",
    "user_agent": "user_agent",
    "user-agent": "user_agent",
    "downstream_peer_uri_san": "peer_uri_san",
    "spiffe_id": "peer_uri_san",
}

#: Columns whose presence makes a JSON object an Envoy access-log record (for format detection).
CORE = frozenset(
    {"client_address", "server_address", "client_ip", "server_ip", "ja3", "ja4", "sni", "conn_id",
     "peer_subject", "peer_issuer", "tls_version"}
)  # fmt: skip


def _snake(op: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", op.lower()).strip("_")


def _camel(op: str) -> str:
    head, *rest = _snake(op).split("_")
    return head + "".join(p.title() for p in rest)


def default_mapping() -> dict[str, str]:
    """The default ``{json_key: column}``: sample-config keys plus operator-derived names."""
    out: dict[str, str] = {}
    for op, col in OPERATORS.items():
        for key in (_snake(op), op, f"%{op}%", _camel(op)):
            out.setdefault(key, col)
    for key, col in _EXTRA_KEYS.items():
        out.setdefault(key, col)
    return out


def candidates(mapping: Mapping[str, str] | None) -> dict[str, list[str]]:
    """Column -> JSON keys in priority order (custom keys first)."""
    merged: dict[str, list[str]] = {}
    for source in (mapping or {}, default_mapping()):
        for key, col in source.items():
            if col not in RAW_COLUMNS:
                raise ValueError(f"mapping target {col!r} is not a column read_envoy fills; choose from {RAW_COLUMNS}")
            keys = merged.setdefault(col, [])
            if key not in keys:
                keys.append(key)
    return merged
