"""Suricata EVE JSON ``tls`` (and ``quic``) events -> the connections table.

One EVE line with ``"event_type": "tls"`` is one row; the ``quic`` events of one flow are one row
(:mod:`tlsdetect.readers.suricata_quic`; the others are counted in ``stats.reasons["quic-folded"]``).
Other event types (alert, flow, dns, ...)
are skipped and counted in ``stats.reasons["not-tls"]`` (they are not errors and are not
dead-lettered; ``stats.bad_lines`` is not increased). A line that is not JSON, not a JSON
object, has no ``event_type``, or lacks the flow keys (``timestamp``, ``src_ip``, ``src_port``,
``dest_ip``, ``dest_port``), or has a timestamp that is not ISO 8601 or lies outside the
table's nanosecond range goes to the dead-letter file with its reason. ``flow_id`` is optional
(``conn_id`` is then missing). A file in which not one line is an EVE record raises
:class:`LogFormatError` and leaves the statistics and the dead-letter file untouched.
Blank lines are not counted. Invariant: ``rows + bad_lines + reasons["not-tls"] + reasons["quic-folded"]
== lines``.

Parsing is one bulk ``json.loads`` over the whole file; only if that fails (or a line may nest
deeper than :data:`~tlsdetect.readers.json_depth.MAX_DEPTH`) is each line parsed on its own to find
the bad ones; a line nested deeper is ``bad-json`` without being parsed. Derived values (JA3N, JA4,
SHA-1 normalisation) are computed once per distinct input.

Field mapping (Suricata's documented names):

========================================  =============================================
EVE                                       connections table
========================================  =============================================
``timestamp`` (ISO 8601 with offset)      ``ts`` (UTC)
``flow_id``                               ``conn_id`` (decimal string)
``src_ip``/``src_port``                   ``client_ip``/``client_port``
``dest_ip``/``dest_port``                 ``server_ip``/``server_port``
``proto``/``app_proto``                   ``transport``: ``tcp``; ``quic`` when UDP and
                                          the app protocol says QUIC; else missing
``tls.sni``                               ``sni``
``tls.version`` (``"TLS 1.2"``, ...)      ``tls_version`` (``TLSv1.2``, ...)
``tls.subject``/``tls.issuerdn``          ``server_subject``/``server_issuer`` as printed
                                          (certificate order; the enrichment stage keys
                                          them with ``dn_order="x509"``)
``tls.fingerprint`` (SHA-1 ``aa:bb:..``)  extra column ``server_cert_sha1`` (lowercase
                                          hex, colons removed); never ``*_sha256``
``tls.chain`` (base64 DER certificates,   ``server_chain`` (each certificate with its
leaf first; ``custom: [chain]``)          SPKI pin), ``server_cert_sha256``,
                                          ``server_spki_sha256``, ``server_issuer_akid``
``tls.client.{subject,issuerdn,           ``peer_subject``/``peer_issuer``/
fingerprint}`` (mTLS, Suricata >= 7)      ``peer_cert_sha1`` (extra)
``tls.ja3.hash``/``tls.ja3.string``       ``ja3``/``ja3_full``; ``ja3n`` derived from the
                                          string (extensions sorted, MD5)
``tls.ja3s.hash``/``tls.ja3s.string``     ``ja3s``/``ja3s_full``
``tls.ja4`` (Suricata >= 8)               ``ja4``
``tls.client_handshake.ciphers/exts/      ``ch_ciphers``/``ch_extensions``/``ch_sig_algs``
sig_algs`` (Suricata >= 8)                (tuples of ints, in the order logged)
``tls.client_alpns`` (Suricata >= 8)      ``ch_alpn`` (each protocol as lowercase hex)
``tls.server_handshake.cipher/exts``      ``sh_cipher``/``sh_extensions``
``tls.version`` ``"TLS 1.3"``             ``sh_selected_version`` ``0x0304``
``tls.session_resumed``                   ``resumed``: written only when true (before 1.3,
                                          no certificate seen): absent is missing, not false
========================================  =============================================

Not in EVE, so missing: the flights, ``sh_version``, ``sh_session_id_echoed``.

``source`` is ``suricata``; ``fingerprint_origin`` is ``suricata`` for every row that carries a
JA3, JA3S or JA4 from the log.

What can honestly be recomputed, and what is not
------------------------------------------------
Suricata 8's ``client_handshake`` object (``rust/src/handshake.rs``) holds ``version`` as a
*string*, and it is the highest version the client offered (the maximum over the legacy
version and supported_versions), not the legacy ``ClientHello.version``. It does not log the
supported groups, the EC point formats, or the supported_versions list. Suricata's
``HandshakeParams`` also drops GREASE values from ciphers, extensions and signature
algorithms in the releases read while writing this (the lists are kept exactly as logged, so
a build that keeps GREASE works too).

* **JA3 cannot be recomputed** from these fields (no groups, no point formats, no legacy
  version). So ``ch_version``, ``ch_groups``, ``ch_point_formats`` and
  ``ch_supported_versions`` stay missing. Leaving ``ch_version`` missing is deliberate:
  :func:`tlsdetect.fingerprint.add_fingerprints` only recomputes rows with ``ch_version``,
  so it keeps Suricata's own JA3/JA4 values instead of overwriting them with a JA3 computed
  from half a hello. ``ja3n`` is derived from ``tls.ja3.string`` itself (that string is the
  complete JA3 input), which is exact.
* **JA4 can be recomputed** when ``client_handshake`` is present and either the ALPN extension
  (16) is absent or ``client_alpns`` was logged: JA4's version is the highest
  supported_versions entry (or the legacy version without that extension), which is exactly
  what Suricata logs. This reader does that with :func:`tlsdetect.fingerprint.ja4` to fill
  ``ja4_r``, ``ja4_o`` and ``ja4_ro`` (which Suricata does not log), and ``ja4`` itself when
  Suricata did not log one (``fingerprint_origin`` is then ``computed`` unless the row also
  carries Suricata's JA3/JA3S). When Suricata's JA4 and the recomputed one differ, Suricata's
  value is kept, the ``_r``/``_o``/``_ro`` forms are left missing (they would describe a
  different hello) and a warning is recorded.

Size: one reader: the field table, the record checks and the JA4 recomputation serve only each other.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from tlsdetect import schema
from tlsdetect.fingerprint import ja4 as ja4_fingerprint
from tlsdetect.readers import json_depth
from tlsdetect.readers.logs import DeadLetter, LogFormatError, LogStats, open_text, valid_utf8
from tlsdetect.readers.pcap.tls_stream import chain_json
from tlsdetect.readers.suricata_quic import FOLDED as QUIC_FOLDED
from tlsdetect.readers.suricata_quic import quic_frame
from tlsdetect.wire.tls import parse_der_certificate

__all__ = ["read_suricata"]

#: Suricata's version strings (``SCTlsVersion::as_str``) -> tlsdetect's names.
_VERSION_NAMES = {
    "SSLv2": "SSLv2",
    "SSLv3": "SSLv3",
    "TLSv1": "TLSv1.0",
    "TLS 1.0": "TLSv1.0",
    "TLS 1.1": "TLSv1.1",
    "TLS 1.2": "TLSv1.2",
    "TLS 1.3": "TLSv1.3",
}
#: The same strings -> wire values, for JA4's version characters.
_VERSION_NUMBERS = {"SSLv2": 0x0200, "SSLv3": 0x0300, "TLSv1": 0x0301, "TLS 1.0": 0x0301,
                    "TLS 1.1": 0x0302, "TLS 1.2": 0x0303, "TLS 1.3": 0x0304}
_FLOW_KEYS = ("timestamp", "src_ip", "src_port", "dest_ip", "dest_port")
#: The event types read: ``tls`` here, ``quic`` folded per flow by :mod:`tlsdetect.readers.suricata_quic`.
_READ_EVENTS = ("tls", "quic")
_EXT_ALPN = 16
_TS_MIN = pd.Timestamp("1678-01-01", tz="UTC")
_TS_MAX = pd.Timestamp("2262-04-01", tz="UTC")


def _version_name(value: object) -> str | None:
    if not isinstance(value, str) or not value or value == "UNDETERMINED":
        return None
    if value in _VERSION_NAMES:
        return _VERSION_NAMES[value]
    if value.startswith("TLS 1.3 draft"):
        return "TLSv1.3"
    return value


def _selected_version(value: object) -> int | None:
    """The ServerHello's supported_versions value: only TLS 1.3 (drafts included) sends one."""
    number = _version_number(value)
    return number if number == 0x0304 else None


def _true_only(value: object) -> bool | None:
    """``session_resumed``: Suricata writes it only when true, so its absence is unknown, not false."""
    return True if value is True else None


def _version_number(value: object) -> int | None:
    if not isinstance(value, str):
        return None
    if value.startswith("TLS 1.3 draft"):
        return 0x0304
    return _VERSION_NUMBERS.get(value)


def _int_tuple(value: object) -> tuple[int, ...] | None:
    """A JSON list of 16-bit unsigned ints as a tuple; None for anything else (C-speed checks)."""
    if not isinstance(value, list):
        return None
    out = tuple(value)
    if out and (set(map(type, out)) != {int} or min(out) < 0 or max(out) > 0xFFFF):
        return None
    return out


def _str_or_none(value: object) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)) and not (isinstance(value, float) and np.isnan(value)):
        return str(int(value)) if isinstance(value, int) or float(value).is_integer() else str(value)
    return None


def _port(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and 0 <= value <= 65535:
        return value
    if isinstance(value, str) and value.isdigit() and int(value) <= 65535:
        return int(value)
    return None


def _sha1(value: object) -> str | None:
    return _sha1_text(value) if isinstance(value, str) else None


@lru_cache(maxsize=65536)
def _sha1_text(value: str) -> str | None:
    hexed = value.replace(":", "").strip().lower()
    return hexed if len(hexed) == 40 and all(c in "0123456789abcdef" for c in hexed) else None


def _sub(obj: dict[str, Any], key: str) -> dict[str, Any]:
    value = obj.get(key)
    return value if isinstance(value, dict) else {}


def _ja3n(ja3_full: object) -> str | None:
    """JA3N from a JA3 string: the same fields with the extension list sorted numerically."""
    return _ja3n_text(ja3_full) if isinstance(ja3_full, str) else None


@lru_cache(maxsize=65536)
def _ja3n_text(ja3_full: str) -> str | None:
    fields = ja3_full.split(",")
    if len(fields) != 5:
        return None
    try:
        exts = sorted(int(e) for e in fields[2].split("-") if e)
    except ValueError:
        return None
    fields[2] = "-".join(str(e) for e in exts)
    try:
        text = ",".join(fields).encode("ascii")
    except UnicodeEncodeError:
        return None
    return hashlib.md5(text, usedforsecurity=False).hexdigest()


_Bad = tuple[int, str, str]


def _parse_lines(lines: list[str]) -> tuple[list[dict[str, Any]], list[_Bad]]:
    """JSON objects of the non-blank lines (each tagged with ``__line__``) and the bad lines.

    The common case is one bulk parse of the whole file (the C JSON decoder over one array);
    only when it fails is each line parsed on its own to find the culprits.
    """
    numbered = [(i + 1, line) for i, line in enumerate(lines) if line.strip()]
    if not numbered:
        return [], []
    damaged: list[_Bad] = [(n, "invalid-utf8: raw bytes that are not UTF-8 (Suricata escapes them)", line)
                           for n, line in numbered if not valid_utf8(line)]
    if damaged:
        numbered = [(n, line) for n, line in numbered if valid_utf8(line)]
    # a line with more brackets than any record nests may be too deep: the per-line path bounds it
    if all(line.lstrip().startswith("{") and line.count("{") + line.count("[") <= json_depth.MAX_DEPTH
           for _, line in numbered):
        try:
            parsed = json.loads("[" + ",".join(line for _, line in numbered) + "]")
        except (ValueError, RecursionError):
            parsed = None
        if isinstance(parsed, list) and len(parsed) == len(numbered) and all(isinstance(o, dict) for o in parsed):
            return [dict(o, __line__=n) for (n, _), o in zip(numbered, parsed, strict=True)], damaged
    records: list[dict[str, Any]] = []
    bad: list[_Bad] = damaged
    for n, line in numbered:
        try:
            obj = json_depth.loads(line)
        except ValueError as exc:
            bad.append((n, f"bad-json: {exc}", line))
            continue
        if not isinstance(obj, dict):
            bad.append((n, "not-an-object: EVE lines are JSON objects", line))
            continue
        obj["__line__"] = n
        records.append(obj)
    return records, sorted(bad)


def _read_one(path: Path, dead_letter: DeadLetter) -> tuple[pd.DataFrame, int]:
    with open_text(path) as fh:
        lines = fh.read().splitlines()
    records, bad = _parse_lines(lines)
    eve = [r for r in records if isinstance(r.get("event_type"), str)]
    n_lines = sum(1 for line in lines if line.strip())
    if n_lines and not eve:
        raise LogFormatError(f"{path}: not Suricata EVE JSON (no line is a JSON object with an event_type)")
    stats = dead_letter.stats
    stats.files += 1
    stats.lines += n_lines
    bad += [(r["__line__"], "no-event-type: JSON object without event_type", lines[r["__line__"] - 1])
            for r in records if not isinstance(r.get("event_type"), str)]
    skipped = sum(1 for r in eve if r["event_type"] not in _READ_EVENTS)
    if skipped:
        stats.reasons["not-tls"] += skipped
    by_type: dict[str, list[dict[str, Any]]] = {t: [] for t in _READ_EVENTS}
    for r in (r for r in eve if r["event_type"] in _READ_EVENTS):
        missing = [k for k in _FLOW_KEYS if r.get(k) in (None, "")]
        if not missing and (_port(r["src_port"]) is None or _port(r["dest_port"]) is None):
            missing = ["src_port/dest_port (not a port number)"]
        if missing:
            bad.append((r["__line__"], f"missing-flow-keys: {', '.join(missing)}", lines[r["__line__"] - 1]))
            continue
        by_type[r["event_type"]].append(r)
    tls_records = by_type["tls"]
    frame, mismatches = _to_frame(tls_records) if tls_records else (schema.empty(), 0)
    if by_type["quic"]:  # QUIC flows come after the TLS rows; an event with a bad timestamp is a bad line
        q_ts = pd.to_datetime(pd.Series([r["timestamp"] if isinstance(r["timestamp"], str) else None
                                         for r in by_type["quic"]], dtype=object),
                              utc=True, format="ISO8601", errors="coerce")
        ok = ((q_ts >= _TS_MIN) & (q_ts <= _TS_MAX)).to_numpy(dtype=bool)
        for r in (r for r, good in zip(by_type["quic"], ok, strict=True) if not good):
            bad.append((r["__line__"], "bad-timestamp: not ISO 8601 with a UTC offset", lines[r["__line__"] - 1]))
        good_quic = [r for r, good in zip(by_type["quic"], ok, strict=True) if good]
        if good_quic:
            quic, folded = quic_frame(good_quic)
            if folded:
                stats.reasons[QUIC_FOLDED] += folded
            frame = schema.concat([frame, quic]) if len(frame) else quic
    if len(frame):
        bad_ts = frame["ts"].isna().to_numpy()
        if bad_ts.any():
            for i in np.flatnonzero(bad_ts).tolist():
                n = tls_records[i]["__line__"]
                bad.append((n, "bad-timestamp: not ISO 8601 with a UTC offset", lines[n - 1]))
            frame = frame.loc[~bad_ts].reset_index(drop=True)
    for n, reason, line in sorted(bad):
        dead_letter.add(path, n, reason, line)
    return frame, mismatches


#: How a logged value becomes a cell: (converter, dtype). ``None``: a string or nothing.
_CONVERTERS: dict[str, tuple[Callable[[Any], Any] | None, str]] = {
    "text": (None, "string"),
    "any_text": (str, "string"),
    "id": (_str_or_none, "string"),
    "port": (_port, "Int32"),
    "u16s": (_int_tuple, "object"),
    "version": (_version_name, "string"),
    "sha1": (_sha1, "string"),
    "selected": (_selected_version, "Int32"),
    "true_only": (_true_only, "boolean"),
}

#: EVE fields that are one column each: (path in the record, column, converter). The flow keys
#: (``src_ip``, ...) were checked to be present; the order is the table's order of the extras.
_FIELDS: tuple[tuple[tuple[str, ...], str, str], ...] = (
    (("flow_id",), "conn_id", "id"),
    (("src_ip",), "client_ip", "any_text"),
    (("src_port",), "client_port", "port"),
    (("dest_ip",), "server_ip", "any_text"),
    (("dest_port",), "server_port", "port"),
    (("tls", "sni"), "sni", "text"),
    (("tls", "version"), "tls_version", "version"),
    (("tls", "version"), "sh_selected_version", "selected"),
    (("tls", "session_resumed"), "resumed", "true_only"),
    (("tls", "ja3", "hash"), "ja3", "text"),
    (("tls", "ja3", "string"), "ja3_full", "text"),
    (("tls", "ja3s", "hash"), "ja3s", "text"),
    (("tls", "ja3s", "string"), "ja3s_full", "text"),
    (("tls", "subject"), "server_subject", "text"),
    (("tls", "issuerdn"), "server_issuer", "text"),
    (("tls", "client", "subject"), "peer_subject", "text"),
    (("tls", "client", "issuerdn"), "peer_issuer", "text"),
    (("tls", "client_handshake", "ciphers"), "ch_ciphers", "u16s"),
    (("tls", "client_handshake", "exts"), "ch_extensions", "u16s"),
    (("tls", "client_handshake", "sig_algs"), "ch_sig_algs", "u16s"),
    (("tls", "server_handshake", "cipher"), "sh_cipher", "port"),
    (("tls", "server_handshake", "exts"), "sh_extensions", "u16s"),
    (("tls", "fingerprint"), "server_cert_sha1", "sha1"),
    (("tls", "client", "fingerprint"), "peer_cert_sha1", "sha1"),
    (("tls", "ja4"), "ja4", "text"),
)


class _Objects:
    """The sub-objects of every record along a path (``("tls", "client")``), each found once."""

    def __init__(self, records: list[dict[str, Any]]) -> None:
        self._at: dict[tuple[str, ...], list[dict[str, Any]]] = {(): records}

    def at(self, path: tuple[str, ...]) -> list[dict[str, Any]]:
        if path not in self._at:
            self._at[path] = [_sub(o, path[-1]) for o in self.at(path[:-1])]
        return self._at[path]


def _map_fields(objects: _Objects) -> dict[str, list[Any]]:
    """Column -> cell values of the :data:`_FIELDS` table."""
    out: dict[str, list[Any]] = {}
    for path, column, kind in _FIELDS:
        parents, key, convert = objects.at(path[:-1]), path[-1], _CONVERTERS[kind][0]
        if convert is None:
            out[column] = [v if isinstance(v := o.get(key), str) else None for o in parents]
        else:
            out[column] = [convert(o.get(key)) for o in parents]
    return out


def _to_frame(records: list[dict[str, Any]]) -> tuple[pd.DataFrame, int]:
    """Map EVE tls records (flow keys already checked) to connections-table columns."""
    objects = _Objects(records)
    tls = objects.at(("tls",))
    fields = _map_fields(objects)
    proto = [str(r.get("proto", "")).upper() for r in records]
    app = [str(r.get("app_proto", "")).lower() for r in records]
    transport = [
        "tcp" if p in ("TCP", "") else ("quic" if "quic" in a else None) for p, a in zip(proto, app, strict=True)
    ]
    alpns: list[tuple[str, ...] | None] = []
    for t in tls:
        raw = t.get("client_alpns")
        if isinstance(raw, list) and all(isinstance(a, str) for a in raw):
            alpns.append(tuple(a.encode("utf-8", "surrogateescape").hex() for a in raw))
        else:
            alpns.append(None)
    ts = pd.to_datetime(
        pd.Series([r["timestamp"] if isinstance(r["timestamp"], str) else None for r in records], dtype=object),
        utc=True, format="ISO8601", errors="coerce",
    )
    # The table holds nanoseconds: a timestamp outside 1677..2262 is unreadable, not a crash.
    ts = ts.where((ts >= _TS_MIN) & (ts <= _TS_MAX)).astype("datetime64[ns, UTC]")
    data: dict[str, pd.Series] = {"ts": ts, "source": _series(["suricata"] * len(records), "string")}
    for _, column, kind in _FIELDS:
        if column not in _JA4_COLUMNS:
            data[column] = _series(fields[column], _CONVERTERS[kind][1])
        if column == "server_port":
            data["transport"] = _series(transport, "string")
        elif column == "ch_sig_algs":
            data["ch_alpn"] = _series(alpns, "object")
    data["alpn"] = _series(
        [bytes.fromhex(a[0]).decode("utf-8", "backslashreplace") if a else None for a in alpns], "string"
    )
    own_ja4 = fields["ja4"]
    origin: list[str | None] = [
        "suricata" if a is not None or b is not None or c is not None else None
        for a, b, c in zip(fields["ja3"], fields["ja3s"], own_ja4, strict=True)
    ]
    versions = [c.get("version") for c in objects.at(("tls", "client_handshake"))]
    inputs = [
        _ja4_inputs(*hello) for hello in zip(versions, fields["ch_ciphers"], fields["ch_extensions"],
                                             fields["ch_sig_algs"], alpns, transport, strict=True)
    ]
    fps, origin, mismatches = _recompute_ja4(inputs, own_ja4, origin)
    for name, values in fps.items():
        data[name] = _series(values, "string")
    data["fingerprint_origin"] = _series(origin, "string")
    data.update(_chain_columns([t.get("chain") for t in tls]))
    df = pd.DataFrame(data)
    df["ja3n"] = pd.array([_ja3n(v) for v in df["ja3_full"].astype(object)], dtype="string")
    return schema.conform(df), mismatches


def _chain_columns(raw: list[Any]) -> dict[str, pd.Series]:
    """``tls.chain`` (base64 DER, leaf first; logged with ``custom: [chain]``) -> ``server_chain`` with each
    certificate's SPKI pin, and the leaf's SHA-256, SPKI and issuing key. Each distinct chain is decoded once;
    a chain that is not a list of base64 certificates is left out (the row keeps the logged subject/issuer)."""
    keys = [tuple(c) if isinstance(c, list) and c and all(isinstance(x, str) for x in c) else None for c in raw]
    per: dict[tuple[str, ...], tuple[str, str, str | None, str | None] | None] = {}
    for key in dict.fromkeys(k for k in keys if k is not None):
        try:
            infos = tuple(parse_der_certificate(base64.b64decode(x, validate=True)) for x in key)
        except (ValueError, binascii.Error):
            per[key] = None
            continue
        per[key] = (chain_json(infos), infos[0].sha256, infos[0].spki, infos[0].akid) if infos else None
    got = [per.get(k) if k is not None else None for k in keys]
    names = ("server_chain", "server_cert_sha256", "server_spki_sha256", "server_issuer_akid")
    return {name: _series([g[i] if g else None for g in got], "string") for i, name in enumerate(names)}


def _series(values: list[Any], dtype: str) -> pd.Series:
    return pd.Series(values, dtype=dtype if dtype != "object" else object)


class _Ja4Inputs(NamedTuple):
    letter: str
    version: int
    ciphers: tuple[int, ...]
    exts: tuple[int, ...]
    first_alpn: bytes | None
    sig_algs: tuple[int, ...]


def _ja4_inputs(
    version: object,
    ciphers: tuple[int, ...] | None,
    exts: tuple[int, ...] | None,
    sig_algs: tuple[int, ...] | None,
    alpns: tuple[str, ...] | None,
    transport: str | None,
) -> _Ja4Inputs | None:
    """What JA4 needs, when the logged handshake holds all of it; else None."""
    number = _version_number(version)
    if number is None or ciphers is None or exts is None or (_EXT_ALPN in exts and alpns is None):
        return None
    first = bytes.fromhex(alpns[0]) if alpns else None
    return _Ja4Inputs("q" if transport == "quic" else "t", number, ciphers, exts, first, sig_algs or ())


_JA4_COLUMNS = ("ja4", "ja4_r", "ja4_o", "ja4_ro")


def _recompute_ja4(
    inputs: list[_Ja4Inputs | None], carried: list[str | None], origin: list[str | None]
) -> tuple[dict[str, list[str | None]], list[str | None], int]:
    """ja4/ja4_r/ja4_o/ja4_ro per row (computed once per distinct hello), the origin, mismatches."""
    cache: dict[_Ja4Inputs, tuple[str, str, str, str]] = {}
    out: dict[str, list[str | None]] = {c: [None] * len(inputs) for c in _JA4_COLUMNS}
    origin = list(origin)
    mismatches = 0
    for i, key in enumerate(inputs):
        own = carried[i]
        if key is None:
            out["ja4"][i] = own
            continue
        if key not in cache:
            fp = ja4_fingerprint(key.letter, key.version, key.ciphers, key.exts, key.first_alpn, key.sig_algs,
                                 (key.version,))
            cache[key] = (fp.ja4, fp.ja4_r, fp.ja4_o, fp.ja4_ro)
        values = cache[key]
        if own is not None and own != values[0]:
            mismatches += 1
            out["ja4"][i] = own
            continue
        if own is None and origin[i] is None:
            origin[i] = "computed"
        for col, value in zip(_JA4_COLUMNS, values, strict=True):
            out[col][i] = value
    return out, origin, mismatches


def read_suricata(
    paths: Sequence[Path] | Sequence[str | os.PathLike[str]],
    *,
    dead_letter: DeadLetter | None = None,
) -> pd.DataFrame:
    """Every TLS event of one or more Suricata EVE JSON files as one connections table.

    ``dead_letter`` collects unreadable lines and carries the read statistics
    (``dead_letter.stats``: files, lines, rows, bad lines by reason, skipped ``not-tls``
    events); without one, a throwaway collector is used. A file with no EVE record at all
    raises :class:`LogFormatError`.
    """
    dl = dead_letter if dead_letter is not None else DeadLetter(stats=LogStats())
    frames = []
    for p in paths:
        path = Path(p)
        frame, mismatches = _read_one(path, dl)
        if mismatches:
            dl.stats.warnings.append(
                f"{path}: {mismatches} rows where Suricata's ja4 differs from the one recomputed from "
                "client_handshake; kept Suricata's"
            )
        dl.stats.rows += len(frame)
        if len(frame):
            frames.append(frame)
    if not frames:
        return schema.empty()
    out = frames[0] if len(frames) == 1 else schema.concat(frames)
    return schema.conform(out)

