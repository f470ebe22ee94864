"""``sinks/alerts/open.py``: a sink from its spec; errors name the spec and what is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from tlsdetect.cli import main
from tlsdetect.sinks.alerts.cef import CefFileSink
from tlsdetect.sinks.alerts.ecs import JsonlSink
from tlsdetect.sinks.alerts.open import SinkSpecError, open_sink, shown
from tlsdetect.sinks.alerts.spool import Spooled


def test_kinds(tmp_path: Path) -> None:
    assert isinstance(open_sink(f"jsonl:{tmp_path / 'a.jsonl'}", tmp_path), JsonlSink)
    assert isinstance(open_sink(f"cef:{tmp_path / 'a.cef'}", tmp_path), CefFileSink)
    net = open_sink("syslog+udp://127.0.0.1:9", tmp_path)
    assert isinstance(net, Spooled)
    assert net.name == "syslog+udp://127.0.0.1:9"
    assert (tmp_path / "spool").is_dir()
    net.close()


def test_errors_name_the_spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SinkSpecError, match=rf"^sink 'jsonl:{tmp_path}': {tmp_path} is a directory; give a file path$"):
        open_sink(f"jsonl:{tmp_path}", tmp_path)
    with pytest.raises(SinkSpecError, match=rf"^sink 'cef:{tmp_path}': {tmp_path} is a directory"):
        open_sink(f"cef:{tmp_path}", tmp_path)
    with pytest.raises(SinkSpecError, match=r"^unknown sink 'ftp://x': use jsonl:PATH"):
        open_sink("ftp://x", tmp_path)
    monkeypatch.delenv("TLSDETECT_HEC_TOKEN", raising=False)
    with pytest.raises(SinkSpecError, match=r"^sink 'hec\+https://h:1': HEC sink: no token"):
        open_sink("hec+https://h:1", tmp_path)
    (tmp_path / "state").write_text("")  # the spool cannot be made under a file
    with pytest.raises(SinkSpecError, match=r"^sink 'syslog\+udp://127.0.0.1:9': cannot create its spool"):
        open_sink("syslog+udp://127.0.0.1:9", tmp_path / "state")


def test_a_token_is_never_repeated() -> None:
    assert shown("hec+https://h:1/p?index=i&token=s3cret&verify=false") == (
        "hec+https://h:1/p?index=i&token=***&verify=false")
    with pytest.raises(SinkSpecError) as err:
        open_sink("hec+ftp://h?token=s3cret", Path("."))
    assert "s3cret" not in str(err.value)


def test_cli_sink_that_is_a_directory_is_one_line(tmp_path: Path) -> None:
    """issue 14 leftover: `--sink jsonl:/tmp` said only `[Errno 21] Is a directory: '/tmp'`."""
    log = tmp_path / "access.log"
    log.write_text("")
    res = CliRunner().invoke(main, ["stream", "--source", f"envoy:{log}", "--sink", f"jsonl:{tmp_path}",
                                    "--state", str(tmp_path / "st")])  # fmt: skip
    assert res.exit_code == 1
    assert res.output.strip().splitlines() == [f"Error: sink 'jsonl:{tmp_path}': {tmp_path} is a directory; give a "
                                               "file path"]  # fmt: skip


def test_split_when_full() -> None:
    from tlsdetect.sinks.alerts.open import split_when_full

    assert split_when_full("hec+https://h:8088?token=t&when_full=drop") == ("hec+https://h:8088?token=t", "drop")
    assert split_when_full("syslog+tcp://h:514?when_full=block") == ("syslog+tcp://h:514", "block")
    assert split_when_full("syslog+tcp://h:514?facility=local3") == ("syslog+tcp://h:514?facility=local3", None)
    assert split_when_full("jsonl:/tmp/a?when_full=drop") == ("jsonl:/tmp/a?when_full=drop", None)  # a path
