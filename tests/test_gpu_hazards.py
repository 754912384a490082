"""The first GPU run's hazards (issue 38), each made to happen on the CPU: a clone run without an install, the
GPU check's pytest call on an older image, and its rehearsal."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

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


# What torch appends to every CUDA error it raises (c10/cuda/CUDAException.cpp), naming device-side assertions.
TORCH_CUDA_ERROR_TAIL = (
    "CUDA kernel errors might be asynchronously reported at some other API call, so the stacktrace below might be "
    "incorrect.\nFor debugging consider passing CUDA_LAUNCH_BLOCKING=1\nCompile with `TORCH_USE_CUDA_DSA` to enable "
    "device-side assertions.\n"
)


def test_sticky_cuda_errors_are_told_from_the_others():
    from sngan.training.wrappers import poisons_the_context

    sticky = ["an illegal memory access was encountered", "unspecified launch failure", "misaligned address",
              "device-side assert triggered"]  # fmt: skip
    others = ["operation not permitted when stream is capturing", "out of memory", "invalid argument"]
    for said in sticky:
        assert poisons_the_context(RuntimeError(f"CUDA error: {said}\n{TORCH_CUDA_ERROR_TAIL}")), said
    for said in others:
        assert not poisons_the_context(RuntimeError(f"CUDA error: {said}\n{TORCH_CUDA_ERROR_TAIL}")), said
    assert poisons_the_context(RuntimeError("CUBLAS_STATUS_EXECUTION_FAILED when calling `cublasSgemm( handle)`"))
    assert poisons_the_context(RuntimeError("NCCL error in: ProcessGroupNCCL.cpp:1, unhandled cuda error"))
    assert not poisons_the_context(ValueError("cuda device-side assertions mentioned in passing"))


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
            raise RuntimeError(f"CUDA error: an illegal memory access was encountered\n{TORCH_CUDA_ERROR_TAIL}")
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
            raise RuntimeError(f"CUDA error: operation not permitted when stream is capturing\n{TORCH_CUDA_ERROR_TAIL}")
        return "eager"

    calls.clear()
    trial = CompileTrial(run, Speed(compile="max"), "auto", save=lambda r, name: Path("unused"))
    assert trial.step(ordinary) == "eager" and calls == ["max", "none"]


def tiny_run(extra: list[str]):
    from helpers import TINY, compose_cfg, validated

    from sngan.cli.build import build_run
    from sngan.data import make_synthetic

    cfg = validated(compose_cfg(TINY + ["train.n_dis=2", "train.monitor_every=null"] + extra))
    return cfg, build_run(cfg, make_synthetic(50, 32), torch.device("cpu"))


def everything(run) -> dict:
    """The whole training state, as a checkpoint holds it (copies)."""
    from sngan.training.state import snapshot

    state = snapshot(run)
    state["opt_g"] = state["opt_g"]["state"]  # the param_groups' learning rate is set from the step anyway
    state["opt_d"] = state["opt_d"]["state"]
    return state


def same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


@pytest.mark.parametrize("failing", ["first D update", "second D update", "G update"])
def test_a_failed_step_is_put_back_exactly_from_what_the_guard_keeps(failing):
    """on_nonfinite=stop keeps only what a failed step can change (D, D's optimizer, G's buffers, data order,
    RNGs), never G's weights, G's optimizer or the EMA: G's update is gated on the step's D updates being
    finite. After a failed step every part of the state equals the one before it, bit for bit."""
    from sngan.cli.build import iteration_of
    from sngan.training import iteration as loop
    from sngan.training.guard import StepGuard

    cfg, run = tiny_run(["train.ema_decay=0.9"])
    guard = StepGuard(run)
    for _ in range(2):  # the optimizers have state, the EMA has moved
        assert loop.generator_iteration(run, iteration_of(cfg), guard=guard)[2] is None
    kept_ptrs = {t.data_ptr() for t in guard.live()}
    for never in (*run.generator.parameters(), *run.ema.parameters(), *run.ema.buffers()):
        assert never.data_ptr() not in kept_ptrs
    assert not any(t.data_ptr() in kept_ptrs for s in run.opt_g.state.values() for t in s.values())
    before = everything(run)
    calls = {"d": 0}

    def nan_in(module, inputs, output):
        if module.training:  # a D update (D is read in eval mode in the G update)
            calls["d"] += 1
            bad = (failing, calls["d"]) in (("first D update", 1), ("second D update", 2))
        else:
            bad = failing == "G update"
        return output * float("nan") if bad else output

    hook = run.discriminator.register_forward_hook(nan_in)
    _, _, failed = loop.generator_iteration(run, iteration_of(cfg), guard=guard)
    hook.remove()
    network = "generator" if failing == "G update" else "discriminator"
    assert failed is not None and failed.startswith(f"the {network} update of step 3")
    assert same(everything(run), before)


# aten ops that make the host wait for a CUDA device: a tensor read as a Python number or truth value, and
# ops whose output size depends on values (the host must see them to allocate the output).
WAITING_OPS = {
    "aten._local_scalar_dense.default", "aten.nonzero.default", "aten.is_nonzero.default", "aten.equal.default",
    "aten.masked_select.default", "aten.unique_consecutive.default", "aten._unique2.default",
    "aten.repeat_interleave.Tensor",
}  # fmt: skip


@pytest.mark.parametrize(
    "extra",
    [[], ["train.on_nonfinite=skip"], ["constraint=wgan_gp", "loss=wasserstein"], ["constraint=weight_clip",
     "loss=nonsaturating"], ["constraint=orthonormal", "loss=nonsaturating"], ["augment=ada"]],
    ids=["sn", "skip", "wgan_gp", "weight_clip", "orthonormal", "ada"],
)  # fmt: skip
def test_a_training_step_waits_for_the_device_once(extra, monkeypatch):
    """The one wait docs/speed.md names: the finite flags of the step's updates, read together at its end
    (one ``tolist``). Nothing else of a step reads a tensor on the host: no ``.item()``, no truth value of a
    tensor, no op whose output size depends on values, under either on_nonfinite policy and every constraint."""
    from torch.utils._python_dispatch import TorchDispatchMode

    from sngan.cli.build import iteration_of
    from sngan.training import iteration as loop
    from sngan.training.guard import StepGuard

    class Waits(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.seen: list[str] = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if str(func) in WAITING_OPS:
                self.seen.append(str(func))
            return func(*args, **(kwargs or {}))

    cfg, run = tiny_run(extra)
    guard = StepGuard(run)
    loop.generator_iteration(run, iteration_of(cfg), guard=guard)  # the optimizers' first step (their state is created)
    reads: list[int] = []
    plain = torch.Tensor.tolist
    monkeypatch.setattr(torch.Tensor, "tolist", lambda self: reads.append(self.numel()) or plain(self))
    with Waits() as waits:
        for _ in range(3):
            assert loop.generator_iteration(run, iteration_of(cfg), guard=guard)[2] is None
    assert waits.seen == [] and reads == [cfg.train.n_dis + 1] * 3, (waits.seen, reads)


def test_no_compiled_graph_reads_a_tensor_another_compiled_graph_returned(monkeypatch):
    """Under train.compile G and D are compiled separately; chaining them (G's graph output straight into D's
    graph, as in the G update) is the pattern CUDA-graph trees fail on (pytorch#160281, #152887). Each
    compiled graph here records the tensors it is called with and returns: over D and G updates, no graph of
    one network is called with a tensor a graph of the other returned."""
    from sngan.cli.build import iteration_of
    from sngan.training import iteration as loop
    from sngan.training.speed import Speed
    from sngan.training.wrappers import accelerate

    calls: list[tuple[str, list[torch.Tensor], list[torch.Tensor]]] = []

    def recording(network: str):
        def backend(gm: torch.fx.GraphModule, example_inputs: list[torch.Tensor]):
            def run(*args):
                out = gm.forward(*args)
                outs = [t for t in (out if isinstance(out, (list, tuple)) else [out]) if isinstance(t, torch.Tensor)]
                calls.append((network, [a for a in args if isinstance(a, torch.Tensor)], outs))
                return out

            return run

        return backend

    def compiled(net: torch.nn.Module, mode: str) -> torch.nn.Module:
        network = "G" if net is run.generator else "D"
        return torch.compile(net, backend=recording(network), dynamic=False)

    monkeypatch.setattr("sngan.training.wrappers.compiled", compiled)
    cfg, run = tiny_run(["train.compile=default"])
    speed = Speed(compile="default")
    accelerate(run, speed)
    for _ in range(2):
        assert loop.generator_iteration(run, iteration_of(cfg), speed)[2] is None
    torch._dynamo.reset()
    assert {network for network, _, _ in calls} == {"G", "D"}
    # backward too: G's backward reads a copy of the gradient D's backward returned
    from sngan.training.step import Boundary

    x = torch.randn(4, 3, requires_grad=True)
    seen = {}
    y = x * 2
    y.register_hook(lambda grad: seen.setdefault("into_g", grad))
    out = Boundary.apply(y)
    out.register_hook(lambda grad: seen.setdefault("from_d", grad))
    (out * 3).sum().backward()
    assert torch.equal(x.grad, torch.full((4, 3), 6.0)) and seen["into_g"].data_ptr() != seen["from_d"].data_ptr()
    for network, inputs, _ in calls:
        produced = {t.data_ptr() for other, _, outs in calls if other != network for t in outs}
        assert not [t for t in inputs if t.data_ptr() in produced], f"{network}'s graph read the other's output"


@pytest.mark.slow
def test_the_gpu_check_rehearses_its_phases_on_the_cpu(tmp_path):
    """``--rehearse`` runs the same phases at tiny size on the CPU: each phase's line lands in OUT/phases.tsv as
    it ends (name, exit code, seconds, limit), its figures in their JSON lines, and a summary gives the time
    against the limits and the 15-minute window."""
    out = tmp_path / "out"
    env = os.environ | {"OMP_NUM_THREADS": "1", "PYTHON": sys.executable}
    done = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh"), "--rehearse", str(out), "tests", "fid"],
                          capture_output=True, text=True, timeout=300, env=env)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    rows = [line.split("\t") for line in (out / "phases.tsv").read_text().splitlines()]
    assert [(name, rc, limit) for name, rc, _, limit in rows] == [("tests", "0", "165"), ("fid", "0", "50")], rows
    assert all(0 <= int(seconds) <= int(limit) for _, _, seconds, limit in rows)
    assert '"bench": "fid"' in (out / "fid.jsonl").read_text() and "skipped" in (out / "tests.log").read_text()
    assert "of their 225 s of limits" in done.stdout and "the GPU window is 900 s" in done.stdout
    bad = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh"), "--rehearse", str(out), "nope"],
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert bad.returncode == 2 and "unknown phase 'nope'" in bad.stderr
