"""What the REST API's tests share: known fingerprints, an httpx client on the app, the request body of a
table, the shape every error answer has, and a baseline directory swapped as a deploy does.

The fixtures are in :mod:`tests.serve_fixtures`.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import httpx
import pandas as pd

import tlsdetect.sinks.files as sinks
from tlsdetect import schema
from tlsdetect.detect.baseline import Baseline

ROOT = Path(__file__).resolve().parents[1]
ESET_JA3 = "2d0c1aa81856c537394b05616d38dbae"  # product_fingerprints.csv: eset-nod32-antivirus-9
UNKNOWN_JA4 = "t13d0000h2_000000000000_000000000000"


def client(app: Any, token: str | None = None) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api", headers=headers)


def payload(df: pd.DataFrame) -> dict[str, Any]:
    return {"connections": sinks.to_records(df[list(schema.COLUMNS)])}


def assert_error(r: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert set(body) == {"error", "detail"}
    assert "Traceback" not in r.text
    if code is not None:
        assert body["error"] == code
    return body  # type: ignore[no-any-return]


def replace_dir(target: Path, df: pd.DataFrame) -> None:
    """Fit ``df`` beside ``target`` and swap it in (what a deploy does)."""
    new = target.with_name(target.name + ".new")
    Baseline().fit(df).save(new)
    old = target.with_name(target.name + ".old")
    target.rename(old)
    new.rename(target)
    shutil.rmtree(old)
