"""``tlsdetect serve`` as a user starts it (the app itself is tested in the test_serve_*.py files)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from tlsdetect.cli import main

from .conftest import CLEAN_PCAPS


def _run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(scope="module")
def baseline_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("b") / "sample"
    code, _, err = _run("baseline", "fit", *map(str, CLEAN_PCAPS), "-o", str(out), "--no-progress", "--mesh-ca",
                        "learn")
    assert code == 0, err
    return out


def test_serve_says_at_start_up_that_the_mesh_ca_was_learned(baseline_dir: Path, monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    """Issue 14 item 5: serve's start-up log names a learned mesh CA."""
    pytest.importorskip("fastapi")
    import tlsdetect.cli.serve as cli_serve

    monkeypatch.setattr(cli_serve, "_run_worker", lambda config, app, sock: sock.close())
    code, _, err = _run("serve", "--baseline", str(baseline_dir), "--port", "0")
    assert code == 0, err
    assert "tlsdetect serve: WARNING: this baseline uses a LEARNED mesh CA" in err


def test_serve_passes_the_hardening_options_to_the_server(baseline_dir: Path, monkeypatch: pytest.MonkeyPatch
                                                              ) -> None:
    """Issue 18 #12: --header-timeout reaches the HTTP protocol, --body-timeout the app (0 is refused); #15:
    --unhealthy-when-degraded the app's settings."""
    pytest.importorskip("fastapi")
    import tlsdetect.cli.serve as cli_serve

    seen: dict[str, object] = {}

    def run(config: object, app: object, sock: object) -> None:
        seen["config"], seen["app"] = config, app
        sock.close()  # type: ignore[attr-defined]

    monkeypatch.setattr(cli_serve, "_run_worker", run)
    code, _, err = _run("serve", "--baseline", str(baseline_dir), "--port", "0", "--header-timeout", "2.5",
                        "--body-timeout", "7", "--max-header-bytes", "4096", "--unhealthy-when-degraded")
    assert code == 0, err
    settings = seen["app"].state.settings  # type: ignore[attr-defined]
    assert (settings.header_timeout, settings.body_timeout, settings.max_header_bytes) == (2.5, 7.0, 4096)
    assert settings.unhealthy_when_degraded  # issue 18 #15: /healthz 503 while degraded
    assert seen["config"].http.__name__.startswith("HeadDeadline")  # type: ignore[attr-defined]
    code, _, err = _run("serve", "--baseline", str(baseline_dir), "--port", "0", "--header-timeout", "0")
    assert code == 2
    assert "--header-timeout" in err
