"""``tlsdetect spark fit|score`` as a user runs it (a process of its own); the Spark path itself is in test_spark.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("pyspark")

from tlsdetect.spark import PANDAS3_WARNINGS, quiet_pandas3_warnings

from .conftest import PROJECT_PCAPS


def test_worker_warning_filters_come_first_and_keep_the_users() -> None:
    """The workers' PYTHONWARNINGS holds the two filters, then whatever the user gave (which wins)."""
    key = "spark.executorEnv.PYTHONWARNINGS"
    ours = quiet_pandas3_warnings({})[key]
    assert [f.split(":")[1] for f in ours.split(",")] == [m for m, _, _ in PANDAS3_WARNINGS]
    assert quiet_pandas3_warnings({key: "error::UserWarning", "spark.x": "1"}) == {
        key: f"{ours},error::UserWarning", "spark.x": "1"}


@pytest.mark.slow
def test_spark_fit_prints_no_pandas3_warnings(tmp_path: Path) -> None:
    """Issue 15 item 4: a small ``spark fit`` printed PySpark's "does not yet fully support pandas >= 3"
    warning 17 times, from the driver and from the Python workers; now neither prints it."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    run = subprocess.run(
        [sys.executable, "-m", "tlsdetect", "spark", "fit", str(PROJECT_PCAPS / "tls13_stacks.pcapng"),
         "-o", str(tmp_path / "b"), "--master", "local[2]", "--driver-memory", "1g", "--no-model"],
        capture_output=True, text=True, env=env, timeout=600, check=False,
    )
    assert run.returncode == 0, run.stderr
    assert "baseline " in run.stdout
    said = [line for line in run.stderr.splitlines()
            if any(message in line for message, _, _ in PANDAS3_WARNINGS) or "require_minimum_pandas_version" in line]
    assert said == []
