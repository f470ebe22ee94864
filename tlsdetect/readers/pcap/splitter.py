"""Cut a pcap or pcapng byte stream (``tcpdump -w -``) into self-contained capture files.

``tlsdetect stream --source pcap:-`` reads a capture from a pipe, which has no size and cannot
be seeked; the engine reads files. :class:`StreamSplitter` takes the stream's bytes as they come
and, on :meth:`~StreamSplitter.cut`, gives the whole records seen so far as one capture: the
pcap file header (pcapng: the section header and every interface description so far, in
order, so interface ids keep their meaning) followed by those records. A record cut by the
pipe's chunking waits for the next window. Pure logic over bytes: no I/O.

Damage (an unknown magic, a record or block length no capture has) raises
:class:`~tlsdetect.readers.pcap.capture.CaptureError` naming the stream offset: a pipe cannot
resynchronise, so what came before is kept and the stream ends there.
"""

from __future__ import annotations

import struct

from tlsdetect.readers.pcap.capture import CaptureError

__all__ = ["MAX_RECORD", "StreamSplitter"]

#: The longest record or block accepted (dumpcap's largest snaplen is 256 KiB; pcapng blocks
#: may hold options besides): past this the stream is damaged, not large.
MAX_RECORD = 16 << 20
_PCAP_MAGICS = {b"\xd4\xc3\xb2\xa1": "<", b"\x4d\x3c\xb2\xa1": "<", b"\xa1\xb2\xc3\xd4": ">", b"\xa1\xb2\x3c\x4d": ">"}
_SHB, _IDB = 0x0A0D0D0A, 0x00000001


class StreamSplitter:
    """Bytes in (:meth:`feed`), self-contained capture files out (:meth:`cut`)."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._kind: str | None = None  # "pcap" or "pcapng" once the header is read
        self._endian = "<"
        self._header = b""  # what every cut file starts with
        self._pos = 0  # bytes of ``_buf`` walked into whole records
        self.offset = 0  # stream bytes before ``_buf``
        self.records = 0  # records (pcap) or packet-bearing blocks (pcapng) handed out

    def feed(self, data: bytes) -> None:
        self._buf += data
        self._walk()

    @property
    def pending(self) -> int:
        """Bytes of whole records walked and not yet cut."""
        return self._pos

    @property
    def buffered(self) -> int:
        """Bytes fed and not yet cut (whole records and a record still arriving)."""
        return len(self._buf)

    def cut(self) -> bytes | None:
        """The whole records so far as one capture file (None when there are none)."""
        if self._pos == 0:
            return None
        body = bytes(self._buf[: self._pos])
        del self._buf[: self._pos]
        self.offset += self._pos
        self._pos = 0
        return self._header + body

    # -- walking
    def _damaged(self, what: str) -> CaptureError:
        return CaptureError(f"standard input: {what} at stream byte {self.offset + self._pos}")

    def _walk(self) -> None:
        if self._kind is None and not self._start():
            return
        if self._kind == "pcap":
            self._walk_pcap()
        else:
            self._walk_pcapng()

    def _start(self) -> bool:
        head = bytes(self._buf[:4])
        if len(head) < 4:
            return False
        if head in _PCAP_MAGICS:
            if len(self._buf) < 24:
                return False
            self._kind, self._endian = "pcap", _PCAP_MAGICS[head]
            self._header = bytes(self._buf[:24])
            del self._buf[:24]
            self.offset = 24
            return True
        if struct.unpack(">I", head)[0] == _SHB:
            self._kind = "pcapng"
            return True
        raise CaptureError(f"standard input: not a pcap or pcapng stream (magic {head.hex()})")

    def _walk_pcap(self) -> None:
        buf, pos, e = self._buf, self._pos, self._endian
        while len(buf) - pos >= 16:
            incl = struct.unpack_from(e + "I", buf, pos + 8)[0]
            if incl > MAX_RECORD:
                self._pos = pos
                raise self._damaged(f"a record of {incl} bytes")
            if len(buf) - pos < 16 + incl:
                break
            pos += 16 + incl
            self.records += 1
        self._pos = pos

    def _walk_pcapng(self) -> None:
        buf = self._buf
        while len(buf) - self._pos >= 12:
            pos = self._pos
            raw_type = bytes(buf[pos:pos + 4])
            if struct.unpack(">I", raw_type)[0] == _SHB:  # a section: its byte order, a new header
                bom = bytes(buf[pos + 8:pos + 12])
                if bom not in (b"\x4d\x3c\x2b\x1a", b"\x1a\x2b\x3c\x4d"):
                    raise self._damaged("a section header with a bad byte-order magic")
                self._endian = "<" if bom == b"\x4d\x3c\x2b\x1a" else ">"
            btype, blen = struct.unpack_from(self._endian + "II", buf, pos)
            if blen < 12 or blen % 4 or blen > MAX_RECORD:
                raise self._damaged(f"a block of {blen} bytes")
            if len(buf) - pos < blen:
                break
            block = bytes(buf[pos:pos + blen])
            if btype in (_SHB, _IDB):  # header material: into every later file's header, not the body
                self._header = block if btype == _SHB else self._header + block
                del buf[pos:pos + blen]
                self.offset += blen
                continue
            self._pos = pos + blen
            self.records += 1
