"""CT columns after reading, public names, and the per-domain listing of leaves without SCTs."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from tests.test_sct import LOG_A, LOG_B, make_leaf
from tlsdetect import schema
from tlsdetect.detect.ct import add_sct_columns, is_public_name, sct_findings
from tlsdetect.wire.tls import parse_der_certificate

OLD = dt.datetime(2016, 1, 1, tzinfo=dt.UTC)


def _table(rows: list[dict[str, object]]) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    df["ts"] = pd.to_datetime(df["ts"], utc=True)
    return schema.conform(df)


def _leaf(name: str, *logs: bytes, issuer: str = "Test CA", not_before: dt.datetime | None = None,
          issuer_o: str | None = None) -> dict[str, str]:
    info = parse_der_certificate(make_leaf(name, *logs, issuer=issuer, not_before=not_before, issuer_o=issuer_o))
    return {"server_cert_sha256": info.sha256, "server_subject": str(info.subject), "server_issuer": str(info.issuer)}


def test_columns_by_leaf_and_null_where_unseen() -> None:
    a, b = _leaf("a.example.com", LOG_A, LOG_B), _leaf("b.example.com")
    df = _table([{"ts": "2026-01-01", "sni": "a.example.com", **a}, {"ts": "2026-01-01", "sni": "b.example.com", **b},
                 {"ts": "2026-01-01", "sni": "c.example.com", **a}, {"ts": "2026-01-01", "sni": "tls13.example.com"},
                 {"ts": "2026-01-01", "sni": "zeek.example.com", "server_cert_sha256": "ab" * 32}])
    out = add_sct_columns(df)
    assert out["server_sct_count"].tolist()[:3] == [2, 0, 2]
    assert out["server_sct_count"].iloc[3:].isna().all()  # no leaf, or a leaf whose bytes were never parsed
    logs = schema.as_text(out["server_sct_logs"]).tolist()
    assert logs[0] == logs[2] and logs[0].count(",") == 1 and logs[1] == ""  # noqa: PT018
    assert pd.isna(logs[3]) and pd.isna(logs[4])  # noqa: PT018
    assert out["server_not_before"].iloc[0] == pd.Timestamp("2025-01-01", tz="UTC")
    assert isinstance(out["server_sct_logs"].dtype, pd.CategoricalDtype)
    again = add_sct_columns(out)  # enriching twice changes nothing
    assert again["server_sct_count"].tolist()[:3] == [2, 0, 2]
    schema.validate(schema.conform(out))


def test_a_readers_count_is_kept() -> None:
    a = _leaf("a.example.com", LOG_A)
    df = _table([{"ts": "2026-01-01", "sni": "x", **a, "server_sct_count": 7, "server_sct_logs": "given"},
                 {"ts": "2026-01-01", "sni": "y", **a}])
    out = add_sct_columns(df)
    assert out["server_sct_count"].tolist() == [7, 1]
    assert schema.as_text(out["server_sct_logs"]).iloc[0] == "given"


def test_public_names() -> None:
    names = pd.Series(["www.example.com", "api.corp.internal", "svc.test", "localhost", "10.0.0.1", "::1",
                       "host", None, "Example.COM.", "x.y.local", "a.b.c.cluster"], dtype="string")
    assert is_public_name(names).tolist() == [True, False, False, False, False, False, False, False, True, False,
                                              False]
    assert is_public_name(names.astype("category")).tolist() == is_public_name(names).tolist()


def test_findings_per_name_and_leaf() -> None:
    forged = _leaf("bank.example.com", issuer="Corp Inspection CA")
    old = _leaf("old.example.com", issuer="Corp Inspection CA", not_before=OLD)
    public = _leaf("pub.example.com", issuer="DigiCert Global G2 TLS RSA SHA256 2020 CA1", issuer_o="DigiCert Inc")
    fine = _leaf("fine.example.com", LOG_A, issuer="Corp Inspection CA")
    internal = _leaf("app.corp.internal", issuer="Corp Inspection CA")
    rows = [{"ts": f"2026-01-0{i + 1}", "sni": "bank.example.com", **forged} for i in range(3)]
    rows += [{"ts": "2026-01-01", "sni": "old.example.com", **old}, {"ts": "2026-01-01", "sni": "fine.example.com",
                                                                     **fine},
             {"ts": "2026-01-01", "sni": "app.corp.internal", **internal},
             {"ts": "2026-01-01", "sni": "pub.example.com", **public}]
    found = sct_findings(_table(rows))
    assert found["sni"].tolist() == ["bank.example.com", "old.example.com", "pub.example.com"]
    bank = found.iloc[0]
    assert bank["level"] == "error" and bank["connections"] == 3 and not bank["public_issuer"]  # noqa: PT018
    assert bank["first_seen"] == pd.Timestamp("2026-01-01", tz="UTC")
    assert bank["last_seen"] == pd.Timestamp("2026-01-03", tz="UTC")
    assert found["level"].tolist()[1:] == ["warning", "warning"]
    assert found["public_issuer"].tolist() == [False, False, True]


def test_nothing_to_list() -> None:
    assert sct_findings(schema.empty()).empty
    assert list(sct_findings(_table([{"ts": "2026-01-01", "sni": "a.example.com"}])).columns)[-1] == "level"
    assert np.asarray(is_public_name(pd.Series([], dtype="string"))).size == 0
