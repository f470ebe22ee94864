"""``tlsdetect score`` as a user runs it: table, JSON lines, Parquet and alert formats, ``--only-flagged``,
``--columns``, and a bad baseline (the baseline is the clean captures', fitted once per module)."""

from __future__ import annotations

import collections
import json
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from tlsdetect.sinks.files import to_records

from .cli_support import CLEAN, fit_sample
from .cli_support import run as _run
from .conftest import INTERCEPTION, PROJECT_PCAPS, ROOT, needs_interception, require_shared


@pytest.fixture(scope="module")
def baseline_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fit_sample(tmp_path_factory)


@needs_interception
def test_score_jsonl_keeps_the_4_tuple_and_reasons(baseline_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "scored.jsonl"
    code, _, err = _run("score", str(INTERCEPTION), "--baseline", str(baseline_dir), "-f", "jsonl", "-o", str(out))
    assert code == 0, err
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows
    for row in rows:
        for key in ("client_ip", "client_port", "server_ip", "server_port", "ts", "verdict", "score", "reasons"):
            assert key in row
        assert row["verdict"] == "intercepted"
        assert row["reasons"][0]["code"]
    assert f"{len(rows)} connections: {len(rows)} intercepted" in err
    assert "top reasons: known_interception_fingerprint" in err
    assert "top flagged clients:" in err


def test_score_jsonl_carries_the_server_side_of_each_connection(baseline_dir: Path, tmp_path: Path) -> None:
    """issue 16 item 7: ``ja3s`` and ``sh_cipher`` of every scored row are those ``fingerprint`` computes."""
    scored, fps = tmp_path / "scored.jsonl", tmp_path / "fps.jsonl"
    code, _, err = _run("score", *CLEAN, "--baseline", str(baseline_dir), "-f", "jsonl", "-o", str(scored))
    assert code == 0, err
    code, _, err = _run("fingerprint", *CLEAN, "-f", "jsonl", "-o", str(fps))
    assert code == 0, err
    rows = [json.loads(line) for line in scored.read_text().splitlines()]
    expected = [json.loads(line) for line in fps.read_text().splitlines()]
    assert [(r["ja3s"], r["sh_cipher"]) for r in rows] == [(r["ja3s"], r["sh_cipher"]) for r in expected]
    assert any(r["ja3s"] and isinstance(r["sh_cipher"], int) for r in rows)


def test_score_table_and_only_flagged(baseline_dir: Path) -> None:
    code, out, err = _run("score", *CLEAN, "--baseline", str(baseline_dir))
    assert code == 0, err
    assert "verdict" in out
    assert "reason_codes" in out
    assert "15 connections: 0 intercepted, 0 suspicious, 15 ok" in err
    code, out, err = _run("score", *CLEAN, "--baseline", str(baseline_dir), "-f", "jsonl",
                          "--only-flagged")
    assert code == 0
    assert out == ""


def test_score_parquet(baseline_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "s.parquet"
    code, _, err = _run("score", *CLEAN, "--baseline", str(baseline_dir), "-f", "parquet", "-o", str(out))
    assert code == 0, err
    table = pq.read_table(out)
    assert table.num_rows == 15
    assert {"verdict", "score", "reasons"} <= set(table.column_names)


@needs_interception
def test_score_parquet_of_flagged_rows_round_trips(baseline_dir: Path, tmp_path: Path) -> None:
    """issue 14 item 1: Parquet of flagged rows (a JA3 and a count in the evidence) failed with ArrowInvalid;
    now ``reasons`` is a list of four-string structs holding what JSON lines holds."""
    out, jsonl = tmp_path / "s.parquet", tmp_path / "s.jsonl"
    args = ("score", str(INTERCEPTION), "--baseline", str(baseline_dir), "--no-progress")
    code, _, err = _run(*args, "-f", "parquet", "-o", str(out))
    assert code == 0, err
    assert "Traceback" not in err
    table = pq.read_table(out)
    reasons = table.schema.field("reasons").type
    assert [(f.name, str(f.type)) for f in reasons.value_type] == [
        ("code", "string"), ("detail", "string"), ("expected", "string"), ("observed", "string")]
    code, _, err = _run(*args, "-f", "jsonl", "-o", str(jsonl))
    assert code == 0, err
    rows = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert table.column("reasons").to_pylist() == [r["reasons"] for r in rows]
    assert table.column("verdict").to_pylist() == [r["verdict"] for r in rows]
    assert "intercepted" in table.column("verdict").to_pylist()


@needs_interception
@pytest.mark.parametrize("fmt", ["ecs", "cef"])
def test_score_writes_the_streams_alerts_for_flagged_rows_only(baseline_dir: Path, tmp_path: Path, fmt: str) -> None:
    """issue 14 item 8: ``score -f ecs|cef`` writes the stream's alert records (same functions, same ids), one per
    suspicious or intercepted connection; ok rows are not written."""
    from tlsdetect.detect.baseline import Baseline
    from tlsdetect.detect.scoring import score
    from tlsdetect.readers.inputs import Inputs
    from tlsdetect.sinks.alerts.alerts import alerts_of
    from tlsdetect.sinks.alerts.cef import format_cef
    from tlsdetect.sinks.alerts.ecs import to_ecs

    paths = [str(PROJECT_PCAPS), str(INTERCEPTION)]
    out = tmp_path / f"alerts.{fmt}"
    code, _, err = _run("score", *paths, "--baseline", str(baseline_dir), "--no-progress", "-f", fmt, "-o", str(out))
    assert code == 0, err
    scored = score(Inputs(paths).read_all(), Baseline.load(baseline_dir))
    flagged = int((scored["verdict"] != "ok").sum())
    assert 0 < flagged < len(scored)  # ok rows exist and are left out
    alerts = alerts_of(scored)
    lines = out.read_text(encoding="utf-8").splitlines()
    assert len(lines) == flagged
    if fmt == "ecs":
        docs = [json.loads(line) for line in lines]
        assert docs == [json.loads(json.dumps(to_ecs(a), default=str)) for a in alerts]
        assert {d["event"]["action"] for d in docs} <= {"suspicious", "intercepted"}
        assert all(d["@timestamp"].endswith("Z") for d in docs)
    else:
        assert lines == [format_cef(a) for a in alerts]
    assert f"{len(scored)} connections:" in err


def test_score_columns_error_lists_the_valid_names_and_ecs_takes_none(baseline_dir: Path) -> None:
    """issue 14 item 10: an unknown ``--columns`` name lists the valid ones (score's own columns too)."""
    code, _, err = _run("score", str(PROJECT_PCAPS), "--baseline", str(baseline_dir), "--columns", "ja4,bogus")
    assert code == 1
    assert len(err.strip().splitlines()) == 1
    assert "unknown column(s): bogus; valid columns: ts, " in err
    assert ", verdict, reasons, compared, reason_codes" in err
    code, _, err = _run("score", str(PROJECT_PCAPS), "--baseline", str(baseline_dir), "-f", "ecs", "--columns", "ja4")
    assert code == 1
    assert "--columns does not apply to -f ecs" in err


@pytest.mark.parametrize("damage", ["missing", "corrupt-meta", "old-version", "missing-table"])
def test_score_with_a_bad_baseline_is_one_clear_line(baseline_dir: Path, tmp_path: Path, damage: str) -> None:
    import shutil

    bad = tmp_path / "bad"
    if damage != "missing":
        shutil.copytree(baseline_dir, bad)
    if damage == "corrupt-meta":
        (bad / "meta.json").write_text("{")
    elif damage == "old-version":
        meta = json.loads((bad / "meta.json").read_text())
        (bad / "meta.json").write_text(json.dumps({**meta, "format_version": 0}))
    elif damage == "missing-table":
        (bad / "fingerprints.parquet").unlink()
    code, out, err = _run("score", *CLEAN, "--baseline", str(bad))
    assert code == 1
    assert out == ""
    assert err.startswith("Error: ")
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err
    assert str(bad) in err


def _keys(rows: list[dict[str, object]]) -> collections.Counter[tuple[object, ...]]:
    return collections.Counter((r["client_ip"], r["client_port"], r["server_ip"], r["server_port"], r["ja3"])
                               for r in rows)


def _score_without_baseline(path: Path, tmp_path: Path) -> tuple[list[dict[str, object]], str]:
    out = tmp_path / "scored.jsonl"
    code, _, err = _run("score", str(path), "--no-progress", "-f", "jsonl", "-o", str(out))
    assert code == 0, err
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows
    for row in rows:  # every row says it was compared with no baseline
        assert "no baseline" in str(row["compared"]), row["compared"]
    lines = [line for line in err.splitlines() if line.startswith("no baseline: not compared")]
    assert len(lines) == 1, err  # one line of what was not compared
    for missing in ("per-client fingerprints", "issuers", "population model"):
        assert missing in lines[0]
    return rows, err


def test_score_without_a_baseline_flags_the_interception_products_the_knowledge_base_knows(tmp_path: Path) -> None:
    """issue 16 item 5: no --baseline scores with the knowledge base and issuer rules alone; every hello of a shared
    interception capture whose product the knowledge base learned from that capture is flagged and named."""
    from tlsdetect.readers.inputs import Inputs

    interception = require_shared("pcaps/interception")
    products = ROOT / "tlsdetect" / "detect" / "knowledge" / "product_fingerprints.csv"
    sources = pd.read_csv(products)["source"].astype(str)
    known = sorted({p for p in interception.glob("*.pcap*") if sources.str.contains(p.name, regex=False).any()})
    assert known, "the knowledge base has product rows from the shared interception captures"
    rows, err = _score_without_baseline(interception, tmp_path)
    flagged = [r for r in rows if r["verdict"] != "ok" and r["known_product"]]
    expected = _keys(to_records(Inputs([str(p) for p in known]).read_all()))
    assert expected
    assert not expected - _keys(flagged), "a hello of a known product's capture was not flagged"
    assert f"{len(rows)} connections:" in err


def test_score_without_a_baseline_leaves_the_clean_captures_ok(tmp_path: Path) -> None:
    """issue 16 item 5: the clean captures of pcaps/ (docs/captures/MANIFEST.json) stay ``ok`` with no baseline."""
    from tlsdetect.readers.inputs import Inputs

    rows, _ = _score_without_baseline(PROJECT_PCAPS, tmp_path)
    clean = _keys(to_records(Inputs(CLEAN).read_all()))
    assert clean
    by_key: dict[tuple[object, ...], set[object]] = collections.defaultdict(set)
    for r in rows:
        by_key[(r["client_ip"], r["client_port"], r["server_ip"], r["server_port"], r["ja3"])].add(r["verdict"])
    assert all(by_key[k] == {"ok"} for k in clean), {k: by_key[k] for k in clean if by_key[k] != {"ok"}}
