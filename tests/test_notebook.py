"""The analyst walkthrough notebook runs top to bottom, so it never rots (issue 4).

The notebook runs on a kernelspec made here. That spec points at this interpreter, the project's
``.venv``, which has ``tlsdetect`` and ``ipykernel`` installed. A ``python3`` kernelspec found on
the machine could start some other Python (a user's or the system's Jupyter). The spec lives in a
temporary ``JUPYTER_PATH``, which Jupyter searches before any user or system directory. Runtime and
IPython directories are temporary too, so a read-only home or a user's IPython startup files do
not matter.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("matplotlib")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "analyst-walkthrough.ipynb"
KERNEL = "tlsdetect-test-venv"
VERDICT_COUNTS = re.compile(r"verdict counts: ok=(\d+) suspicious=(\d+) intercepted=(\d+)")


@pytest.fixture
def venv_kernel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A kernelspec that runs this interpreter, found before any other kernelspec on the machine."""
    jupyter = tmp_path / "jupyter"
    spec = jupyter / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "tlsdetect tests (project venv)",
                "language": "python",
            }
        ),
        encoding="utf-8",
    )
    monkeypatch.setenv("JUPYTER_PATH", str(jupyter))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    return KERNEL


def _execute(kernel: str) -> str:
    """Run the notebook as Jupyter would (cwd = notebooks/) and return its text outputs."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("import sys\nprint('kernel prefix:', sys.prefix)"))
    client = nbclient.NotebookClient(
        nb, timeout=300, kernel_name=kernel, resources={"metadata": {"path": str(NOTEBOOK.parent)}}
    )
    client.execute()  # raises CellExecutionError, with the traceback, on the first failing cell
    texts: list[str] = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            assert out["output_type"] != "error", f"{out.get('ename')}: {out.get('evalue')}"
            texts.append(_text(out))
    text = "\n".join(texts)
    assert f"kernel prefix: {sys.prefix}\n" in text, "the notebook did not run on the project's Python"
    return text


def _text(out: Any) -> str:
    if out["output_type"] == "stream":
        return str(out["text"])
    return str(out.get("data", {}).get("text/plain", ""))


def _verdict_counts(text: str) -> dict[str, int]:
    found = VERDICT_COUNTS.findall(text)
    assert len(found) == 1, "the notebook must print its verdict counts once"
    return dict(zip(("ok", "suspicious", "intercepted"), map(int, found[0]), strict=True))


@pytest.mark.slow
def test_notebook_runs(venv_kernel: str) -> None:
    """With the shared corpus (CI), the real interception captures. Without it, the fallback."""
    text = _execute(venv_kernel)
    counts = _verdict_counts(text)
    assert counts["intercepted"] >= 1, counts
    assert "tlsdetect Sample Intermediate CA" in text, "the learned mesh CA is not shown"
    assert '"fingerprint":' in text, "describe() of a flagged fingerprint is not shown"
    # report-only pinning: pins from the direct connections hold there and break on every forged leg
    assert "direct: match 6\n" in text
    assert "through mitmproxy: violation 6, hidden 6\n" in text


@pytest.mark.slow
def test_notebook_falls_back_without_the_shared_corpus(
    venv_kernel: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TLSDETECT_SHARED", str(tmp_path / "no-shared-corpus"))
    text = _execute(venv_kernel)
    assert "is absent; falling back" in text
    assert _verdict_counts(text)["intercepted"] == 3, "the three rows given mitmproxy's issuer must be intercepted"


def test_committed_notebook_has_no_outputs() -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code
    assert all(not c.outputs and c.execution_count is None for c in code), "clear the notebook's outputs"
