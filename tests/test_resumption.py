"""Resumed sessions: the informational reason, the link to the full handshake, and the inherited verdict.

Synthetic tables check the linking rules (same client, name, address and port; the latest earlier full
handshake; the ticket lifetime); a slow test captures a real TLS 1.2 client resuming its sessions through a
real mitmproxy and scores the capture.
"""

from __future__ import annotations

import contextlib
import importlib
import socket
import ssl
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tlsdetect import schema
from tlsdetect.detect.evidence import Evidence
from tlsdetect.detect.issuer_signals import CLASS_RANK
from tlsdetect.detect.resumption import RESUMED_CLASS, TICKET_LIFETIME, resumption_signals
from tlsdetect.detect.scoring import score

ROOT = Path(__file__).resolve().parents[1]


def _table(rows: list[dict[str, Any]]) -> pd.DataFrame:
    base = {"client_ip": "10.0.0.1", "client_port": 40000, "server_ip": "10.9.9.9", "server_port": 443,
            "sni": "app.example", "source": "test"}
    recs = [{**base, **r, "conn_id": f"c{i}"} for i, r in enumerate(rows)]
    df = pd.DataFrame(recs)
    df["ts"] = pd.to_datetime(df["ts"], utc=True, format="ISO8601")
    return schema.conform(df)


def _class(values: list[str | None]) -> pd.Categorical:
    return pd.Categorical(values, categories=pd.Index(CLASS_RANK, dtype=object))


def _run(df: pd.DataFrame, flagged: list[int], code: str = "interception_ca",
         classes: list[str | None] | None = None) -> tuple[Evidence, pd.Categorical]:
    ev = Evidence(len(df))
    mask = np.zeros(len(df), dtype=bool)
    mask[flagged] = True
    ev.add(code, mask, "planted")
    cid = df["client_ip"].astype("string")
    cls = _class(classes if classes is not None else [None] * len(df))
    return ev, resumption_signals(df, cid, cls, ev)


def _codes(ev: Evidence) -> list[set[str]]:
    return [{r["code"] for r in rs} for rs in ev.reasons()]


def test_a_resumed_session_of_an_intercepted_handshake_inherits_it() -> None:
    df = _table([
        {"ts": "2026-12-01 10:00", "resumed": False, "server_issuer": "CN=mitmproxy"},
        {"ts": "2026-12-01 10:05", "resumed": True},
    ])
    ev, cls = _run(df, [0], classes=["interception", None])
    assert _codes(ev)[1] == {"resumed_intercepted_session"}
    reason = ev.reasons()[1][0]
    assert "resumed: no certificate to check" in reason["detail"]
    assert "c0" in reason["detail"]
    assert "10.0.0.1:40000 -> 10.9.9.9:443" in reason["detail"]
    assert reason["observed"] == "interception_ca"
    assert ev.scores()[1] == 70.0  # the evidence's 95, at most the signal's 70
    assert list(cls) == ["interception", "interception"]  # the session's certificate is the earlier one's


def test_an_unflagged_or_unlinked_resumption_only_says_so() -> None:
    df = _table([
        {"ts": "2026-12-01 10:00", "resumed": False, "server_issuer": "CN=Public CA"},
        {"ts": "2026-12-01 10:05", "resumed": True},  # resumes c0 (clean)
        {"ts": "2026-12-01 10:06", "resumed": True, "server_port": 8443},  # another server: nothing to link
    ])
    ev, cls = _run(df, [], classes=["public", None, None])
    assert _codes(ev) == [set(), {"resumed_no_certificate"}, {"resumed_no_certificate"}]
    assert (ev.scores() == 0).all()  # informational: the verdict stays what the evidence says
    assert "resumes connection c0" in ev.reasons()[1][0]["detail"]
    assert "not in this input" in ev.reasons()[2][0]["detail"]
    assert list(cls) == ["public", RESUMED_CLASS, RESUMED_CLASS]  # never a clean class without a certificate


def test_the_latest_earlier_full_handshake_within_a_ticket_lifetime() -> None:
    later = (pd.Timestamp("2026-12-01 10:00", tz="UTC") + TICKET_LIFETIME + pd.Timedelta(minutes=1))
    df = _table([
        {"ts": "2026-12-01 09:00", "resumed": False},  # flagged, but c1 is later
        {"ts": "2026-12-01 10:00", "resumed": False},  # clean: the one c2 resumes
        {"ts": "2026-12-01 10:30", "resumed": True},
        {"ts": "2026-12-01 11:00", "resumed": False},  # flagged, but after the resumption
        {"ts": str(later), "resumed": True, "client_ip": "10.0.0.2"},  # another client: its own sessions
        {"ts": str(later), "resumed": True},  # c3 is within the lifetime: linked
        {"ts": str(later + TICKET_LIFETIME), "resumed": True},  # older than any ticket: unlinked
    ])
    ev, _ = _run(df, [0, 3], code="server_fingerprint_changed")
    codes = _codes(ev)
    assert codes[2] == {"resumed_no_certificate"} and "c1" in ev.reasons()[2][0]["detail"]  # noqa: PT018
    assert codes[4] == {"resumed_no_certificate"}
    assert codes[5] == {"resumed_intercepted_session"}
    assert ev.scores()[5] == 50.0  # server_fingerprint_changed's weight, inherited as is
    assert "not in this input" in ev.reasons()[6][0]["detail"]


def test_nothing_without_the_column_or_with_a_certificate() -> None:
    df = _table([{"ts": "2026-12-01 10:00", "resumed": True, "server_issuer": "CN=Public CA"},
                 {"ts": "2026-12-01 10:01", "resumed": pd.NA}])
    ev, cls = _run(df, [], classes=["public", None])
    assert not ev.parts
    assert cls[0] == "public"
    assert cls.isna().tolist() == [False, True]
    bare = df.drop(columns=["resumed"])
    ev2, cls2 = _run(bare, [])
    assert not ev2.parts
    assert cls2.isna().all()


def test_score_wires_it_without_a_baseline() -> None:
    df = _table([
        {"ts": "2026-12-01 10:00", "resumed": False, "server_issuer": "CN=mitmproxy, O=mitmproxy"},
        {"ts": "2026-12-01 10:05", "resumed": True},
    ])
    from tlsdetect.detect.issuers import add_issuer_keys

    out = score(add_issuer_keys(df), None)
    assert out.loc[0, "issuer_class"] == "interception"
    assert out.loc[1, "verdict"] == "intercepted"
    reasons: list[dict[str, str | None]] = out["reasons"].iloc[1]
    assert [r["code"] for r in reasons] == ["resumed_intercepted_session"]
    assert out.loc[1, "issuer_class"] == "interception"


# ------------------------------------------------------------------------------ real mitmproxy, real client
def _resume(ca: Path, port: int, sni: str, n: int) -> list[bool]:
    """Python ``ssl``, TLS 1.2: one full handshake, then ``n - 1`` offering its session; which resumed."""
    ctx = ssl.create_default_context(cafile=str(ca))
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    session = None
    out: list[bool] = []
    for _ in range(n):
        with socket.create_connection(("127.0.0.1", port), timeout=20) as raw, \
                ctx.wrap_socket(raw, server_hostname=sni, session=session) as tls:
            tls.sendall(f"GET /hello.txt HTTP/1.0\r\nHost: {sni}\r\n\r\n".encode())
            while tls.recv(65536):
                pass
            out.append(bool(tls.session_reused))
            session = tls.session
    return out


@pytest.mark.slow
def test_real_resumptions_through_mitmproxy(tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT / "scripts"))
    mc: Any = importlib.import_module("make_captures")
    if not mc.MITMDUMP.exists():
        pytest.skip(f"mitmdump not installed at {mc.MITMDUMP} (scripts/setup.sh)")
    from tlsdetect.readers.inputs import Inputs

    pki = mc.make_pki(tmp_path)
    confdir = tmp_path / "mitmproxy"
    confdir.mkdir()
    addon = tmp_path / "addon.py"
    addon.write_text(mc.MITM_ADDON.format(log=str(tmp_path / "upstream.jsonl")))
    cap = tmp_path / "resume.pcapng"
    with contextlib.ExitStack() as stack:
        upstream = stack.enter_context(mc.openssl_server(pki, tmp_path, "upstream"))
        opts = ("--set", f"ssl_verify_upstream_trusted_ca={pki.root_cert}", "--set", "http2=false")
        port = stack.enter_context(mc.mitmdump(confdir, tmp_path / "mitmdump.log", upstream.port, addon, opts))
        stack.enter_context(mc.packet_capture(cap, [port], "dumpcap", "pcapng", tmp_path))
        reused = _resume(confdir / "mitmproxy-ca-cert.pem", port, "resume.tlsdetect.test", 4)
    assert reused[0] is False and any(reused[1:])  # noqa: PT018  # the client did resume with mitmproxy

    df = Inputs([str(cap)]).read_all()
    df = df[df["server_port"] == port].sort_values("ts").reset_index(drop=True)
    assert len(df) == 4
    assert df["resumed"].tolist() == reused  # the capture saw what the client saw
    out = score(df, None)  # knowledge only: mitmproxy's CA is a known interception CA
    full, res = out[~df["resumed"].to_numpy(dtype=bool)], out[df["resumed"].to_numpy(dtype=bool)]
    assert (full["verdict"] == "intercepted").all()
    assert (res["verdict"] == "intercepted").all()
    for reasons in res["reasons"]:
        (r,) = [r for r in reasons if r["code"] == "resumed_intercepted_session"]
        assert r["detail"].startswith("resumed: no certificate to check")
        assert "interception_ca" in r["observed"]
    assert (res["issuer_class"] == "interception").all()
