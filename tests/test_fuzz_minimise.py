"""fuzz/minimise.py: a finding shrinks to what still fails the same way, and only that."""

from __future__ import annotations

from fuzz.minimise import minimise, signature
from fuzz.targets import Target


def _needs_k_then_z(data: bytes) -> object:
    if b"K" in data and data.endswith(b"Z"):
        raise KeyError("k")
    if b"K" in data:
        raise IndexError("another bug, elsewhere")
    raise ValueError("documented")


TARGET = Target("t", _needs_k_then_z, ("ValueError",), "")


def test_signature_names_the_failure_and_ignores_documented_errors() -> None:
    key = signature(TARGET, b"xKxZ")
    assert key is not None
    assert key[0] == "KeyError"
    assert key[1].endswith("test_fuzz_minimise.py")
    assert signature(TARGET, b"xK")[0] == "IndexError"  # type: ignore[index]
    assert signature(TARGET, b"plain") is None


def test_shrinks_to_the_bytes_the_failure_needs() -> None:
    data = b"header " * 50 + b"K" + b" middle " * 50 + b"Z"
    assert minimise(TARGET, data, 10) == b"KZ"


def test_a_passing_input_is_returned_as_it_is() -> None:
    assert minimise(TARGET, b"nothing here", 10) == b"nothing here"


def test_budget_bounds_the_work() -> None:
    data = b"K" + bytes(range(256)) * 40 + b"Z"
    out = minimise(TARGET, data, 0)
    assert out == data  # no time: nothing tried, the input kept as found
