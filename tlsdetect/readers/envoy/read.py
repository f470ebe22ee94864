"""``read_envoy`` (whole files) and ``parse_envoy_lines`` (blocks of a followed log): the entry points.

A file is read in blocks of whole lines (:mod:`.chunk`) by the JSON (:mod:`.json`) or the text
reader (:mod:`.text`), each block typed (:mod:`.columns`), then all rows finished (:mod:`.finish`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path

import pandas as pd
import pyarrow as pa

from tlsdetect.readers.envoy.chunk import Chunk, blocks, open_binary, without_empty
from tlsdetect.readers.envoy.columns import block_frame
from tlsdetect.readers.envoy.finish import finish
from tlsdetect.readers.envoy.json import JsonReader
from tlsdetect.readers.envoy.keys import RAW_COLUMNS
from tlsdetect.readers.envoy.records import record_text
from tlsdetect.readers.envoy.text import TextReader
from tlsdetect.readers.logs import DeadLetter, LogFormatError, LogStats

__all__ = ["parse_envoy_lines", "parse_envoy_records", "read_envoy"]

_SNIFF_LINES = 20


def read_envoy(
    paths: Sequence[Path],
    *,
    dead_letter: DeadLetter | None = None,
    mapping: Mapping[str, str] | None = None,
    text_format: str | None = None,
    collapse: bool = False,
) -> pd.DataFrame:
    """Read Envoy access logs (JSON lines, or text with ``text_format``) into the connections table.

    ``mapping`` adds ``{json_key: column}`` names for JSON logs (see the module docstring for the
    columns). ``collapse=True`` gives one row per connection instead of one per line. Unreadable
    lines go to ``dead_letter`` (a private one when None) and ``dead_letter.stats`` counts files,
    lines and rows. A file that holds no Envoy record in its first lines raises
    :class:`LogFormatError`; gzip files are read transparently.
    """
    dead = dead_letter if dead_letter is not None else DeadLetter()
    stats: LogStats = dead.stats
    reader: JsonReader | TextReader = TextReader(text_format) if text_format is not None else JsonReader(mapping)
    frames: list[pd.DataFrame] = []
    for raw_path in paths:
        path = Path(raw_path)
        _check_head(path, reader)
        stats.files += 1
        with open_binary(path) as fh:
            for first, block in blocks(fh):
                chunk = reader.read_block(path, first, block, dead)
                stats.lines += chunk.lines
                frames.append(block_frame(chunk, path, dead, reader.time_format))
    if frames:
        df = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    else:
        raw = [c for c in RAW_COLUMNS if c not in ("client_address", "server_address", "peer_cert_pem",
                                                   "server_cert_pem")]  # fmt: skip
        df = pd.DataFrame({c: pd.Series(dtype="string") for c in raw})
        df["ts"] = pd.Series(dtype="datetime64[ns, UTC]")
        df["client_port"] = pd.Series(dtype="Int32")
        df["server_port"] = pd.Series(dtype="Int32")
    out = finish(df, collapse)
    stats.rows += len(out)
    return out


@lru_cache(maxsize=16)
def _reader(mapping: tuple[tuple[str, str], ...] | None, text_format: str | None) -> JsonReader | TextReader:
    return TextReader(text_format) if text_format is not None else JsonReader(dict(mapping or ()))


def parse_envoy_lines(
    block: bytes,
    *,
    source: Path,
    first_line: int = 1,
    dead_letter: DeadLetter | None = None,
    mapping: Mapping[str, str] | None = None,
    text_format: str | None = None,
    collapse: bool = False,
) -> pd.DataFrame:
    """The rows of whole lines of one Envoy access log (``block``: complete, ``\\n``-separated lines).

    The same parse as :func:`read_envoy` over one block of a file, for readers that follow a log
    (``tlsdetect stream``): ``source`` and ``first_line`` (the 1-based number of the block's first
    line) only name bad lines in ``dead_letter``. Blank lines are skipped; no format check is made
    (a line that is not a record is a dead letter, never an error). ``dead_letter.stats`` counts
    lines and rows as :func:`read_envoy` does, but not files.
    """
    dead = dead_letter if dead_letter is not None else DeadLetter()
    reader = _reader(tuple(sorted(mapping.items())) if mapping else None, text_format)
    chunk = reader.read_block(Path(source), first_line, block, dead)
    dead.stats.lines += chunk.lines
    out = finish(block_frame(chunk, Path(source), dead, reader.time_format), collapse)
    dead.stats.rows += len(out)
    return out


def parse_envoy_records(
    records: pa.Table,
    *,
    source: Path,
    first_line: int = 1,
    dead_letter: DeadLetter | None = None,
    mapping: Mapping[str, str] | None = None,
    collapse: bool = False,
) -> pd.DataFrame:
    """The rows of pushed records (a table of string cells named by key, one row per record: ALS, OTLP).

    The JSON reader's key map (``mapping`` as for JSON logs) reads the names, then the same typing and
    finishing as :func:`parse_envoy_lines`, so a record gives the row its JSON log line would. A bad record
    is a dead letter named ``source`` with number ``first_line + i`` and the record as JSON for its text.
    """
    dead = dead_letter if dead_letter is not None else DeadLetter()
    reader = _reader(tuple(sorted(mapping.items())) if mapping else None, None)
    assert isinstance(reader, JsonReader)  # no text format: the JSON reader
    path = Path(source)
    chunk = Chunk(reader.columns_of(records), records.num_rows, records.num_rows,
                  lambda i: record_text(records, i), lambda i: first_line + i)  # fmt: skip
    chunk = without_empty(chunk, path, dead)
    dead.stats.lines += chunk.lines
    out = finish(block_frame(chunk, path, dead, reader.time_format), collapse)
    dead.stats.rows += len(out)
    return out


def _check_head(path: Path, reader: JsonReader | TextReader) -> None:
    """Raise :class:`LogFormatError` when none of the first non-blank lines is an Envoy record."""
    lines: list[str] = []
    with open_binary(path) as fh:
        try:
            for raw in fh:
                text = raw.decode("utf-8", "replace").strip()
                if text:
                    lines.append(text)
                    if len(lines) >= _SNIFF_LINES:
                        break
        except (OSError, EOFError) as exc:
            raise LogFormatError(f"{path}: unreadable ({exc})") from exc
    if not lines or any(reader.is_record(line) for line in lines):
        return
    if isinstance(reader, TextReader):
        raise LogFormatError(f"{path}: no line of its first {len(lines)} matches the given text_format")
    raise LogFormatError(
        f"{path}: not an Envoy JSON access log (no JSON object with Envoy access-log keys in its first "
        f"{len(lines)} lines; for a text log pass text_format, for custom keys pass mapping)"
    )
