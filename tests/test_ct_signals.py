"""The ``public_name_no_sct`` signal through :func:`tlsdetect.detect.scoring.score`: a non-public CA's
leaf without SCTs for a public name fires with its evidence; every way out of that does not."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from tests.test_ct import _leaf, _table
from tests.test_sct import LOG_A
from tlsdetect.detect.ct import add_sct_columns
from tlsdetect.detect.ct_signals import CODE, ct_signal
from tlsdetect.detect.evidence import SIGNALS, Evidence
from tlsdetect.detect.knowledge import load_knowledge
from tlsdetect.detect.scoring import score


def _codes(scored: pd.DataFrame) -> list[set[str]]:
    return [{r["code"] for r in rs} for rs in scored["reasons"]]


def test_fires_only_on_the_forged_shape() -> None:
    private = "Corp Inspection CA"
    rows = [
        {"sni": "bank.example.com", **_leaf("bank.example.com", issuer=private)},  # fires
        {"sni": "bank.example.com", **_leaf("bank.example.com", LOG_A, issuer=private)},  # has an SCT
        {"sni": "app.corp.internal", **_leaf("app.corp.internal", issuer=private)},  # internal name
        {"sni": "old.example.com", **_leaf("old.example.com", issuer=private,
                                           not_before=dt.datetime(2017, 1, 1, tzinfo=dt.UTC))},  # before CT
        {"sni": "pub.example.com", **_leaf("pub.example.com", issuer="DigiCert Global G2 TLS RSA SHA256 2020 CA1",
                                           issuer_o="DigiCert Inc")},  # a public CA
        {"sni": "tls13.example.com"},  # no chain seen
        {"sni": "unparsed.example.com", "server_cert_sha256": "cd" * 32, "server_issuer": f"CN={private}"},
    ]
    df = add_sct_columns(_table([{"ts": "2026-03-01", **r} for r in rows]))
    scored = score(df, None)
    fired = [CODE in c for c in _codes(scored)]
    assert fired == [True, False, False, False, False, False, False]
    (reason,) = [r for r in scored["reasons"].iloc[0] if r["code"] == CODE]
    assert "bank.example.com" in reason["detail"]
    assert "CN=Corp Inspection CA" in reason["detail"]
    assert reason["observed"] == "0 SCTs; issuer CN=Corp Inspection CA"
    assert reason["expected"].startswith("embedded SCTs")
    assert scored["verdict"].iloc[0] == "suspicious"
    assert scored["score"].iloc[0] == SIGNALS[CODE].weight


def test_a_table_without_the_columns_is_left_alone() -> None:
    ev = Evidence(1)
    ct_signal(_table([{"ts": "2026-03-01", "sni": "bank.example.com"}]).drop(columns=["server_sct_count"]),
              load_knowledge(), ev)
    assert not ev.parts
    ev = Evidence(2)
    df = _table([{"ts": "2026-03-01", "sni": "a.example.com"}, {"ts": "2026-03-01", "sni": None}])
    ct_signal(df, load_knowledge(), ev)
    assert not ev.parts and np.all(ev.scores() == 0)  # noqa: PT018
