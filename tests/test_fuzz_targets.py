"""The fuzz targets (fuzz/targets.py): each reads its committed seeds into rows through the CLI's or the API's
own entry point, answers garbage with nothing or its documented error, and tells findings from answers."""

from __future__ import annotations

import pandas as pd
import pytest

from fuzz.runner import CRASHES, ROOT, seed_files
from fuzz.targets import TARGETS, Target, is_expected
from tlsdetect.readers.inputs import InputError
from tlsdetect.wire.tls import TLSParseError


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_seeds_give_rows(name: str) -> None:
    target = TARGETS[name]
    # seeds, not saved findings: a regression input is kept because it once failed, not because it reads
    seeds = [p for p in seed_files(name, None) if CRASHES not in p.parents]
    assert seeds, name
    for seed in seeds[:3]:
        out = target.run(seed.read_bytes())
        assert isinstance(out, (pd.DataFrame, list)), (name, seed)
        assert len(out) > 0, (name, seed)
        if isinstance(out, pd.DataFrame):  # the seed reaches the fingerprints, not only the framing
            assert out[["ja3", "ja4"]].notna().to_numpy().any(), (name, seed)


@pytest.mark.parametrize("name", sorted(TARGETS))
@pytest.mark.parametrize("data", [b"", b"\x00" * 64, b"{" * 5000, b"\x16\x03\x01\xff\xff" + b"A" * 40])
def test_garbage_is_nothing_or_a_documented_error(name: str, data: bytes) -> None:
    target = TARGETS[name]
    error: Exception | None = None
    try:
        target.run(data)
    except Exception as exc:
        error = exc
    assert error is None or is_expected(target, error), repr(error)


def test_is_expected_counts_subclasses_and_nothing_else() -> None:
    t = Target("t", lambda data: None, ("ValueError",), "")
    assert is_expected(t, InputError("no input"))  # a ValueError subclass
    assert is_expected(t, TLSParseError("short"))
    assert not is_expected(t, KeyError("x"))
    assert not is_expected(t, RecursionError())


def test_readers_read_a_real_file_each_time() -> None:
    pcap = (ROOT / "pcaps" / "tls12_stacks.pcap").read_bytes()
    first = TARGETS["pcap"].run(pcap)
    with pytest.raises(InputError):
        TARGETS["pcap"].run(pcap[:10])  # the same scratch path, new bytes: no stale result
    again = TARGETS["pcap"].run(pcap)
    assert isinstance(first, pd.DataFrame)
    assert isinstance(again, pd.DataFrame)
    assert len(first) == len(again) > 0
