"""The C capture core built with AddressSanitizer and UBSan, and what a child process needs to run it.

Why: ``_ccore.c`` reads untrusted bytes with the GIL released; an out-of-bounds read there is silent
in the normal build (a wrong value at best). Built with ``-fsanitize=address,undefined`` and no
recovery, the first bad read, overflow or misaligned access aborts the process with a report, which
libFuzzer (the ``ccore`` target) or the test turns into a finding.

- :func:`build` compiles ``_ccore.c`` with :data:`FLAGS` into ``build/ccore-sanitized/`` (never over
  the normal build, which stays in the package), again only when the source or the flags changed.
- :func:`child_env` is the environment of a process that loads it: gcc's ASan runtime preloaded (so
  every malloc has red zones), leaks not reported (CPython keeps its allocations by design), any
  report aborting, and ``PYTHONMALLOC=malloc`` so Python objects get red zones too. In front of
  libasan it preloads ``fuzz/covshim.c`` (built plain): libasan's no-op coverage hooks would
  otherwise shadow atheris' libFuzzer and the fuzzer would run blind (see that file).
- :func:`install`, in that child, makes ``tlsdetect.readers.pcap._ccore`` load the sanitized file
  and refuses to run when the ASan runtime is not loaded (it would prove nothing).

``python -m fuzz.sanitized [FILE...]`` builds it, then reads the captures (default: ``pcaps/`` and
the shared corpus's) through the ``ccore`` target in a sanitized child; ``--build`` only builds.
"""

from __future__ import annotations

import ctypes
import hashlib
import importlib.machinery
import importlib.util
import os
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType

__all__ = ["ENV_SO", "FLAGS", "MODULE", "UnavailableError", "build", "child_env", "compile_shared", "install",
           "is_sanitized"]

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "tlsdetect" / "readers" / "pcap" / "_ccore.c"
SHIM = ROOT / "fuzz" / "covshim.c"
BUILD = ROOT / "build" / "ccore-sanitized"
MODULE = "tlsdetect.readers.pcap._ccore"
#: The sanitized module's path, set by :func:`child_env`; :func:`install` loads it.
ENV_SO = "TLSDETECT_SANITIZED_CCORE"
#: The QUIC Initial kernel (libcrypto), built and loaded the same way beside the core (``quic`` target).
QUIC_SOURCE = ROOT / "tlsdetect" / "wire" / "_quic_crypto.c"
QUIC_MODULE = "tlsdetect.wire._quic_crypto"
ENV_QUIC_SO = "TLSDETECT_SANITIZED_QUIC"
#: The pushed-message walk (Envoy ALS, OTLP), built and loaded the same way (``pushed`` target).
PUSH_SOURCE = ROOT / "tlsdetect" / "readers" / "envoy" / "_pushwire.c"
PUSH_MODULE = "tlsdetect.readers.envoy._pushwire"
ENV_PUSH_SO = "TLSDETECT_SANITIZED_PUSHWIRE"
FLAGS = ("-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer", "-g", "-O1")
#: The normal build's warnings (setup.py), so a sanitized build never hides one.
WARNINGS = ("-std=c99", "-Wall", "-Wextra", "-Wno-unused-parameter")
#: verify_asan_link_order=0: the coverage shim comes before libasan (it defines no allocator function).
ASAN_OPTIONS = "detect_leaks=0:abort_on_error=1:halt_on_error=1:print_summary=1:verify_asan_link_order=0"
UBSAN_OPTIONS = "halt_on_error=1:abort_on_error=1:print_stacktrace=1"


class UnavailableError(RuntimeError):
    """The sanitized build cannot be made here (no compiler, no ASan runtime, no Python headers)."""


def _cc() -> str:
    cc = shutil.which(os.environ.get("CC", "gcc"))
    if cc is None:
        raise UnavailableError(f"no C compiler ({os.environ.get('CC', 'gcc')}) on PATH: install gcc (scripts/setup.sh)")
    return cc


def runtime() -> Path:
    """gcc's ASan runtime (``libasan.so``), which must be preloaded into a Python that loads the build."""
    out = subprocess.run([_cc(), "-print-file-name=libasan.so"], capture_output=True, text=True, check=False)
    path = Path(out.stdout.strip())
    if out.returncode != 0 or not path.is_absolute() or not path.exists():
        said = out.stdout.strip() or out.stderr.strip()
        raise UnavailableError(f"the compiler has no ASan runtime (libasan.so): {said}")
    return path.resolve()


def compile_shared(sources: Sequence[Path], out: Path, flags: Sequence[str] = FLAGS, libs: Sequence[str] = ()) -> Path:
    """``sources`` compiled with ``flags`` (default :data:`FLAGS`) into the shared object ``out`` (written
    whole, then renamed, so a parallel reader never loads half a file)."""
    include = sysconfig.get_paths()["include"]
    if not (Path(include) / "Python.h").exists():
        raise UnavailableError(f"no Python headers in {include}: install python3-dev (scripts/setup.sh)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}")
    cmd = [_cc(), "-shared", "-fPIC", *flags, *WARNINGS, f"-I{include}", *map(str, sources), "-o", str(tmp), *libs,
           "-ldl"]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise RuntimeError(f"sanitized build failed: {' '.join(cmd)}\n{proc.stderr}")
    os.replace(tmp, out)
    return out


def build(source: Path = SOURCE, folder: Path = BUILD) -> Path:
    """The sanitized ``_ccore`` extension, compiled again only when ``source``, the shim or :data:`FLAGS`
    changed; the coverage shim (``covshim.so``) is built beside it."""
    suffix = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
    key = source.read_bytes() + SHIM.read_bytes() + " ".join(FLAGS + WARNINGS).encode()
    out = folder / hashlib.sha256(key).hexdigest()[:16] / f"_ccore{suffix}"
    if not out.exists():
        compile_shared([SHIM], out.with_name("covshim.so"), flags=("-O1", "-g"))
        compile_shared([source], out)
    return out


def _build_beside(source: Path, folder: Path, libs: Sequence[str] = ()) -> Path:
    """A sanitized build of another extension ``source``, in ``folder/<stem>-<hash>/`` (rebuilt only when the
    source or the flags change)."""
    suffix = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
    key = source.read_bytes() + " ".join(FLAGS + WARNINGS).encode()
    stem = source.stem.lstrip("_")
    out = folder / (f"{stem.split('_')[0]}-" + hashlib.sha256(key).hexdigest()[:16]) / f"{source.stem}{suffix}"
    if not out.exists():
        compile_shared([source], out, libs=libs)
    return out


def build_quic(folder: Path = BUILD) -> Path:
    """The sanitized ``_quic_crypto`` extension (linked with libcrypto), beside the core's build."""
    return _build_beside(QUIC_SOURCE, folder, libs=("-lcrypto",))


def build_push(folder: Path = BUILD) -> Path:
    """The sanitized ``_pushwire`` extension (the ALS/OTLP wire walk), beside the core's build."""
    return _build_beside(PUSH_SOURCE, folder)


def _atheris_core() -> str:
    """atheris' own libFuzzer (its ``core_with_libfuzzer`` module), which the shim forwards to; "" without it."""
    spec = importlib.util.find_spec("atheris")
    if spec is None or spec.origin is None:
        return ""
    found = sorted(Path(spec.origin).parent.glob("core_with_libfuzzer*.so"))
    return str(found[0]) if found else ""


def is_sanitized(so: Path) -> bool:
    """Whether the shared object was built with ASan: it imports ``__asan_init`` (from ``nm -D``)."""
    nm = shutil.which("nm")
    if nm is None:
        raise UnavailableError("no nm (binutils) to check the build")
    out = subprocess.run([nm, "-D", "--undefined-only", str(so)], capture_output=True, text=True, check=True)
    return any(line.split()[-1] == "__asan_init" for line in out.stdout.splitlines() if line.split())


def child_env(so: Path, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: this process's environment) plus what a child needs to run ``so`` sanitized."""
    env = dict(os.environ if base is None else base)
    preload = [str(so.with_name("covshim.so")), str(runtime()), *filter(None, env.get("LD_PRELOAD", "").split(":"))]
    env.update({
        "LD_PRELOAD": ":".join(preload),
        "ASAN_OPTIONS": ASAN_OPTIONS,
        "UBSAN_OPTIONS": UBSAN_OPTIONS,
        "PYTHONMALLOC": "malloc",
        "TLSDETECT_ATHERIS_CORE": _atheris_core(),
        ENV_SO: str(so),
    })
    env.pop("TLSDETECT_NO_CCORE", None)  # the point is to run the C core
    try:  # the QUIC kernel too, when libcrypto's headers are there (the ``quic`` target requires it)
        env[ENV_QUIC_SO] = str(build_quic())
    except (UnavailableError, RuntimeError):
        env.pop(ENV_QUIC_SO, None)
    env[ENV_PUSH_SO] = str(build_push())  # no library beyond the compiler's: built wherever the core is
    return env


class _Finder:
    """A meta path finder that answers for :data:`MODULE` (or ``name``) alone, with the sanitized file."""

    def __init__(self, so: Path, name: str = MODULE) -> None:
        self.so = so
        self.name = name

    def find_spec(self, name: str, path: Sequence[str] | None = None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if name != self.name:
            return None
        loader = importlib.machinery.ExtensionFileLoader(name, str(self.so))
        return importlib.util.spec_from_file_location(name, self.so, loader=loader)


def _asan_loaded() -> bool:
    try:
        ctypes.CDLL(None).__asan_init  # noqa: B018 - a lookup: raises AttributeError when absent
    except AttributeError:
        return False
    return True


def install(so: Path | None = None) -> Path:
    """In the child: load the sanitized core (``so``, default ``$TLSDETECT_SANITIZED_CCORE``) as
    :data:`MODULE`. Must run before anything imports it; fails when the ASan runtime is not loaded."""
    path = Path(so or os.environ[ENV_SO]).resolve()
    if MODULE in sys.modules:
        raise RuntimeError(f"{MODULE} is already imported from {sys.modules[MODULE].__file__}")
    if not _asan_loaded():
        raise RuntimeError("the ASan runtime is not loaded: run with fuzz.sanitized.child_env (LD_PRELOAD)")
    sys.meta_path.insert(0, _Finder(path))
    quic = os.environ.get(ENV_QUIC_SO)
    if quic and QUIC_MODULE not in sys.modules:
        sys.meta_path.insert(0, _Finder(Path(quic).resolve(), QUIC_MODULE))
    push = os.environ.get(ENV_PUSH_SO)
    if push and PUSH_MODULE not in sys.modules:
        sys.meta_path.insert(0, _Finder(Path(push).resolve(), PUSH_MODULE))
    return path


def loaded() -> str:
    """Where the capture core this process runs came from (the child prints it: proof of which ran)."""
    from tlsdetect.readers.pcap import ccore

    module = sys.modules.get(MODULE)
    where = getattr(module, "__file__", None) or "not loaded"
    quic = getattr(sys.modules.get(QUIC_MODULE), "__file__", None) or "not loaded"
    push = getattr(sys.modules.get(PUSH_MODULE), "__file__", None) or "not loaded"
    return (f"capture core: {where} ({ccore.status()}; ASan runtime {'loaded' if _asan_loaded() else 'absent'}); "
            f"QUIC kernel: {quic}; pushed walk: {push}")


def _check(paths: list[Path]) -> int:
    """In the sanitized child: every capture through the ``ccore`` target; a sanitizer report aborts."""
    from fuzz import ccore_target

    print(loaded(), flush=True)
    packets = 0
    for path in paths:
        packets += sum(ccore_target.run(path.read_bytes()))
    print(f"checked {len(paths)} captures, {packets} packets: C and numpy cores agree, no sanitizer report")
    return 0


def corpus() -> list[Path]:
    """The captures ``python -m fuzz.sanitized`` reads by default: the project's and the shared corpus's."""
    from fuzz.runner import shared_corpus

    files = sorted((ROOT / "pcaps").glob("*.pcap*"))
    shared = shared_corpus()
    if shared:
        for sub in ("reference", "interception"):
            files += sorted(p for p in (shared / "pcaps" / sub).iterdir() if p.suffix in (".pcap", ".pcapng", ".cap"))
    return files


def main(argv: list[str]) -> int:
    if argv[:1] == ["--child"]:
        install()
        return _check([Path(a) for a in argv[1:]])
    so = build()
    print(f"sanitized build: {so.relative_to(ROOT)} (ASan: {is_sanitized(so)})", flush=True)
    if argv[:1] == ["--build"]:
        return 0
    paths = [Path(a).resolve() for a in argv] or corpus()
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = child_env(so, {**os.environ, "PYTHONPATH": path})
    return subprocess.run([sys.executable, "-m", "fuzz.sanitized", "--child", *map(str, paths)], cwd=ROOT, env=env,
                          check=False).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
