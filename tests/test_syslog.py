"""``sinks/alerts/syslog.py``: RFC 5424 with octet counting, parsed back; TCP and UDP sinks."""

from __future__ import annotations

import re
import socket
import threading
from collections.abc import Iterator

import pytest

from tests.test_sinks_stream import ALERT
from tlsdetect.sinks.alerts.spool import SinkError
from tlsdetect.sinks.alerts.syslog import SyslogSink, format_rfc5424, frame_octet, parse_octet_frames, sd_escape
from tlsdetect.sinks.escape import unescape_text

RFC5424 = re.compile(
    r"^<(?P<pri>\d{1,3})>1 (?P<ts>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) (?P<host>\S+) (?P<app>\S+) (?P<procid>\S+)"
    r" (?P<msgid>\S+) (?P<sd>\[.*?(?<!\\)\]) \ufeff(?P<msg>.*)$",
    re.S,
)


def sd_params(sd: str) -> dict[str, str]:
    """Parse back one SD-ELEMENT's PARAM-VALUEs (undoing RFC 5424 escaping)."""
    body = sd[1:-1]
    sd_id, _, rest = body.partition(" ")
    assert sd_id == "tlsdetect@32473"
    out = {}
    for m in re.finditer(r'(\w+)="((?:[^"\\]|\\.)*)"', rest):
        out[m.group(1)] = re.sub(r"\\(.)", r"\1", m.group(2))
    return out


def test_rfc5424_format_parsed_back() -> None:
    msg = format_rfc5424(ALERT, facility=16, hostname="host one")
    m = RFC5424.match(msg)
    assert m is not None, msg
    assert int(m["pri"]) == 16 * 8 + 3  # local0.err for intercepted
    assert m["ts"] == "2026-11-26T17:08:00.484Z"
    assert m["host"] == "hostone"  # no spaces in HOSTNAME
    assert m["app"] == "tlsdetect"
    assert m["msgid"] == "TLSALERT"
    params = sd_params(m["sd"])
    assert params["id"] == ALERT["id"]
    assert params["peer_issuer"] == ALERT["peer_issuer"]  # '"', ']' and '\' escaped and recovered
    assert params["src"] == "10.1.2.3:40000"
    assert params["dst"] == "10.9.9.9:443"
    assert params["reasons"] == "interception_ca"
    assert params["ja4"] == ALERT["ja4"]
    assert "intercepted" in m["msg"]
    suspicious = RFC5424.match(format_rfc5424({**ALERT, "verdict": "suspicious"}, facility=4))
    assert suspicious is not None
    assert int(suspicious["pri"]) == 4 * 8 + 4


def test_sd_escape() -> None:
    assert sd_escape('a"b]c\\d') == 'a\\"b\\]c\\\\d'


def test_octet_counting_roundtrip() -> None:
    msgs = [format_rfc5424({**ALERT, "id": f"{i:032x}", "sni": "ü.example"}, hostname="h") for i in range(5)]
    stream = b"".join(frame_octet(m) for m in msgs)
    first = frame_octet(msgs[0])
    assert first.startswith(str(len(msgs[0].encode())).encode() + b" <")
    got, rest = parse_octet_frames(stream[:-3])
    assert got == msgs[:4]
    got2, rest2 = parse_octet_frames(rest + stream[-3:])
    assert got2 == msgs[4:]
    assert rest2 == b""
    with pytest.raises(ValueError, match="octet"):
        parse_octet_frames(b"x12 abc")


@pytest.fixture
def tcp_receiver() -> Iterator[tuple[int, list[bytes]]]:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    got: list[bytes] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            with conn:
                while data := conn.recv(65536):
                    got.append(data)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield srv.getsockname()[1], got
    srv.close()


def test_syslog_tcp_sink_frames(tcp_receiver: tuple[int, list[bytes]]) -> None:
    port, got = tcp_receiver
    sink = SyslogSink(f"syslog+tcp://127.0.0.1:{port}?facility=local3")
    alerts = [{**ALERT, "id": f"{i:032x}"} for i in range(20)]
    sink.send(alerts)
    sink.close()
    import time

    end = time.monotonic() + 5
    msgs: list[str] = []
    while time.monotonic() < end:
        msgs, _ = parse_octet_frames(b"".join(got))
        if len(msgs) == 20:
            break
        time.sleep(0.05)
    assert [sd_params(RFC5424.match(m)["sd"])["id"] for m in msgs] == [a["id"] for a in alerts]  # type: ignore[index]
    assert all(m.startswith(f"<{19 * 8 + 3}>1 ") for m in msgs)


def test_syslog_udp_sink() -> None:
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    rx.settimeout(5)
    sink = SyslogSink(f"syslog+udp://127.0.0.1:{rx.getsockname()[1]}")
    sink.send([ALERT, {**ALERT, "id": "f" * 32}])
    datagrams = [rx.recv(65535).decode() for _ in range(2)]
    rx.close()
    assert not datagrams[0][0].isdigit()  # no octet count over UDP
    assert [sd_params(RFC5424.match(d)["sd"])["id"] for d in datagrams] == [ALERT["id"], "f" * 32]  # type: ignore[index]


def test_syslog_tcp_down_is_sink_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sink = SyslogSink(f"syslog+tcp://127.0.0.1:{port}", timeout=1)
    with pytest.raises(SinkError):
        sink.send([ALERT])



#: Names off the wire built to steer a terminal or a log file: ESC, OSC, CR/LF, C1, a bidi override, U+2028,
#: the SD-ELEMENT's own delimiters and markup.
HOSTILE = {
    "sni": '\x1b]0;owned\x07a"]b\\c\nd', "client_id": "spiffe://x\r\n<13>1 forged", "peer_issuer": "CN=\u202egoogle",
    "server_issuer": "O=A\\, Inc \u2028\x85", "ja4": "[/x]\x1b[2J",
}


def test_wire_text_is_one_message_without_control_characters() -> None:
    """issue 18 rows 3 and 6: hostile names stay inside one message, invisible and control characters shown
    escaped both in the structured data and in MSG; unescaped, each PARAM-VALUE is what was sent."""
    msg = format_rfc5424({**ALERT, **HOSTILE}, hostname="h")
    assert msg.replace("\ufeff", "").isprintable()  # the BOM (RFC 5424 6.4) is the one invisible character
    m = RFC5424.match(msg)
    assert m is not None, msg
    params = sd_params(m["sd"])
    assert {k: unescape_text(params[k]) for k in HOSTILE} == HOSTILE
    assert "sni=\\x{1b}]0;owned\\x{07}" in m["msg"]
    assert "client=spiffe://x\\x{0d}\\x{0a}<13>1 forged" in m["msg"]
    framed, rest = parse_octet_frames(frame_octet(msg))
    assert framed == [msg]
    assert rest == b""


def test_udp_cut_never_splits_a_character() -> None:
    """A datagram cut at max_datagram bytes stays valid UTF-8 (a collector rejects a broken character)."""
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    rx.settimeout(5)
    alert = {**ALERT, "sni": "ü" * 400}
    whole = format_rfc5424(alert).encode()  # the sink's own message: same host, same process
    limit = whole.index("ü".encode()) + 2 * 100 + 1  # one byte into the 101st ü
    sink = SyslogSink(f"syslog+udp://127.0.0.1:{rx.getsockname()[1]}", max_datagram=limit)
    sink.send([alert])
    data = rx.recv(65535)
    rx.close()
    assert data == whole[: limit - 1]
    assert data.decode("utf-8").endswith("ü" * 100)
