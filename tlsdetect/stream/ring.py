"""The live capture's queue of finished ring files, bounded on disk, with every loss counted.

``dumpcap -b`` writes ``PREFIX_NNNNN_YYYYmmddHHMMSS.EXT``, one file after another; the pipe
reader (``pcap:-``) writes its windows in the same pattern. A file is finished once a later one
exists (dumpcap writes only the newest) or its producer has stopped. :class:`RingQueue` hands
finished files out oldest first. When scoring falls behind, finished files wait on disk up to
``max_bytes`` (and ``max_files``: a quiet interface still closes a file a second); past that the
oldest are deleted unread and counted (``dropped_files``,
``dropped_bytes``), and so are files missing from the numbering (dumpcap's own ``files:`` bound
deleted them first: ``missing_files``). Nothing is lost without a count.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["RingQueue", "ring_name"]


def _size(p: Path) -> int:
    try:
        return p.stat().st_size
    except FileNotFoundError:
        return 0

_NAME = re.compile(r"_(\d{5,})_(\d+)\.(pcapng|pcap)$")


def ring_name(prefix: str, number: int, stamp: str = "0", ext: str = "pcap") -> str:
    """A ring file's name as dumpcap forms it (``prefix_00001_20261207214400.pcapng``)."""
    return f"{prefix}_{number:05d}_{stamp}.{ext}"


@dataclass
class RingQueue:
    """Finished ring files of ``prefix`` in ``directory``, oldest first, at most ``max_bytes`` and
    ``max_files`` of them waiting."""

    directory: Path
    prefix: str
    max_files: int = 3600
    max_bytes: int = 1 << 30
    #: True when the newest file may still be written (dumpcap); False when files appear whole (renamed in).
    newest_open: bool = True
    dropped_files: int = 0
    dropped_bytes: int = 0
    missing_files: int = 0
    taken: int = 0
    _last: int = 0  # number of the last file handed out or dropped

    def files(self) -> list[tuple[int, Path]]:
        """Every ring file of the prefix now on disk, by number."""
        out = []
        for p in self.directory.glob(f"{self.prefix}_*"):
            m = _NAME.search(p.name)
            if m and p.name.startswith(self.prefix + "_") and len(p.name) == len(self.prefix) + len(m.group(0)):
                out.append((int(m.group(1)), p))
        return sorted(out)

    def waiting(self, *, producer_done: bool) -> list[tuple[int, Path]]:
        """The finished files not yet handed out, after dropping (and deleting) the oldest over the bound."""
        found = [(n, p) for n, p in self.files() if n > self._last]
        done = found if producer_done or not self.newest_open else found[:-1]
        sizes = [_size(p) for _, p in done]
        over, total = max(0, len(done) - self.max_files), sum(sizes)
        total -= sum(sizes[:over])
        while over < len(done) and total > self.max_bytes:
            total -= sizes[over]
            over += 1
        for n, p in done[:over]:
            self._drop(n, p)
        return done[over:]

    def take(self, *, producer_done: bool) -> Path | None:
        """The oldest finished file (the caller deletes it once read), or None."""
        got = self.take_many(producer_done=producer_done, max_files=1)
        return got[0] if got else None

    def take_many(self, *, producer_done: bool, max_files: int, max_bytes: int = 1 << 62) -> list[Path]:
        """The oldest finished files, at most ``max_files`` and (past the first) ``max_bytes`` of them,
        oldest first (the caller deletes each once read)."""
        out: list[Path] = []
        total = 0
        for n, p in self.waiting(producer_done=producer_done)[:max_files]:
            total += _size(p)
            if out and total > max_bytes:
                break
            self._skip_to(n)
            self.taken += 1
            out.append(p)
        return out

    def queued_bytes(self) -> int:
        """Bytes of ring files on disk not yet handed out (the live capture's lag)."""
        total = 0
        for n, p in self.files():
            if n > self._last:
                try:
                    total += p.stat().st_size
                except FileNotFoundError:
                    continue
        return total

    def _skip_to(self, n: int) -> None:
        self.missing_files += max(0, n - self._last - 1)
        self._last = n

    def _drop(self, n: int, p: Path) -> None:
        self._skip_to(n)
        try:
            self.dropped_bytes += p.stat().st_size
            p.unlink()
        except FileNotFoundError:
            self.missing_files += 1  # gone before we could drop it: dumpcap's bound; still counted once
            return
        self.dropped_files += 1
