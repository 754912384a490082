"""The suite's plan for pytest-xdist holds: tests that share a trained run stay on one worker."""

import pytest


@pytest.mark.xdist_group("guard")
def test_grouped_tests_are_kept_on_one_worker(request):
    """xdist's loadgroup keeps a group together by appending "@group" to the node ids of its tests. pytest 9.2
    no longer lets it (pytest-xdist#1386): nothing failed, but every worker trained the shared runs
    again, 15 more minutes (pyproject.toml caps pytest below 9.2 until xdist is fixed)."""
    config = request.config
    if not (hasattr(config, "workerinput") and config.getvalue("loadgroup")):
        pytest.skip("runs under pytest-xdist's --dist loadgroup (the suite's default)")
    assert request.node.nodeid.endswith("@guard"), (
        f"pytest-xdist's --dist loadgroup does not group tests under pytest {pytest.__version__} "
        f"({request.node.nodeid}): install the versions pyproject.toml allows, pip install -e '.[dev]'"
    )
