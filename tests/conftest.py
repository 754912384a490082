"""Shared fixtures: one quick-start run per test session, shared by the tests
that need it; and the plan for pytest-xdist's workers (``-n auto`` in pyproject)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from helpers import THREADS, run_training

from sngan.training.speed import keep_freed_memory

# Each worker's share of the cores, for its own work and the commands its tests start.
os.environ["OMP_NUM_THREADS"] = str(THREADS)
torch.set_num_threads(THREADS)
# The tests that train or score in this process get the malloc settings every command starts with.
keep_freed_memory()

# Fixtures that train or build something once for several tests: the tests sharing one run in one
# worker (pytest-xdist's loadgroup), so that it is made once. The longest groups go first.
SHARED = {
    "quickstart_run": "quickstart",
    "conditional_run": "conditional",
    "trained": "commands",
    "files": "bad_input",
    "ddp_run": "distributed",
    "short_run": "report",
    "random_net": "metrics",
}
LONGEST_FIRST = ("quickstart", "conditional")
# Tests on a shared training run are ``slow`` (``python -m pytest -m "not slow"`` leaves them out: the inner
# loop of CONTRIBUTING.md); so are the modules marked ``pytestmark = pytest.mark.slow``.
SLOW_FIXTURES = ("quickstart_run", "conditional_run", "trained", "ddp_run", "short_run")


@pytest.hookimpl(tryfirst=True)  # before xdist names the groups
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    groups: dict[str, str] = {}
    for item in items:
        group = next((g for name, g in SHARED.items() if name in item.fixturenames), None)
        if group is not None:
            item.add_marker(pytest.mark.xdist_group(group))
            groups[item.nodeid] = group
        if any(name in item.fixturenames for name in SLOW_FIXTURES):
            item.add_marker(pytest.mark.slow)
    rank = {g: i for i, g in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(groups.get(item.nodeid, ""), len(rank)))  # stable: the rest keep order


@pytest.fixture(scope="session")
def quickstart_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """The real quick start, run once per test session, on seed 6: the seed with the most margin over the
    measured seeds x threads x kernels (test_quickstart.py says why)."""
    run_dir = tmp_path_factory.mktemp("quickstart")
    result = run_training(run_dir, ["experiment=quickstart", "seed=6"])
    return run_dir, result


@pytest.fixture
def train_cli(monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]) -> Any:
    """``train_cli(*overrides, cwd=folder)``: ``python -m sngan.train`` in this process (helpers.run_command)."""
    from helpers import run_command

    return lambda *args, cwd: run_command(monkeypatch, capfd, "train", *args, cwd=cwd)


@pytest.fixture
def command_line(monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]) -> Any:
    """``command_line(command, *overrides, cwd=folder)``: ``python -m sngan.<command>`` in this process."""
    from helpers import run_command

    return lambda command, *args, cwd: run_command(monkeypatch, capfd, command, *args, cwd=cwd)


@pytest.fixture(scope="session", autouse=True)
def small_inception_inputs() -> Iterator[None]:
    """In this process the Inception network reads 75x75 inputs (its smallest), not pytorch-fid's 299x299:
    a sixteenth of the work, and nothing a test here asserts depends on the size (the networks are random).
    Commands the tests start as processes of their own read 299x299, as users' do."""
    from sngan.metrics import inception

    inception.INPUT_SIZE = 75
    yield
    inception.INPUT_SIZE = 299


@pytest.fixture(scope="session")
def random_inception_state() -> dict[str, torch.Tensor]:
    """Seeded random weights of the FID Inception (sngan.metrics.inception.random_state_dict), made once."""
    from sngan.metrics.inception import random_state_dict

    return random_state_dict(seed=0)


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
