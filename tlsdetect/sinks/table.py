"""The table view (``--format table``): a look at a result that lays out only the rows it shows.

rich lays a table out row by row (~1 ms a row here), so a table of every row of a big result
took seconds (4.7 s for 5,000 rows) to print what no one reads past a screen or two. The view
keeps at most ``max_rows`` rows while the chunks stream by and formats only those; the rows it
leaves out are counted and named in a last line, with the way to get them all (``--all``, or a
file format). Counts and summaries are the caller's and see every row.

Which rows: with a ``rank`` (``score`` ranks by verdict), the highest ranks first, so a result's
intercepted and suspicious connections are never hidden behind a screenful of ``ok`` ones; among
equal ranks the earliest. The rows shown keep the order they came in, as an uncut table does: a
result that fits is printed exactly as before.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import IO

import numpy as np
import numpy.typing as npt
import pandas as pd

from tlsdetect.sinks.distinct import first_rows
from tlsdetect.sinks.escape import escape_frame
from tlsdetect.sinks.values import plain

__all__ = ["DEFAULT_MAX_ROWS", "Rank", "TableView", "by_column", "more_line", "rows_to_show", "write_table"]

#: Rows the command line's table shows unless ``--all``: two screens, ~0.1 s of layout; the README's
#: demo (28 rows) and every capture of the project fit whole.
DEFAULT_MAX_ROWS = 100

#: Higher ranks are shown first; one integer per row of a chunk.
Rank = Callable[[pd.DataFrame], npt.NDArray[np.int64]]


def by_column(column: str, order: Sequence[str]) -> Rank:
    """A rank: a row's place in ``order`` by the value of ``column`` (later is higher; others and missing: -1).

    Each distinct value is looked up once (a categorical's categories, else the factorised values)
    and broadcast by code; a frame without the column ranks every row alike.
    """
    index = pd.Index(list(order), dtype=object)

    def rank(df: pd.DataFrame) -> npt.NDArray[np.int64]:
        if column not in df.columns:
            return np.zeros(len(df), dtype=np.int64)
        s = df[column]
        if isinstance(s.dtype, pd.CategoricalDtype):
            codes, uniques = np.asarray(s.cat.codes), pd.Index(s.cat.categories)
        else:
            codes, uniques = pd.factorize(s)
        places = np.append(index.get_indexer(pd.Index(uniques, dtype=object)), -1)  # code -1 (missing): -1
        return np.asarray(places[codes], dtype=np.int64)

    return rank


def rows_to_show(rank: npt.NDArray[np.int64], cap: int) -> npt.NDArray[np.intp]:
    """Positions of the ``cap`` rows of highest rank (ties: the earliest), in their original order."""
    if len(rank) <= cap:
        return np.arange(len(rank))
    best = np.argsort(-rank, kind="stable")[:cap]
    return np.sort(best)


def more_line(shown: int, total: int, ranked: bool) -> str:
    """The last line of a cut table: how many rows it leaves out, which it kept, and how to get them all."""
    which = "flagged rows first" if ranked else "the first rows"
    return (f"... {total - shown:,} more rows not shown ({shown:,} of {total:,}, {which}); "
            "every row: --all, or -f jsonl|csv|parquet")


def _cell_texts(s: pd.Series) -> list[str]:
    """A column's cells as the table shows them (missing blank), formatted once per distinct value."""
    codes, first = first_rows(s)
    texts = np.array(["" if (v := plain(x)) is None else str(v) for x in s.iloc[first]] or [""], dtype=object)
    cells: list[str] = texts[codes].tolist()
    return cells


def write_table(df: pd.DataFrame, fh: IO[str], columns: Sequence[str], width: int | None) -> None:
    """Every row of ``df`` laid out by rich, sized to its content (a fingerprint is never folded)."""
    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    cols = [c for c in columns if c in df.columns]
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for c in cols:
        table.add_column(c, no_wrap=True)
    widest = {c: len(c) for c in cols}
    # Text off the wire as visible escapes (sinks.escape), given to rich as Text: never read as markup.
    shown = escape_frame(df[cols])
    texts = [_cell_texts(shown.iloc[:, j]) for j in range(len(cols))]
    for c, cells in zip(cols, texts, strict=True):
        widest[c] = max([widest[c], *map(len, cells)])  # no rows: the header's width
    for row in zip(*texts, strict=True):
        table.add_row(*(Text(cell) for cell in row))
    natural = sum(widest.values()) + 3 * len(cols)
    console = Console(file=fh, width=max(width or 0, natural), soft_wrap=False, highlight=False)
    console.print(table)


class TableView:
    """Chunks in, one table out at :meth:`close`: at most ``max_rows`` rows held (None: all), the rest counted.

    Memory holds the rows kept, not the result: each chunk's best rows are merged with the kept
    ones and cut back to ``max_rows`` right away.
    """

    def __init__(self, fh: IO[str], columns: Sequence[str], *, width: int | None = None,
                 max_rows: int | None = None, rank: Rank | None = None) -> None:
        if max_rows is not None and max_rows < 1:
            raise ValueError(f"a table shows at least one row, not {max_rows}")
        self.fh, self.columns, self.width, self.max_rows, self.rank = fh, list(columns), width, max_rows, rank
        self.total = 0
        self._kept: list[pd.DataFrame] = []
        self._ranks: list[npt.NDArray[np.int64]] = []

    def write(self, df: pd.DataFrame) -> None:
        if not len(df):
            return
        self.total += len(df)
        ranks = self.rank(df) if self.rank is not None else np.zeros(len(df), dtype=np.int64)
        if self.max_rows is not None:
            pick = rows_to_show(ranks, self.max_rows)
            df, ranks = df.iloc[pick], ranks[pick]
        self._kept.append(df[[c for c in self.columns if c in df.columns]])
        self._ranks.append(ranks)
        if self.max_rows is not None and sum(map(len, self._kept)) > self.max_rows:
            kept, ranks = pd.concat(self._kept), np.concatenate(self._ranks)
            pick = rows_to_show(ranks, self.max_rows)
            self._kept, self._ranks = [kept.iloc[pick]], [ranks[pick]]

    def close(self) -> None:
        df = (pd.concat(self._kept, ignore_index=True) if self._kept
              else pd.DataFrame(columns=self.columns))
        write_table(df, self.fh, self.columns, self.width)
        if len(df) < self.total:
            self.fh.write(more_line(len(df), self.total, self.rank is not None) + "\n")
