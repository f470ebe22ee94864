"""Text rows joined from per-column fragments, neighbouring columns merged while few combinations occur.

The JSON lines and CSV writers describe each column as codes into its distinct fragments (a value's text
with its key or separator). Joining a fragment per row and column costs a pointer per cell: 6M for 100k
rows of 61 columns. But most columns follow the hello (its fingerprints, lists, versions) or are constant
(source, transport), so a run of neighbouring columns takes few distinct combinations: merged, their
fragments are concatenated once per combination, and a row joins a handful of pieces. A run stops where
a column would take it past :data:`MAX_COMBINATIONS`, or past a 32nd of the rows (the connection id, the
time, the client port): a run's text is built once per combination, so it must stay far below a row each
(at 8,192 combinations, the CLI's 10,000-row chunks cost 1.65x Parquet in JSON lines; at 312, 1.26x).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd

__all__ = ["BLOCK_ROWS", "MAX_COMBINATIONS", "Column", "join_rows", "merge_runs"]

#: ``(codes, fragments)``: row ``i``'s text for the column is ``fragments[codes[i]]``.
Column = tuple[np.ndarray, np.ndarray]
#: Rows per joined text block: a few MB of text, which the allocator reuses (16k rows cost 3x the time).
BLOCK_ROWS = 1_024
#: Most distinct combinations a merged run may have (their text is held once each).
MAX_COMBINATIONS = 8_192


def _first_codes(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    codes = pd.factorize(keys)[0]  # in order of first appearance: a new code exceeds all before it
    first = np.flatnonzero(codes > np.maximum.accumulate(np.concatenate(([-1], codes[:-1]))))
    return codes, first


def merge_runs(columns: list[Column], limit: int = MAX_COMBINATIONS) -> list[Column]:
    """``columns`` with neighbours merged into runs of at most ``limit`` distinct combinations; each row's
    concatenated text is unchanged."""
    out: list[Column] = []
    for codes, texts in columns:
        if out and len(out[-1][1]) <= limit and len(texts) <= limit:
            run_codes, run_texts = out[-1]
            merged, first = _first_codes(run_codes.astype(np.int64) * len(texts) + codes)
            if len(first) <= limit:
                out[-1] = (merged, run_texts[run_codes[first]] + texts[codes[first]])
                continue
        out.append((codes, texts))
    return out


def join_rows(columns: list[Column], rows: int, block_rows: int = BLOCK_ROWS) -> Iterator[str]:
    """Each row's fragments concatenated in column order, yielded as text blocks of up to ``block_rows`` rows."""
    pieces = merge_runs(columns, min(MAX_COMBINATIONS, rows // 32))  # a run's text: far less than its rows
    for start in range(0, rows, block_rows):
        stop = min(start + block_rows, rows)
        grid = np.empty((stop - start, len(pieces)), dtype=object)
        for j, (codes, texts) in enumerate(pieces):
            grid[:, j] = texts[codes[start:stop]]
        yield "".join(grid.ravel().tolist())
