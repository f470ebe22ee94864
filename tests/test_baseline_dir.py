"""The baseline directory: atomic saves, and every way a directory can be bad names the file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tlsdetect.detect.baseline import Baseline
from tlsdetect.detect.baseline_dir import BaselineError, BaselineExistsError

from .detect_data import population


@pytest.fixture(scope="module")
def train() -> pd.DataFrame:
    return population(repeat=10)


@pytest.fixture(scope="module")
def fitted(train: pd.DataFrame) -> Baseline:
    return Baseline(mesh_ca="learn").fit(train)


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
