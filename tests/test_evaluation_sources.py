"""Issue 17's evaluation views (benchmarks/evaluate_sources.py): which rows each view fits and scores, and
the targets and measures read off a scored table."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pandas as pd
import pytest

from tlsdetect.detect.knowledge import load_knowledge
from tlsdetect.readers.inputs import Inputs

from .conftest import ROOT


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # its dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


src: Any = _load("evaluate_sources")


def _r(code: str) -> dict[str, str]:
    return {"code": code, "detail": "d", "expected": "e", "observed": "o"}


def _data() -> pd.DataFrame:
    """Labelled connections of part 5: the capture (direct, infrastructure, through mitmproxy) and one log."""
    rows = []
    for i in range(4):  # capture: two direct train, two direct test
        rows.append(("sources_pcap", "clean", "train" if i < 2 else "test", "direct", "curl", i))
    rows.append(("sources_pcap", "clean", "train", "direct", "curl", 5))  # no SNI: scored, never fitted
    rows += [("sources_pcap", "clean", "train", "infrastructure", "envoy-upstream", 10),
             ("sources_pcap", "clean", "test", "infrastructure", "envoy-upstream", 11),
             ("sources_pcap", "intercepted", "test", "client_to_proxy", "openssl", 12),
             ("envoy_fp", "clean", "train", "envoy", "chromium", 20),
             ("envoy_fp", "clean", "test", "envoy", "chromium", 21),
             ("envoy_fp", "intercepted", "test", "envoy", "python", 22)]
    df = pd.DataFrame(rows, columns=["_source", "label", "split", "vantage", "stack", "n"])
    df["note"] = ["no-sni" if n == 5 else "full" if n == 10 else "" for n in df["n"]]
    df["ts"] = pd.Timestamp("2026-12-07", tz="UTC") + pd.to_timedelta(df["n"], unit="s")
    return df.sample(frac=1.0, random_state=1)  # out of time order: split() sorts


def _view(name: str) -> Any:
    return next(v for v in src.VIEWS if v.name == name)


def test_split_fits_on_one_source_and_scores_another() -> None:
    data = _data()
    train, test = src.split(_view("pcap->envoy/fp"), data)
    assert set(train["_source"]) == {"sources_pcap"}
    assert (train["label"] == "clean").all()
    assert (train["split"] == "train").all()
    assert train["n"].tolist() == [0, 1, 10]  # every clean train row of the capture, in time order
    assert test["n"].tolist() == [21, 22]
    train, test = src.split(_view("envoy->envoy/fp"), data)
    assert train["n"].tolist() == [20]
    assert test["n"].tolist() == [21, 22]
    assert src.split(_view("envoy->envoy/pem"), data) is None  # no PEM log in this corpus: not measured


def test_pcap_view_never_fits_on_the_infrastructure_clients_and_scores_all_of_them() -> None:
    train, test = src.split(_view("pcap->pcap"), _data())
    assert "infrastructure" not in set(train["vantage"])
    assert train["n"].tolist() == [0, 1]
    assert test["n"].tolist() == [2, 3, 5, 10, 11, 12]  # the infrastructure and no-SNI train rows are scored too


def _scored() -> pd.DataFrame:
    """A scored table of the five views: every target met."""
    rows: list[dict[str, Any]] = []

    def add(view: str, n: int, **kw: Any) -> None:
        base = {"view": view, "label": "clean", "stack": "curl", "vantage": "envoy", "note": "", "verdict": "ok",
                "reasons": (), "peer_cert_sha256": None, "product": ""}
        rows.extend({**base, **kw} for _ in range(n))

    for fmt in ("pem", "fp"):
        for prefix in ("pcap->envoy", "envoy->envoy"):
            add(f"{prefix}/{fmt}", 200)
            add(f"{prefix}/{fmt}", 30, stack="chromium")
            add(f"{prefix}/{fmt}", 6, stack="openssl", note="no-sni")
            add(f"{prefix}/{fmt}", 4, note="identity:svc-a;renewal", peer_cert_sha256="ab")
        caught = {"label": "intercepted", "note": "lookalike", "verdict": "suspicious"}
        add(f"envoy->envoy/{fmt}", 5, **caught, peer_cert_sha256="cd", reasons=[_r("issuer_key_mismatch")])
        add(f"envoy->envoy/{fmt}", 2, label="intercepted", note="lookalike")  # no certificate: not counted
        add(f"pcap->envoy/{fmt}", 5, label="intercepted", note="lookalike", peer_cert_sha256="cd")
    add("pcap->pcap", 300, vantage="infrastructure", stack="envoy-upstream")
    add("pcap->pcap", 8, label="intercepted", vantage="client_to_proxy", note="resumed", verdict="suspicious",
        reasons=[{"code": "resumed", "detail": "resumed: no certificate to check"}, _r("server_flight_changed")],
        product="mitmproxy")
    add("pcap->pcap", 3, label="intercepted", vantage="client_to_proxy", note="full", verdict="intercepted",
        reasons=[_r("server_flight_changed")], product="mitmproxy")
    add("pcap->pcap", 4, label="intercepted", vantage="proxy_upstream", note="full", product="mitmproxy")
    return src.frame(pd.DataFrame(rows))


def _goals(scored: pd.DataFrame) -> dict[str, dict[str, Any]]:
    return {g["target"]: g for g in src.targets(scored)}


def test_targets_pass_when_met() -> None:
    goals = _goals(_scored())
    assert len(goals) == 9
    assert {g["status"] for g in goals.values()} == {"PASS"}, goals
    assert goals["clean FPR, pcap->envoy (fp log)"]["rows"] == 240
    assert goals["clean FPR, Chromium alone (pcap->envoy and envoy->envoy)"]["rows"] == 120
    assert goals["clean FPR, new infrastructure clients (pcap-fitted without them)"]["rows"] == 300
    look = goals["look-alike identity caught, rows carrying its certificate (envoy->envoy, pem log)"]
    assert (look["rows"], look["measured"]) == (5, 1.0)
    assert "2 look-alike rows without the certificate" in look["detail"]
    assert "issuer_key_mismatch (5)" in look["detail"]
    assert goals["resumed legs through mitmproxy carry the 'resumed' reason (pcap->pcap)"]["rows"] == 8


def test_targets_fail_on_false_positives_and_misses() -> None:
    scored = _scored()
    chromium = (scored["view"] == "pcap->envoy/pem") & (scored["stack"] == "chromium")
    for i in chromium[chromium].index[:2]:
        scored.at[i, "verdict"] = "suspicious"
        scored.at[i, "reasons"] = [_r("new_fingerprint_for_client")]
    goals = _goals(scored)
    pem = goals["clean FPR, pcap->envoy (pem log)"]
    assert pem["status"] == "FAIL"  # 2 of 240 = 0.83 %
    assert "chromium 2/30" in pem["detail"]
    assert "new_fingerprint_for_client (2)" in pem["detail"]
    assert goals["clean FPR, pcap->envoy (fp log)"]["status"] == "PASS"
    chrome = goals["clean FPR, Chromium alone (pcap->envoy and envoy->envoy)"]
    assert chrome["status"] == "FAIL"
    assert "pcap->envoy/pem 2/30" in chrome["detail"]
    assert chrome["measured"] == pytest.approx(2 / 120)


def test_infrastructure_and_identity_and_resumption_targets_fail() -> None:
    scored = _scored()
    for i in scored.index[scored["vantage"] == "infrastructure"][:2]:  # 2 of 300: 0.67 %
        scored.at[i, "verdict"] = "suspicious"
        scored.at[i, "reasons"] = [_r("model_outlier")]
    look = scored.index[(scored["view"] == "envoy->envoy/fp") & (scored["peer_cert_sha256"] == "cd")][0]
    scored.at[look, "verdict"] = "ok"
    scored.at[look, "reasons"] = ()
    resumed = scored.index[scored["note"] == "resumed"][0]
    scored.at[resumed, "reasons"] = [_r("server_flight_changed")]
    goals = _goals(scored)
    infra_goal = goals["clean FPR, new infrastructure clients (pcap-fitted without them)"]
    assert infra_goal["status"] == "FAIL"
    assert "model_outlier (2)" in infra_goal["detail"]
    fp = goals["look-alike identity caught, rows carrying its certificate (envoy->envoy, fp log)"]
    assert fp["status"] == "FAIL"
    assert fp["measured"] == pytest.approx(0.8)
    pem = goals["look-alike identity caught, rows carrying its certificate (envoy->envoy, pem log)"]
    assert pem["status"] == "PASS"
    res = goals["resumed legs through mitmproxy carry the 'resumed' reason (pcap->pcap)"]
    assert res["status"] == "FAIL"
    assert res["detail"] == "7/8"


def test_targets_are_not_measured_without_part_5() -> None:
    goals = src.targets(src.frame(pd.DataFrame()))
    assert len(goals) == 9
    assert {g["status"] for g in goals} == {"NOT MEASURED"}
    assert all(g["status"] != "PASS" for g in src.measures(src.frame(pd.DataFrame())))


def test_measures_report_no_sni_renewal_lookalike_and_recall() -> None:
    scored = _scored()
    for i in scored.index[(scored["view"] == "envoy->envoy/pem") & (scored["note"] == "no-sni")][:3]:
        scored.at[i, "verdict"] = "suspicious"
        scored.at[i, "reasons"] = [_r("new_fingerprint_for_client")]
    got = {m["target"]: m for m in src.measures(scored)}
    assert {m["status"] for m in got.values()} == {"REPORTED"}
    m = got["clean no-sni rows flagged, envoy->envoy/pem"]
    assert (m["measured"], m["rows"]) == (0.5, 6)
    assert "new_fingerprint_for_client (3)" in m["detail"]
    assert got["clean renewal rows flagged, pcap->envoy/fp"]["measured"] == 0.0
    assert got["look-alike identity caught, pcap->envoy (pem log: no identity in the baseline)"]["measured"] == 0.0
    assert got["recall, resumed legs through mitmproxy (client_to_proxy, pcap->pcap)"]["measured"] == 1.0
    assert got["recall, full legs through mitmproxy (client_to_proxy, pcap->pcap)"]["rows"] == 3
    upstream = got["recall, proxy_upstream full legs (pcap->pcap)"]  # mitmproxy's own legs: a new client
    assert (upstream["measured"], upstream["rows"], upstream["detail"]) == (0.0, 4, "0/4; fired: -")


def test_report_section_counts_the_targets_met() -> None:
    scored = _scored()
    text = src.report_section(src.targets(scored), pd.DataFrame(), pd.DataFrame(), src.measures(scored))
    assert text.startswith("## Issue 17 targets: 9 of 9 met")
    assert "| clean FPR, pcap->envoy (pem log) | <= 0.005 | 0.0000 | 240 | PASS |" in text


def test_evaluate_scores_part_5_of_a_small_corpus(tmp_path: Path) -> None:
    """benchmarks/evaluate.py reads sources.pcapng under its own source name and scores the pcap->pcap view;
    the Envoy views of a corpus without the logs are not measured."""
    ev = _load("evaluate")
    shutil.copyfile(ROOT / "pcaps" / "tls13_stacks.pcapng", tmp_path / "sources.pcapng")
    conns = Inputs([str(tmp_path / "sources.pcapng")]).read_all().sort_values("ts").reset_index(drop=True)
    n = len(conns)
    assert n >= 4
    labels = pd.DataFrame({
        "source": "sources_pcap", "client_ip": conns["client_ip"].astype(str),
        "client_port": conns["client_port"].astype("int64"), "server_ip": "x", "server_port": 443,
        "label": "clean", "split": ["train"] * (n // 2) + ["test"] * (n - n // 2),
        "vantage": ["infrastructure"] + ["direct"] * (n - 1), "product": "", "note": "", "stack": "s",
    })
    labels.to_csv(tmp_path / "labels.csv", index=False)
    data, problems = ev.labelled(tmp_path)
    assert problems["unlabelled_connections"] == 0
    assert set(data["_source"]) == {"sources_pcap"}
    assert ev.score_cross_view(_view("pcap->envoy/pem"), data, tmp_path, load_knowledge()) is None
    res = ev.score_cross_view(_view("pcap->pcap"), data, tmp_path, load_knowledge())
    assert res["train"] == n // 2 - 1  # the infrastructure row is never fitted on ...
    assert res["test"] == n - n // 2 + 1  # ... and always scored
    scored = src.frame(res["scored"])
    goals = {g["target"]: g for g in src.targets(scored)}
    infra = goals["clean FPR, new infrastructure clients (pcap-fitted without them)"]
    assert infra["rows"] == 1
    assert infra["status"] in ("PASS", "FAIL")
    assert goals["clean FPR, pcap->envoy (pem log)"]["status"] == "NOT MEASURED"
