"""The API's metrics (``tlsdetect.serve.metrics``): a registry per app.
"""

from __future__ import annotations

from pathlib import Path

from tlsdetect.serve.app import Settings, create_app

pytest_plugins = ["tests.serve_fixtures"]  # captures, rows, baseline_dir, own_baseline


def test_two_apps_have_their_own_registries(baseline_dir: Path) -> None:
    a = create_app(Settings(baseline_dir=baseline_dir))
    b = create_app(Settings(baseline_dir=baseline_dir))
    assert a.state.metrics.registry is not b.state.metrics.registry
