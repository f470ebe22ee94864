"""A baseline directory on disk: ``meta.json``, one Parquet file per table, the model; saved atomically.

``meta.json`` is what a person reads (format version, parameters, counts, the mesh CAs for
confirmation); the model is plain NumPy arrays (``np.load(allow_pickle=False)``: never a pickle of
a file a user may be handed). A save writes a fresh directory beside the target and swaps it in,
so a reader (``serve``) sees the old baseline or the new one, whole.
"""

from __future__ import annotations

import datetime as dt
import errno
import json
import os
import secrets
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tlsdetect import __version__
from tlsdetect.detect.baseline_tables import OPTIONAL_TABLES, TABLES, empty_table, typed_table
from tlsdetect.detect.features import HelloNovelty

__all__ = [
    "FORMAT", "FORMAT_VERSION", "BaselineError", "BaselineExistsError", "check_save_target", "read_hellos",
    "read_meta", "read_model", "read_tables", "save_atomically", "write_dir",
]

FORMAT = "tlsdetect-baseline"
FORMAT_VERSION = 1


class BaselineError(ValueError):
    """A baseline directory that is missing, corrupt, hand-edited wrongly or from another version."""


class BaselineExistsError(BaselineError):
    """:meth:`Baseline.save` refused: the target holds a baseline (and ``overwrite`` was not given) or other files."""


def save_atomically(directory: str | Path, write: Callable[[Path], None], *, overwrite: bool = False) -> Path:
    """Run ``write`` on a fresh directory beside ``directory``, then put it in place in one step.

    An existing baseline is swapped out (Linux ``renameat2(RENAME_EXCHANGE)``) and then deleted, so an
    error or a crash at any moment leaves the old baseline or the new one, never a mixture; see
    :func:`check_save_target` for what may be replaced. Parents are created as needed.
    """
    out = Path(directory)
    check_save_target(out, overwrite=overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{secrets.token_hex(4)}"
    tmp.mkdir()  # beside the target: the same file system, so the rename is atomic
    try:
        write(tmp)
        _move_into_place(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # a half-written new baseline, or the old one swapped out
    return out


def write_dir(out: Path, tables: dict[str, pd.DataFrame], hellos: pd.DataFrame, model: HelloNovelty | None,
              params: dict[str, Any], summary: dict[str, Any]) -> None:
    """Write every file of a baseline into the (new, empty) directory ``out``, ``meta.json`` last."""
    files: dict[str, str] = {}
    for name in [*TABLES, *(t for t in OPTIONAL_TABLES if t in tables)]:
        path = out / f"{name}.parquet"
        typed_table(name, tables[name]).to_parquet(path, index=False)
        files[name] = path.name
    if len(hellos):
        hellos = hellos.copy()
        for c in hellos.columns:
            if c != "connections":
                hellos[c] = hellos[c].map(_plain_cell)
        hellos.to_parquet(out / "hellos.parquet", index=False)
        files["hellos"] = "hellos.parquet"
    if model is not None:
        model.save(out / "model.npz")
        files["model"] = "model.npz"
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "tlsdetect_version": __version__,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "params": params,
        "summary": summary,
        "files": files,
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=False) + "\n", encoding="utf-8")


def read_meta(root: Path) -> tuple[Path, dict[str, Any], dict[str, Any]]:
    """``meta.json``'s path, its content and its ``params``, checked for format and version."""
    if not root.is_dir():
        raise BaselineError(f"{root}: no such baseline directory")
    meta_path = root / "meta.json"
    if not meta_path.is_file():
        raise BaselineError(f"{meta_path}: missing (is {root} a baseline directory? make one with "
                            "'tlsdetect baseline fit')")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BaselineError(f"{meta_path}: not valid JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise BaselineError(f"{meta_path}: not a tlsdetect baseline (\"format\" must be {FORMAT!r})")
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise BaselineError(f"{meta_path}: baseline format version {version!r}, this tlsdetect reads version "
                            f"{FORMAT_VERSION}: refit the baseline with this version")
    params = meta.get("params")
    if not isinstance(params, dict):
        raise BaselineError(f"{meta_path}: \"params\" must be an object")
    return meta_path, meta, params


def read_tables(root: Path) -> dict[str, pd.DataFrame]:
    """Every learned table, typed as :data:`~tlsdetect.detect.baseline_tables.TABLES` says; an optional table
    (:data:`~tlsdetect.detect.baseline_tables.OPTIONAL_TABLES`) a baseline written before it lacks loads empty."""
    tables = {name: _read_table(root / f"{name}.parquet", name, cols) for name, cols in TABLES.items()}
    for name, cols in OPTIONAL_TABLES.items():
        path = root / f"{name}.parquet"
        tables[name] = _read_table(path, name, cols) if path.exists() else empty_table(name)
    return tables


def read_hellos(root: Path) -> pd.DataFrame:
    """The distinct hellos (an empty frame when the baseline has none)."""
    hellos = root / "hellos.parquet"
    return _read_parquet(hellos) if hellos.exists() else pd.DataFrame()


def read_model(root: Path) -> HelloNovelty:
    """The population model ``meta.json`` lists."""
    model_path = root / "model.npz"
    if not model_path.is_file():
        raise BaselineError(f"{model_path}: missing from the baseline directory (meta.json lists a model)")
    try:
        return HelloNovelty.load(model_path)
    except (OSError, ValueError, EOFError) as exc:
        raise BaselineError(f"{model_path}: not a tlsdetect model ({type(exc).__name__}: {exc})") from None


def check_save_target(out: Path, *, overwrite: bool = False) -> None:
    """Raise :class:`BaselineExistsError` unless :meth:`Baseline.save` may write ``out``.

    Absent or an empty directory: yes. A baseline (it has ``meta.json``): only with ``overwrite``.
    Anything else (a file, a directory of other files): never, so ``--force`` cannot delete them.
    """
    if out.exists() and not out.is_dir():
        raise BaselineExistsError(f"{out}: exists and is not a directory")
    if out.is_dir() and any(out.iterdir()):
        if not (out / "meta.json").is_file():
            raise BaselineExistsError(f"{out}: holds other files, not a baseline; not writing there")
        if not overwrite:
            raise BaselineExistsError(f"{out}: a baseline is already there (add --force to replace it)")


def _move_into_place(new: Path, target: Path) -> None:
    """Put the directory ``new`` at ``target``; a baseline already there ends up at ``new``."""
    if not target.exists() or (target.is_dir() and not any(target.iterdir())):
        os.rename(new, target)  # atomic; replaces an empty directory
        return
    if _exchange(new, target):
        return
    # no atomic exchange (not Linux, or a file system without it): two renames; between them the target
    # is absent and the old baseline sits complete beside it (.NAME.old-*), never half of either
    old = target.parent / f".{target.name}.old-{secrets.token_hex(4)}"
    os.rename(target, old)
    os.rename(new, target)
    os.rename(old, new)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically with Linux ``renameat2(RENAME_EXCHANGE)``; False where it is not available."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):  # a libc without it (glibc < 2.28, some musl)
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    renameat2.restype = ctypes.c_int
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _plain_cell(v: Any) -> Any:
    """A hello-table cell Parquet can store: lists of ints or hex strings, ints, strings."""
    if v is None or v is pd.NA:
        return None
    if isinstance(v, (list, tuple, np.ndarray)):
        return [x if isinstance(x, str) else int(x) for x in v]
    return v if isinstance(v, str) else int(v)


def _read_parquet(path: Path) -> pd.DataFrame:
    import pyarrow as pa

    try:
        return pd.read_parquet(path)
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise BaselineError(f"{path}: unreadable ({type(exc).__name__}: {exc})") from None


def _read_table(path: Path, name: str, cols: dict[str, str]) -> pd.DataFrame:
    if not path.is_file():
        raise BaselineError(f"{path}: missing from the baseline directory")
    df = _read_parquet(path)
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise BaselineError(f"{path}: missing column(s) {', '.join(missing)}")
    try:
        return typed_table(name, df)
    except (TypeError, ValueError) as exc:
        raise BaselineError(f"{path}: a column has the wrong type ({exc})") from None
