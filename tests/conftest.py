"""Shared fixtures: one quick-start run per test session, shared by the tests
that need it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from helpers import run_training


@pytest.fixture(scope="session")
def quickstart_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """The real quick start, run once per test session."""
    run_dir = tmp_path_factory.mktemp("quickstart")
    result = run_training(run_dir, ["experiment=quickstart"])
    return run_dir, result


@pytest.fixture(scope="session")
def inception_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A $TORCH_HOME holding seeded random FID Inception weights where pytorch-fid looks for the real
    ones (hub/checkpoints/pt_inception-2015-12-05-6726825d.pth): the real file cannot be downloaded here."""
    import os

    from sngan.metrics.inception import WEIGHTS_FILENAME, save_random_weights

    home = tmp_path_factory.mktemp("torch_home")
    save_random_weights(home / "hub" / "checkpoints" / WEIGHTS_FILENAME, seed=0)
    assert os.path.getsize(home / "hub" / "checkpoints" / WEIGHTS_FILENAME) > 50e6  # the whole network
    return home


@pytest.fixture
def with_inception(inception_home: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Point this test's TORCH_HOME at the random weights and its statistics cache at a fresh folder."""
    monkeypatch.setenv("TORCH_HOME", str(inception_home))
    monkeypatch.setenv("SNGAN_STATS_DIR", str(tmp_path / "stats"))
    return inception_home
