"""``tlsdetect.cli.common`` and the group: what every command shares, and a start that imports little."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import click
import pytest

from tests.conftest import PROJECT_PCAPS
from tlsdetect.cli import common


def test_the_options_formats_are_the_readers_and_sinks_formats() -> None:
    """``cli.common`` names the formats again so that ``tlsdetect --help`` needs no pandas: they must agree."""
    from tlsdetect.readers import logs
    from tlsdetect.sinks import files

    assert common.INPUT_FORMATS == logs.FORMATS
    assert common.TABLE_FORMATS == files.FORMATS
    assert common.ALERT_FORMATS == files.ALERT_FORMATS


def test_the_command_line_starts_without_the_heavy_libraries() -> None:
    """Issue 15: every command paid ~0.65 s of pandas/PyArrow/scikit-learn imports, ``--help`` included."""
    code = ("import sys, tlsdetect.cli; "
            "print(sorted(m for m in ('pandas', 'numpy', 'pyarrow', 'sklearn', 'pyspark') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def _modules_after(args: list[str], wanted: tuple[str, ...]) -> tuple[list[str], str]:
    """Which of ``wanted`` a run of ``tlsdetect ARGS`` (in-process, then sys.modules) has imported, and its stdout."""
    code = ("import json, sys\n"
            "from tlsdetect.cli import main\n"
            "try:\n"
            f"    main({args!r}, prog_name='tlsdetect', standalone_mode=False)\n"
            "finally:\n"
            f"    print(json.dumps(sorted(m for m in {wanted!r} if m in sys.modules)), file=sys.stderr)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(done.stderr.strip().splitlines()[-1]), done.stdout


HEAVY = ("pandas", "numpy", "pyarrow", "sklearn", "scipy", "rich", "cryptography", "pyspark", "fastapi")


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["fingerprint", "--help"], ["score", "--help"]])
def test_help_and_version_import_no_heavy_library(args: list[str]) -> None:
    """Issue 19 item 4: a command that only prints text pays for click alone."""
    imported, out = _modules_after(args, HEAVY)
    assert imported == []
    assert "tlsdetect" in out


def test_fingerprint_to_jsonl_imports_no_model_and_no_table_view(tmp_path: Path) -> None:
    """Issue 19 item 4: scikit-learn (and SciPy under it) only where the model is used; rich only for the table."""
    out = tmp_path / "rows.jsonl"
    imported, _ = _modules_after(["fingerprint", str(PROJECT_PCAPS / "tls12_stacks.pcap"), "-f", "jsonl", "-o",
                                  str(out), "--no-progress"], HEAVY)
    assert "pandas" in imported  # the check sees what the run imported
    assert not {"sklearn", "scipy", "rich", "pyspark", "fastapi"} & set(imported)
    assert out.read_text().count("\n") >= 1


def test_lookup_without_a_baseline_skips_the_readers() -> None:
    """``lookup`` reads no capture: the reader stack (pcap engine, tshark) and the model stay unimported."""
    imported, out = _modules_after(["lookup", "0" * 32], (*HEAVY, "tlsdetect.readers.inputs",
                                                          "tlsdetect.readers.pcap.engine"))
    assert "verdict" in out
    assert not {"sklearn", "scipy", "tlsdetect.readers.inputs", "tlsdetect.readers.pcap.engine"} & set(imported)


def test_user_errors_turns_input_and_baseline_errors_into_one_line_and_passes_others() -> None:
    from tlsdetect.detect.baseline_dir import BaselineError
    from tlsdetect.readers.inputs import InputError

    for exc in (InputError("no such file"), BaselineError("meta.json: corrupt")):
        with pytest.raises(click.ClickException, match=str(exc)), common.user_errors():
            raise exc
    with pytest.raises(ValueError, match="other"), common.user_errors():
        raise ValueError("other")


def test_parse_columns_lists_the_valid_names_on_a_mistake() -> None:
    assert common.parse_columns(None, ["a", "b"]) is None
    assert common.parse_columns(" b, a ,", ["a", "b"]) == ["b", "a"]
    with pytest.raises(click.ClickException, match="unknown column\\(s\\): c; valid columns: a, b"):
        common.parse_columns("a,c", ["a", "b"])


def test_no_command_module_imports_the_group() -> None:
    """The import circle of issue 15: command modules registered themselves on ``main`` by importing it."""
    import ast
    from pathlib import Path

    for path in sorted(Path(common.__file__).parent.glob("*.py")):
        if path.name == "__init__.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                assert node.module != "tlsdetect.cli", f"{path.name} imports the package"
            if isinstance(node, ast.Import):
                assert all(a.name != "tlsdetect.cli" for a in node.names), f"{path.name} imports the package"
