"""An Envoy log in blocks of whole lines, and the lazy line lookup of a block's rows."""

from __future__ import annotations

import gzip
import io
from pathlib import Path

from tlsdetect.readers.envoy.chunk import LazyLines, blocks, open_binary


def test_blocks_end_on_whole_lines_and_count_them() -> None:
    data = b"".join(b"line %d\n" % i for i in range(1, 101)) + b"tail without newline"
    got = list(blocks(io.BytesIO(data), size=64))
    assert b"".join(b for _, b in got) == data
    assert all(b.endswith(b"\n") for _, b in got[:-1])
    line = 1
    for first, block in got:
        assert first == line
        assert block.split(b"\n", 1)[0] == (b"line %d" % first if first <= 100 else b"tail without newline")
        line += block.count(b"\n")


def test_lazy_lines_skip_blank_lines() -> None:
    lazy = LazyLines(10, b"a\n\n  \nb\r\nc\n")
    assert [(lazy.line_no(i), lazy.text(i)) for i in range(3)] == [(10, "a"), (13, "b"), (14, "c")]


def test_open_binary_reads_gzip_by_content(tmp_path: Path) -> None:
    path = tmp_path / "access.log"  # no .gz suffix: the magic bytes decide
    path.write_bytes(gzip.compress(b"{}\n"))
    with open_binary(path) as fh:
        assert fh.read() == b"{}\n"
