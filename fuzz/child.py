"""The fuzzing process of one target: atheris (libFuzzer) calling the target in-process.

Run by :mod:`fuzz.runner`, never by hand: ``python -m fuzz.child TARGET [libFuzzer flags] CORPUS...``.
The project's modules are imported under atheris' instrumentation (coverage guides the mutations;
pandas, pyarrow and numpy are not instrumented: their code is not what is under test, and
instrumenting them costs more than it finds). A documented error is a normal return; any other
exception propagates, and libFuzzer saves the input as ``crash-<sha1>`` under ``-artifact_prefix``;
a signal (SIGSEGV in a native parser) is caught by libFuzzer's handler the same way.
"""

from __future__ import annotations

import faulthandler
import importlib
import pkgutil
import sys

import atheris

from fuzz.targets import Target, is_expected, load_targets

#: Packages whose modules are instrumented (imported up front, so lazily imported ones are too).
_INSTRUMENTED = ("tlsdetect.readers", "tlsdetect.wire")
_ALSO = ("tlsdetect.fingerprint", "tlsdetect.schema", "tlsdetect.serve.models")


def _import_instrumented() -> None:
    with atheris.instrument_imports(include=["tlsdetect"]):
        for name in _ALSO:
            importlib.import_module(name)
        for package in _INSTRUMENTED:
            mod = importlib.import_module(package)
            for info in pkgutil.walk_packages(mod.__path__, package + "."):
                importlib.import_module(info.name)


def _one_input(target: Target) -> object:
    def test_one_input(data: bytes) -> None:
        if not faulthandler.is_enabled():
            # Installed after libFuzzer's own handlers: on a signal it prints the Python stack, then hands the
            # signal on to libFuzzer, which saves the input.
            faulthandler.enable()
        try:
            target.run(data)
        except Exception as exc:
            if not is_expected(target, exc):
                raise

    return test_one_input


def _minimise(argv: list[str]) -> None:
    """``--minimize TARGET IN OUT SECONDS``: write the reduced input to OUT (uninstrumented: no fuzzing here)."""
    from pathlib import Path

    from fuzz.minimise import minimise

    target, src, dest, seconds = load_targets()[argv[0]], Path(argv[1]), Path(argv[2]), float(argv[3])
    dest.write_bytes(minimise(target, src.read_bytes(), seconds))


def _sanitized_core() -> bool:
    """With ``$TLSDETECT_SANITIZED_CCORE`` set (a sanitized target, :func:`fuzz.runner.child_env`): load that
    build of the C core when it is first imported."""
    import os

    from fuzz import sanitized

    if not os.environ.get(sanitized.ENV_SO):
        return False
    sanitized.install()
    return True


def _say_which_core() -> None:
    """The file the C core was loaded from, in the log: proof that the sanitized build ran."""
    from fuzz import sanitized

    print(sanitized.loaded(), file=sys.stderr, flush=True)


def main(argv: list[str]) -> None:
    sanitized = _sanitized_core()
    if argv[1] == "--minimize":
        if sanitized:
            _say_which_core()
        _minimise(argv[2:])
        return
    name = argv[1]
    target = load_targets()[name]
    _import_instrumented()
    if sanitized:
        _say_which_core()
    atheris.Setup([argv[0], *argv[2:]], _one_input(target))
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
