"""The API's models (``tlsdetect.serve.models``): what they accept and what the OpenAPI document says of them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tlsdetect.serve.app import Settings, create_app

from .serve_support import ESET_JA3, assert_error, client, payload

pytest_plugins = ["tests.serve_fixtures"]  # captures, rows, baseline_dir, own_baseline


@pytest.mark.anyio
async def test_score_reasons_are_text_in_the_response_and_its_model(baseline_dir: Path, rows: pd.DataFrame) -> None:
    """issue 14 item 1: a reason's ``expected``/``observed`` are text or null (a count too), and the model says so."""
    from pydantic import ValidationError

    from tlsdetect.fingerprint import add_fingerprints
    from tlsdetect.serve.models import Reason, ScoreResponse

    weak = rows.iloc[[1]].copy()
    weak["ch_ciphers"] = pd.Series([(5, *weak["ch_ciphers"].iloc[0])], index=weak.index, dtype=object)  # + RC4-SHA
    weak = add_fingerprints(weak)
    async with client(create_app(Settings(baseline_dir=baseline_dir))) as c:
        r = await c.post("/v1/score", json=payload(pd.concat([rows, weak], ignore_index=True)))
        spec = (await c.get("/openapi.json")).json()
    assert r.status_code == 200, r.text
    body = r.json()
    ScoreResponse.model_validate(body)
    reasons = [x for row in body["rows"] for x in row["reasons"]]
    assert next(x for x in body["rows"][-1]["reasons"] if x["code"] == "weak_ciphers")["observed"] == "1"
    for x in reasons:
        assert all(x[f] is None or isinstance(x[f], str) for f in ("expected", "observed")), x
    with pytest.raises(ValidationError, match="observed"):
        Reason.model_validate({"code": "weak_ciphers", "detail": "d", "observed": 1})
    props = spec["components"]["schemas"]["Reason"]["properties"]
    for f in ("expected", "observed"):
        assert {t.get("type") for t in props[f]["anyOf"]} == {"string", "null"}
    assert props["code"]["type"] == props["detail"]["type"] == "string"


@pytest.mark.anyio
async def test_score_rows_carry_the_server_side(baseline_dir: Path, rows: pd.DataFrame) -> None:
    """issue 16 item 7: a score row carries ``ja3s`` and ``sh_cipher`` as sent, and the OpenAPI model says so."""
    async with client(create_app(Settings(baseline_dir=baseline_dir))) as c:
        r = await c.post("/v1/score", json=payload(rows))
        spec = (await c.get("/openapi.json")).json()
    assert r.status_code == 200, r.text
    got = r.json()["rows"]
    sent = payload(rows)["connections"]
    assert [row["ja3s"] for row in got] == [row.get("ja3s") for row in sent]
    assert [row["sh_cipher"] for row in got] == [row.get("sh_cipher") for row in sent]
    assert any(row["ja3s"] for row in got)
    props = spec["components"]["schemas"]["ScoredConnection"]["properties"]
    assert {t.get("type") for t in props["ja3s"]["anyOf"]} == {"string", "null"}
    assert {t.get("type") for t in props["sh_cipher"]["anyOf"]} == {"integer", "null"}


@pytest.mark.anyio
async def test_score_rows_carry_resumption_and_flight_size(baseline_dir: Path, rows: pd.DataFrame) -> None:
    """issue 16 item 7: ``resumed`` (a boolean) and ``server_flight_bytes`` (an integer) come back as sent."""
    sent = payload(rows)["connections"][:4]
    for i, row in enumerate(sent):
        row["resumed"] = [True, False, None, True][i]
        row["server_flight"] = [[23, 3000 + i, 264, 52], [], None, [70000]][i]
        row["server_flight_bytes"] = [3339 + i, 0, None, 70000][i]
    async with client(create_app(Settings(baseline_dir=baseline_dir))) as c:
        r = await c.post("/v1/score", json={"connections": sent})
        spec = (await c.get("/openapi.json")).json()
        bad = await c.post("/v1/score", json={"connections": [{**sent[0], "server_flight": [-1]}]})
    assert r.status_code == 200, r.text
    got = r.json()["rows"]
    assert [row["resumed"] for row in got] == [True, False, None, True]
    assert [row["server_flight_bytes"] for row in got] == [3339, 0, None, 70000]
    assert bad.status_code == 422
    props = spec["components"]["schemas"]["ScoredConnection"]["properties"]
    assert {t.get("type") for t in props["resumed"]["anyOf"]} == {"boolean", "null"}
    assert {t.get("type") for t in props["server_flight_bytes"]["anyOf"]} == {"integer", "null"}


@pytest.mark.anyio
async def test_typed_fields_are_checked_not_coerced(baseline_dir: Path, rows: pd.DataFrame) -> None:
    """issue 18 #15: ``client_port: -5``, ``client_ip: "999.999.1.1"``, ``hello_retry: "yes"`` were accepted; every
    typed field is checked (no coercion), each refusal names its field, and the schema documents the shapes."""
    good = payload(rows)["connections"][0]
    bad_values: dict[str, list[Any]] = {
        "client_port": [-5, 65536, "443", 443.0, True],
        "server_port": [70000],
        "client_ip": ["999.999.1.1", "10.0.0", "example.com", "", 167772161],
        "server_ip": ["::g"],
        "hello_retry": ["yes", 1, "true"],
        "resumed": [0],
        "sh_cipher": [-1, 0x10000],
        "ch_version": [0x10000],
        "ja3": ["zz" * 16, ESET_JA3 + "0", ESET_JA3[:-1]],
        "ja3n": ["x"],
        "ja4": ["t13d1516h2_8daaf6152771", "t13d1516h2_8daaf6152771_02713d6af86z", "hello"],
        "ja4_r": ["t13d1516h2_<script>_0403"],
        "ja3_full": ["771,4865;rm -rf"],
        "server_cert_sha256": ["ab" * 31, "zz" * 32],
        "ch_ciphers": [[4865, "4866"], [70000]],
        "sni": ["x" * 65_537],
    }
    cases = [(field, value) for field, values in bad_values.items() for value in values]
    async with client(create_app(Settings(baseline_dir=baseline_dir))) as c:
        answers = [await c.post("/v1/score", json={"connections": [{**good, field: value}]}) for field, value in cases]
        fine = await c.post("/v1/score", json={"connections": [
            {**good, "client_ip": "2001:db8::1", "server_ip": "fe80::1%eth0", "client_port": 0, "server_port": 65535,
             "hello_retry": False, "ja3": ESET_JA3.upper(), "sh_cipher": 0x1301}]})
        spec = (await c.get("/openapi.json")).json()
    for (field, value), r in zip(cases, answers, strict=True):
        body = assert_error(r, 422, "invalid_request")
        assert {tuple(p["loc"][:4]) for p in body["detail"]} == {("body", "connections", "0", field)}, (field, value)
    assert fine.status_code == 200, fine.text
    assert fine.json()["rows"][0]["client_ip"] == "2001:db8::1"  # kept as sent
    props = spec["components"]["schemas"]["Connection"]["properties"]
    port = next(t for t in props["client_port"]["anyOf"] if t.get("type") == "integer")
    assert (port["minimum"], port["maximum"]) == (0, 65535)
    ja3 = next(t for t in props["ja3"]["anyOf"] if t.get("type") == "string")
    assert ja3["pattern"] == "^[0-9a-fA-F]{32}$"
    assert "IPv4 or IPv6" in props["client_ip"]["description"]


def test_every_row_the_readers_give_passes_the_model(rows: pd.DataFrame) -> None:
    """The shapes are those of real rows (every column of every row of the project's captures)."""
    from tlsdetect.serve.models import Connection

    for row in payload(rows)["connections"]:
        Connection.model_validate(row)


def test_connections_frame_is_the_table_the_readers_give(rows: pd.DataFrame) -> None:
    """Built column by column, the frame equals the generic route (records -> objects -> ``schema.conform``), for
    the captures' rows, one row, a row with a few columns, and none."""
    from tlsdetect import schema
    from tlsdetect.serve.models import Connection, connections_frame

    def generic(records: list[dict[str, Any]]) -> pd.DataFrame:
        df = pd.DataFrame.from_records(records, columns=list(schema.COLUMNS))
        for col in schema.LIST_COLUMNS:
            df[col] = pd.Series([tuple(v) if isinstance(v, list) else None for v in df[col]], dtype=object)
        for col in (c for c, t in schema.COLUMNS.items() if t.startswith("datetime64")):
            df[col] = pd.to_datetime(df[col], utc=True, format="ISO8601")
        return schema.conform(df)

    records = [Connection.model_validate(r).model_dump() for r in payload(rows)["connections"]]
    few = Connection.model_validate({"ja3": ESET_JA3, "server_port": 443, "ch_ciphers": [4865],
                                     "ts": "2026-01-01T00:00:00Z", "server_issuer": "CN=x"}).model_dump()
    for batch in (records, records[:1], [few, records[0]]):
        got = connections_frame(batch)
        pd.testing.assert_frame_equal(got, generic(batch))
        assert dict(zip(got.columns, map(schema.dtype_name, got.dtypes), strict=True)) == dict(schema.COLUMNS)
    assert connections_frame([]).equals(schema.empty())
    assert connections_frame([few])["ch_ciphers"].iloc[0] == (4865,)


def test_missing_columns_of_one_dtype_are_apart_in_the_frame() -> None:
    """connections_frame builds one missing array per dtype (issue 18 #15); the frame's columns must still be
    separate arrays: writing one never shows in another."""
    import numpy as np

    from tlsdetect import schema
    from tlsdetect.serve.models import connections_frame

    value = {"string": "x", "Int32": 5, "boolean": True, "object": "x",
             "datetime64[ns, UTC]": pd.Timestamp("2026-01-01", tz="UTC")}
    frame = connections_frame([{"sni": "a.example"}])
    by_dtype: dict[str, list[str]] = {}
    for col, dtype in schema.COLUMNS.items():
        if col != "sni":
            by_dtype.setdefault(dtype, []).append(col)
    assert set(by_dtype) >= {*value, "category"}
    for dtype, (first, *others) in by_dtype.items():
        assert frame[[first, *others]].isna().all().all(), dtype
        if dtype == "category":  # no new category can be written: the codes must not be one buffer
            assert not any(np.shares_memory(frame[first].array.codes, frame[o].array.codes) for o in others)
            continue
        frame.loc[0, first] = value[dtype]
        assert frame.loc[0, first] == value[dtype], dtype
        assert frame[others].isna().all().all(), dtype
