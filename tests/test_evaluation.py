"""Evaluation arithmetic, and (slow) the whole evaluation on a fresh corpus of real stacks."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tlsdetect.detect.baseline import Baseline
from tlsdetect.detect.evaluation import (
    by_group,
    group_rates,
    hold_out,
    metrics,
    muted,
    note_has,
    note_kind,
    note_tag,
    per_signal,
    reported,
    target,
    to_markdown,
    with_reason,
    with_vantage,
)
from tlsdetect.detect.knowledge import load_knowledge
from tlsdetect.detect.scoring import score
from tlsdetect.readers.inputs import Inputs

from .conftest import ROOT
from .detect_data import with_issuer

pytest_plugins = ["tests.detect_fixtures"]


def _r(code: str) -> dict[str, str]:
    return {"code": code, "detail": "d", "expected": "e", "observed": "o"}


@pytest.fixture
def scored() -> pd.DataFrame:
    return pd.DataFrame({
        "label": ["intercepted", "intercepted", "intercepted", "clean", "clean", "clean", "clean"],
        "verdict": ["intercepted", "suspicious", "ok", "ok", "suspicious", "ok", "ok"],
        "reasons": [[_r("interception_ca")], [_r("model_outlier")], [], [], [_r("model_outlier")], [], []],
        "path": ["mitm", "mitm", "lookalike", "direct", "direct", "direct", "direct"],
        "vantage": ["client_to_proxy", "proxy_upstream", "client_to_proxy", "direct", "direct", "direct",
                    "direct"],
        "product": ["mitmproxy", "mitmproxy", "sslsplit", "", "", "", ""],
    })


def test_metrics(scored: pd.DataFrame) -> None:
    m = metrics(scored)
    assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (2, 1, 1, 3)
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["recall"] == pytest.approx(2 / 3)
    assert m["fpr"] == pytest.approx(1 / 4)
    assert m["flagged_without_reason"] == 0
    strict = metrics(scored, verdicts=("intercepted",))
    assert (strict["tp"], strict["fp"]) == (1, 0)


def test_flagged_row_without_reason_is_counted(scored: pd.DataFrame) -> None:
    scored.at[4, "reasons"] = []
    assert metrics(scored)["flagged_without_reason"] == 1


def test_per_signal_and_groups(scored: pd.DataFrame) -> None:
    sig = per_signal(scored).set_index("signal")
    assert sig.loc["interception_ca", "tp"] == 1
    assert sig.loc["interception_ca", "fp"] == 0
    assert sig.loc["model_outlier", "fp"] == 1
    assert sig.loc["model_outlier", "fp_flagged"] == 1
    scored.at[4, "verdict"] = "ok"  # the reason stays, the row is no longer a false positive
    assert per_signal(scored).set_index("signal").loc["model_outlier", ["fp", "fp_flagged"]].tolist() == [1, 0]
    scored.at[4, "verdict"] = "suspicious"
    groups = by_group(scored, "path").set_index("path")
    assert groups.loc["lookalike", "recall"] == 0.0
    assert groups.loc["direct", "fpr"] == pytest.approx(0.25)
    text = to_markdown(groups.reset_index(), ["path", "recall", "fpr"])
    assert text.splitlines()[0] == "| path | recall | fpr |"
    assert "| lookalike | 0.0000 | - |" in text


def test_per_signal_says_where_it_fired(scored: pd.DataFrame) -> None:
    sig = per_signal(scored).set_index("signal")
    assert sig.loc["model_outlier", "fired_on"] == "clean/direct 1/4, intercepted/proxy_upstream/mitmproxy 1/1"
    assert sig.loc["interception_ca", "fired_on"] == "intercepted/client_to_proxy/mitmproxy 1/1"
    scored.at[3, "reasons"] = [_r("a_code_no_signal_declares")]
    assert "a_code_no_signal_declares" in set(per_signal(scored)["signal"])


def test_group_rates_per_vantage_and_product(scored: pd.DataFrame) -> None:
    g = group_rates(scored, ["vantage", "label", "product"]).set_index(["vantage", "product"])
    assert g.loc[("client_to_proxy", "mitmproxy"), "recall"] == 1.0
    assert g.loc[("client_to_proxy", "sslsplit"), "recall"] == 0.0
    assert g.loc[("direct", ""), "fpr"] == pytest.approx(0.25)
    assert g.loc[("direct", ""), "signals"] == "model_outlier (1)"


def test_note_kind() -> None:
    notes = pd.Series(["renewal:new-cert", "pool:gnutls;x", None, "mitmproxy upstream", "Pool", "renewals"])
    assert note_kind(notes).tolist() == ["renewal:new-cert", "pool:gnutls", "", "", "pool", ""]


def test_note_tag_and_note_has_read_every_part_of_a_note() -> None:
    notes = pd.Series(["identity:svc-a;lookalike", "No-SNI", None, "resumed", "renewals", "full; resumed:2",
                       "identity:svc-a"])
    assert note_tag(notes).tolist() == ["identity", "no-sni", "", "resumed", "renewals", "full", "identity"]
    assert note_has(notes, "lookalike").tolist() == [True, False, False, False, False, False, False]
    assert note_has(notes, "resumed").tolist() == [False, False, False, True, False, True, False]
    assert note_has(notes, "renewal").tolist() == [False] * 7  # "renewals" is another kind
    assert note_has(notes, "identity").tolist() == [True, False, False, False, False, False, True]
    assert note_has(notes.iloc[:0], "identity").tolist() == []
    with pytest.raises(ValueError, match="empty"):
        note_has(notes, " ")


def test_with_reason_matches_a_code_or_the_words_a_detail_starts_with() -> None:
    rows = pd.DataFrame({"reasons": [
        [_r("model_outlier"), {"code": "server_flight_changed", "detail": "Resumed: no certificate to check"}],
        [_r("resumed_session")],
        [{"code": "server_flight_changed", "detail": "a flight unlike a resumed one"}],
        (),
    ]})
    assert with_reason(rows, "resumed").tolist() == [True, True, False, False]
    assert with_reason(rows, "model_outlier").tolist() == [True, False, False, False]
    with pytest.raises(ValueError, match="empty"):
        with_reason(rows, "")


def test_reported_is_never_a_pass() -> None:
    assert reported("no-sni fpr", 0.0, n=12)["status"] == "REPORTED"
    assert reported("no-sni fpr", 0.0, n=0)["status"] == "NOT MEASURED"
    assert reported("no-sni fpr", None, n=3)["status"] == "NOT MEASURED"
    assert reported("x", 0.5, n=2)["goal"] == "report"


def test_with_vantage_derives_old_rows_and_keeps_given_ones() -> None:
    old = pd.DataFrame({
        "source": ["pcap", "pcap", "envoy", "envoy"], "client_ip": ["a", "b", "c", "d"], "client_port": [1, 2, 3, 4],
        "label": ["clean", "intercepted", "intercepted", "intercepted"],
        "path": ["direct", "mitmproxy", "mitmproxy-ca", "lookalike-ca"],
    })
    out = with_vantage(old)
    assert out["vantage"].tolist() == ["direct", "proxy_upstream", "envoy", "envoy"]
    assert out["product"].tolist() == ["", "mitmproxy", "mitmproxy", ""]
    new = pd.DataFrame({
        "source": ["inline_client", "inline_server"], "client_ip": ["a", "b"], "client_port": [1, 2],
        "label": ["intercepted", "clean"], "path": [None, None], "vantage": ["client_to_proxy", "direct"],
        "product": ["sslsplit", None], "note": [None, "pool"],
    })
    out = with_vantage(new)
    assert out["vantage"].tolist() == ["client_to_proxy", "direct"]
    assert out["product"].tolist() == ["sslsplit", ""]
    with pytest.raises(ValueError, match="no vantage"):
        with_vantage(new.assign(vantage=[None, "direct"]))


def test_target_never_passes_without_rows() -> None:
    assert target("recall", 0.99, at_least=0.99, n=10)["status"] == "PASS"
    assert target("recall", 0.98, at_least=0.99, n=10)["status"] == "FAIL"
    assert target("fpr", 0.006, at_most=0.005, n=500)["status"] == "FAIL"
    assert target("fpr", 0.0, at_most=0.005, n=500)["status"] == "PASS"
    assert target("recall", None, at_least=0.9)["status"] == "NOT MEASURED"
    assert target("recall", 1.0, at_least=0.9, n=0)["status"] == "NOT MEASURED"
    with pytest.raises(ValueError, match="exactly one"):
        target("x", 1.0, n=1)


MITM_CA = "CN=mitmproxy,O=mitmproxy"


def test_hold_out_drops_every_row_naming_the_product() -> None:
    kb = load_knowledge()
    held = hold_out(kb, "MITMPROXY")
    for name in ("interception_cas", "product_fingerprints", "stacks"):
        before, after = getattr(kb, name), getattr(held, name)
        named = before.apply(lambda col: col.astype(str).str.lower().str.contains("mitmproxy", regex=False)).any(
            axis=1)
        assert named.any(), name  # the knowledge base does name mitmproxy in each of these tables
        assert len(after) == len(before) - int(named.sum()), name
        assert not after.apply(lambda col: col.astype(str).str.lower().str.contains("mitmproxy")).any(axis=None)
    assert len(held.applications) == len(kb.applications)
    assert held.public_roots is kb.public_roots
    # mitmengine's records name "mitm" in their source, but not mitmproxy: they stay
    assert held.product_fingerprints["source"].str.contains("mitmengine").sum() == \
        kb.product_fingerprints["source"].str.contains("mitmengine").sum()
    assert len(hold_out(kb, []).product_fingerprints) == len(kb.product_fingerprints)


def test_held_out_product_is_not_named_by_scoring(fitted: Baseline, test_rows: pd.DataFrame) -> None:
    rows = with_issuer(test_rows, [0, 1], MITM_CA)
    full = score(rows, fitted, load_knowledge())
    held = score(rows, fitted, hold_out(load_knowledge(), "mitmproxy"))
    assert {r["code"] for r in full.at[0, "reasons"]} >= {"interception_ca"}
    assert "interception_ca" not in {r["code"] for r in held.at[0, "reasons"]}


def test_muted_switches_a_signal_off_and_back_on(fitted: Baseline, test_rows: pd.DataFrame) -> None:
    rows = with_issuer(test_rows, [0], MITM_CA)
    with muted(["interception_ca"]):
        off = score(rows, fitted, load_knowledge())
    on = score(rows, fitted, load_knowledge())
    assert "interception_ca" not in {r["code"] for rs in off["reasons"] for r in rs}
    assert "interception_ca" in {r["code"] for r in on.at[0, "reasons"]}
    assert float(off.at[0, "score"]) < float(on.at[0, "score"])
    with pytest.raises(KeyError, match="no_such_signal"), muted(["no_such_signal"]):
        pass


def _evaluate_script() -> object:
    spec = importlib.util.spec_from_file_location("evaluate", ROOT / "benchmarks" / "evaluate.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["evaluate"] = module  # its dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def test_evaluate_reads_a_corpus_view_and_checks_targets(tmp_path: Path) -> None:
    """benchmarks/evaluate.py on a small corpus: one inline_client capture of the project's real hellos."""
    ev = _evaluate_script()
    shutil.copyfile(ROOT / "pcaps" / "tls13_stacks.pcapng", tmp_path / "inline_client.pcapng")
    conns = Inputs([str(tmp_path / "inline_client.pcapng")]).read_all().sort_values("ts").reset_index(drop=True)
    assert len(conns) >= 4
    n = len(conns) - 1  # the last connection is left without a label: counted, not a crash
    labels = pd.DataFrame({
        "source": "inline_client", "client_ip": conns["client_ip"].astype(str)[:n],
        "client_port": conns["client_port"].astype("int64")[:n], "server_ip": "x", "server_port": 443,
        "label": ["clean"] * (n - 1) + ["intercepted"], "split": ["train"] * (n // 2) + ["test"] * (n - n // 2),
        "vantage": ["direct"] * (n - 1) + ["client_to_proxy"], "product": [""] * (n - 1) + ["sslsplit"],
        "note": "",
    })
    ghost = labels.iloc[[0]].assign(client_port=1)  # labelled, never in the capture
    pd.concat([labels, ghost]).to_csv(tmp_path / "labels.csv", index=False)
    data, problems = ev.labelled(tmp_path)  # type: ignore[attr-defined]
    assert problems["unlabelled_connections"] == 1
    assert problems["labelled_not_read"] == {"inline_client/clean": 1}
    assert len(data) == n
    view = next(v for v in ev.VIEWS if v.name == "inline_client")  # type: ignore[attr-defined]
    assert ev.score_view(next(v for v in ev.VIEWS if v.name == "envoy"), data, tmp_path,  # type: ignore[attr-defined]
                         load_knowledge()) is None
    res = ev.score_view(view, data, tmp_path, load_knowledge())  # type: ignore[attr-defined]
    assert res["products"] == ["sslsplit"]
    assert res["test"] == n - n // 2
    assert (res["scored"]["view"] == "inline_client").all()
    assert res["ablation"][0]["signal_off"] == "(none)"
    goals = {g["target"]: g for g in ev.targets(res["scored"], None, ["sslsplit"])}  # type: ignore[attr-defined]
    c2p = goals["client-to-proxy recall (inline_client)"]
    assert c2p["rows"] == 1
    assert c2p["status"] in ("PASS", "FAIL")
    assert goals["client-to-proxy recall (inline_client), sslsplit"]["rows"] == 1
    assert goals["proxy-host recall (inline_both)"]["status"] == "NOT MEASURED"
    assert goals["mimicking proxy recall (client-to-proxy, inline_client)"]["status"] == "NOT MEASURED"
    assert goals["shared captures flagged, no baseline, own knowledge held out"]["status"] == "NOT MEASURED"


#: The one issue-16 target not met (closing note of issue 16): with their own knowledge rows held out and no
#: baseline, Barracuda's and Cisco WSA's upstream hellos sit nearer clean OpenSSL hellos than any other
#: product's, so nothing honest flags them; 2 of 5 captures (11 of 15 connections) are flagged.
KNOWN_MISS = "shared captures flagged, no baseline, own knowledge held out"


@pytest.mark.slow
def test_evaluation_meets_its_targets_on_a_fresh_corpus(tmp_path: Path) -> None:
    """The issue's targets, on a corpus made now from the real stacks of this machine (~10 min, needs root).

    The corpus has the default size (80 connections per stack): the server profiles need at least three
    observations per server and client family, and both stacks of the pool seen, before they judge;
    at 32 per stack client-to-proxy recall was 0.90 and the pool's clean legs 14.5 % flagged.
    """
    corpus = tmp_path / "corpus"
    make = subprocess.run([sys.executable, str(ROOT / "scripts" / "make_eval_corpus.py"), "--out", str(corpus)],
                          capture_output=True, text=True, timeout=1800, check=False)
    if make.returncode != 0:
        pytest.fail(f"corpus script failed:\n{make.stdout[-2000:]}\n{make.stderr[-2000:]}")
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "evaluate.py"), "--corpus", str(corpus),
                          "--out", str(tmp_path / "report.md"), "--jsonl", str(tmp_path / "report.jsonl")],
                         capture_output=True, text=True, timeout=900, check=False)
    records = [json.loads(line) for line in (tmp_path / "report.jsonl").read_text().splitlines()]
    goals = {r["target"]: r for r in records if r["table"] == "target"}
    assert goals["flagged rows without a reason"]["status"] == "PASS", run.stdout
    # issue 17's targets count when the corpus script built part 5 (the sources capture and the Envoy logs)
    part5 = (corpus / "sources.pcapng").exists()
    issue17 = {k: g for k, g in goals.items() if g["issue"] == 17}
    assert issue17, "issue 17's targets are always reported"
    if not part5:
        assert {g["status"] for g in issue17.values()} == {"NOT MEASURED"}, issue17
    failed = {k: g for k, g in goals.items() if g["status"] != "PASS" and k != KNOWN_MISS
              and (part5 or g["issue"] != 17)}
    assert not failed, failed  # every other target, the inline views (and part 5 when built) included
    assert run.returncode == (0 if part5 and goals[KNOWN_MISS]["status"] == "PASS" else 1)
    assert goals[KNOWN_MISS]["measured"] >= 0.4, goals[KNOWN_MISS]  # no worse than when it was recorded
