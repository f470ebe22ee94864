"""The pcap engine's flight columns against tshark, per TCP conversation of every capture.

What this tests: ``server_flight``, ``client_flight``, ``resumed`` and ``sh_session_id_echoed`` of
:func:`tlsdetect.readers.pcap.engine.read_pcap` (both native lanes share the rules of
:mod:`tlsdetect.readers.pcap.records`), recomputed here from tshark's dissection (its records,
handshake messages and session IDs, ``-T json``) with the schema's definitions. tshark places a
record in the frame that completes it, the engine in the one that carries its first byte: the
two agree on every capture here (a difference would show below).
"""

from __future__ import annotations

import json
import math
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tlsdetect.readers.pcap.engine import read_pcap
from tlsdetect.readers.pcap.records import MAX_FLIGHT_ITEMS

from .conftest import INTERCEPTION, PROJECT_PCAPS, REFERENCE, needs_reference, needs_tshark

CAPTURES = sorted(
    [*REFERENCE.glob("*.pcap*"), *REFERENCE.glob("*.cap"), *INTERCEPTION.glob("*.pcap*"),
     *PROJECT_PCAPS.glob("*.pcap*")]
)
COLUMNS = ("sh_session_id_echoed", "resumed", "server_flight", "client_flight")
HRR_RANDOM = "cf:21:ad:74:e5:9a:61:11:be:1d:8c:02:1e:65:b8:91:c2:a2:11:16:7a:bb:8c:5e:07:9e:09:e2:c8:a8:33:9c"
TLS13 = 0x0304

Record = tuple[int, int, int, list[dict[str, Any]]]  # (frame, content type, length, handshake messages)


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else [] if value is None else [value]


def _first(layer: dict[str, Any], name: str) -> str | None:
    value = layer.get(name)
    return (value[0] if value else None) if isinstance(value, list) else value


def _extensions(message: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {
        int(v["tls.handshake.extension.type"]): v
        for k, v in message.items()
        if k.startswith("Extension: ") and isinstance(v, dict) and "tls.handshake.extension.type" in v
    }


def _conversations(path: Path) -> dict[int, tuple[tuple[str, int], list[tuple[tuple[str, int], Record]]]]:
    """Per tcp.stream: (client endpoint, [(sender, record)]) in capture order."""
    out = subprocess.run(
        ["tshark", "-n", "-r", str(path), "-T", "json", "--no-duplicate-keys", "-J", "frame tcp ip ipv6 tls"],
        capture_output=True, text=True, check=False,
    ).stdout
    streams: dict[int, list[tuple[tuple[str, int], Record]]] = {}
    client: dict[int, tuple[str, int]] = {}
    for packet in json.loads(out or "[]"):
        layers = packet["_source"]["layers"]
        tcp = layers.get("tcp")
        if not isinstance(tcp, dict) or "tls" not in layers:
            continue
        ip = layers.get("ip") or layers.get("ipv6")
        if not isinstance(ip, dict):
            continue
        src = (_first(ip, "ip.src") or _first(ip, "ipv6.src") or "", int(_first(tcp, "tcp.srcport") or 0))
        stream, frame = int(_first(tcp, "tcp.stream") or -1), int(_first(layers["frame"], "frame.number") or 0)
        for tls in _list(layers["tls"]):
            if not isinstance(tls, dict):
                continue
            for rec in _list(tls.get("tls.record")):
                if not isinstance(rec, dict):
                    continue
                # The type on the wire: with keys in the capture tshark shows the inner one as
                # content_type and the wire's (23) as opaque_type.
                ctype = rec.get("tls.record.opaque_type") or rec.get("tls.record.content_type")
                if ctype is None or "tls.record.length" not in rec:
                    continue
                messages = [
                    m for m in _list(rec.get("tls.handshake")) if isinstance(m, dict) and "tls.handshake.type" in m
                ]
                if any(m["tls.handshake.type"] == "1" for m in messages):
                    client.setdefault(stream, src)
                record = (frame, int(ctype), int(rec["tls.record.length"]), messages)
                streams.setdefault(stream, []).append((src, record))
    return {s: (client[s], recs) for s, recs in streams.items() if s in client}


def _tls13(server: list[Record], client: list[Record], s_hello: int, c_hello: int) -> tuple[object, object]:
    """The schema's TLS 1.3 flights from tshark's records (indices of the last hellos given)."""
    t_hello = server[s_hello][0]
    c1 = next((i for i in range(c_hello + 1, len(client)) if client[i][1] == 23 and client[i][0] > t_hello), None)
    if c1 is None:
        return None, None
    s_cut = next((i for i in range(s_hello + 1, len(server)) if server[i][0] > client[c1][0]), None)
    s_flight = tuple(r[2] for r in server[s_hello + 1 : s_cut] if r[1] == 23)
    if s_cut is None:  # the server sent nothing more: its flight ends with the capture
        return _capped(s_flight), None
    c_cut = next((i for i in range(c1, len(client)) if client[i][0] > server[s_cut][0]), None)
    return _capped(s_flight), _capped(tuple(r[2] for r in client[c1:c_cut] if r[1] == 23))


def _capped(flight: tuple[int, ...]) -> tuple[int, ...] | None:
    return flight if len(flight) <= MAX_FLIGHT_ITEMS else None


def _clear_flight(records: list[Record], hello: int, end_type: int | None) -> tuple[int, ...] | None:
    """TLS <= 1.2: handshake message sizes after the hello up to ``end_type`` (ServerHelloDone,
    included) or a ChangeCipherSpec; None when neither comes in clear first."""
    sizes: list[int] = []
    first = records[hello][3]
    at = next(i for i, m in enumerate(first) if m["tls.handshake.type"] in ("1", "2"))
    batches = [first[at + 1 :]] + [None if r[1] == 20 else r[3] if r[1] == 22 else [] for r in records[hello + 1 :]]
    for i, messages in enumerate(batches):
        if messages is None:  # ChangeCipherSpec
            return _capped(tuple(sizes))
        if i and records[hello + i][1] != 22:
            return None
        for m in messages:  # none: a fragment of a message that a later record completes
            sizes.append(int(m["tls.handshake.length"]) + 4)
            if end_type is not None and int(m["tls.handshake.type"]) == end_type:
                return _capped(tuple(sizes))
    return None


def expected(path: Path) -> Iterator[tuple[tuple[str, int, str, int], dict[str, object]]]:
    """Per conversation with both hellos and no HelloRetryRequest: its 4-tuple and the columns."""
    for c_end, sent in _conversations(path).values():
        client = [r for who, r in sent if who == c_end]
        server = [r for who, r in sent if who != c_end]
        s_end = next((who for who, _ in sent if who != c_end), None)
        hello_of = {
            side: [i for i, r in enumerate(recs) if any(m["tls.handshake.type"] == t for m in r[3])]
            for side, recs, t in (("c", client, "1"), ("s", server, "2"))
        }
        if s_end is None or not hello_of["c"] or not hello_of["s"]:
            continue
        c_i, s_i = hello_of["c"][-1], hello_of["s"][-1]
        ch = next(m for m in client[c_i][3] if m["tls.handshake.type"] == "1")
        sh = next(m for m in server[s_i][3] if m["tls.handshake.type"] == "2")
        if any(m.get("tls.handshake.random") == HRR_RANDOM for r in server for m in r[3]):
            continue
        c_sid, s_sid = ch.get("tls.handshake.session_id", ""), sh.get("tls.handshake.session_id", "")
        ext = _extensions(sh)
        version = int(ext[43].get("tls.handshake.extensions.supported_version", "0"), 16) if 43 in ext else 0
        row: dict[str, object] = {"sh_session_id_echoed": bool(s_sid) and s_sid == c_sid}
        if version == TLS13:
            row["resumed"] = 41 in ext
            row["server_flight"], row["client_flight"] = _tls13(server, client, s_i, c_i)
        else:
            s_flight = _clear_flight(server, s_i, 14)
            row["server_flight"], row["client_flight"] = s_flight, _clear_flight(client, c_i, None)
            abbreviated = s_flight == ()
            row["resumed"] = True if row["sh_session_id_echoed"] else (abbreviated if s_flight is not None else None)
        yield (c_end[0], c_end[1], s_end[0], s_end[1]), row


def _cell(value: object) -> object:
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, tuple):
        return tuple(int(v) for v in value)
    return bool(value)


def differences(path: Path) -> list[str]:
    """Where the engine and tshark's dissection differ, one line each."""
    df, _ = read_pcap(path)
    key = ["client_ip", "client_port", "server_ip", "server_port"]
    cells = df[list(COLUMNS)].to_dict("records")
    rows = {tuple(k): r for k, r in zip(df[key].itertuples(index=False), cells, strict=True)}
    counts = df.groupby(key, observed=True).size().to_dict()
    out = []
    for k, want in expected(path):
        if counts.get(k, 0) != 1:
            continue  # a 4-tuple used twice (or not a row): nothing to pair unambiguously
        got = rows[k]
        for name in COLUMNS:
            if _cell(got[name]) != want[name]:
                out.append(f"{path.name} {k} {name}: engine {_cell(got[name])} tshark {want[name]}")
    return out


@needs_tshark
@needs_reference
@pytest.mark.slow
def test_flight_columns_match_tshark() -> None:
    found = [d for path in CAPTURES for d in differences(path)]
    assert not found, "\n".join(found)
