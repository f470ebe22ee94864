"""What the tshark engine reads of each frame, printed by a Lua listener inside tshark.

Why Lua and not ``-T ek -x``: ek's ``-x`` prints the raw bytes of every printed frame several
times over (frame, TCP payload, TLS layer, each record, its application data), so printing the
frames that carry a flight's encrypted records made tshark's output 400 MB for a 65 MB capture
and doubled the engine's time. The listener prints only what the engine uses, one tab-separated
line per frame: the handshake messages that can be a hello or a certificate (their bytes as
Wireshark assembled them, the same bytes as ek's ``tls.handshake_raw``; a DTLS one is cut to
its fragment, as Wireshark's item spans the rest of the record) and each TLS record's
header (plaintext records whole), in tree order, which is stream order. The same Wireshark
dissection, reassembly and decryption; 10 MB instead of 400 MB.

The script ends with a line of its own (:data:`END_MARK`): tshark runs on with exit status 0
when a Lua script fails, so output without it is an error, never a short table.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

__all__ = ["END_MARK", "Frame", "lua_script", "parse_line"]

#: First and last lines the script prints: proof that it loaded and that it saw the file through.
START_MARK = "tlsdetect-frames 1"
END_MARK = "tlsdetect-frames end"
_BROKEN = "-"  # a record whose bytes do not match its header
_PROTO = {"t": "tls", "d": "dtls"}

#: The listener. ``@FILTER@`` is replaced by the display filter (a Lua long string, so no quoting).
_LUA = r"""
local function field(name) return Field.new(name) end
local f_number, f_time, f_protocols = field("frame.number"), field("frame.time_epoch"), field("frame.protocols")
local single = {
  field("ip.src"), field("ip.dst"), field("ipv6.src"), field("ipv6.dst"),
  field("tcp.srcport"), field("tcp.dstport"), field("tcp.stream"), field("tcp.nxtseq"),
  field("udp.srcport"), field("udp.dstport"), field("udp.stream"),
}
local f_record, f_tls_hs, f_dtls_hs = field("tls.record"), field("tls.handshake"), field("dtls.handshake")
local wanted = { [1] = true, [2] = true, [11] = true }
local plaintext = { [20] = true, [21] = true, [22] = true }

local function last(f)
  local all = { f() }
  local fi = all[#all]
  return fi and tostring(fi.value) or ""
end

-- A DTLS handshake item spans the rest of its record: cut it to its own fragment.
local function messages(out, f, tag, dtls)
  for _, fi in ipairs({ f() }) do
    local r = fi.range
    if fi.len > 0 and wanted[r(0, 1):uint()] then
      if dtls and fi.len >= 12 and fi.len > 12 + r(9, 3):uint() then r = r(0, 12 + r(9, 3):uint()) end
      out[#out + 1] = tag .. r:bytes():tohex()
    end
  end
end

io.write("@START@\n")
local tap = Listener.new("frame", [==[@FILTER@]==])
function tap.packet(pinfo, tvb)
  local t = f_time().value
  local out = { tostring(f_number().value), string.format("%d.%09d", t.secs, t.nsecs), tostring(f_protocols().value) }
  for _, f in ipairs(single) do out[#out + 1] = last(f) end
  local records = {}
  for _, fi in ipairs({ f_record() }) do
    local r, text = fi.range, "@BROKEN@"
    if fi.len >= 5 then
      local ctype, length = r(0, 1):uint(), r(3, 2):uint()
      if fi.len == 5 + length then
        text = (plaintext[ctype] and r or r(0, 5)):bytes():tohex()
      end
    end
    records[#records + 1] = text
  end
  out[#out + 1] = table.concat(records, ",")
  messages(out, f_tls_hs, "t", false)
  messages(out, f_dtls_hs, "d", true)
  io.write(table.concat(out, "\t"), "\n")
end
function tap.draw() io.write("@END@\n") io.flush() end
"""


def lua_script(display_filter: str) -> str:
    """The listener's source, printing the frames that ``display_filter`` selects."""
    if "]==]" in display_filter:
        raise ValueError("display filter cannot contain ']==]'")
    return (
        _LUA.replace("@FILTER@", display_filter)
        .replace("@START@", START_MARK)
        .replace("@END@", END_MARK)
        .replace("@BROKEN@", _BROKEN)
    )


@dataclass(frozen=True, slots=True)
class Frame:
    """The parts of one dissected frame the engine uses; ``messages`` are (proto, raw bytes)."""

    number: int
    ts_ns: int
    src: str
    dst: str
    sport: int
    dport: int
    l4: str  # "tcp" or "udp": the innermost transport layer
    stream: int
    quic: bool  # the handshake travels in QUIC CRYPTO frames
    messages: tuple[tuple[str, bytes], ...]
    #: TLS-over-TCP records completed in this frame, in stream order: plaintext ones whole, an
    #: encrypted one as its 5-byte header (a record whose raw bytes do not match its header: b"").
    records: tuple[bytes, ...] = ()
    nxtseq: int = 0  # relative sequence number after this segment (0: unknown)


def _epoch_ns(text: str) -> int:
    """``secs.nanoseconds`` to integer nanoseconds, without float loss."""
    return int(Decimal(text).scaleb(9))


def _innermost(protocols: list[str], names: Iterable[str]) -> str | None:
    """The name among ``names`` that occurs last in ``frame.protocols`` (eth:ip:udp:...)."""
    best: tuple[int, str] | None = None
    for name in names:
        if name in protocols:
            pos = len(protocols) - 1 - protocols[::-1].index(name)
            if best is None or pos > best[0]:
                best = (pos, name)
    return best[1] if best else None


@functools.lru_cache(maxsize=1 << 16)
def _address(text: str) -> str:
    """An address as ipaddress spells it; cached, as a capture has few addresses and many frames."""
    return str(ipaddress.ip_address(text))


def _records(text: str) -> tuple[bytes, ...]:
    if not text:
        return ()
    out = []
    for item in text.split(","):
        try:
            out.append(b"" if item == _BROKEN else bytes.fromhex(item))
        except ValueError:
            out.append(b"")
    return tuple(out)


def _messages(items: list[str]) -> tuple[tuple[str, bytes], ...]:
    out = []
    for item in items:
        proto = _PROTO.get(item[:1])
        if proto is None:
            continue
        try:
            out.append((proto, bytes.fromhex(item[1:])))
        except ValueError:
            continue
    return tuple(out)


#: Fields of a line: number, time, protocols, ip src/dst, ipv6 src/dst, tcp sport/dport/stream/
#: nxtseq, udp sport/dport/stream, records, then one per message.
_FIXED = 15


def parse_line(line: str) -> Frame | None:
    """One listener line -> :class:`Frame`; None for frames without IP + TCP/UDP or a line that
    is not one of the listener's."""
    parts = line.rstrip("\n").split("\t")
    if len(parts) < _FIXED:
        return None
    protocols = parts[2].split(":")
    ip_name = _innermost(protocols, ("ip", "ipv6"))
    l4 = _innermost(protocols, ("tcp", "udp"))
    if ip_name is None or l4 is None:
        return None
    src, dst = (parts[3], parts[4]) if ip_name == "ip" else (parts[5], parts[6])
    sport, dport, stream = (parts[7], parts[8], parts[9]) if l4 == "tcp" else (parts[11], parts[12], parts[13])
    try:
        return Frame(
            number=int(parts[0]),
            ts_ns=_epoch_ns(parts[1]),
            src=_address(src),
            dst=_address(dst),
            sport=int(sport),
            dport=int(dport),
            l4=l4,
            stream=int(stream),
            quic="quic" in protocols,
            messages=_messages(parts[_FIXED:]),
            records=_records(parts[14]) if l4 == "tcp" else (),
            nxtseq=int(parts[10] or 0) if l4 == "tcp" else 0,
        )
    except (ValueError, InvalidOperation):
        return None
