"""Baseline: what it learns, partial_fit, the directory format and every way a directory can be bad."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tlsdetect.detect.baseline import Baseline, client_ids
from tlsdetect.detect.baseline_dir import FORMAT_VERSION

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
