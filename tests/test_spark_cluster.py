"""A real Spark standalone cluster (master and worker processes) runs the commands as local mode does.

Local mode runs the executors inside the driver's JVM, in the driver's working directory, with
the driver's Python. A standalone worker starts its own executor JVM in its own work directory
and launches Python workers itself, which is where a cluster job breaks: relative input paths,
the executors' Python (``PYSPARK_PYTHON``), the baseline shipped to executors that cannot read
the driver's files. The same pcaps/ must give the local baseline and the local verdicts, also
through ``spark-submit``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

pytest.importorskip("pyspark")

from tlsdetect.detect.baseline import Baseline
from tlsdetect.detect.baseline_tables import TABLES
from tlsdetect.detect.scoring import score
from tlsdetect.readers.inputs import Inputs

ROOT = Path(__file__).resolve().parents[1]
PCAPS = ROOT / "pcaps"
BIN = Path(sys.executable).parent
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("java") is None, reason="no java on PATH (Spark needs Java 17)"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _spark_class() -> Path:
    import pyspark

    return Path(pyspark.__file__).parent / "bin" / "spark-class"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``spark://`` URL of a one-worker standalone cluster (2 cores, 1 GB) on loopback."""
    import pyspark

    tmp = tmp_path_factory.mktemp("cluster")
    env = {**os.environ, "SPARK_HOME": str(Path(pyspark.__file__).parent), "SPARK_LOCAL_IP": "127.0.0.1",
           "SPARK_LOG_DIR": str(tmp), "SPARK_WORKER_DIR": str(tmp / "work")}
    env.pop("PYSPARK_PYTHON", None)  # the commands must choose the executors' Python themselves
    port = _free_port()
    url = f"spark://127.0.0.1:{port}"
    cmds = [
        [str(_spark_class()), "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", str(port),
         "--webui-port", str(_free_port())],
        [str(_spark_class()), "org.apache.spark.deploy.worker.Worker", url, "--cores", "2", "--memory", "1g",
         "--webui-port", str(_free_port()), "--work-dir", str(tmp / "work")],
    ]
    procs: list[subprocess.Popen[bytes]] = []
    logs = [tmp / "master.log", tmp / "worker.log"]
    try:
        for cmd, log in zip(cmds, logs, strict=True):
            procs.append(subprocess.Popen(cmd, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
                                          start_new_session=True))
            if log.name == "master.log":
                _wait_for(log, "I have been elected leader", procs[-1])
        _wait_for(logs[1], "Successfully registered with master", procs[-1])
        yield url
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()


def _wait_for(log: Path, text: str, proc: subprocess.Popen[bytes], timeout: float = 90) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if log.exists() and text in log.read_text(errors="replace"):
            return
        if proc.poll() is not None:
            pytest.fail(f"{proc.args[1]} exited: {log.read_text(errors='replace')[-2000:]}")
        time.sleep(0.5)
    pytest.fail(f"{text!r} not in {log} after {timeout} s: {log.read_text(errors='replace')[-2000:]}")


def _run(cmd: list[str], cwd: Path, python: str | None = None) -> str:
    """Run a command as an analyst would: no PYSPARK_PYTHON unless ``python`` is given."""
    env = {k: v for k, v in os.environ.items() if k != "PYSPARK_PYTHON"}
    if python is not None:
        env["PYSPARK_PYTHON"] = python
    res = subprocess.run(cmd, check=False, cwd=cwd, capture_output=True, text=True, timeout=600, env=env)
    assert res.returncode == 0, res.stderr[-4000:]
    return res.stderr


def test_cli_fit_and_score_on_a_standalone_cluster(cluster: str, tmp_path: Path) -> None:
    """Relative input and output paths, executors in their own directories and JVM: the local results."""
    work = tmp_path / "analyst"
    work.mkdir()
    (work / "captures").symlink_to(PCAPS)
    opts = ["--master", cluster, "--driver-memory", "1g"]
    _run([str(BIN / "tlsdetect"), "spark", "fit", "captures", "-o", "base", *opts], work)
    local = Baseline().fit(Inputs([str(PCAPS)]).read_all())
    got = Baseline.load(work / "base")
    for name in TABLES:
        pd.testing.assert_frame_equal(getattr(got, f"{name}_"), getattr(local, f"{name}_"), obj=name)
    out = _run([str(BIN / "tlsdetect"), "spark", "score", "captures", "--baseline", "base", "-o", "scored", *opts],
               work)
    expected = score(Inputs([str(PCAPS)]).read_all(), got)
    assert f"{len(expected)} connections" in out
    scored = pd.read_parquet(work / "scored")
    assert len(scored) == len(expected)
    assert sorted(scored["verdict"].astype(str)) == sorted(expected["verdict"].astype(str))
    assert sorted(scored["ja4"].dropna()) == sorted(expected["ja4"].dropna())


def test_spark_submit_entry_on_a_standalone_cluster(cluster: str, tmp_path: Path) -> None:
    """The documented ``spark-submit`` line, with the nodes' Python given as PYSPARK_PYTHON."""
    import tlsdetect.spark.__main__ as entry

    _run([str(BIN / "spark-submit"), "--master", cluster, "--driver-memory", "1g", str(entry.__file__), "score",
          str(PCAPS), "--baseline", str(ROOT / "baselines" / "sample"), "-o", str(tmp_path / "scored")], tmp_path,
         python=sys.executable)
    scored = pd.read_parquet(tmp_path / "scored")
    assert len(scored) == len(Inputs([str(PCAPS)]).read_all())
