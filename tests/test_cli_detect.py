"""``tlsdetect baseline fit/show`` and ``lookup`` as a user runs them, and the mesh CA a fit learns or is given,
followed through ``score`` and ``serve`` (issue 14). ``score`` itself is tested in ``test_cli_score.py``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from .cli_support import CLEAN, fit_sample
from .cli_support import run as _run
from .conftest import PROJECT_PCAPS, ROOT, SHARED, needs_shared


@pytest.fixture(scope="module")
def baseline_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fit_sample(tmp_path_factory)


def test_show(baseline_dir: Path) -> None:
    code, out, _ = _run("baseline", "show", str(baseline_dir))
    assert code == 0
    assert "mesh CA (server): CN=tlsdetect Sample Intermediate CA,O=tlsdetect" in out
    assert "client 127.0.0.1" in out


def test_show_prints_the_server_profiles_meta_json_holds(baseline_dir: Path, tmp_path: Path) -> None:
    """Issue 16: the per-server summary of meta.json, one line; an older baseline without it says so."""
    meta = json.loads((baseline_dir / "meta.json").read_text())
    prof = meta["summary"]["server_profiles"]
    code, out, err = _run("baseline", "show", str(baseline_dir))
    assert code == 0, err
    line = next(x for x in out.splitlines() if "server profiles:" in x)
    assert f"{prof['servers']['sni']} servers by name, {prof['servers']['addr']} by address" in line
    assert f"{prof['families']} hello families" in line
    assert f"flight {prof['profiles']['flight']}" in line
    assert prof["servers"]["sni"] > 0
    old = tmp_path / "old"
    shutil.copytree(baseline_dir, old)
    del meta["summary"]["server_profiles"]
    (old / "meta.json").write_text(json.dumps(meta))
    code, out, err = _run("baseline", "show", str(old))
    assert code == 0, err
    assert "server profiles: none (a baseline from before they were learned" in out


def test_server_profile_line_without_answers_or_with_a_broken_summary() -> None:
    from tlsdetect.cli.baseline import server_profile_line

    empty = {"servers": {"sni": 0, "addr": 0}, "families": 0, "profiles": {"flight": 0}}
    assert "none (the fitted traffic showed no server answers)" in server_profile_line(empty, 0)
    assert "unreadable in meta.json (KeyError" in server_profile_line({"servers": {}}, 0)
    assert "unreadable in meta.json" in server_profile_line("nonsense", 0)


def test_fit_with_a_given_mesh_ca_and_a_time_window(tmp_path: Path) -> None:
    out = tmp_path / "b"
    code, stdout, err = _run("baseline", "fit", *CLEAN, "-o", str(out), "--mesh-ca", "CN=Mesh,O=corp",
                             "--since", "2000-01-01", "--until", "2100-01-01T00:00:00Z")
    assert code == 0, err
    assert "mesh CA (any): CN=Mesh,O=corp" in stdout
    assert "[given]" in stdout
    code, _, err = _run("baseline", "fit", *CLEAN, "-o", str(tmp_path / "c"), "--since", "2100-01-01")
    assert code != 0
    assert "cannot fit: no connections" in err


def test_update_folds_more_traffic_in(baseline_dir: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(baseline_dir, copy)
    code, _stdout, err = _run("baseline", "fit", str(PROJECT_PCAPS / "tls13_stacks.pcapng"), "-o", str(copy),
                             "--update")
    assert code == 0, err
    meta = json.loads((copy / "meta.json").read_text())
    assert meta["summary"]["connections"] > 15


def test_fit_on_input_without_usable_rows(tmp_path: Path) -> None:
    log = tmp_path / "ssl.log"
    log.write_text("#separator \\x09\n#path\tssl\n#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\n"
                   "#types\ttime\tstring\taddr\tport\taddr\tport\n1700000000.0\tC1\t10.0.0.1\t5000\t10.0.0.2\t443\n")
    code, _, err = _run("baseline", "fit", str(log), "-o", str(tmp_path / "b"))
    assert code != 0
    assert "cannot fit: no usable rows" in err


def test_lookup(baseline_dir: Path) -> None:
    code, out, _ = _run("lookup", "t13d1812h1_85036bcba153_d41ae481755e", "--baseline", str(baseline_dir))
    assert code == 0
    assert "verdict ok" in out
    assert "seen in the baseline on 2 connection(s)" in out
    code, out, _ = _run("lookup", "t13d1812h1_85036bcba153_d41ae481755e", "--json")
    info = json.loads(out)
    assert info["kind"] == "ja4"
    assert info["stacks"]
    code, out, err = _run("lookup", "not-a-fingerprint")
    assert code != 0
    assert "is not a fingerprint" in err


def test_committed_sample_baseline_loads() -> None:
    """baselines/sample is rebuilt by the command in baselines/README.md; it must stay loadable."""
    code, out, err = _run("baseline", "show", str(ROOT / "baselines" / "sample"))
    assert code == 0, err
    assert "15 connections" in out


# --- issue 14 items 2, 4, 5: the mesh CA and the baseline directory ------------------------------------------
ZEEK_SAMPLES = SHARED / "samples" / "zeek"
ENVOY_SAMPLE = SHARED / "samples" / "envoy" / "envoy_access.sample.jsonl"


def _scored(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@needs_shared("samples/zeek", "samples/envoy/envoy_access.sample.jsonl")
def test_default_fit_has_no_mesh_ca_so_internet_traffic_is_not_flagged(tmp_path: Path) -> None:
    """Issue 14 item 5: fitted by default ('auto' learned the lab CA), the shared Zeek samples came out
    81 of 112 'intercepted' (public_ca_in_mesh) and every Envoy line an alert; the default is now no mesh CA."""
    out = tmp_path / "b"
    code, stdout, err = _run("baseline", "fit", *CLEAN, "-o", str(out), "--no-progress")
    assert code == 0, err
    assert "mesh CA: none" in stdout
    assert "LEARNED" not in stdout + err
    for sample in (ZEEK_SAMPLES, ENVOY_SAMPLE):
        scored = tmp_path / "s.jsonl"
        code, _, err = _run("score", str(sample), "--baseline", str(out), "-f", "jsonl", "-o", str(scored))
        assert code == 0, err
        rows = _scored(scored)
        assert rows
        codes = {r["code"] for row in rows for r in row["reasons"]}
        assert not codes & {"public_ca_in_mesh", "unknown_issuer_in_mesh", "mesh_ca_lookalike"}, codes
        assert "WARNING" not in err
    assert sum(1 for _ in ZEEK_SAMPLES.iterdir()) > 0


@needs_shared("samples/zeek")
def test_learn_is_asked_for_and_said_out_loud(tmp_path: Path) -> None:
    """Issue 14 item 5: 'learn' (and 'auto', its deprecated name) learns the mesh CA; fit, show and score
    say loudly that a learned mesh CA is in use."""
    out = tmp_path / "b"
    code, stdout, err = _run("baseline", "fit", *CLEAN, "-o", str(out), "--mesh-ca", "auto")
    assert code == 0, err
    assert "--mesh-ca auto is deprecated" in err
    assert "[LEARNED" in stdout
    assert "WARNING: this baseline uses a LEARNED mesh CA" in err
    code, stdout, err = _run("baseline", "show", str(out))
    assert code == 0
    assert "[LEARNED" in stdout
    assert "WARNING: this baseline uses a LEARNED mesh CA" in err
    code, _, err = _run("score", str(ZEEK_SAMPLES), "--baseline", str(out), "-f", "jsonl")
    assert code == 0
    assert "public_ca_in_mesh" in err  # what a learned lab CA does to internet traffic ...
    assert "WARNING: this baseline uses a LEARNED mesh CA" in err.splitlines()[-1]  # ... and the summary says why


def _mesh_ca_pem(tmp_path: Path, dn: str) -> Path:
    """A real CA certificate (cryptography), as a user's internal-ca.crt."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name.from_rfc4514_string(dn)
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    path = tmp_path / "internal-ca.crt"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


@needs_shared("samples/envoy/envoy_access.sample.jsonl")
def test_pem_mesh_ca_then_score_and_serve_an_envoy_log(tmp_path: Path) -> None:
    """Issue 14 item 2: fit with --mesh-ca internal-ca.crt, then score an Envoy log (no chains): IndexError in
    _chain_lookalike; serve died the same way in its start-up warm-up."""
    pem = _mesh_ca_pem(tmp_path, "CN=Example Corp Internal Root CA,OU=Corporate Security,O=Example Corp,C=US")
    out = tmp_path / "b"
    code, stdout, err = _run("baseline", "fit", *CLEAN, "-o", str(out), "--mesh-ca", str(pem))
    assert code == 0, err
    assert "[given]" in stdout
    code, _, err = _run("score", str(ENVOY_SAMPLE), "--baseline", str(out), "-f", "jsonl", "-o",
                        str(tmp_path / "s.jsonl"))
    assert code == 0, err
    assert "Traceback" not in err
    rows = _scored(tmp_path / "s.jsonl")
    assert len(rows) == 10
    assert {r["issuer_class"] for r in rows} == {"mesh"}  # the Envoy sample's CA, compared by DN
    pytest.importorskip("fastapi")
    from tlsdetect.serve.app import Settings, create_app

    app = create_app(Settings(baseline_dir=out))  # warms scoring up: raised IndexError before
    assert app.state.holder.current.baseline.mesh_cas_["origin"].tolist() == ["given"]


def test_fit_refuses_an_existing_baseline_without_force(baseline_dir: Path, tmp_path: Path) -> None:
    """Issue 14 item 4: 'baseline fit -o EXISTING_DIR' silently overwrote a baseline."""
    import shutil

    target = tmp_path / "existing"
    shutil.copytree(baseline_dir, target)
    before = {p.name: p.read_bytes() for p in target.iterdir()}
    code, _, err = _run("baseline", "fit", str(PROJECT_PCAPS / "tls13_stacks.pcapng"), "-o", str(target))
    assert code == 1
    assert err.strip() == f"Error: {target}: a baseline is already there (add --force to replace it)"
    assert {p.name: p.read_bytes() for p in target.iterdir()} == before
    code, _, err = _run("baseline", "fit", str(PROJECT_PCAPS / "tls13_stacks.pcapng"), "-o", str(target), "--force")
    assert code == 0, err
    assert json.loads((target / "meta.json").read_text())["summary"]["connections"] < 15
    assert sorted(p.name for p in tmp_path.iterdir()) == ["existing"]  # the temporary directory is gone
