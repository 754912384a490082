"""Preemptible clusters and sweeps: the requeue signal (alone and forwarded by torchrun), the SLURM
script's settings, and a Hydra sweep through the submitit launcher (local executor)."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import TINY, compose_cfg, validated

from sngan.config import ConfigError
from sngan.utils import checkpoint as ckpt

ROOT = Path(__file__).resolve().parent.parent
LONG = TINY + ["train.steps=100000", "train.checkpoint_every=100000", "train.sample_every=100000",
               "train.eval_every=100000", "train.requeue_signal=USR1"]  # fmt: skip


def fake_scontrol(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """A PATH whose `scontrol` records its arguments, and a SLURM job id, as a SLURM job has."""
    bin_dir, log = tmp_path / "bin", tmp_path / "scontrol.log"
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text(f'#!/bin/sh\necho "$@" >> {log}\n')
    (bin_dir / "scontrol").chmod(0o755)
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}", "SLURM_JOB_ID": "4242", "OMP_NUM_THREADS": "1"}, log


def wait_for_training(proc: subprocess.Popen, run_dir: Path) -> None:
    deadline = time.monotonic() + 120
    while not list((run_dir / "tb").glob("events.out.tfevents.*")):
        assert proc.poll() is None and time.monotonic() < deadline, "training did not start"
        time.sleep(0.2)
    time.sleep(2)


@pytest.mark.slow
def test_requeue_signal_saves_a_checkpoint_requeues_the_job_and_exits_0(tmp_path):
    env, log = fake_scontrol(tmp_path)
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "sngan.train", *LONG, f"hydra.run.dir={run_dir}"]
    proc = subprocess.Popen(cmd, env=os.environ | env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wait_for_training(proc, run_dir)
    proc.send_signal(signal.SIGUSR1)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-2000:]
    assert "Received SIGUSR1" in err and "SLURM job 4242 was requeued" in err and "resume=auto" in err
    assert log.read_text().split() == ["requeue", "4242"]
    assert ckpt.load(ckpt.find_latest(run_dir))["step"] > 0


@pytest.mark.slow
def test_torchrun_forwards_the_requeue_signal_and_rank_0_requeues_once(tmp_path):
    env, log = fake_scontrol(tmp_path)
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
           "--signals-to-handle=SIGTERM,SIGINT,SIGUSR1", "-m", "sngan.train", *LONG,
           f"hydra.run.dir={run_dir}"]  # fmt: skip
    proc = subprocess.Popen(cmd, env=os.environ | env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wait_for_training(proc, run_dir)
    proc.send_signal(signal.SIGUSR1)  # to torchrun, as SLURM's --signal does
    _, err = proc.communicate(timeout=120)
    assert "SLURM job 4242 was requeued" in err and "/sngan/" not in err, err[-3000:]
    assert log.read_text().split() == ["requeue", "4242"]  # rank 0 only
    (only,) = ckpt.list_checkpoints(run_dir)
    state = ckpt.load(only)
    assert state["step"] > 0 and len(state["rng_ranks"]) == 2


def test_requeue_signal_must_be_one_a_scheduler_can_send():
    assert validated(compose_cfg(TINY + ["train.requeue_signal=SIGUSR2"])).train.requeue_signal == "SIGUSR2"
    for bad in ("KILL", "TERM", "NOPE"):
        with pytest.raises(ConfigError, match="train.requeue_signal"):
            validated(compose_cfg(TINY + [f"train.requeue_signal={bad}"]))


def test_the_slurm_script_asks_for_the_signal_the_trainer_handles_and_its_overrides_compose():
    script = (ROOT / "scripts" / "slurm" / "train.sbatch").read_text()
    seconds = re.search(r"#SBATCH --signal=USR1@(\d+)", script)
    assert seconds and "--requeue" in script and "--signals-to-handle=SIGTERM,SIGINT,SIGUSR1" in script
    shutdown = int(re.search(r"--shutdown-timeout=(\d+)", script).group(1))
    assert shutdown < int(seconds.group(1))  # the trainers get time to save before the limit
    command = script.split("-m sngan.train", 1)[1].replace("\\\n", " ").split('"$@"')[0]
    overrides = [arg for arg in shlex.split(command) if not arg.startswith("hydra.")]
    cfg = validated(compose_cfg(overrides))
    assert cfg.train.requeue_signal == "USR1" and cfg.resume == "auto" and cfg.train.checkpoint_minutes


@pytest.mark.slow
def test_submitit_local_sweep_over_n_dis_runs_one_job_per_setting(tmp_path):
    sweep = tmp_path / "sweep"
    cmd = [sys.executable, "-m", "sngan.train", "-m", "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10",
           *TINY, "train.steps=2", "train.n_dis=1,5", "optim.lr_d=2e-4", f"hydra.sweep.dir={sweep}"]  # fmt: skip
    out = subprocess.run(cmd, env=os.environ | {"OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Submitit 'local' sweep" in out.stdout + out.stderr
    for job, n_dis in ((0, 1), (1, 5)):
        state = ckpt.load(ckpt.find_latest(sweep / str(job)))
        assert state["step"] == 2 and state["config"]["train"]["n_dis"] == n_dis
        assert state["config"]["optim"]["lr_d"] == pytest.approx(2e-4)
    assert list((sweep / ".submitit").glob("*/*_log.err"))  # submitit's own job logs
