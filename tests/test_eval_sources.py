"""``scripts/eval_sources.py`` (part 5): the plan, hellos on the wire, the labels, the merge; end to end (slow).

The hello tests parse real handshakes (Python ``ssl`` over memory BIOs with the part's own PKI), so
SNI, session-id echo and PSK acceptance come from OpenSSL, not from bytes written here. The label
tests build the legs and log lines a run would produce around known ports and certificates, so each
rule (which vantage, which identity, a missing or doubled connection) can fail on its own.
"""

from __future__ import annotations

import contextlib
import csv
import importlib
import json
import random
import shutil
import ssl
import subprocess
import sys
import urllib.parse
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
es: Any = importlib.import_module("eval_sources")
mec: Any = importlib.import_module("make_eval_corpus")
STACKS = ["openssl", "curl", "python", "gnutls", "node", "chromium"]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return es.make_pki(tmp_path_factory.mktemp("pki"), renew_in_hours=0.0)


# ------------------------------------------------------------------------------------------- plan


def test_plan_sizes_phases_and_identities() -> None:
    sizes = es.Sizes(per_stack=3, no_sni=2, chromium=20, per_identity=2, lookalike=4, sessions=2, resumed=3)
    jobs = es.plan(STACKS, sizes, random.Random(1))
    phases = [j.phase for j in jobs]
    assert phases == sorted(phases, key=es.PHASES.index)  # every train job before every test job
    per = Counter((j.phase, j.kind, j.who) for j in jobs)
    for phase in es.PHASES:
        for st in STACKS[:-1]:
            assert per[(phase, "sni", st)] == 3
            assert per[(phase, "no-sni", st)] == (2 if st in es.NO_SNI_STACKS else 0)
        assert sum(j.n for j in jobs if j.phase == phase and j.kind == "chromium") == 20
        assert max(j.n for j in jobs if j.kind == "chromium") <= es.CHROMIUM_PER_RUN
        assert per[(phase, "resume", es.RESUME_STACK)] == 2
    assert {j.phase for j in jobs if j.kind == "lookalike"} == {"test"}
    assert per[("test", "lookalike", es.IMPERSONATED)] == 4
    certs = {(j.phase, j.who): j.cert for j in jobs if j.kind == "identity"}
    assert certs[("train", es.RENEWED)] == es.RENEWED
    assert certs[("test", es.RENEWED)] == f"{es.RENEWED}-renewed"
    assert all(c == w for (_, w), c in certs.items() if w != es.RENEWED)
    want = es.expected(jobs)
    assert want[("test", es.RESUME_IP, "full")] == 2
    assert want[("test", es.RESUME_IP, "resumed")] == 6
    assert want[("train", es.CHROMIUM_IP, "chromium")] == 20
    assert want[("test", es.LOOKALIKE_IP, "lookalike")] == 4
    assert es.plan(STACKS, sizes, random.Random(1)) == jobs  # seeded


def test_sizes_follow_per_stack_and_addresses_are_apart() -> None:
    assert es.sizes_for(80) == es.Sizes()  # make_eval_corpus's default size gives this script's defaults
    small = es.sizes_for(6)
    assert min(vars(small).values()) >= 1
    assert small.chromium >= es.CHROMIUM_PER_RUN
    addresses = [*es.STACK_IP.values(), *es.IDENTITY_IP.values(), es.LOOKALIKE_IP, es.RESUME_IP,
                 es.ENVOY_UPSTREAM_IP, es.MITM_UPSTREAM_IP]
    assert len(addresses) == len(set(addresses))
    assert [s for s, ip in es.STACK_IP.items() if ip == "127.0.0.1"] == ["chromium"]
    assert not es.LOOKALIKE_IP.startswith("127.0.1.")  # another /24 than the workloads
    assert f"ip = {es.MITM_UPSTREAM_IP!r}" in es.MITM_ADDON


# ------------------------------------------------------------------------------------------- hellos


def _handshake(client: ssl.SSLContext, server: ssl.SSLContext, host: str,
               session: ssl.SSLSession | None = None) -> tuple[bytes, bytes, ssl.SSLObject]:
    """One handshake over memory BIOs; the first record each side sent, and the client object."""
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    c = client.wrap_bio(c_in, c_out, server_hostname=host, session=session)
    s = server.wrap_bio(s_in, s_out, server_side=True)
    first: dict[str, bytes] = {}
    for _ in range(10):
        for name, obj, out, peer in (("client", c, c_out, s_in), ("server", s, s_out, c_in)):
            with contextlib.suppress(ssl.SSLWantReadError):
                obj.do_handshake()
            data = out.read()
            if data:
                first.setdefault(name, data)
                peer.write(data)
    with pytest.raises(ssl.SSLWantReadError):  # TLS 1.3: takes the session ticket
        c.read()
    return first["client"], first["server"], c


def _contexts(pki: Any, tls12: bool) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(*map(str, pki.server))
    client = ssl.create_default_context(cafile=str(pki.root))
    if tls12:
        client.maximum_version = ssl.TLSVersion.TLSv1_2
    return client, server


@pytest.mark.parametrize("tls12", [True, False])
def test_hellos_sni_and_resumption_from_real_handshakes(pki: Any, tls12: bool) -> None:
    client, server = _contexts(pki, tls12)
    ch, sh, obj = _handshake(client, server, f"www.{es.SNI_DOMAIN}")
    typ, sid, exts = es.parse_hello(ch)
    assert typ == 1
    assert es.sni_of(exts) == f"www.{es.SNI_DOMAIN}"
    server_hello = es.parse_hello(sh)
    assert server_hello[0] == 2
    assert not es.resumed(sid, server_hello)
    ch2, sh2, obj2 = _handshake(client, server, f"www.{es.SNI_DOMAIN}", session=obj.session)
    assert obj2.session_reused
    _typ2, sid2, _ = es.parse_hello(ch2)
    assert es.resumed(sid2, es.parse_hello(sh2))
    leg = es.Leg("127.0.0.30", 20000, "127.0.0.1", 443, 0.0, True, "", sid2, es.parse_hello(sh2))
    assert leg.resumed


def test_hello_without_sni_to_an_ip_literal(pki: Any) -> None:
    client, server = _contexts(pki, tls12=False)
    ch, _, obj = _handshake(client, server, es.HOST)  # verified against the certificate's IP SAN
    assert es.sni_of(es.parse_hello(ch)[2]) == ""
    assert obj.version() == "TLSv1.3"
    assert es.parse_hello(b"\x17\x03\x03" + b"\x00" * 60) is None  # application data is no hello


# ------------------------------------------------------------------------------------------- labels

ENVOY, SERVER, MITM = 10000, 10001, 10002


def _run(pki: Any, lines: list[dict[str, Any]]) -> Any:
    pem = [{k: v for k, v in r.items() if k != "downstream_peer_fingerprint_256"} for r in lines]
    fp = [{k: v for k, v in r.items() if k != "downstream_peer_cert"} for r in lines]
    return es.Run(ENVOY, SERVER, MITM, {"train": (100.0, 110.0), "test": (111.0, 120.0)}, pki.sha256,
                  {"envoy_pem": pem, "envoy_fp": fp})


def _line(pki: Any, ip: str, port: int, tag: str = "") -> dict[str, Any]:
    rec: dict[str, Any] = {"downstream_remote_address": f"{ip}:{port}", "start_time": "2026-12-07T00:00:00.000Z",
                           "downstream_local_address": f"127.0.0.1:{ENVOY}"}
    if tag:
        crt = pki.workload[tag][0].read_text()
        rec["downstream_peer_cert"] = urllib.parse.quote(crt)
        rec["downstream_peer_fingerprint_256"] = next(fp for fp, t in pki.sha256.items() if t == tag)
    return rec


def _leg(ip: str, port: int, server_port: int, ts: float, sni: str = "x", resumed: bool = False) -> Any:
    sh = (2, b"\x01" * 32, {}) if resumed else (2, b"\x02" * 32, {})
    return es.Leg(ip, port, "127.0.0.1", server_port, ts, True, sni, b"\x01" * 32, sh)


def _scenario(pki: Any) -> tuple[list[Any], list[dict[str, Any]], list[Any]]:
    """Train: curl with and without SNI, the renewed workload's old cert, python12 direct (full+resumed)
    with Envoy's upstream legs; test: the renewal, the look-alike, python12 through mitmproxy, Chromium."""
    o, ip = es.IDENTITY_IP[es.RENEWED], es.STACK_IP
    legs = [
        _leg(ip["curl"], 20000, ENVOY, 101), _leg(es.ENVOY_UPSTREAM_IP, 20000, SERVER, 101.1, resumed=True),
        _leg(ip["curl"], 20001, ENVOY, 102, sni=""), _leg(es.ENVOY_UPSTREAM_IP, 20001, SERVER, 102.1),
        _leg(o, 20000, ENVOY, 103),
        _leg(es.RESUME_IP, 20000, SERVER, 104), _leg(es.RESUME_IP, 20001, SERVER, 105, resumed=True),
        _leg(o, 20001, ENVOY, 112), _leg(es.LOOKALIKE_IP, 20000, ENVOY, 113),
        _leg(es.RESUME_IP, 20002, MITM, 114), _leg(es.MITM_UPSTREAM_IP, 10000, SERVER, 114.1),
        _leg(es.RESUME_IP, 20003, MITM, 115, resumed=True), _leg(es.MITM_UPSTREAM_IP, 10001, SERVER, 115.1),
        _leg(es.CHROMIUM_IP, 20000, ENVOY, 116), _leg(es.CHROMIUM_IP, 20001, ENVOY, 116.1),  # 2nd: no request
    ]
    lines = [_line(pki, ip["curl"], 20000), _line(pki, ip["curl"], 20001), _line(pki, o, 20000, es.RENEWED),
             _line(pki, o, 20001, f"{es.RENEWED}-renewed"), _line(pki, es.LOOKALIKE_IP, 20000, "lookalike"),
             _line(pki, es.CHROMIUM_IP, 20000)]
    jobs = [es.Job("train", "sni", "curl"), es.Job("train", "no-sni", "curl"),
            es.Job("train", "identity", es.RENEWED, cert=es.RENEWED),
            es.Job("train", "resume", es.RESUME_STACK, 2),
            es.Job("test", "identity", es.RENEWED, cert=f"{es.RENEWED}-renewed"),
            es.Job("test", "lookalike", es.IMPERSONATED, cert="lookalike"),
            es.Job("test", "resume", es.RESUME_STACK, 2), es.Job("test", "chromium", "chromium", 1)]
    return legs, lines, jobs


def test_labels_per_vantage_identity_and_phase(pki: Any) -> None:
    legs, lines, jobs = _scenario(pki)
    rows, extra = es.label_rows(legs, _run(pki, lines), jobs)
    assert extra["chromium_connections_without_request"] == {"test": 1}
    by = {(r["source"], r["client_ip"], r["client_port"]): r for r in rows}
    assert len(by) == len(rows) == len(legs) + 2 * len(lines)
    ip = es.STACK_IP
    pick = lambda s, a, p: {k: by[(s, a, p)][k] for k in ("stack", "label", "split", "path", "note", "vantage",  # noqa: E731
                                                           "product")}
    assert pick("sources_pcap", ip["curl"], 20001)["note"] == "no-sni"
    assert pick("envoy_fp", ip["curl"], 20001)["vantage"] == "envoy"
    assert pick("sources_pcap", es.ENVOY_UPSTREAM_IP, 20000) == {
        "stack": "envoy-upstream", "label": "clean", "split": "train", "path": "envoy-upstream", "note": "resumed",
        "vantage": "infrastructure", "product": ""}
    o = es.IDENTITY_IP[es.RENEWED]
    assert pick("envoy_pem", o, 20000)["note"] == f"identity:{es.RENEWED}"
    assert pick("envoy_pem", o, 20001)["note"] == f"renewal; identity:{es.RENEWED}"
    assert pick("envoy_fp", es.LOOKALIKE_IP, 20000) == {
        "stack": "python", "label": "intercepted", "split": "test", "path": "lookalike",
        "note": f"lookalike; identity:{es.IMPERSONATED}", "vantage": "envoy", "product": ""}
    assert pick("sources_pcap", es.RESUME_IP, 20001)["note"] == "resumed"
    assert pick("sources_pcap", es.RESUME_IP, 20001)["vantage"] == "direct"
    assert pick("sources_pcap", es.RESUME_IP, 20003) == {
        "stack": es.RESUME_STACK, "label": "intercepted", "split": "test", "path": "mitmproxy", "note": "resumed",
        "vantage": "client_to_proxy", "product": "mitmproxy"}
    assert pick("sources_pcap", es.MITM_UPSTREAM_IP, 10000)["vantage"] == "proxy_upstream"
    assert pick("sources_pcap", es.CHROMIUM_IP, 20001)["note"] == "no-request"
    assert ("envoy_pem", es.CHROMIUM_IP, 20001) not in by


@pytest.mark.parametrize("break_it", ["drop_leg", "double_job", "drop_line", "wrong_cert", "stranger", "fp_log"])
def test_labels_refuse_what_the_plan_does_not_explain(pki: Any, break_it: str) -> None:
    legs, lines, jobs = _scenario(pki)
    if break_it == "drop_leg":
        legs = [g for g in legs if g.client_port != 20001 or g.client_ip != es.STACK_IP["curl"]]
        lines = [r for r in lines if r["downstream_remote_address"] != f"{es.STACK_IP['curl']}:20001"]
    elif break_it == "double_job":
        jobs = [*jobs, es.Job("test", "lookalike", es.IMPERSONATED, cert="lookalike")]
    elif break_it == "drop_line":
        lines = lines[1:]
    elif break_it == "wrong_cert":  # the renewed workload's address presenting another workload's certificate
        lines[2] = _line(pki, es.IDENTITY_IP[es.RENEWED], 20000, "ledger")
    elif break_it == "stranger":
        legs.append(_leg("127.0.0.99", 20000, ENVOY, 105))
    run = _run(pki, lines)
    if break_it == "fp_log":
        run.logs["envoy_fp"] = run.logs["envoy_fp"][:-1]
    with pytest.raises(es.CaptureError):
        es.label_rows(legs, run, jobs)


def test_logged_cert_from_pem_or_fingerprint(pki: Any) -> None:
    rec = _line(pki, "127.0.9.11", 1, "lookalike")
    assert es.logged_cert({"downstream_peer_cert": rec["downstream_peer_cert"]}, pki.sha256) == "lookalike"
    fp = rec["downstream_peer_fingerprint_256"]
    assert es.logged_cert({"downstream_peer_fingerprint_256": fp.upper()}, pki.sha256) == "lookalike"
    assert es.logged_cert({"downstream_peer_cert": "-", "downstream_peer_fingerprint_256": None}, pki.sha256) == ""
    with pytest.raises(es.CaptureError):
        es.logged_cert({"downstream_peer_fingerprint_256": "ab" * 32}, pki.sha256)


def test_pki_lookalike_renewal_and_server_names(pki: Any) -> None:
    from cryptography import x509

    load = lambda p: x509.load_pem_x509_certificate(p.read_bytes())  # noqa: E731
    mesh, look = load(pki.mesh_ca), load(pki.lookalike_ca)
    assert mesh.subject == look.subject
    assert mesh.public_key() != look.public_key()
    real, fake = load(pki.workload[es.IMPERSONATED][0]), load(pki.workload["lookalike"][0])
    assert real.subject == fake.subject
    assert real.issuer == fake.issuer
    san = x509.SubjectAlternativeName
    assert real.extensions.get_extension_for_class(san).value == fake.extensions.get_extension_for_class(san).value
    aki = x509.AuthorityKeyIdentifier
    assert real.extensions.get_extension_for_class(aki).value != fake.extensions.get_extension_for_class(aki).value
    old, new = load(pki.workload[es.RENEWED][0]), load(pki.workload[f"{es.RENEWED}-renewed"][0])
    left = old.not_valid_after_utc - new.not_valid_before_utc
    lifetime = old.not_valid_after_utc - old.not_valid_before_utc
    assert 0 < left.total_seconds() < 0.1 * lifetime.total_seconds()  # issued near the old one's expiry
    names = load(pki.server[0]).extensions.get_extension_for_class(san).value
    assert "127.0.0.1" in {str(i) for i in names.get_values_for_type(x509.IPAddress)}
    assert f"*.{es.SNI_DOMAIN}" in names.get_values_for_type(x509.DNSName)


def test_envoy_config_logs_and_upstream(pki: Any, tmp_path: Path) -> None:
    cfg = es.envoy_config(pki, 1000, 1001, tmp_path / "pem.jsonl", tmp_path / "fp.jsonl")
    text = json.dumps(cfg)
    listener = cfg["static_resources"]["listeners"][0]
    inspector = listener["listener_filters"][0]["typed_config"]
    assert inspector["enable_ja3_fingerprinting"]
    assert inspector["enable_ja4_fingerprinting"]
    tls = listener["filter_chains"][0]["transport_socket"]["typed_config"]
    assert tls["require_client_certificate"] is False
    assert tls["common_tls_context"]["validation_context"]["trust_chain_verification"] == "ACCEPT_UNTRUSTED"
    cluster = cfg["static_resources"]["clusters"][0]
    assert cluster["upstream_bind_config"]["source_address"]["address"] == es.ENVOY_UPSTREAM_IP
    assert "UpstreamTlsContext" in text
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    pem, fp = (al["typed_config"]["log_format"]["json_format"] for al in hcm["access_log"])
    assert "%DOWNSTREAM_PEER_CERT%" in pem.values()
    assert "%DOWNSTREAM_PEER_FINGERPRINT_256%" not in pem.values()
    assert "%DOWNSTREAM_PEER_FINGERPRINT_256%" in fp.values()
    assert "%DOWNSTREAM_PEER_CERT%" not in fp.values()
    for op in ("SERIAL", "SUBJECT", "ISSUER", "URI_SAN", "CERT_V_START", "CERT_V_END"):
        assert f"%DOWNSTREAM_PEER_{op}%" in pem.values()
        assert f"%DOWNSTREAM_PEER_{op}%" in fp.values()


def test_merge_replaces_part5_rows_keeps_the_rest(tmp_path: Path) -> None:
    base = dict.fromkeys(mec.LABEL_COLUMNS, "")
    old = [{**base, "source": "pcap", "client_ip": "127.0.0.11", "client_port": "1", "ts": "a"},
           {**base, "source": "envoy_fp", "client_ip": "127.0.0.11", "client_port": "2", "ts": "b"}]
    with (tmp_path / "labels.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(mec.LABEL_COLUMNS))
        w.writeheader()
        w.writerows(old)
    new = [{**base, "source": "sources_pcap", "client_ip": "127.0.0.12", "client_port": 3, "ts": "c"}]
    assert es.merge_labels(tmp_path, new) == 2
    got = pd.read_csv(tmp_path / "labels.csv", keep_default_na=False)
    assert list(got.columns) == list(mec.LABEL_COLUMNS)
    assert sorted(got["source"]) == ["pcap", "sources_pcap"]


# ------------------------------------------------------------------------------------------- end to end


def _missing() -> list[str]:
    missing = [t for t in ("openssl", "curl", "gnutls-cli", "node", "dumpcap") if shutil.which(t) is None]
    if not Path(mec.MITMDUMP).is_file():
        missing.append("mitmdump")
    if mec.el.envoy_binary() is None:
        missing.append("envoy")
    return missing


@pytest.mark.slow
def test_end_to_end_labels_match_what_tlsdetect_reads(tmp_path: Path) -> None:
    missing = _missing()
    if missing:
        pytest.skip(f"tools missing: {', '.join(missing)}")
    if subprocess.run(["dumpcap", "-D"], capture_output=True, check=False).returncode:
        pytest.skip("dumpcap cannot list interfaces (needs root / CAP_NET_RAW)")
    skip = ["java", *(["chromium"] if shutil.which(mec.CHROMIUM) is None else [])]
    cmd = [sys.executable, str(ROOT / "scripts" / "eval_sources.py"), "--out", str(tmp_path), "--per-stack", "2",
           "--no-sni", "1", "--chromium", "6", "--per-identity", "2", "--lookalike", "2", "--sessions", "1",
           "--resumed", "2", "--skip", ",".join(skip)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    from tlsdetect.readers.inputs import Inputs

    labels = pd.read_csv(tmp_path / "labels.csv", keep_default_na=False)
    info = json.loads((tmp_path / "SOURCES.json").read_text())
    assert "1.40" in info["versions"]["envoy"]
    for name in ("sources-mesh-ca.pem", "sources-lookalike-ca.pem"):
        assert (tmp_path / name).is_file()
    read = {}
    for source, name in es.SOURCES.items():
        df = Inputs([str(tmp_path / name)]).read_all()
        mine = labels[labels["source"] == source]
        got = sorted(zip(df["client_ip"].astype(str), df["client_port"].astype(int), strict=True))
        assert got == sorted(zip(mine["client_ip"], mine["client_port"].astype(int), strict=True)), source
        read[source] = df.assign(client_port=df["client_port"].astype(int)).merge(
            mine, on=["client_ip", "client_port"], suffixes=("", "_label"))
    pcap = read["sources_pcap"]
    assert set(pcap["vantage"]) == {"direct", "infrastructure", "client_to_proxy", "proxy_upstream"}
    assert (pcap.loc[pcap["vantage"] == "infrastructure", "client_ip"] == es.ENVOY_UPSTREAM_IP).all()
    py12 = pcap[pcap["stack"] == es.RESUME_STACK]  # the reader's own resumption column agrees with the note
    assert (py12["resumed"].astype(bool) == (py12["note"] == "resumed")).all()
    assert (py12["note"] == "resumed").sum() >= 2
    assert (pcap["note"] == "no-sni").sum() == 6  # openssl, curl, python once per phase
    assert (pcap.loc[pcap["note"] == "no-sni", "sni"].astype("string").fillna("") == "").all()
    for source in ("envoy_pem", "envoy_fp"):
        env = read[source]
        look = env[env["path"] == "lookalike"]
        assert len(look) == 2
        assert (look["label"] == "intercepted").all()
        assert set(look["client_id"]) == {es.SPIFFE.format(es.IMPERSONATED)}
        assert env.loc[env["note"].str.startswith("renewal"), "client_id"].nunique() == 1
        assert (env.loc[env["path"] == "direct", "peer_subject"].astype("string").fillna("") == "").all()
    assert read["envoy_fp"]["peer_cert_sha256"].notna().sum() == (read["envoy_fp"]["path"] != "direct").sum()
