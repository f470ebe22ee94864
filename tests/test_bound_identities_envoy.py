"""Bound mTLS identities end to end on the real Envoy 1.40 sample (``tests/data/envoy_identities/``, made by
``scripts/envoy_identities.py``): ``tlsdetect baseline fit`` then ``tlsdetect score``, ``POST /v1/score``, and the
Spark fit of the ``identities`` table (:mod:`tlsdetect.detect.identity_signals`, :mod:`tlsdetect.detect.identities`)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from tlsdetect.cli import main
from tlsdetect.detect.baseline import Baseline
from tlsdetect.readers.envoy import read_envoy

from .serve_support import client, payload

DATA = Path(__file__).resolve().parent / "data" / "envoy_identities"


# --- the real Envoy sample: baseline fitted and scored through the CLI -----------------------------------------
def _cli(*args: str) -> str:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return str(result.stdout)


@pytest.mark.parametrize("kind", ["full", "fingerprint"])
def test_cli_catches_the_lookalike_and_passes_the_renewal(kind: str, tmp_path: Path) -> None:
    base = tmp_path / "b"
    _cli("baseline", "fit", str(DATA / f"baseline.{kind}.jsonl"), "-o", str(base), "--no-progress")
    out = tmp_path / "scored.jsonl"
    _cli("score", "--no-progress", "--baseline", str(base), "-f", "jsonl", "-o", str(out),
         str(DATA / f"scored.{kind}.jsonl"))
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    look = [r for r in rows if r["client_ip"] == "127.0.5.9"]
    clean = [r for r in rows if r["client_ip"] != "127.0.5.9"]
    assert len(look) == 3
    assert len(clean) == 6
    assert all(r["verdict"] != "ok" for r in look)
    if kind == "full":  # the PEM gives the issuing key: the look-alike CA itself
        assert all(r["verdict"] == "intercepted" for r in look)
        assert all(any(x["code"] == "issuer_key_mismatch" for x in r["reasons"]) for r in look)
    assert all(r["verdict"] == "ok" for r in clean)  # the renewal of orders, billing as always


@pytest.mark.anyio
async def test_rest_score_catches_the_lookalike(tmp_path: Path) -> None:
    from tlsdetect.serve.app import Settings, create_app

    Baseline().fit(read_envoy([DATA / "baseline.full.jsonl"])).save(tmp_path / "b")
    rows = read_envoy([DATA / "scored.full.jsonl"])
    async with client(create_app(Settings(baseline_dir=tmp_path / "b"))) as c:
        r = await c.post("/v1/score", json=payload(rows))
    assert r.status_code == 200, r.text
    got = r.json()["rows"]
    verdicts = {(g["client_ip"], g["verdict"]) for g in got}
    assert verdicts == {("127.0.0.1", "ok"), ("127.0.0.2", "ok"), ("127.0.5.9", "intercepted")}


@pytest.mark.slow
def test_spark_fit_learns_the_local_identities_table() -> None:
    """``tlsdetect.spark`` learns the same ``identities`` table over several partitions (partial tables folded)."""
    pytest.importorskip("pyspark")
    from tlsdetect.spark import connections_schema, fit_baseline, session
    from tlsdetect.spark.schema import to_spark_frame, unpack_columns

    df = read_envoy([DATA / "baseline.full.jsonl"])
    spark = session("local[2]", driver_memory="1g", conf={"spark.sql.shuffle.partitions": "4"})
    try:
        frame = spark.createDataFrame(to_spark_frame(df), connections_schema(packed=True)).repartition(3)
        a = fit_baseline(unpack_columns(frame), model=False)
    finally:
        spark.stop()
    b = Baseline(model=False).fit(df)
    assert len(b.identities_) == 4  # two identities, one certificate and one network each
    pd.testing.assert_frame_equal(a.identities_, b.identities_)
