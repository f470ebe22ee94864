"""The QUIC Initial kernel (``_quic_crypto.c``) under AddressSanitizer and UBSan: its build, the corpus, a bounded fuzz.

What must hold: the kernel's sanitized build has ASan and lands beside the normal one; a sanitized child
loads it; every reference capture with a UDP stream reads through it with the same rows with the C
batch on and off, and the ``quic`` target's seeds pass; a bounded fuzz run of the ``quic`` target finds
nothing and is guided by coverage. Without a compiler these skip with the reason, and fail under CI.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fuzz import sanitized
from fuzz.runner import CRASHES, ROOT, run_target, shared_corpus
from tests.conftest import ON_CI

#: Seconds of the bounded fuzz run of the ``quic`` target (CI: the default; a long local run: set it higher).
SECONDS = float(os.environ.get("TLSDETECT_SANITIZED_QUIC_FUZZ_SECONDS", "30"))

_CHILD = """
import sys
from pathlib import Path
from fuzz import sanitized, quic_target
sanitized.install()
from tlsdetect.readers.pcap import quic_batch
from tlsdetect.readers.pcap.engine import read_pcap
print(sanitized.loaded(), flush=True)
rows = 0
for name in sys.argv[1:]:
    path = Path(name)
    if path.suffix not in (".pcap", ".pcapng"):  # a seed (.bin) or a saved finding: the target's input
        quic_target.run(path.read_bytes())
        continue
    quic_batch.ENABLED = True
    on, _ = read_pcap(path)
    quic_batch.ENABLED = False
    off, _ = read_pcap(path)
    key = ["client_ip", "client_port", "server_ip", "server_port", "ts"]
    a = on.sort_values(key).reset_index(drop=True)
    b = off.sort_values(key).reset_index(drop=True)
    assert a.equals(b), name
    rows += int((on["transport"] == "quic").sum())
print(f"checked {len(sys.argv) - 1} inputs, {rows} QUIC rows: batch equals the Python path, no sanitizer report")
"""


def _build() -> tuple[Path, Path]:
    try:
        return sanitized.build(), sanitized.build_quic()
    except (sanitized.UnavailableError, RuntimeError) as exc:
        if ON_CI:
            pytest.fail(f"CI: the sanitized QUIC kernel cannot be built: {exc}", pytrace=False)
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def builds() -> tuple[Path, Path]:
    return _build()


def _env(so: Path) -> dict[str, str]:
    return sanitized.child_env(so, {**os.environ, "PYTHONPATH": str(ROOT)})


def test_the_kernel_build_is_sanitized_and_apart_from_the_normal_one(builds: tuple[Path, Path]) -> None:
    _, quic = builds
    assert sanitized.is_sanitized(quic)
    assert quic.is_relative_to(sanitized.BUILD)
    normal = sorted((ROOT / "tlsdetect" / "wire").glob("_quic_crypto*.so"))
    assert quic not in normal
    for path in normal:
        assert not sanitized.is_sanitized(path)
    assert sanitized.build_quic() == quic  # built once per source and flags


def test_a_sanitized_child_loads_the_kernel(builds: tuple[Path, Path]) -> None:
    so, quic = builds
    env = _env(so)
    assert env[sanitized.ENV_QUIC_SO] == str(quic)
    code = ("from fuzz import sanitized; sanitized.install(); import tlsdetect.wire._quic_crypto; "
            "print(sanitized.loaded())")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"QUIC kernel: {quic}" in proc.stdout
    assert "ASan runtime loaded" in proc.stdout


@pytest.mark.slow
@pytest.mark.fuzz
def test_udp_captures_and_seeds_run_cleanly_through_the_sanitized_kernel(builds: tuple[Path, Path]) -> None:
    so, quic = builds
    shared = shared_corpus()
    if ON_CI:
        assert shared is not None
    files = sorted((ROOT / "fuzz" / "seeds" / "quic").glob("*.bin"))
    # saved findings, without their reports (``.txt``: the traceback, not an input)
    files += sorted(p for p in (CRASHES / "quic").glob("*") if p.suffix != ".txt")  # none when no folder
    if shared is not None:
        from tests.conftest import ja4_streams, reference_files

        files += [shared / "pcaps" / "reference" / n for n in reference_files() if ja4_streams(n, "udp")]
    proc = subprocess.run([sys.executable, "-c", _CHILD, *map(str, files)], cwd=ROOT, env=_env(so),
                          capture_output=True, text=True, timeout=900, check=False)
    print(proc.stdout)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert f"QUIC kernel: {quic}" in proc.stdout
    assert f"checked {len(files)} inputs" in proc.stdout
    if shared is not None:
        assert int(proc.stdout.split(" QUIC rows")[0].split()[-1]) >= 54  # every corpus QUIC connection


@pytest.mark.slow
@pytest.mark.fuzz
def test_bounded_sanitized_quic_fuzz_finds_nothing(builds: tuple[Path, Path]) -> None:
    stats = run_target("quic", SECONDS, seed=1, shared=shared_corpus(), crashes=CRASHES)
    print(stats.line())
    assert stats.findings == [], stats.line()
    assert stats.returncode == 0
    assert stats.execs > 0
    assert stats.cov > 0
