"""The listener's line format: parsing, innermost layers, records, refusals; and the script
itself run by tshark on a reference capture (the whole engine is tested in test_tshark.py)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tlsdetect.readers.pcap.tshark import DISPLAY_FILTER, PREFERENCES
from tlsdetect.readers.pcap.tshark_frames import END_MARK, START_MARK, lua_script, parse_line

from .conftest import REFERENCE

HELLO = bytes([1, 0, 0, 2, 3, 3])


def _line(protocols: str = "eth:ethertype:ip:tcp:tls", records: str = "", messages: tuple[str, ...] = (),
          ip4: tuple[str, str] = ("10.0.0.1", "10.0.0.2"), ip6: tuple[str, str] = ("", "")) -> str:
    fields = ["7", "1700000000.123456789", protocols, *ip4, *ip6, "40000", "443", "3", "1200", "5353", "53", "9",
              records, *messages]
    return "\t".join(fields) + "\n"


def test_a_tcp_frame_with_records_and_a_hello() -> None:
    header = bytes([23, 3, 3, 0, 4])
    ccs = bytes([20, 3, 3, 0, 1, 1])
    frame = parse_line(_line(records=f"{ccs.hex()},{header.hex().upper()},-", messages=("t" + HELLO.hex(),)))
    assert frame is not None
    assert (frame.number, frame.ts_ns, frame.l4, frame.stream, frame.nxtseq) == (7, 1700000000123456789, "tcp", 3, 1200)
    assert (frame.src, frame.sport, frame.dst, frame.dport, frame.quic) == ("10.0.0.1", 40000, "10.0.0.2", 443, False)
    assert frame.records == (ccs, header, b"")
    assert frame.messages == (("tls", HELLO),)


def test_innermost_layers_choose_the_fields() -> None:
    """IPv6 in IPv4 with QUIC over UDP: the inner addresses, the UDP ports and stream, no records."""
    line = _line("eth:ip:ipv6:udp:quic:tls", records="1603030001ff", messages=("t" + HELLO.hex(), "d" + HELLO.hex()),
                 ip6=("2001:db8::1", "2001:0db8:0::2"))
    frame = parse_line(line)
    assert frame is not None
    assert (frame.src, frame.dst, frame.sport, frame.dport, frame.stream) == ("2001:db8::1", "2001:db8::2", 5353, 53, 9)
    assert (frame.l4, frame.quic, frame.records, frame.nxtseq) == ("udp", True, (), 0)
    assert frame.messages == (("tls", HELLO), ("dtls", HELLO))


@pytest.mark.parametrize(
    "line",
    [
        "",
        "tlsdetect-frames 1",
        _line("eth:arp"),  # no IP or no transport
        _line("eth:ip:tcp", ip4=("not-an-address", "10.0.0.2")),
        _line().replace("1700000000.123456789", "yesterday"),
        _line().replace("\t40000\t", "\tport\t"),
    ],
)
def test_lines_that_are_not_frames_are_refused(line: str) -> None:
    assert parse_line(line) is None


def test_bad_hex_is_a_broken_record_or_a_dropped_message() -> None:
    frame = parse_line(_line(records="zz,1403030001", messages=("tXYZ", "x" + HELLO.hex(), "t" + HELLO.hex())))
    assert frame is not None
    assert frame.records == (b"", bytes([20, 3, 3, 0, 1]))
    assert frame.messages == (("tls", HELLO),)


def test_the_filter_cannot_end_the_lua_string() -> None:
    with pytest.raises(ValueError, match="cannot contain"):
        lua_script("tls ]==] os.exit()")


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")
@pytest.mark.skipif(not (REFERENCE / "arkime_tls13.pcap").exists(), reason="reference pcaps absent")
def test_the_listener_prints_a_tls13_handshake_in_order(tmp_path: Path) -> None:
    """ServerHello frame: its records in wire order (handshake whole, then the encrypted one's
    header), the ServerHello's bytes; the script's start and end lines frame the output."""
    script = tmp_path / "frames.lua"
    script.write_text(lua_script(DISPLAY_FILTER))
    cmd = ["tshark", "-n", "-q", "-r", str(REFERENCE / "arkime_tls13.pcap"), "-X", f"lua_script:{script}"]
    for pref in PREFERENCES:
        cmd += ["-o", pref]
    lines = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=120).stdout.splitlines()
    assert lines[0] == START_MARK
    assert lines[-1] == END_MARK
    frames = [parse_line(line) for line in lines[1:-1]]
    assert all(f is not None for f in frames)
    assert len(frames) >= 2
    server = next(f for f in frames if f is not None and any(raw[0] == 2 for _, raw in f.messages))
    assert [r[0] for r in server.records] == [22, 23]
    assert len(server.records[0]) == 5 + int.from_bytes(server.records[0][3:5], "big")  # plaintext: whole
    assert len(server.records[1]) == 5  # encrypted: its header only
    (proto, raw), = server.messages
    assert proto == "tls"
    assert server.records[0][5:] == raw
