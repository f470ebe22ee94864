"""Where a classic pcap can be cut in two: a record boundary near a byte offset, found without a walk.

Why: reading a large capture on both cores needs a second reader that starts mid-file, and a
classic pcap has no index: a record boundary must be recognised from its header alone. One
header that looks right proves nothing (payload bytes can look like a header, and a damaged or
hostile file has lying lengths), so a candidate is accepted only when ``RUN`` consecutive headers
from it are plausible (captured length within the limit and not above the original length,
sub-second field in range, not empty: a run of zero bytes reads as empty records, timestamps
within a day of each other) and the chain then lands on
the end of the file or goes on. Even so it is a guess: the caller confirms it with the first
part's exact walk (its reader stops at the first record boundary at or past the cut, which must
be the cut itself) and falls back to one reader when it is not. Pure logic over bytes.
"""

from __future__ import annotations

import struct

__all__ = ["RUN", "boundary_in", "confirm", "find_boundary"]

#: Consecutive plausible record headers that make a candidate boundary.
RUN = 64
#: Bytes of the file looked at after the wanted offset before giving up.
SCAN = 4 * 1024 * 1024
#: Neighbouring records further apart than this in capture time make a chain implausible.
MAX_GAP_S = 86_400
#: Largest ``orig_len`` accepted (TSO/GRO captures show up to 256 KiB; anything beyond is noise).
MAX_ORIG = 1 << 24


def _plausible_chain(head: bytes, at: int, *, little: bool, nanosecond: bool, max_packet: int, run: int,
                     at_eof: bool) -> bool:
    """``run`` plausible records from ``head[at]`` (fewer when the chain ends exactly at the end)."""
    fmt = "<IIII" if little else ">IIII"
    frac = 1_000_000_000 if nanosecond else 1_000_000
    n = len(head)
    prev: int | None = None
    for _ in range(run):
        if at == n and at_eof:
            return True
        if at + 16 > n:
            return False
        sec, sub, incl, orig = struct.unpack_from(fmt, head, at)
        if sub >= frac or incl == 0 or incl > max_packet or orig < incl or orig > MAX_ORIG:
            return False
        if prev is not None and abs(sec - prev) > MAX_GAP_S:
            return False
        prev = sec
        at += 16 + incl
    return at <= n


def boundary_in(head: bytes, *, little: bool, nanosecond: bool, max_packet: int, run: int = RUN,
                at_eof: bool = False) -> int | None:
    """The first offset in ``head`` where a plausible chain of ``run`` records starts, else None.

    ``at_eof``: ``head`` ends where the file does (a chain may end there with fewer records).
    """
    fmt = "<I" if little else ">I"
    frac = 1_000_000_000 if nanosecond else 1_000_000
    last = len(head) - 16
    for at in range(last + 1):
        # The cheap tests first: most offsets fail on the sub-second field or the lengths.
        if struct.unpack_from(fmt, head, at + 4)[0] >= frac:
            continue
        if struct.unpack_from(fmt, head, at + 8)[0] > max_packet:
            continue
        if _plausible_chain(head, at, little=little, nanosecond=nanosecond, max_packet=max_packet, run=run,
                            at_eof=at_eof):
            return at
    return None


def find_boundary(path: str, near: int, *, little: bool, nanosecond: bool, max_packet: int, header: int = 24,
                  run: int = RUN, scan: int = SCAN) -> int | None:
    """A likely record boundary of a classic pcap at or after byte ``near`` (past its file header), else None."""
    near = max(near, header)
    with open(path, "rb") as fh:
        fh.seek(0, 2)
        size = fh.tell()
        fh.seek(near)
        want = scan + run * (16 + max_packet)
        head = fh.read(want)
    at_eof = near + len(head) >= size
    found = boundary_in(head[: scan + run * (16 + max_packet)], little=little, nanosecond=nanosecond,
                        max_packet=max_packet, run=run, at_eof=at_eof)
    if found is None or found > scan:
        return None
    return near + found


def confirm(path: str, cut: int, *, little: bool, max_packet: int, header: int = 24) -> bool:
    """Whether ``cut`` is a record boundary on the exact walk from the file header (reads every record header).

    The check a guess needs before two readers trust it; a damaged record before ``cut`` also fails it.
    """
    fmt = "<I" if little else ">I"
    at = header
    with open(path, "rb") as fh:
        while at < cut:
            fh.seek(at + 8)
            raw = fh.read(4)
            if len(raw) < 4:
                return False
            incl = struct.unpack(fmt, raw)[0]
            if incl > max_packet:
                return False
            at += 16 + incl
    return at == cut
