"""The first GPU run's hazards (issue 38), each made to happen on the CPU: a clone run without an install, the
GPU check's pytest call on an older image, and its rehearsal."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Runs ``python -m sngan.train`` from a folder that holds only the package, with every installed copy of sngan
# out of reach (an editable install's finder too), as from a clone on a host whose image has torch only.
FROM_CLONE = """
import runpy, sys
sys.path[:0] = [sys.argv.pop(1)]
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
for name in [m for m in sys.modules if m == "sngan" or m.startswith("sngan.")]:
    del sys.modules[name]
import sngan
assert sngan.__file__.startswith(sys.path[0]), sngan.__file__
sys.argv[0] = "sngan.train"
runpy.run_module("sngan.train", run_name="__main__")
"""


def test_a_clone_runs_the_commands_without_an_install(tmp_path):
    """The configs are part of the package in the tree: a copy of ``sngan/`` alone composes and prints a
    training config (Hydra's --cfg job), finding the YAML files beside the code."""
    clone = tmp_path / "clone"
    shutil.copytree(ROOT / "sngan", clone / "sngan", ignore=shutil.ignore_patterns("__pycache__"))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, "-c", FROM_CLONE, str(clone), "--cfg", "job", "experiment=quickstart"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "run_name: quickstart" in done.stdout and "synthetic" in done.stdout, done.stdout[-2000:]
    assert "Primary config module" not in done.stderr


def test_the_gpu_checks_pytest_call_needs_no_xdist_and_keeps_each_result():
    """An image with an older pytest-xdist (or none) cannot read the project's addopts (``--dist loadgroup
    --no-loadscope-reorder``): the GPU check clears them and lists each test's result as it ends (-v)."""
    script = (ROOT / "scripts" / "gpu_check.sh").read_text()
    (line,) = [x for x in script.splitlines() if "-m pytest" in x]
    assert "-o addopts=" in line and " -v" in line and "-n0" not in line, line


def test_an_error_that_poisons_the_cuda_context_is_not_retried_and_says_what_to_send(capsys):
    """An illegal memory access (a sticky CUDA error, wrapped as torch.compile wraps it) in a first compiled
    step is not run again eagerly: one paragraph says what happened, that the checkpoints are intact, and what
    a bug report needs. After the trial steps too; an ordinary error still gets its eager retry."""
    from test_first_contact import run_stub

    from sngan.cli.errors import run_or_exit
    from sngan.training.speed import Speed
    from sngan.training.wrappers import CompileTrial, CudaContextLost

    run, calls = run_stub()

    def illegal(speed: Speed):
        calls.append(speed.compile)
        try:
            raise RuntimeError("CUDA error: an illegal memory access was encountered\nCUDA kernel errors might be "
                               "asynchronously reported at some other API call")  # fmt: skip
        except RuntimeError as cuda:
            raise RuntimeError("backend='inductor' raised:") from cuda  # as torch.compile wraps it

    trial = CompileTrial(run, Speed(compile="max"), "auto", save=lambda r, name: Path("unused"))
    with pytest.raises(CudaContextLost) as lost:
        trial.step(illegal)
    assert calls == ["max"] and trial.left > 0  # not retried eagerly
    said = str(lost.value)
    for words in ("an illegal memory access was encountered", "not tried again eagerly", "resume=auto",
                  "CUDA_LAUNCH_BLOCKING=1", "python -m torch.utils.collect_env", "train.compile=max"):  # fmt: skip
        assert words in said, said
    with pytest.raises(SystemExit) as stop:  # the train command prints it as one paragraph, exit code 2
        run_or_exit(lambda: trial.step(illegal), CudaContextLost)
    assert stop.value.code == 2 and capsys.readouterr().err.startswith("error: CUDA failed in step 1")
    calls.clear()
    trial.left = 0  # after the trial steps: not a compile failure either
    with pytest.raises(CudaContextLost):
        trial.step(illegal)
    assert calls == ["max"]

    def ordinary(speed: Speed):
        calls.append(speed.compile)
        if speed.compile != "none":
            raise RuntimeError("CUDA error: operation not permitted when stream is capturing")
        return "eager"

    calls.clear()
    trial = CompileTrial(run, Speed(compile="max"), "auto", save=lambda r, name: Path("unused"))
    assert trial.step(ordinary) == "eager" and calls == ["max", "none"]
