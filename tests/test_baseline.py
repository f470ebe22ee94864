"""Baseline: what it learns, partial_fit, the directory format and every way a directory can be bad."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tlsdetect.baseline import FORMAT_VERSION, Baseline, BaselineError, MeshCA, client_ids, parse_mesh_ca

from .detect_data import population


@pytest.fixture(scope="module")
def train() -> pd.DataFrame:
    return population(repeat=10)


@pytest.fixture(scope="module")
def fitted(train: pd.DataFrame) -> Baseline:
    return Baseline().fit(train)


def test_learns_one_fingerprint_per_stable_client(train: pd.DataFrame, fitted: Baseline) -> None:
    n_clients = train["client_ip"].nunique()
    assert len(fitted.clients_) == n_clients
    assert (fitted.clients_["connections"] == 10).all()
    stab = fitted.client_stability()
    assert (stab["fingerprints"] == 1).all()
    assert np.allclose(stab["stability"], 1.0)
    ja4 = fitted.fingerprints_[fitted.fingerprints_["kind"] == "ja4"]
    assert len(ja4) == n_clients
    assert (ja4["count"] == 10).all()
    assert (ja4["first_seen"] < ja4["last_seen"]).all()


def test_prevalence_counts_clients_per_fingerprint(train: pd.DataFrame, fitted: Baseline) -> None:
    prev = fitted.prevalence().set_index(["kind", "value"])
    expected = train.groupby("ja4")["client_ip"].nunique()
    for ja4, clients in expected.items():
        assert prev.loc[("ja4", ja4), "clients"] == clients


def test_learned_mesh_ca_is_the_dominant_private_issuer(fitted: Baseline) -> None:
    server = fitted.mesh_cas_[fitted.mesh_cas_["role"] == "server"]
    assert server["issuer"].tolist() == ["CN=tlsdetect Sample Intermediate CA,O=tlsdetect"]
    assert server["origin"].tolist() == ["learned"]
    assert server["ski"].notna().all()


def test_partial_fit_equals_fit_on_the_union(train: pd.DataFrame) -> None:
    half = len(train) // 2
    a, b = train.iloc[:half], train.iloc[half:]
    whole = Baseline(model=False).fit(train)
    parts = Baseline(model=False).fit(a).partial_fit(b)
    for name in ("clients_", "fingerprints_", "issuers_", "snis_", "versions_"):
        left = getattr(whole, name).sort_values(list(getattr(whole, name).columns[:3])).reset_index(drop=True)
        right = getattr(parts, name).sort_values(list(getattr(parts, name).columns[:3])).reset_index(drop=True)
        pd.testing.assert_frame_equal(left, right, check_like=True)
    assert whole.n_connections_ == parts.n_connections_ == len(train)
    assert whole.hellos_["connections"].sum() == parts.hellos_["connections"].sum() == len(train)


def test_save_load_round_trip(tmp_path: Path, train: pd.DataFrame, fitted: Baseline) -> None:
    fitted.save(tmp_path / "b")
    meta = json.loads((tmp_path / "b" / "meta.json").read_text())
    assert meta["format_version"] == FORMAT_VERSION
    assert meta["summary"]["clients"] == len(fitted.clients_)
    loaded = Baseline.load(tmp_path / "b")
    assert loaded.summary() == fitted.summary()
    pd.testing.assert_frame_equal(loaded.fingerprints_, fitted.fingerprints_)
    assert loaded.model_ is not None
    assert fitted.model_ is not None
    probe = train.head(40)
    from tlsdetect.features import hello_codes

    _, hellos = hello_codes(probe)
    for a, b in zip(loaded.model_.distances(hellos), fitted.model_.distances(hellos), strict=True):
        assert np.array_equal(a, b)


def test_no_usable_rows_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="no connections"):
        Baseline().fit(population(repeat=1).iloc[:0])
    bare = population(repeat=1)[["ts", "client_ip"]]
    with pytest.raises(ValueError, match="no usable rows"):
        Baseline().fit(bare)


def test_client_keys() -> None:
    df = pd.DataFrame({
        "client_ip": ["10.0.0.1", "10.0.0.2"], "peer_subject": ["spiffe://mesh/a", None],
        "user_agent": ["curl/8.5.0", "Mozilla/5.0 (X11) AppleWebKit/537.36 Chrome/130.0 Safari/537.36"],
        "tenant": ["t1", "t2"],
    })
    assert client_ids(df, "auto").tolist() == ["spiffe://mesh/a", "10.0.0.2"]
    assert client_ids(df, "ip").tolist() == ["10.0.0.1", "10.0.0.2"]
    assert client_ids(df, "ua").tolist() == ["curl", "chromium"]
    assert client_ids(df, "tenant").tolist() == ["t1", "t2"]
    with pytest.raises(ValueError, match="neither"):
        client_ids(df, "nonsense")


def test_parse_mesh_ca(tmp_path: Path) -> None:
    assert parse_mesh_ca("auto") is None
    assert parse_mesh_ca("none") == []
    assert parse_mesh_ca("CN=Mesh CA,O=corp") == [MeshCA("CN=Mesh CA,O=corp")]
    with pytest.raises(ValueError, match="neither"):
        parse_mesh_ca("meshca")
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate")
    with pytest.raises(ValueError, match="not a PEM"):
        parse_mesh_ca(str(bad))


def test_mesh_ca_from_a_pem_carries_its_key_id(tmp_path: Path) -> None:
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Mesh CA"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "corp")])
    now = dt.datetime.now(dt.UTC)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(ski, critical=False).sign(key, hashes.SHA256()))
    path = tmp_path / "mesh.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (mesh,) = parse_mesh_ca(str(path)) or []
    assert mesh.ski == ski.digest.hex()
    assert mesh.issuer == cert.subject.rfc4514_string()
    assert mesh.sha256 == cert.fingerprint(hashes.SHA256()).hex()


# --- bad baseline directories: each names the file and the problem ---------------------------------------
@pytest.fixture
def saved(tmp_path: Path, fitted: Baseline) -> Path:
    return fitted.save(tmp_path / "b")


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(BaselineError, match="no such baseline directory"):
        Baseline.load(tmp_path / "nope")


def test_missing_meta(saved: Path) -> None:
    (saved / "meta.json").unlink()
    with pytest.raises(BaselineError, match=r"meta\.json: missing"):
        Baseline.load(saved)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: "{not json", "not valid JSON"),
        (lambda m: json.dumps({**m, "format": "something-else"}), "not a tlsdetect baseline"),
        (lambda m: json.dumps({**m, "format_version": 99}), "format version 99"),
        (lambda m: json.dumps({**m, "params": "x"}), "params"),
        (lambda m: json.dumps({k: v for k, v in m.items() if k != "summary"}), "missing or malformed field"),
        (lambda m: json.dumps({**m, "params": {**m["params"], "novelty_threshold": "far"}}), "malformed"),
        (lambda m: json.dumps({**m, "files": []}), "files"),
    ],
)
def test_hand_edited_meta(saved: Path, edit, message: str) -> None:  # type: ignore[no-untyped-def]
    meta = json.loads((saved / "meta.json").read_text())
    (saved / "meta.json").write_text(edit(meta))
    with pytest.raises(BaselineError, match=message) as err:
        Baseline.load(saved)
    assert "meta.json" in str(err.value)


def test_missing_and_corrupt_tables(saved: Path) -> None:
    (saved / "clients.parquet").unlink()
    with pytest.raises(BaselineError, match=r"clients\.parquet: missing"):
        Baseline.load(saved)
    (saved / "clients.parquet").write_bytes(b"PAR1 garbage")
    with pytest.raises(BaselineError, match=r"clients\.parquet: unreadable"):
        Baseline.load(saved)
    pd.DataFrame({"client_id": ["x"]}).to_parquet(saved / "clients.parquet")
    with pytest.raises(BaselineError, match=r"clients\.parquet: missing column"):
        Baseline.load(saved)


def test_model_file_is_plain_arrays_never_a_pickle(saved: Path) -> None:
    import pickle

    import numpy as np

    path = saved / "model.npz"
    np.savez(path, tokens=np.array(["a"]), matrix=np.array([[object()]], dtype=object),
             labels=np.array(["x"]))
    with pytest.raises(BaselineError, match=r"model\.npz: not a tlsdetect model"):
        Baseline.load(saved)
    path.write_bytes(pickle.dumps({"tokens": 1}))
    with pytest.raises(BaselineError, match=r"model\.npz: not a tlsdetect model"):
        Baseline.load(saved)
    np.savez(path, tokens=np.array(["a", "b"]), matrix=np.zeros((1, 3), dtype=bool), labels=np.array(["x"]))
    with pytest.raises(BaselineError, match="does not fit"):
        Baseline.load(saved)
    path.unlink()
    with pytest.raises(BaselineError, match=r"model\.npz: missing"):
        Baseline.load(saved)


def test_copied_directory_still_loads(saved: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(saved, copy)
    assert Baseline.load(copy).summary()["connections"] == Baseline.load(saved).summary()["connections"]
