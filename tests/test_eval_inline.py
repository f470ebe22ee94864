"""``scripts/eval_inline.py``: the plan, the label derivation and the labels merge; end to end when root.

The label tests build the flows a sensor would read (``make_eval_corpus.Flow``) around a small plan
with known times, so each rule (which run a flow belongs to, which interceptor an upstream leg
speaks for, renewal and pool notes, refusal of leaks and duplicates) can fail on its own.
"""

from __future__ import annotations

import csv
import importlib
import os
import random
import shutil
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
ei: Any = importlib.import_module("eval_inline")
mec: Any = importlib.import_module("make_eval_corpus")
Flow = mec.Flow


def test_plan_sizes_groups_and_renewal() -> None:
    stacks = ["openssl", "curl", "python", "gnutls", "node"]
    products = ["mitmproxy", "sslsplit", "mimic"]
    batches = ei.plan(stacks, products, 4, 6, 3, random.Random(1))
    assert [b.name for b in batches] == ["train", *(f"{p}-{h}" for p in products for h in "ab")]
    jobs = [j for b in batches for j in b.jobs]
    per = Counter((j.stack, j.split, j.product) for j in jobs)
    for s in stacks:
        assert per[(s, "train", "")] == 4
        assert per[(s, "test", "")] == 6
        for p in products:
            assert per[(s, "test", p)] == 3
    for p in products:  # the two halves redirect complementary groups of addresses
        a, b = (next(x for x in batches if x.name == f"{p}-{h}") for h in "ab")
        assert set(a.intercepted) | set(b.intercepted) == set(stacks)
        assert not set(a.intercepted) & set(b.intercepted)
        assert all(j.product == (p if j.stack in a.intercepted else "") for j in a.jobs)
    assert [b.name for b in batches if b.renew_after] == ["sslsplit-a"]  # midway through the test batches
    assert all(j.server_ip == ei.SERVER_OF[j.sni.split(".")[0]] for j in jobs)
    assert not any(j.stack == ei.PROBE for j in jobs)  # probes=0: no probe


def test_plan_probe_reaches_every_name_in_every_batch_clean() -> None:
    stacks, products = ["openssl", "curl", "python"], ["mitmproxy", "sslsplit"]
    plain = ei.plan(stacks, products, 4, 6, 3, random.Random(1))
    batches = ei.plan(stacks, products, 4, 6, 3, random.Random(1), probes=2)
    names = tuple(ei.SERVER_OF)
    for b, b0 in zip(batches, plain, strict=True):
        probe = [j for j in b.jobs if j.stack == ei.PROBE]
        assert Counter(j.sni.split(".")[0] for j in probe) == dict.fromkeys(names, 2), b.name
        assert all(j.product == "" and j.server_ip == ei.SERVER_OF[j.sni.split(".")[0]] for j in probe)
        assert {j.split for j in probe} == {"train" if b.name == "train" else "test"}
        assert ei.PROBE not in b.intercepted
        assert len(b.jobs) - len(probe) == len(b0.jobs)  # the others' batch is as big as without the probe
        if len(b.jobs) > len(names) * 2:  # mixed in, not all at one end
            at = [i for i, j in enumerate(b.jobs) if j.stack == ei.PROBE]
            assert at != list(range(len(at)))
            assert at != list(range(len(b.jobs) - len(at), len(b.jobs)))
    others = Counter((j.stack, j.split, j.product) for b in batches for j in b.jobs if j.stack != ei.PROBE)
    assert others == Counter((j.stack, j.split, j.product) for b in plain for j in b.jobs)
    after = batches[[b.renew_after for b in batches].index(True) + 1:]
    assert after
    assert all(any(j.stack == ei.PROBE and j.server_ip == ei.RENEWED for j in b.jobs) for b in after)
    assert ei.STACK_IP[ei.PROBE] not in {ei.STACK_IP[s] for s in ei.STACKS}


def _run() -> tuple[Any, dict[str, Any]]:
    """Two clean runs, one mitmproxy run to the pool, one sslsplit run to the renewed server."""
    sni = {k: f"{k}.{mec.mc.BASE_SNI}" for k in ("www", "shop", "cdn")}
    j_clean = ei.Job("curl", "", "train", "train", sni["www"], ei.WWW, 100.0, 101.0)
    j_clean2 = ei.Job("node", "", "test", "mitmproxy-a", sni["cdn"], ei.RENEWED, 110.0, 111.0)
    j_mitm = ei.Job("python", "mitmproxy", "test", "mitmproxy-a", sni["shop"], ei.POOL, 112.0, 113.0)
    j_split = ei.Job("python", "sslsplit", "test", "sslsplit-a", sni["cdn"], ei.RENEWED, 130.0, 131.0)
    batches = [
        ei.Batch("train", "", [], [j_clean], start=99.0, end=102.0),
        ei.Batch("mitmproxy-a", "mitmproxy", ["python"], [j_clean2, j_mitm], start=109.0, end=114.0),
        ei.Batch("sslsplit-a", "sslsplit", ["python"], [j_split], start=129.0, end=132.0),
    ]
    run = ei.Run(batches, renewed_at=120.0, pool_python_peers={(ei.MIDDLE, 41000)}, products=[], seconds=1.0)
    ip = ei.STACK_IP
    flows = {
        "client": [
            Flow(ip["curl"], 20000, ei.WWW, 443, 100.1, True),
            Flow(ip["node"], 20000, ei.RENEWED, 443, 110.1, True),
            Flow(ip["python"], 20000, ei.POOL, 443, 112.1, True),
            Flow(ip["python"], 20001, ei.RENEWED, 443, 130.1, True),
        ],
        "server": [
            Flow(ip["curl"], 20000, ei.WWW, 443, 100.1, True),
            Flow(ip["node"], 20000, ei.RENEWED, 443, 110.1, True),
            Flow(ei.MIDDLE, 41000, ei.POOL, 443, 112.2, True),
            Flow(ei.MIDDLE, 41001, ei.RENEWED, 443, 130.2, True),
        ],
        "sni": {(ei.MIDDLE, 41000): sni["shop"], (ei.MIDDLE, 41001): sni["cdn"]},
    }
    return run, flows


def _by_key(rows: list[dict[str, Any]]) -> dict[tuple[str, str, int], dict[str, Any]]:
    return {(r["source"], r["client_ip"], r["client_port"]): r for r in rows}


def test_labels_vantage_product_stack_and_notes() -> None:
    run, fl = _run()
    rows, extra = ei.label_rows(run, fl["client"], fl["server"], fl["sni"])
    assert len(rows) == 8
    k = _by_key(rows)
    ip = ei.STACK_IP
    for src in ("inline_client", "inline_server"):  # a clean routed leg: one row per sensor
        r = k[(src, ip["curl"], 20000)]
        got = (r["vantage"], r["label"], r["split"], r["product"], r["stack"])
        assert got == ("direct", "clean", "train", "", "curl")
        assert k[(src, ip["node"], 20000)]["note"] == "renewal:old-cert"
    c2p = k[("inline_client", ip["python"], 20000)]
    assert (c2p["vantage"], c2p["label"], c2p["product"], c2p["path"]) == (
        "client_to_proxy", "intercepted", "mitmproxy", "mitmproxy")
    assert c2p["note"] == "pool:python-ssl"  # the backend its proxy reached
    up = k[("inline_server", ei.MIDDLE, 41000)]
    assert (up["vantage"], up["product"], up["stack"], up["split"]) == ("proxy_upstream", "mitmproxy", "python", "test")
    up2 = k[("inline_server", ei.MIDDLE, 41001)]
    assert (up2["product"], up2["stack"], up2["note"]) == ("sslsplit", "python", "renewal:new-cert")
    assert extra == {"upstream_legs_without_stack": {}}


def test_upstream_leg_with_another_sni_keeps_an_empty_stack() -> None:
    run, fl = _run()
    fl["sni"][(ei.MIDDLE, 41001)] = "www.elsewhere.test"
    rows, extra = ei.label_rows(run, fl["client"], fl["server"], fl["sni"])
    r = _by_key(rows)[("inline_server", ei.MIDDLE, 41001)]
    assert (r["stack"], r["product"], r["label"]) == ("", "sslsplit", "intercepted")  # product from the phase
    assert extra == {"upstream_legs_without_stack": {"sslsplit": 1}}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda fl: fl["server"].append(Flow(ei.STACK_IP["python"], 20000, ei.POOL, 443, 112.1, True)), "leaked"),
        (lambda fl: fl["client"].pop(0), "seen"),
        (lambda fl: fl["client"].append(Flow(ei.STACK_IP["gnutls"], 20000, ei.WWW, 443, 150.0, True)), "no client run"),
        (lambda fl: fl["server"].append(Flow(ei.MIDDLE, 41002, ei.WWW, 443, 150.0, True)), "outside every phase"),
        (lambda fl: fl["client"].append(Flow(ei.STACK_IP["curl"], 20000, ei.WWW, 443, 100.5, True)), "used twice"),
    ],
)
def test_labels_refuse_what_does_not_add_up(change: Any, message: str) -> None:
    run, fl = _run()
    change(fl)
    with pytest.raises(mec.CaptureError, match=message):
        ei.label_rows(run, fl["client"], fl["server"], fl["sni"])


def test_merge_keeps_other_rows_adds_vantage_and_replaces_inline(tmp_path: Path) -> None:
    old_cols = [c for c in mec.LABEL_COLUMNS if c not in ("vantage", "product")]
    old = [
        {"source": "pcap", "client_ip": "127.0.0.11", "client_port": 1, "server_ip": "127.0.0.1", "server_port": 2,
         "ts": "t1", "stack": "curl", "label": "intercepted", "split": "test", "path": "mitmproxy", "note": ""},
        {"source": "envoy", "client_ip": "127.0.0.12", "client_port": 3, "server_ip": "127.0.0.1", "server_port": 4,
         "ts": "t2", "stack": "curl", "label": "clean", "split": "train", "path": "mesh-internal", "note": ""},
    ]
    with (tmp_path / "labels.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=old_cols)
        w.writeheader()
        w.writerows(old)
    run, fl = _run()
    rows, _ = ei.label_rows(run, fl["client"], fl["server"], fl["sni"])
    assert ei.merge_labels(tmp_path, rows) == 10
    assert ei.merge_labels(tmp_path, rows[:3]) == 5  # a second run replaces the inline rows, never adds
    df = pd.read_csv(tmp_path / "labels.csv", keep_default_na=False)
    assert list(df.columns) == list(mec.LABEL_COLUMNS)
    got = {r.source: (r.vantage, r.product) for r in df.itertuples() if not r.source.startswith("inline")}
    assert got == {"pcap": ("proxy_upstream", "mitmproxy"), "envoy": ("envoy", "")}


def _inline_missing() -> list[str]:
    if os.geteuid() != 0:
        return ["root"]
    tools = ["ip", "iptables", "dumpcap", "sslsplit", "openssl", "curl"]
    missing = [t for t in tools if shutil.which(t) is None]
    return missing + ([] if Path(mec.MITMDUMP).is_file() else ["mitmdump"])


@pytest.mark.slow
def test_end_to_end_two_stacks_every_connection_labelled_once(tmp_path: Path) -> None:
    missing = _inline_missing()
    if missing:
        pytest.skip(f"needs {', '.join(missing)}")
    from tlsdetect.readers.pcap.engine import read_pcap

    skip = ",".join(s for s in ei.STACKS if s not in ("openssl", "curl"))
    assert ei.main(["--out", str(tmp_path), "--train", "2", "--test", "2", "--per-interceptor", "2", "--skip", skip,
                    "--interceptors", "mitmproxy,sslsplit", "--probes", "1"]) == 0
    labels = pd.read_csv(tmp_path / "labels.csv", keep_default_na=False)
    frames = {}
    for src in ("inline_client", "inline_server"):
        df, _ = read_pcap(tmp_path / f"{src}.pcapng")
        frames[src] = df
        seen = Counter(zip(df["client_ip"].astype(str), df["client_port"].astype(int), strict=True))
        lab = labels[labels["source"] == src]
        keyed = Counter(zip(lab["client_ip"], lab["client_port"].astype(int), strict=True))
        assert seen == keyed
        assert set(seen.values()) == {1}
    got = Counter(zip(labels["source"], labels["vantage"], labels["product"], strict=True))
    for p in ("mitmproxy", "sslsplit"):
        assert got[("inline_client", "client_to_proxy", p)] == 4  # 2 stacks x 2
        assert got[("inline_server", "proxy_upstream", p)] == 4
    n_probe = len(ei.SERVER_OF) * 5  # one per name in each of the 5 batches
    assert got[("inline_client", "direct", "")] == got[("inline_server", "direct", "")] == 2 * (2 + 2) + n_probe
    # the probe: clean TLS 1.2 on both sensors; the renewed server's certificate seen in clear, old and new
    probe = labels[labels["stack"] == ei.PROBE].astype({"client_port": "int64"})
    assert len(probe) == 2 * n_probe
    assert set(zip(probe["label"], probe["vantage"], probe["product"], strict=True)) == {("clean", "direct", "")}
    srv = frames["inline_server"].astype({"client_port": "int64"}).merge(
        probe[probe["source"] == "inline_server"][["client_ip", "client_port", "note"]],
        on=["client_ip", "client_port"])
    assert len(srv) == n_probe
    assert set(srv["tls_version"]) == {"TLSv1.2"}
    assert srv["server_cert_sha256"].notna().all()
    renewed = srv[srv["server_ip"] == ei.RENEWED].groupby("note")["server_cert_sha256"].agg(set)
    assert set(renewed.index) == {"renewal:old-cert", "renewal:new-cert"}
    assert len(renewed["renewal:old-cert"]) == len(renewed["renewal:new-cert"]) == 1
    assert renewed["renewal:old-cert"] != renewed["renewal:new-cert"]
    assert not any(Path("/run/netns").glob("td16-*")), "namespaces left behind"
