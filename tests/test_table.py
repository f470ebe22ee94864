"""The table view (:mod:`tlsdetect.sinks.table`): which rows a cut table shows, the line that counts the others,
and a table that fits printed exactly as an uncut one (issue 19 item 3)."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tlsdetect.sinks.files as sinks
from tlsdetect.cli import common
from tlsdetect.sinks.table import DEFAULT_MAX_ROWS, TableView, by_column, more_line, rows_to_show, write_table

from .cli_support import run
from .conftest import PROJECT_PCAPS, ROOT

SAMPLE = str(ROOT / "baselines" / "sample")  # the README's demo baseline
VERDICT = by_column("verdict", ("ok", "suspicious", "intercepted"))


def _oracle(rank: list[int], cap: int) -> list[int]:
    """Positions by rank descending then position, the first ``cap``, back in order (a plain sort, no numpy)."""
    return sorted(sorted(range(len(rank)), key=lambda i: (-rank[i], i))[:cap])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(-1, 2), max_size=60), st.integers(1, 70))
def test_rows_to_show_keeps_the_highest_ranks_earliest_first_in_their_order(rank: list[int], cap: int) -> None:
    got = rows_to_show(np.array(rank, dtype=np.int64), cap).tolist()
    assert got == _oracle(rank, cap)
    assert len(got) == min(cap, len(rank))


def test_by_column_ranks_by_place_in_the_order_whatever_the_dtype() -> None:
    values = ["ok", "intercepted", None, "suspicious", "other", "ok"]
    want = [0, 2, -1, 1, -1, 0]
    cat = pd.Categorical(values, categories=["ok", "suspicious", "intercepted", "other"])
    for col in (pd.Series(values, dtype=object), pd.Series(values, dtype="string"), pd.Series(cat)):
        assert VERDICT(pd.DataFrame({"verdict": col})).tolist() == want
    assert VERDICT(pd.DataFrame({"x": [1, 2]})).tolist() == [0, 0]  # no verdict: all alike, shown in order


def _frame(n: int, flagged_every: int) -> pd.DataFrame:
    return pd.DataFrame({
        "sni": [f"host{i}.example" for i in range(n)],
        "verdict": ["intercepted" if i % flagged_every == 0 else "ok" for i in range(n)],
        "n": np.arange(n),
    })


def _render(chunks: list[pd.DataFrame], **kw: object) -> str:
    buf = io.StringIO()
    view = TableView(buf, ["n", "sni", "verdict"], **kw)  # type: ignore[arg-type]
    for c in chunks:
        view.write(c)
    view.close()
    return buf.getvalue()


@pytest.mark.parametrize(("n", "cap", "chunk"), [(250, 10, 7), (250, 10, 1000), (33, 40, 5), (0, 5, 5)])
def test_a_streamed_cut_table_is_the_whole_frame_cut_at_once(n: int, cap: int, chunk: int) -> None:
    """Cutting chunk by chunk keeps the same rows as ranking the whole result, and the last line counts the rest."""
    df = _frame(n, flagged_every=30)
    got = _render([df.iloc[i : i + chunk] for i in range(0, n, chunk)], max_rows=cap, rank=VERDICT)
    keep = rows_to_show(VERDICT(df), cap)
    want = io.StringIO()
    write_table(df.iloc[keep], want, ["n", "sni", "verdict"], None)
    if n > cap:
        assert got == want.getvalue() + more_line(cap, n, True) + "\n"
        shown = [int(line.split()[0]) for line in got.splitlines()[2:-1] if line.strip()]
        flagged = [i for i in range(n) if i % 30 == 0]
        assert set(flagged[:cap]) <= set(shown)  # flagged rows first: the earliest ones when more than the cap
        assert shown == sorted(shown)
    else:
        assert got == want.getvalue()  # a table that fits: no line added, every row


def test_without_a_rank_the_first_rows_are_shown() -> None:
    df = _frame(500, flagged_every=7)
    out = _render([df.iloc[i : i + 64] for i in range(0, 500, 64)], max_rows=12)
    assert [int(line.split()[0]) for line in out.splitlines()[2:-1] if line.strip()] == list(range(12))
    assert out.splitlines()[-1] == "... 488 more rows not shown (12 of 500, the first rows); every row: --all, or " \
                                   "-f jsonl|csv|parquet"


def test_the_sink_counts_every_row_and_shows_the_cap() -> None:
    df = _frame(1_000, flagged_every=100)
    buf = io.StringIO()
    sink = sinks.Sink("table", buf, columns=["n", "verdict"], max_rows=20, rank=VERDICT)
    for i in range(0, 1_000, 300):
        sink.write(df.iloc[i : i + 300])
    sink.close()
    assert sink.rows == 1_000
    body = [line for line in buf.getvalue().splitlines()[2:-1] if line.strip()]
    assert len(body) == 20
    assert sum(line.split()[1] == "intercepted" for line in body) == 10
    assert "980 more rows not shown (20 of 1,000, flagged rows first)" in buf.getvalue()


def test_an_empty_result_is_a_table_of_headers() -> None:
    """It crashed before (``max`` of the header width alone): ``score --only-flagged`` on clean traffic."""
    out = _render([_frame(0, 1)], max_rows=5).splitlines()
    assert out[0].split() == ["n", "sni", "verdict"]
    assert set(out[1]) == {"─"}
    assert len(out) == 2


def test_a_cap_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one row"):
        TableView(io.StringIO(), ["n"], max_rows=0)


def test_the_help_names_the_view_s_own_cap() -> None:
    """``cli.common`` names the cap again so that ``--help`` needs no pandas: they must agree."""
    assert common.TABLE_ROWS == DEFAULT_MAX_ROWS


def test_score_table_is_cut_flagged_first_and_the_summary_counts_every_row(monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's demo (28 rows, 13 intercepted) under a cap of 5: five intercepted rows, the line, the exact
    summary; ``--all`` shows all 28 as before."""
    monkeypatch.setattr("tlsdetect.sinks.table.DEFAULT_MAX_ROWS", 5)
    code, out, err = run("score", str(PROJECT_PCAPS), "--baseline", SAMPLE, "--no-progress")
    assert code == 0, err
    lines = out.splitlines()
    body = [line for line in lines[2:-1] if line.strip()]
    assert len(body) == 5
    assert all(" intercepted " in f" {line} " for line in body)
    assert lines[-1] == more_line(5, 28, True)
    assert "28 connections: 13 intercepted, 0 suspicious, 15 ok" in err

    code, every, err = run("score", str(PROJECT_PCAPS), "--baseline", SAMPLE, "--no-progress", "--all")
    assert code == 0, err
    assert len([line for line in every.splitlines()[2:] if line.strip()]) == 28
    assert "more rows not shown" not in every


def test_fingerprint_table_is_cut_in_order_and_counts_every_row(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tlsdetect.sinks.table.DEFAULT_MAX_ROWS", 3)
    code, out, err = run("fingerprint", str(PROJECT_PCAPS), "--no-progress")
    assert code == 0, err
    assert out.splitlines()[-1] == more_line(3, 28, False)
    assert len([line for line in out.splitlines()[2:-1] if line.strip()]) == 3
    assert "28 connections from 4 file(s)" in err
