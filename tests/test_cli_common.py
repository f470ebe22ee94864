"""``tlsdetect.cli.common`` and the group: what every command shares, and a start that imports little."""

from __future__ import annotations

import subprocess
import sys

import click
import pytest

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
