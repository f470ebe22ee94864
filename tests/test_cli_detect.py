"""``tlsdetect baseline fit/show``, ``score`` and ``lookup`` as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from tlsdetect.cli import main

from .conftest import CLEAN_PCAPS, INTERCEPTION, PROJECT_PCAPS, ROOT, SHARED, needs_interception, needs_shared

CLEAN = [str(p) for p in CLEAN_PCAPS]  # the project's clean captures (not pcaps/intercepted.pcapng)


def _run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(scope="module")
def baseline_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("b") / "sample"
    code, stdout, err = _run("baseline", "fit", *CLEAN, "-o", str(out), "--no-progress", "--mesh-ca", "learn")
    assert code == 0, err
    assert "15 connections" in stdout
    assert "LEARNED - confirm" in stdout
    return out


def test_show(baseline_dir: Path) -> None:
    code, out, _ = _run("baseline", "show", str(baseline_dir))
    assert code == 0
    assert "mesh CA (server): CN=tlsdetect Sample Intermediate CA,O=tlsdetect" in out
    assert "client 127.0.0.1" in out


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


@needs_interception
def test_score_jsonl_keeps_the_4_tuple_and_reasons(baseline_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "scored.jsonl"
    code, _, err = _run("score", str(INTERCEPTION), "--baseline", str(baseline_dir), "-f", "jsonl", "-o", str(out))
    assert code == 0, err
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows
    for row in rows:
        for key in ("client_ip", "client_port", "server_ip", "server_port", "ts", "verdict", "score", "reasons"):
            assert key in row
        assert row["verdict"] == "intercepted"
        assert row["reasons"][0]["code"]
    assert f"{len(rows)} connections: {len(rows)} intercepted" in err
    assert "top reasons: known_interception_fingerprint" in err
    assert "top flagged clients:" in err


def test_score_table_and_only_flagged(baseline_dir: Path) -> None:
    code, out, err = _run("score", *CLEAN, "--baseline", str(baseline_dir))
    assert code == 0, err
    assert "verdict" in out
    assert "reason_codes" in out
    assert "15 connections: 0 intercepted, 0 suspicious, 15 ok" in err
    code, out, err = _run("score", *CLEAN, "--baseline", str(baseline_dir), "-f", "jsonl",
                          "--only-flagged")
    assert code == 0
    assert out == ""


def test_score_parquet(baseline_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "s.parquet"
    code, _, err = _run("score", *CLEAN, "--baseline", str(baseline_dir), "-f", "parquet", "-o", str(out))
    assert code == 0, err
    table = pq.read_table(out)
    assert table.num_rows == 15
    assert {"verdict", "score", "reasons"} <= set(table.column_names)


@needs_interception
def test_score_parquet_of_flagged_rows_round_trips(baseline_dir: Path, tmp_path: Path) -> None:
    """issue 14 item 1: Parquet of flagged rows (a JA3 and a count in the evidence) failed with ArrowInvalid;
    now ``reasons`` is a list of four-string structs holding what JSON lines holds."""
    out, jsonl = tmp_path / "s.parquet", tmp_path / "s.jsonl"
    args = ("score", str(INTERCEPTION), "--baseline", str(baseline_dir), "--no-progress")
    code, _, err = _run(*args, "-f", "parquet", "-o", str(out))
    assert code == 0, err
    assert "Traceback" not in err
    table = pq.read_table(out)
    reasons = table.schema.field("reasons").type
    assert [(f.name, str(f.type)) for f in reasons.value_type] == [
        ("code", "string"), ("detail", "string"), ("expected", "string"), ("observed", "string")]
    code, _, err = _run(*args, "-f", "jsonl", "-o", str(jsonl))
    assert code == 0, err
    rows = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert table.column("reasons").to_pylist() == [r["reasons"] for r in rows]
    assert table.column("verdict").to_pylist() == [r["verdict"] for r in rows]
    assert "intercepted" in table.column("verdict").to_pylist()


@needs_interception
@pytest.mark.parametrize("fmt", ["ecs", "cef"])
def test_score_writes_the_streams_alerts_for_flagged_rows_only(baseline_dir: Path, tmp_path: Path, fmt: str) -> None:
    """issue 14 item 8: ``score -f ecs|cef`` writes the stream's alert records (same functions, same ids), one per
    suspicious or intercepted connection; ok rows are not written."""
    from tlsdetect.detect.baseline import Baseline
    from tlsdetect.detect.scoring import score
    from tlsdetect.readers.inputs import Inputs
    from tlsdetect.sinks.alerts.alerts import alerts_of
    from tlsdetect.sinks.alerts.cef import format_cef
    from tlsdetect.sinks.alerts.ecs import to_ecs

    paths = [str(PROJECT_PCAPS), str(INTERCEPTION)]
    out = tmp_path / f"alerts.{fmt}"
    code, _, err = _run("score", *paths, "--baseline", str(baseline_dir), "--no-progress", "-f", fmt, "-o", str(out))
    assert code == 0, err
    scored = score(Inputs(paths).read_all(), Baseline.load(baseline_dir))
    flagged = int((scored["verdict"] != "ok").sum())
    assert 0 < flagged < len(scored)  # ok rows exist and are left out
    alerts = alerts_of(scored)
    lines = out.read_text(encoding="utf-8").splitlines()
    assert len(lines) == flagged
    if fmt == "ecs":
        docs = [json.loads(line) for line in lines]
        assert docs == [json.loads(json.dumps(to_ecs(a), default=str)) for a in alerts]
        assert {d["event"]["action"] for d in docs} <= {"suspicious", "intercepted"}
        assert all(d["@timestamp"].endswith("Z") for d in docs)
    else:
        assert lines == [format_cef(a) for a in alerts]
    assert f"{len(scored)} connections:" in err


def test_score_columns_error_lists_the_valid_names_and_ecs_takes_none(baseline_dir: Path) -> None:
    """issue 14 item 10: an unknown ``--columns`` name lists the valid ones (score's own columns too)."""
    code, _, err = _run("score", str(PROJECT_PCAPS), "--baseline", str(baseline_dir), "--columns", "ja4,bogus")
    assert code == 1
    assert len(err.strip().splitlines()) == 1
    assert "unknown column(s): bogus; valid columns: ts, " in err
    assert ", verdict, reasons, compared, reason_codes" in err
    code, _, err = _run("score", str(PROJECT_PCAPS), "--baseline", str(baseline_dir), "-f", "ecs", "--columns", "ja4")
    assert code == 1
    assert "--columns does not apply to -f ecs" in err


@pytest.mark.parametrize("damage", ["missing", "corrupt-meta", "old-version", "missing-table"])
def test_score_with_a_bad_baseline_is_one_clear_line(baseline_dir: Path, tmp_path: Path, damage: str) -> None:
    import shutil

    bad = tmp_path / "bad"
    if damage != "missing":
        shutil.copytree(baseline_dir, bad)
    if damage == "corrupt-meta":
        (bad / "meta.json").write_text("{")
    elif damage == "old-version":
        meta = json.loads((bad / "meta.json").read_text())
        (bad / "meta.json").write_text(json.dumps({**meta, "format_version": 0}))
    elif damage == "missing-table":
        (bad / "fingerprints.parquet").unlink()
    code, out, err = _run("score", *CLEAN, "--baseline", str(bad))
    assert code == 1
    assert out == ""
    assert err.startswith("Error: ")
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err
    assert str(bad) in err


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
