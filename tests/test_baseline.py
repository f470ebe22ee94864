"""Baseline: what it learns, partial_fit, the directory format and every way a directory can be bad."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tlsdetect.detect.baseline import Baseline, client_ids
from tlsdetect.detect.baseline_dir import FORMAT_VERSION, BaselineError, BaselineExistsError
from tlsdetect.detect.mesh import MeshCA, parse_mesh_ca, parse_mesh_cas

from .detect_data import population


@pytest.fixture(scope="module")
def train() -> pd.DataFrame:
    return population(repeat=10)


@pytest.fixture(scope="module")
def fitted(train: pd.DataFrame) -> Baseline:
    return Baseline(mesh_ca="learn").fit(train)


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
    from tlsdetect.detect.features import hello_codes

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
    assert parse_mesh_ca("learn") == "learn"
    assert parse_mesh_ca("auto") == "learn"  # the old name (the CLI warns that it is deprecated)
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


# --- issue 14 item 5: no mesh CA unless given or asked to learn -------------------------------------------
def test_default_is_no_mesh_ca(train: pd.DataFrame, tmp_path: Path) -> None:
    """Issue 14 item 5: a default fit used to learn a "mesh CA" from whatever traffic it saw."""
    b = Baseline(model=False).fit(train)
    assert len(b.mesh_cas_) == 0
    assert b.summary()["mesh_cas"] == []
    assert b.learned_mesh_warning() is None
    b.save(tmp_path / "b")
    assert json.loads((tmp_path / "b" / "meta.json").read_text())["params"]["mesh_ca"] == []
    assert len(Baseline.load(tmp_path / "b").mesh_cas_) == 0


def test_learned_mesh_ca_is_flagged_and_survives_a_reload(fitted: Baseline, tmp_path: Path) -> None:
    """Issue 14 item 5: 'learn' is said out loud, and kept as 'learn' through save/load and --update."""
    warning = fitted.learned_mesh_warning()
    assert warning is not None
    assert "LEARNED mesh CA (CN=tlsdetect Sample Intermediate CA,O=tlsdetect)" in warning
    fitted.save(tmp_path / "b")
    assert json.loads((tmp_path / "b" / "meta.json").read_text())["params"]["mesh_ca"] == "learn"
    loaded = Baseline.load(tmp_path / "b")
    assert loaded.mesh_ca == "learn"
    assert loaded.learned_mesh_warning() == warning


def test_old_baseline_that_learned_its_mesh_ca_still_loads_as_learned(fitted: Baseline, tmp_path: Path) -> None:
    """Issue 14 item 5: before the change ``params.mesh_ca`` was null for a learned mesh CA ('auto')."""
    saved = fitted.save(tmp_path / "old")
    meta = json.loads((saved / "meta.json").read_text())
    meta["params"]["mesh_ca"] = None  # what 'baseline fit' wrote when 'auto' was the default
    (saved / "meta.json").write_text(json.dumps(meta))
    old = Baseline.load(saved)
    assert old.mesh_ca == "learn"
    assert (old.mesh_cas_["origin"] == "learned").all()
    assert old.learned_mesh_warning() is not None
    more = old.partial_fit(population(repeat=2, start="2026-12-01"))  # --update keeps learning, as before
    assert (more.mesh_cas_["origin"] == "learned").all()


def test_parse_mesh_ca_mistakes_are_one_line_errors(tmp_path: Path) -> None:
    """Issue 14 item 3: ``--mesh-ca ""`` read the current directory (IsADirectoryError)."""
    for bad, message in (("", "empty value"), ("  ", "empty value"), (str(tmp_path), "a directory, not a PEM")):
        with pytest.raises(ValueError, match=message):
            parse_mesh_ca(bad)
    assert parse_mesh_cas([]) == []
    assert parse_mesh_cas(["CN=A,O=x", "CN=B,O=x"]) == [MeshCA("CN=A,O=x"), MeshCA("CN=B,O=x")]
    with pytest.raises(ValueError, match="'learn' cannot be combined"):
        parse_mesh_cas(["learn", "CN=A,O=x"])
    with pytest.raises(ValueError, match="'none' cannot be combined"):
        parse_mesh_cas(["none", "CN=A,O=x"])


# --- issue 14 item 4: never overwrite silently, never leave half a baseline ----------------------------------
def _files(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir())}


def test_save_refuses_an_existing_baseline_unless_told(fitted: Baseline, tmp_path: Path) -> None:
    """Issue 14 item 4: ``save`` silently replaced the files of an existing baseline."""
    target = fitted.save(tmp_path / "b")
    before = _files(target)
    other = Baseline(model=False).fit(population(repeat=2))
    with pytest.raises(BaselineExistsError, match="already there"):
        other.save(target)
    assert _files(target) == before
    other.save(target, overwrite=True)
    assert Baseline.load(target).summary() == other.summary()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]  # no temporary directory left beside it
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("mine")
    with pytest.raises(BaselineExistsError, match="not a baseline"):
        other.save(tmp_path / "notes", overwrite=True)  # --force never deletes what is not a baseline
    assert (tmp_path / "notes" / "todo.txt").read_text() == "mine"
    (tmp_path / "empty").mkdir()
    other.save(tmp_path / "empty")  # an empty directory (made by the user) is fine
    assert Baseline.load(tmp_path / "empty").summary() == other.summary()


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2", "two-renames"])
def test_a_crash_mid_write_leaves_the_old_baseline_or_none(fitted: Baseline, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch, exchange: bool) -> None:
    """Issue 14 item 4: the writer fails after the first table; the target is untouched (or still absent)."""
    import tlsdetect.detect.baseline_dir as mod

    if not exchange:  # the fallback where renameat2 is missing
        monkeypatch.setattr(mod, "_exchange", lambda a, b: False)
    target = fitted.save(tmp_path / "b")
    before = _files(target)
    other = Baseline(model=False).fit(population(repeat=2))
    real = pd.DataFrame.to_parquet
    calls = []

    def failing(self: pd.DataFrame, *args: object, **kwargs: object) -> None:
        calls.append(1)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        real(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(pd.DataFrame, "to_parquet", failing)
    with pytest.raises(OSError, match="No space left"):
        other.save(target, overwrite=True)
    assert _files(target) == before
    assert Baseline.load(target).summary() == fitted.summary()
    calls.clear()
    with pytest.raises(OSError, match="No space left"):
        other.save(tmp_path / "new")
    assert not (tmp_path / "new").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]  # the half-written directories are gone
    monkeypatch.setattr(pd.DataFrame, "to_parquet", real)
    other.save(target, overwrite=True)  # and a replacement that succeeds, on either path
    assert Baseline.load(target).summary() == other.summary()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]
