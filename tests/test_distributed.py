"""torchrun on the CPU: 2 processes, gloo backend, the real launcher and the real command line.

One 2-process run (with EMA and FID/IS/KID every 2 steps on random Inception weights) is shared by
the tests that read it; the signal test starts its own.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import SMALL_INCEPTION, TINY, evaluate_cfg, inception_cfg, run_training, validated
from test_commands import METRICS, TINY_METRICS

from sngan.config import ConfigError
from sngan.data import BatchSampler
from sngan.evaluate import evaluate
from sngan.metrics.features import generated_batches
from sngan.utils import checkpoint as ckpt
from sngan.utils.distributed import Dist, rank_seed, shard

pytestmark = pytest.mark.slow

# ADA's p moves at every step (it must agree over ranks too).
ADA = ["augment=ada", "augment.speed_kimg=0.05", "augment.interval=1"]
DDP = TINY + METRICS + ADA + ["train.steps=4", "train.ema_decay=0.5", "inception.batch_size=8", "device=cpu"]


def torchrun(
    args: list[str], env: dict[str, str], nproc: int = 2, small_inception: bool = False, **kwargs
) -> subprocess.CompletedProcess:
    """``torchrun --nproc-per-node=<nproc> --standalone -m sngan.train <args>``, or through
    tests/small_inception.py."""
    launch = SMALL_INCEPTION[1:] if small_inception else ["-m"]
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={nproc}", "--standalone",
           *launch, "sngan.train", *args]  # fmt: skip
    return subprocess.run(cmd, env=os.environ | env, capture_output=True, text=True, timeout=300, **kwargs)


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory, inception_home):
    """Four steps on 2 ranks with the run folder named by Hydra (no hydra.run.dir), as users launch it (through
    tests/small_inception.py: its scores are compared only with this process's, at the same 75x75)."""
    base = tmp_path_factory.mktemp("ddp")
    env = {"TORCH_HOME": str(inception_home), "SNGAN_STATS_DIR": str(base / "stats"),
           "SNGAN_OUTPUTS": str(base / "outputs"), "OMP_NUM_THREADS": "1"}  # fmt: skip
    out = torchrun(DDP, env, small_inception=True)
    assert out.returncode == 0, out.stderr[-3000:]
    folders = [p for p in (base / "outputs").glob("*/*") if p.is_dir()]
    return folders, env, out


def test_all_ranks_share_one_run_folder_and_only_rank_0_writes(ddp_run):
    folders, _, out = ddp_run
    assert len(folders) == 1, folders  # not one folder per rank's time stamp
    run_dir = folders[0]
    assert (run_dir / ".hydra" / "config.yaml").is_file() and (run_dir / "config.yaml").is_file()
    assert len(list((run_dir / "tb").glob("events.out.tfevents.*"))) == 1
    assert json.loads((run_dir / "provenance.json").read_text())["world_size"] == 2
    assert out.stderr.count("Run folder:") == 1  # rank 0 reports; the others keep quiet
    last = [line for line in out.stderr.splitlines() if line.startswith("step 4/4 ")]  # piped: plain lines
    assert len(last) == 1, out.stderr[-3000:]  # one progress line for the last step, not one per rank
    assert (run_dir / "train.log").read_text().count("step 4/4 ") == 1


def test_replicas_stay_identical_and_every_ranks_rng_is_saved(ddp_run):
    run_dir = ddp_run[0][0]
    for path in ckpt.list_checkpoints(run_dir):
        state = ckpt.load(path)
        first, second = state["replicas"]
        # Weights, Adam-updated parameters and the spectral-norm u/v buffers of D, G, EMA: bit-identical.
        assert first == second and set(first) == {"generator", "discriminator", "ema", "augment"}
        assert len(state["rng_ranks"]) == 2
        assert not torch.equal(state["rng_ranks"][0]["torch"], state["rng_ranks"][1]["torch"])  # own noise
        assert torch.equal(state["rng"]["torch"], state["rng_ranks"][0]["torch"])


def test_data_order_does_not_depend_on_the_number_of_ranks(ddp_run, tmp_path, with_inception):
    run_dir = ddp_run[0][0]
    run_training(tmp_path, DDP)
    two, one = ckpt.load(run_dir / "checkpoints" / "ckpt_00000004.pt"), ckpt.load(ckpt.find_latest(tmp_path))
    assert torch.equal(two["sampler"]["perm"], one["sampler"]["perm"])
    assert two["sampler"]["pos"] == one["sampler"]["pos"]
    assert torch.equal(two["sampler"]["generator"], one["sampler"]["generator"])


def test_fid_from_features_gathered_over_ranks_equals_the_one_process_number(ddp_run, with_inception):
    run_dir, env = ddp_run[0][0], ddp_run[1]
    logged = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])
    assert logged["step"] == 4
    inception = inception_cfg(dims=64, stats_dir=env["SNGAN_STATS_DIR"], batch_size=8)
    path = run_dir / "checkpoints" / "ckpt_00000004.pt"
    doc, _ = evaluate(evaluate_cfg(ckpt=str(path), metrics=TINY_METRICS, inception=inception, device="cpu"))
    rows = {row["network"]: row for row in doc["results"]}
    for prefix, network in (("", "g"), ("ema/", "ema")):
        for key in ("fid", "is_mean", "kid_mean"):
            assert rows[network][key] == pytest.approx(logged[f"{prefix}tiny/{key}"], rel=1e-6, abs=1e-9), key


def test_a_two_process_run_resumes_as_one_process_and_back_as_two(ddp_run):
    run_dir, env = ddp_run[0][0], ddp_run[1]
    # What is scored does not define a run: these resumes score nothing, so no Inception is loaded or run.
    unscored = [arg for arg in DDP if not arg.startswith(("metrics", "inception"))] + ["metrics=none", "resume=auto"]
    run_training(run_dir, unscored + ["train.steps=6"])
    state = ckpt.load(ckpt.find_latest(run_dir))
    assert state["step"] == 6 and state["rng_ranks"] is None
    out = torchrun(unscored + ["train.steps=8", f"hydra.run.dir={run_dir}"], env)
    assert out.returncode == 0, out.stderr[-3000:]
    state = ckpt.load(ckpt.find_latest(run_dir))
    assert state["step"] == 8 and len(state["rng_ranks"]) == 2  # rank 1 joined with a stream of its own
    assert state["replicas"][0] == state["replicas"][1]


def test_sigterm_to_one_rank_stops_all_ranks_at_one_step_with_one_checkpoint(tmp_path):
    run_dir = tmp_path / "run"
    args = TINY + ["train.steps=100000", "train.checkpoint_every=100000", "train.sample_every=100000",
                   "train.eval_every=100000", f"hydra.run.dir={run_dir}"]  # fmt: skip
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2", "--standalone",
           "-m", "sngan.train", *args]  # fmt: skip
    proc = subprocess.Popen(cmd, env=os.environ | {"OMP_NUM_THREADS": "1"}, stderr=subprocess.PIPE, text=True,
                            stdout=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 120
    while not list((run_dir / "tb").glob("events.out.tfevents.*")):
        assert proc.poll() is None and time.monotonic() < deadline, "training did not start"
        time.sleep(0.2)
    time.sleep(2)
    rank1 = [pid for pid in worker_pids(proc.pid) if b"RANK=1\0" in Path(f"/proc/{pid}/environ").read_bytes()]
    assert len(rank1) == 1
    os.kill(rank1[0], signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0 and "exitcode  : 143" in err  # torchrun reports its workers' exit 143
    assert err.count("stopped by SIGTERM at step") == 1 and "/sngan/" not in err, err[-3000:]  # no traceback of ours
    (only,) = ckpt.list_checkpoints(run_dir)
    state = ckpt.load(only)
    assert f"at step {state['step']} " in err and state["step"] > 0
    assert len(state["rng_ranks"]) == 2 and state["replicas"][0] == state["replicas"][1]


def worker_pids(parent: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(parent)], capture_output=True, text=True)
    return [int(pid) for pid in out.stdout.split()]


def with_fault(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    """torchrun (2 processes) of tests/ddp_faults.py: the command line with the fault env["FAULT"]."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2", "--standalone",
           str(Path(__file__).with_name("ddp_faults.py")), *args]  # fmt: skip
    return subprocess.run(cmd, env=os.environ | {"OMP_NUM_THREADS": "1"} | env, capture_output=True, text=True,
                          timeout=300)  # fmt: skip


def test_a_compile_that_fails_under_torchrun_falls_back_to_eager_on_every_rank(tmp_path):
    """compile=auto under torchrun picks compile=default on a DDP-wrapped, spectrally normalized D, where
    torch.compile has open failures (pytorch#113415): the step runs again eagerly on both ranks, one note
    (rank 0), and the run ends with identical replicas."""
    args = TINY + ["train.steps=4", "train.compile=auto", "device=cpu", f"hydra.run.dir={tmp_path / 'run'}"]
    out = with_fault(args, {"FAULT": "compile"})
    assert out.returncode == 0, out.stderr[-3000:]
    notes = [line for line in out.stderr.splitlines() if "train.compile=auto chose compile=default" in line]
    assert len(notes) == 1 and "Triton: no usable C compiler" in notes[0], out.stderr[-3000:]
    state = ckpt.load(ckpt.find_latest(tmp_path / "run"))
    assert state["step"] == 4 and state["replicas"] and state["replicas"][0] == state["replicas"][1]


@pytest.mark.parametrize(
    "requested,fault", [("auto", "compile_rank1"), ("auto", "compile_rank1_d"), ("default", "compile_rank1")]
)
def test_a_compile_that_fails_on_one_rank_only_is_agreed_by_every_rank(tmp_path, requested, fault):
    """Rank 1's compile fails (every graph, or D's only: inside the D update, after DDP's collectives began,
    but for the trial before the first step), rank 0's works: under compile=auto both ranks go on eagerly
    (one note naming rank 1, identical replicas, provenance eager); a compile asked for by name stops both
    ranks with the error, neither waiting for the other."""
    args = TINY + ["train.steps=4", f"train.compile={requested}", "device=cpu", f"hydra.run.dir={tmp_path / 'run'}"]
    out = with_fault(args, {"FAULT": fault, "SNGAN_DIST_TIMEOUT_MIN": "1"})
    if requested == "auto":
        assert out.returncode == 0, out.stderr[-3000:]
        notes = [line for line in out.stderr.splitlines() if "train.compile=auto chose compile=default" in line]
        assert len(notes) == 1 and "rank 1: " in notes[0] and "Triton: no usable C compiler" in notes[0], notes
        assert "rank 0:" not in notes[0] and "on every rank" in notes[0]
        state = ckpt.load(ckpt.find_latest(tmp_path / "run"))
        assert state["step"] == 4 and state["replicas"][0] == state["replicas"][1]
        assert state["provenance"]["speed"]["compile"] == "none"
    else:
        assert out.returncode != 0 and "Timeout" not in out.stderr, out.stderr[-3000:]
        stops = [line for line in out.stderr.splitlines() if "error: train.compile=default failed in its trial" in line]
        assert stops and all("(rank 1: " in line and "Triton" in line for line in stops), out.stderr[-3000:]


def test_an_evaluation_out_of_memory_on_one_rank_is_skipped_by_every_rank(tmp_path, inception_home):
    """Rank 1 alone runs out in the step-2 evaluation: no rank waits for it; all skip it and train on."""
    env = {"TORCH_HOME": str(inception_home), "SNGAN_STATS_DIR": str(tmp_path / "stats"), "FAULT": "oom"}
    out = with_fault(DDP + [f"hydra.run.dir={tmp_path / 'run'}"], env)
    assert out.returncode == 0, out.stderr[-3000:]
    warnings = [line for line in out.stderr.splitlines() if line.startswith("warning: the evaluation at step 2")]
    assert len(warnings) == 1 and "(rank 1: CUDA out of memory. Tried to allocate 7.00 GiB." in warnings[0], out.stderr
    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [4] and "ema/tiny/fid" in lines[0]


def test_ada_keeps_one_p_on_every_rank(ddp_run):
    """The heuristic's sums are added over ranks before each adjustment: both ranks move p alike."""
    state = ckpt.load(ddp_run[0][0] / "checkpoints" / "ckpt_00000004.pt")
    assert state["augment"]["p"].item() > 0 and state["replicas"][0]["augment"] == state["replicas"][1]["augment"]


def test_a_failure_on_rank_0_before_training_stops_every_rank_with_its_message(tmp_path):
    args = TINY + METRICS + ["train.steps=2", f"inception.weights={tmp_path}/none.pth", f"hydra.run.dir={tmp_path}/run"]
    out = torchrun(args, {"OMP_NUM_THREADS": "1", "TORCH_HOME": str(tmp_path / "empty")})
    assert out.returncode != 0
    assert out.stderr.count("none.pth") >= 1 and "Another rank failed while preparing the run" in out.stderr
    assert "/sngan/" not in out.stderr  # one-paragraph errors, no traceback of ours
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_a_sweep_under_torchrun_is_refused(tmp_path):
    out = torchrun(["-m", *TINY, "train.n_dis=1,2", f"hydra.sweep.dir={tmp_path}"], {"OMP_NUM_THREADS": "1"})
    assert out.returncode != 0 and "cannot run a Hydra sweep" in out.stderr


def test_global_batches_must_split_evenly_and_sync_bn_needs_cuda():
    from sngan.cli.settings import check_world

    cfg = validated_cfg(["train.batch_size_d=9"])
    with pytest.raises(ConfigError, match=r"train.batch_size_d=9 is the global batch .* 2 processes"):
        check_world(cfg, Dist(0, 2), torch.device("cpu"))
    check_world(cfg, Dist(0, 1), torch.device("cpu"))  # one process: any batch
    with pytest.raises(ConfigError, match="at least 2 per process"):
        check_world(validated_cfg(["train.batch_size_d=8"]), Dist(0, 8), torch.device("cpu"))
    with pytest.raises(ConfigError, match="SyncBatchNorm runs only on CUDA"):
        check_world(validated_cfg(["train.sync_bn=true"]), Dist(1, 2), torch.device("cpu"))


def validated_cfg(overrides: list[str]):
    from helpers import compose_cfg

    return validated(compose_cfg(TINY + overrides))


def test_ranks_take_even_contiguous_shares_of_batches_and_generated_images():
    assert [shard(10, r, 3) for r in range(3)] == [(0, 3), (3, 6), (6, 10)]
    images = torch.randint(0, 255, (50, 3, 4, 4), dtype=torch.uint8)
    whole = BatchSampler(images, seed=1, hflip=True)
    halves = [BatchSampler(images, seed=1, hflip=True, rank=r, world=2) for r in range(2)]
    for _ in range(7):  # across an epoch boundary
        assert torch.equal(
            whole.next(8, torch.device("cpu"))[0], torch.cat([h.next(8, torch.device("cpu"))[0] for h in halves])
        )

    class Sampler:
        def __init__(self):
            self.rng = torch.Generator().manual_seed(0)

        def __call__(self, n):
            return torch.rand(n, 3, 2, 2, generator=self.rng) * 2 - 1

        def skip(self, n):
            self(n)

    one = torch.cat(list(generated_batches(Sampler(), 23, 5)))
    parts = [torch.cat(list(generated_batches(Sampler(), 23, 5, rank, 2))) for rank in range(2)]
    assert torch.equal(one, torch.cat(parts))
    with pytest.raises(TypeError, match="needs a Sampler"):  # a later share of a function that cannot skip
        list(generated_batches(lambda n: torch.zeros(n, 3, 2, 2), 23, 5, 1, 2))
    assert rank_seed(3, 0) == 3 and len({rank_seed(3, r) for r in range(4)} | {rank_seed(3, 1, 10)}) == 5
    assert rank_seed(-1, 1) != rank_seed(1, 1)  # negative seeds too


def test_a_rank_with_an_empty_share_of_the_sample_set_contributes_empty_arrays():
    from sngan.metrics.features import extract
    from sngan.metrics.inception import LOGITS

    class Extractor(torch.nn.Module):
        dims, with_logits, name, resize, input_size = 64, True, "inception", "legacy", 299

        def place(self, device):
            return self

        def forward(self, x, logits):
            return torch.zeros(len(x), 64), torch.zeros(len(x), LOGITS)

    class Sampler:
        def __call__(self, n):
            return torch.zeros(n, 3, 4, 4)

        def skip(self, n):
            pass

    # One batch of 8 for two ranks: rank 0's share is empty, rank 1 has it all.
    shares = [extract(Extractor(), generated_batches(Sampler(), 8, 8, rank, 2), torch.device("cpu")) for rank in (0, 1)]
    assert shares[0][0].shape == (0, 64) and shares[0][1].shape == (0, LOGITS)
    assert shares[1][0].shape == (8, 64) and np.concatenate([f for f, _ in shares]).shape == (8, 64)


def test_d_gradients_are_all_reduced_in_the_d_update_only(tmp_path):
    """The loop's wiring: the D update goes through D's DistributedDataParallel wrapper, the G update reads
    the plain D module, so D's all-reduce (counted by a communication hook) runs once per D update only."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from sngan.models import build_models
    from sngan.training.losses import LOSSES
    from sngan.training.step import Recipe, d_step, g_step

    dist.init_process_group("gloo", init_method=f"file://{tmp_path}/store", rank=0, world_size=1)
    try:
        torch.manual_seed(0)
        g, d = build_models("cnn32", 16, 0.125, True)
        ddp_g, ddp_d = DistributedDataParallel(g), DistributedDataParallel(d)
        calls = {"d": 0, "g": 0}

        def counting(name):
            def hook(state, bucket):
                calls[name] += 1
                fut = torch.futures.Future()
                fut.set_result(bucket.buffer())
                return fut

            return hook

        ddp_d.register_comm_hook(None, counting("d"))
        ddp_g.register_comm_hook(None, counting("g"))
        opt_g, opt_d = torch.optim.Adam(g.parameters()), torch.optim.Adam(d.parameters())
        loss, real = LOSSES.get("hinge"), torch.rand(4, 3, 32, 32) * 2 - 1
        d_step(g, ddp_d, opt_d, real, None, Recipe(loss, 16))
        after_d = dict(calls)
        g_step(ddp_g, d, opt_g, 4, torch.device("cpu"), Recipe(loss, 16))
        assert after_d["d"] > 0 and after_d["g"] == 0
        assert calls["d"] == after_d["d"] and calls["g"] > 0
    finally:
        dist.destroy_process_group()
