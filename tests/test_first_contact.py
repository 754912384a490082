"""First contact with a machine nobody has tried: torch.compile (or CUDA-graph capture) failing in the first
compiled steps, and memory running out in an evaluation. Each failure is made to happen on the CPU: a
torch.compile backend that raises, an allocation that raises ``torch.OutOfMemoryError``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers import THREADS, TINY, compose_cfg, evaluate_cfg, inception_cfg, metrics_cfg

from sngan.cli.errors import run_or_exit
from sngan.cli.settings import check_train
from sngan.cli.start import start
from sngan.config import to_container
from sngan.evaluate import evaluate
from sngan.training.iteration import NonFiniteError
from sngan.training.speed import Speed
from sngan.training.wrappers import CompileFailed, CompileTrial
from sngan.utils import checkpoint as ckpt
from sngan.utils.memory import EvaluationOutOfMemory, memory_free

STEPS = TINY + ["train.steps=4", "train.eval_every=4", "train.checkpoint_every=4", "train.monitor_every=null"]


def train(run_dir: Path, overrides: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """Train in-process as ``python -m sngan.train`` does; its exit code (0: success) and stderr."""
    raw = compose_cfg(overrides)
    torch.set_num_threads(THREADS)
    try:
        run_or_exit(lambda: start(check_train(raw), to_container(raw), run_dir), NonFiniteError, CompileFailed)
    except SystemExit as stop:
        return int(stop.code), capsys.readouterr().err
    return 0, capsys.readouterr().err


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    state = ckpt.load(ckpt.find_latest(run_dir))
    assert state["step"] == 4
    return state["generator"] | {f"d.{k}": v for k, v in state["discriminator"].items()}


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


class Backend:
    """A torch.compile backend that runs the captured graph as it is, except that the ``fail_at``-th call
    of a compiled graph raises (0: compiling raises, as a broken inductor or Triton would; later calls: as
    CUDA-graph capture failing when it records, at the second call of a graph)."""

    def __init__(self, fail_at: int) -> None:
        self.fail_at, self.calls, self.compiled = fail_at, 0, []

    def __call__(self, gm: torch.fx.GraphModule, example_inputs: list[torch.Tensor]):
        self.compiled.append(gm)
        if self.fail_at == 0:
            raise RuntimeError("Triton: no usable C compiler for this GPU\nsecond line, not shown")

        def run(*args):
            self.calls += 1
            if self.calls == self.fail_at:
                raise RuntimeError("CUDA error: operation not permitted when stream is capturing")
            return gm.forward(*args)

        return run


@pytest.fixture
def failing_compile(monkeypatch):
    """``train.compile`` through ``Backend``; ``auto`` picks compile=default, as it does on a CUDA GPU."""
    from sngan.cli import build as train_command  # where the train command resolves its speed settings
    from sngan.training import speed

    backend = Backend(0)
    monkeypatch.setattr(speed, "compiler_for", lambda device: True)  # the backend needs no compiler
    monkeypatch.setattr(
        "sngan.training.wrappers.compiled",
        lambda net, mode: net if mode == "none" else torch.compile(net, backend=backend, dynamic=False),
    )
    real = train_command.resolve

    def resolve(device, precision, tf32, compile, *rest):
        return real(device, precision, tf32, "default" if compile == "auto" else compile, *rest)

    monkeypatch.setattr(train_command, "resolve", resolve)
    torch._dynamo.reset()
    yield backend
    torch._dynamo.reset()


@pytest.fixture(scope="module")
def eager(tmp_path_factory):
    """The same four steps trained eagerly: what a fallen-back run must match bit for bit."""
    from helpers import run_training

    run_dir = tmp_path_factory.mktemp("eager")
    run_training(run_dir, STEPS + ["train.compile=none"])
    return weights(run_dir)


# ---------------------------------------------------------------- compile: fall back or stop


@pytest.mark.parametrize("fail_at", [0, 7], ids=["compiling", "capturing-in-step-2"])
def test_compile_auto_that_fails_falls_back_to_eager_from_the_same_state(
    tmp_path, capsys, failing_compile, eager, fail_at
):
    """The failed step runs again eagerly from a snapshot: the run ends with the eager run's weights, bit for
    bit, after one note naming the error's first line and train.compile=none."""
    failing_compile.fail_at = fail_at
    code, err = train(tmp_path / "run", STEPS + ["train.compile=auto"], capsys)
    assert code == 0, err
    notes = [line for line in err.splitlines() if "train.compile=auto chose compile=default" in line]
    assert len(notes) == 1, err
    step = 1 if fail_at == 0 else 2  # calls 1-6: step 1 (D reads G, D; G through D), the 7th in step 2
    first = "Triton: no usable C compiler for this GPU" if fail_at == 0 else "operation not permitted when stream"
    assert f"failed at step {step}" in notes[0] and first in notes[0] and "train.compile=none" in notes[0]
    assert "second line" not in err and "Traceback" not in err
    assert same(weights(tmp_path / "run"), eager)
    # provenance.json and the checkpoints record the settings the run trained on after the fallback, and why.
    for info in (json.loads((tmp_path / "run" / "provenance.json").read_text()),
                 ckpt.load(ckpt.find_latest(tmp_path / "run"))["provenance"]):  # fmt: skip
        assert info["speed"]["compile"] == "none", info
        why = info["speed_fallback"]
        assert why.startswith(f"compile=default failed at step {step} (") and first in why, info


@pytest.mark.parametrize("fail_at", [0, 7], ids=["compiling", "capturing-in-step-2"])
def test_compile_asked_for_by_name_that_fails_stops_with_one_paragraph(tmp_path, capsys, failing_compile, fail_at):
    failing_compile.fail_at = fail_at
    code, err = train(tmp_path / "run", STEPS + ["train.compile=default"], capsys)
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 1 and "Traceback" not in err, err
    step = 1 if fail_at == 0 else 2
    assert f"train.compile=default failed at step {step}" in errors[0] and "runs eagerly without error" in errors[0]
    assert "train.compile=none" in errors[0] and "train.compile=auto" in errors[0]
    saved = ckpt.find_latest(tmp_path / "run")
    if fail_at == 0:  # nothing completed, nothing written
        assert saved is None and "No step had been completed" in errors[0]
    else:  # step 1 completed in this process: kept
        assert saved is not None and ckpt.load(saved)["step"] == 1 and str(saved) in errors[0]


def run_stub() -> tuple[object, list[str]]:
    """A stand-in for ``Run``: what snapshot and rollback touch, with a one-parameter network."""
    from sngan.data import BatchSampler
    from sngan.training.state import Run

    net = torch.nn.Linear(1, 1)
    opt = torch.optim.Adam(net.parameters())
    sampler = BatchSampler(torch.zeros(4, 3, 2, 2, dtype=torch.uint8), 0, False)
    return Run(net, net, opt, opt, sampler, torch.zeros(1, 1)), []


def test_an_error_the_eager_step_meets_too_is_the_runs_own_and_out_of_memory_is_not_retried():
    run, calls = run_stub()

    def broken(speed: Speed):
        calls.append(speed.compile)
        raise ValueError("a bug of the run, not of the compiler")

    trial = CompileTrial(run, Speed(compile="default"), "auto", save=lambda r, name: Path("unused"))
    with pytest.raises(ValueError, match="a bug of the run"):
        trial.step(broken)
    assert calls == ["default", "none"]  # tried again eagerly, then raised as it is

    def oom(speed: Speed):
        calls.append(speed.compile)
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB.")

    calls.clear()
    trial = CompileTrial(run, Speed(compile="max"), "auto", save=lambda r, name: Path("unused"))
    with pytest.raises(torch.OutOfMemoryError):
        trial.step(oom)
    assert calls == ["max"]  # the loop's out-of-memory error, not a compile failure
    eager = CompileTrial(run, Speed(compile="none"), "auto", save=lambda r, name: Path("unused"))
    assert eager.left == 0  # nothing compiled: no snapshots, no retries


# ---------------------------------------------------------------- out of memory in an evaluation


def test_an_evaluation_that_runs_out_of_memory_is_skipped_and_training_goes_on(tmp_path, capsys, monkeypatch):
    from sngan.training import evaluation as loop

    real, calls = loop.evaluate_synthetic, []

    def evaluate_synthetic(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:  # the first evaluation (step 2), G's half
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 3.00 GiB.\nallocator tips ...")
        return real(*args, **kwargs)

    monkeypatch.setattr(loop, "evaluate_synthetic", evaluate_synthetic)
    overrides = TINY + ["train.steps=4", "train.ema_decay=0.9", "train.monitor_every=null"]
    code, err = train(tmp_path / "run", overrides, capsys)
    assert code == 0, err
    warning = [line for line in err.splitlines() if line.startswith("warning: the evaluation at step 2")]
    assert len(warning) == 1, err
    assert "Tried to allocate 3.00 GiB" in warning[0] and "of host memory available now" in warning[0]
    assert "inception.batch_size=" in warning[0] and "allocator tips" not in err
    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [4]  # step 2 skipped whole (not G's half without the EMA's)
    assert "ema/synthetic/quality" in lines[0] and "synthetic/quality" in lines[0]
    assert ckpt.load(ckpt.find_latest(tmp_path / "run"))["step"] == 4


METRICS = [
    "metrics=fid_paper", "metrics.name=tiny", "metrics.n_fake=32", "metrics.n_real=150",
    "metrics.is_split_size=16", "metrics.is_splits=2", "metrics.kid_subsets=10", "metrics.kid_subset_size=32",
    "inception.dims=64", "dataset.size=150",
]  # fmt: skip


def failing_extract(monkeypatch: pytest.MonkeyPatch, fail: set[int]) -> list[int]:
    """Inception's feature pass raising out of memory at the calls numbered in ``fail`` (1: the first)."""
    from sngan.metrics import reference, scoring

    real, calls = scoring.extract, []

    def extract(*args, **kwargs):
        calls.append(1)
        if len(calls) in fail:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 9.00 GiB.")
        return real(*args, **kwargs)

    monkeypatch.setattr(scoring, "extract", extract)  # generated images
    monkeypatch.setattr(reference, "extract", extract)  # the reference images
    return calls


@pytest.mark.slow
def test_an_fid_evaluation_that_runs_out_of_memory_is_skipped_then_evaluate_names_its_batch(
    tmp_path, capsys, monkeypatch, with_inception
):
    """Training: the reference statistics (call 1), then the step-2 evaluation's fakes run out (call 2): that
    evaluation is skipped, step 4's is scored and kept as best.pt. ``python -m sngan.evaluate`` on the run
    then runs out too: one paragraph naming its batch sizes, exit code 2."""
    failing_extract(monkeypatch, {2})
    overrides = TINY + METRICS + ["train.steps=4", "train.monitor_every=null"]
    code, err = train(tmp_path / "run", overrides, capsys)
    assert code == 0, err
    assert "warning: the evaluation at step 2 ran out of memory (CUDA out of memory. Tried to allocate 9.00" in err
    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [4] and "tiny/fid" in lines[0]
    assert ckpt.load(tmp_path / "run" / "checkpoints" / "best.pt")["step"] == 4

    failing_extract(monkeypatch, {1})  # the statistics are cached now: the first pass is the fakes'
    rule = metrics_cfg(
        name="tiny", n_fake=32, n_real=150, is_split_size=16, is_splits=2, kid_subsets=10, kid_subset_size=32
    )
    inception = inception_cfg(dims=64, stats_dir=str(tmp_path / "stats"))  # what training cached
    cfg = evaluate_cfg(ckpt=str(tmp_path / "run"), metrics=rule, inception=inception, device="cpu", batch_size=7)
    with pytest.raises(SystemExit) as stop:
        run_or_exit(lambda: evaluate(cfg))
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert stop.value.code == 2 and len(errors) == 1 and "Traceback" not in err, err
    assert "Out of memory while scoring on cpu (CUDA out of memory. Tried to allocate 9.00 GiB." in errors[0]
    assert "batch_size=7" in errors[0] and "inception.batch_size=" in errors[0] and "Nothing was lost" in errors[0]


def test_the_free_memory_is_said_for_the_host():
    text = memory_free(torch.device("cpu"))
    assert text.endswith("GiB of host memory available now"), text
    free, total = (float(word) for word in text.split()[0:5:4])
    assert 0 < free <= total


def test_evaluation_out_of_memory_counts_as_out_of_memory():
    from sngan.utils.memory import is_out_of_memory

    assert is_out_of_memory(EvaluationOutOfMemory("anything"))


# ---------------------------------------------------------------- many compiled runs in one process


@pytest.mark.slow
def test_every_compiled_run_in_one_process_compiles_its_networks(tmp_path, capsys, failing_compile):
    """Spectral norm gives each freshly built D's layers classes of their own, so each run's D is a new
    compile for dynamo, which stops compiling a function after a few (silently: eager from then on). Each
    run starts from a fresh dynamo cache: the fifth run of a sweep compiles as many graphs as the first."""
    failing_compile.fail_at = -1  # never fails; counts the graphs it is given
    graphs = []
    for run in range(5):
        failing_compile.calls, before = 0, len(failing_compile.compiled)
        code, err = train(tmp_path / f"run{run}", STEPS + ["train.steps=1", "train.compile=default"], capsys)
        assert code == 0, err
        graphs.append(len(failing_compile.compiled) - before)
    assert graphs[0] >= 4 and graphs == graphs[:1] * 5, graphs  # G and D, each read and updated
