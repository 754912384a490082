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
