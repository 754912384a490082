"""The speed switches: what ``auto`` resolves to and how requests fall back, spectral norm in fp32 under
autocast, the device-side skip of non-finite updates, the learning rate as a tensor, and compiled
training agreeing with eager training (CPU). tests/test_gpu.py checks the CUDA-only parts."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys

import pytest
import torch
from helpers import TINY, compose_cfg, run_training
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from sngan.config import ConfigError
from sngan.models.layers import apply_spectral_norm
from sngan.training import speed as speed_module
from sngan.training.optim import adam, set_rate
from sngan.training.speed import Speed, resolve
from sngan.training.step import _update_if_finite
from sngan.utils import checkpoint as ckpt

CPU = torch.device("cpu")
GIB = 2**30


def test_auto_on_the_cpu_is_fp32_eager_channels_last_with_no_notes():
    assert resolve(CPU) == (Speed("fp32", False, "none", True, False), [])
    assert not resolve(torch.device("mps"))[0].channels_last  # only where it was measured to help


def test_requests_the_cpu_cannot_honour_fall_back_with_a_note_each():
    speed, notes = resolve(CPU, precision="bf16", tf32=True, compile="max", channels_last=True, data_on="device")
    assert speed == Speed("bf16", False, "default", True, False)  # CPU autocast runs bf16; no TF32, no graphs
    assert len(notes) == 2
    assert "train.tf32=true needs an Ampere or newer NVIDIA GPU" in notes[0]
    assert "train.compile=max captures CUDA graphs" in notes[1] and "compile=default" in notes[1]


def fake_gpu(monkeypatch, ampere: bool, free_gib: float = 80.0):
    monkeypatch.setattr(speed_module, "_ampere", lambda device: ampere)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (int(free_gib * GIB), int(free_gib * GIB)))
    return torch.device("cuda", 0)


def test_auto_on_one_ampere_gpu_is_tf32_cuda_graphs_channels_last_and_data_on_the_gpu(monkeypatch):
    cuda = fake_gpu(monkeypatch, ampere=True)
    assert resolve(cuda, data_bytes=150 * 2**20) == (Speed("fp32", True, "max", True, True), [])
    assert resolve(cuda, precision="bf16")[0].precision == "bf16"  # opt-in
    # torchrun: compile=default (CUDA graphs are not used with DDP); an explicit max says so
    assert resolve(cuda, data_bytes=1, distributed=True)[0].compile == "default"
    speed, notes = resolve(cuda, compile="max", distributed=True)
    assert speed.compile == "default" and "not used under torchrun" in notes[0]
    speed, notes = resolve(cuda, distributed=True, sync_bn=True)  # SyncBatchNorm: eager
    assert speed.compile == "none" and "train.sync_bn=true" in notes[0]


def test_data_too_large_for_the_gpu_stays_in_host_memory(monkeypatch):
    cuda = fake_gpu(monkeypatch, ampere=True, free_gib=1.0)
    assert resolve(cuda, data_bytes=2 * GIB) == (Speed("fp32", True, "max", True, False), [])  # auto: silently
    speed, notes = resolve(cuda, data_on="device", data_bytes=2 * GIB)
    assert not speed.data_on_device and "train.data_on=host" in notes[0]
    assert not resolve(cuda, data_on="host", data_bytes=1)[0].data_on_device


def test_a_gpu_older_than_ampere_trains_fp32_without_tf32(monkeypatch):
    cuda = fake_gpu(monkeypatch, ampere=False)
    assert resolve(cuda)[0] == Speed("fp32", False, "max", True, True)
    speed, notes = resolve(cuda, precision="bf16")
    assert speed.precision == "fp32" and "train.precision=bf16 needs an Ampere" in notes[0]


def test_compile_on_a_device_torch_cannot_compile_for_trains_eagerly():
    speed, notes = resolve(torch.device("mps"), compile="default")
    assert speed.compile == "none" and "not supported on mps" in notes[0]


def test_compile_without_a_compiler_trains_eagerly_and_says_how_to_fix_it(monkeypatch):
    monkeypatch.delenv("CC", raising=False)
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setattr(speed_module.shutil, "which", lambda name: None)
    speed, notes = resolve(CPU, compile="default")
    assert speed.compile == "none" and "needs a C++ compiler" in notes[0] and "install g++" in notes[0]
    monkeypatch.setenv("CXX", "/opt/c++")
    assert resolve(CPU, compile="default")[0].compile == "default"
    cuda = fake_gpu(monkeypatch, ampere=True)
    assert "needs a C compiler" in resolve(cuda)[1][0]  # Triton's launcher: CC
    monkeypatch.setenv("CC", "/opt/cc")
    assert resolve(cuda)[0].compile == "max"


@pytest.mark.parametrize("override", ["train.precision=fp16", "train.compile=fast", "train.data_on=gpu"])
def test_unknown_speed_settings_are_refused_listing_the_choices(override):
    from sngan.cli.settings import check_train

    with pytest.raises(ConfigError, match=rf"{override.split('=')[0]}=.*choose one of: auto"):
        check_train(compose_cfg(TINY + [override]))


KEPT = """
import torch
from sngan.training.speed import KEEP_FREED_BYTES, keep_freed_memory
keep_freed_memory()  # what train, evaluate, sample and fid_stats do first
keep_freed_memory()  # a second time (a multirun's next job): nothing more to do or say
def resident(): return int(open("/proc/self/statm").read().split()[1]) * 4096
def released(nbytes):
    x = torch.ones(nbytes // 4)
    held = resident()
    del x
    return (held - resident()) / 2**20
print(released(64 << 20), released(2 * KEEP_FREED_BYTES) / (2 * KEEP_FREED_BYTES >> 20))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc settings")
@pytest.mark.parametrize("setting,returned", [(None, False), ("kept", False), ("default", True), ("off", True)])
def test_commands_keep_large_freed_blocks_for_reuse_unless_told_not_to(setting, returned):
    env = {k: v for k, v in os.environ.items() if k != "SNGAN_MALLOC"}
    if setting is not None:
        env["SNGAN_MALLOC"] = setting
    out = subprocess.run([sys.executable, "-c", KEPT], env=env, capture_output=True, text=True, check=True)
    released_mib, share_of_a_huge_block = map(float, out.stdout.split())
    assert (released_mib > 60) == returned, released_mib  # glibc's default unmaps a freed 64 MiB block at once
    assert share_of_a_huge_block > 0.95  # blocks past KEEP_FREED_BYTES go back to the OS either way
    unknown = setting == "off"
    assert out.stderr.count("warning: SNGAN_MALLOC='off' is not one of 'kept', 'default'") == unknown, out.stderr


def test_spectral_norm_iterates_and_divides_in_fp32_under_autocast(monkeypatch):
    """CPU autocast leaves torch.mv in fp32 (CUDA's does not), so the check is on the autocast state seen
    by every matrix-vector product of the parametrization; the stock one runs them under autocast."""
    seen: list[bool] = []
    real_mv = torch.mv
    monkeypatch.setattr(torch, "mv", lambda *a, **k: seen.append(torch.is_autocast_enabled("cpu")) or real_mv(*a, **k))
    torch.manual_seed(0)
    ours = apply_spectral_norm(nn.Sequential(nn.Conv2d(3, 4, 3)))[0]
    torch.manual_seed(0)
    stock = spectral_norm(nn.Conv2d(3, 4, 3))
    assert set(ours.state_dict()) == set(stock.state_dict())  # checkpoints keep their keys
    x = torch.randn(2, 3, 8, 8)
    for layer, expected in ((ours, False), (stock, True)):
        seen.clear()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = layer(x)
        assert seen and all(state is expected for state in seen)
        assert out.dtype == torch.bfloat16  # the convolution itself runs in bf16
    assert ours.parametrizations.weight[0]._u.dtype == torch.float32


def test_a_nonfinite_update_is_skipped_on_the_device_leaving_weights_and_moments_alone():
    torch.manual_seed(0)
    net = nn.Linear(3, 2)
    opt = adam(list(net.parameters()), 1e-2, (0.0, 0.9), CPU)
    assert opt.defaults["fused"] and isinstance(opt.param_groups[0]["lr"], torch.Tensor)
    assert bool(_update_if_finite(opt, net(torch.ones(1, 3)).sum()))
    weights, moments = copy.deepcopy(net.state_dict()), copy.deepcopy(opt.state_dict()["state"])
    for bad in (float("nan"), float("inf")):
        assert not bool(_update_if_finite(opt, net(torch.ones(1, 3)).sum() * bad))
        assert all(torch.equal(v, weights[k]) for k, v in net.state_dict().items())
        for index, state in opt.state_dict()["state"].items():
            assert all(torch.equal(v, moments[index][k]) for k, v in state.items())  # step count too
    assert bool(_update_if_finite(opt, net(torch.ones(1, 3)).sum()))  # and it goes on
    assert not torch.equal(net.weight, weights["weight"])


def test_optimizer_state_of_another_implementation_or_layout_loads_into_fused_adam():
    """A checkpoint from before fused Adam (foreach, float rate) resumes, and moments saved in one memory
    format follow their parameters' format (a channels_last GPU run resumed on the CPU, or the reverse)."""
    from sngan.training.optim import load_optimizer

    torch.manual_seed(0)
    old_net = nn.Conv2d(3, 4, 3)
    old = torch.optim.Adam(old_net.parameters(), lr=1e-2, betas=(0.0, 0.9))  # foreach, contiguous
    old_net(torch.randn(2, 3, 8, 8)).sum().backward()
    old.step()
    for layout in (torch.contiguous_format, torch.channels_last):
        net = copy.deepcopy(old_net).to(memory_format=layout)
        opt = adam(list(net.parameters()), 1e-2, (0.0, 0.9), CPU)
        load_optimizer(opt, copy.deepcopy(old.state_dict()))
        assert opt.param_groups[0]["fused"] and opt.state[net.weight]["exp_avg"].stride() == net.weight.stride()
        set_rate(opt, 1e-2)
        reference = copy.deepcopy(old_net)
        ref_opt = torch.optim.Adam(reference.parameters(), lr=1e-2, betas=(0.0, 0.9))
        ref_opt.load_state_dict(copy.deepcopy(old.state_dict()))
        x = torch.randn(2, 3, 8, 8)
        assert bool(_update_if_finite(opt, net(x).sum()))
        reference(x).sum().backward()
        ref_opt.step()
        assert torch.allclose(net.weight, reference.weight, atol=1e-6)  # the same update, element by element


def test_the_learning_rate_is_one_tensor_updated_in_place_to_the_schedule(tmp_path):
    from helpers import validated

    from sngan.cli.build import build_run, iteration_of
    from sngan.data import make_synthetic
    from sngan.training.iteration import set_rates

    cfg = validated(compose_cfg(TINY + ["train.steps=10", "optim.lr_d=1e-3"]))
    run = build_run(cfg, make_synthetic(50, 32), CPU)
    rate = run.opt_d.param_groups[0]["lr"]
    for step in (0, 3, 9):
        run.step = step
        set_rates(run, iteration_of(cfg))
        assert run.opt_d.param_groups[0]["lr"] is rate  # a captured step would read this very tensor
        assert float(rate) == pytest.approx(1e-3 * (1 - step / 10), rel=1e-6)
    # a checkpoint written before rates were tensors (or on another device) gets a tensor again
    run.opt_d.param_groups[0]["lr"] = 0.5
    set_rate(run.opt_d, 0.25)
    assert isinstance(run.opt_d.param_groups[0]["lr"], torch.Tensor) and float(run.opt_d.param_groups[0]["lr"]) == 0.25


def test_bf16_training_on_the_cpu_runs_records_its_settings_and_notes_fallbacks(tmp_path, capsys):
    run_training(tmp_path, TINY + ["train.steps=3", "train.precision=bf16", "train.tf32=true"])
    assert "note: train.tf32=true needs an Ampere" in capsys.readouterr().err
    provenance = json.loads((tmp_path / "provenance.json").read_text())
    assert provenance["speed"] == Speed("bf16", False, "none", True, False).as_dict()
    state = ckpt.load(ckpt.find_latest(tmp_path))
    assert state["step"] == 3
    for net in ("generator", "discriminator"):  # fp32 master weights, all finite
        floats = [v for v in state[net].values() if v.is_floating_point()]
        assert all(v.dtype == torch.float32 and torch.isfinite(v).all() for v in floats)


def biases_before_batchnorm(net: nn.Module) -> set[str]:
    """State-dict keys of biases that a BatchNorm cancels: their gradient is zero in exact arithmetic."""
    modules = list(net.named_modules())
    return {
        f"{name}.bias"
        for (name, module), (_, following) in zip(modules, modules[1:])
        if isinstance(module, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d))
        and isinstance(following, nn.modules.batchnorm._BatchNorm)
    }


def losses_and_weights(run_dir, cancelled):
    acc = EventAccumulator(str(run_dir / "tb"))
    acc.Reload()
    losses = {tag: torch.tensor([e.value for e in acc.Scalars(tag)]) for tag in ("loss/d", "loss/g")}
    state = ckpt.load(ckpt.find_latest(run_dir))
    weights = {
        net: torch.cat([v.flatten() for k, v in state[net].items() if v.is_floating_point() and k not in cancelled])
        for net in ("generator", "discriminator")
    }
    return losses, weights


@pytest.mark.slow
def test_compiled_training_agrees_with_eager_over_20_steps_of_a_changing_learning_rate(tmp_path):
    """torch.compile (inductor) against eager: 20 steps, the linear decay changing the rate at each.
    Losses agree to 1e-4 of their scale and each network's weights to 1e-4 relative, leaving out the
    biases in front of BatchNorm: their gradient is zero in exact arithmetic, so it is rounding noise,
    which Adam turns into full steps of the learning rate, differently in each mode.

    The scale of both hinge losses is the discriminator's margin (the D loss starts at 2); the G loss
    is a mean of D outputs near zero, so its own size is no scale. The rate, 2e-5, keeps the GAN's
    dynamics from amplifying rounding differences past 1e-4 in 20 steps (the weights agree to ~1e-6):
    on an AVX2 CPU (not on AVX-512) both modes start equal to 1e-7 but, at a rate of 2e-4, their
    losses drift 1e-3 apart by step 13, and at 5e-5 their D weights 2e-4 apart: chaos, not another
    computation."""
    from helpers import validated

    from sngan.cli.build import build_run
    from sngan.data import make_synthetic

    settings = TINY + ["train.steps=20", "optim.lr_g=2e-5", "optim.lr_d=2e-5", "train.checkpoint_every=20",
                       "train.eval_every=100", "train.sample_every=100", "train.monitor_every=null"]  # fmt: skip
    initial = build_run(validated(compose_cfg(settings)), make_synthetic(50, 32), CPU)
    cancelled = biases_before_batchnorm(initial.generator)
    assert len(cancelled) == 4  # the dense layer's and three transposed convolutions'
    results = {}
    for mode in ("none", "default"):
        run_training(tmp_path / mode, settings + [f"train.compile={mode}"])
        results[mode] = losses_and_weights(tmp_path / mode, cancelled)
    (eager_losses, eager_weights), (compiled_losses, compiled_weights) = results["none"], results["default"]
    scale = eager_losses["loss/d"].abs().max()
    assert scale > 1.5  # the hinge margin
    for tag, eager in eager_losses.items():
        assert len(eager) == 20
        assert (eager - compiled_losses[tag]).abs().max() <= 1e-4 * scale, (tag, eager - compiled_losses[tag])
    for net, eager in eager_weights.items():
        gap = (eager - compiled_weights[net]).norm() / eager.norm()
        assert gap <= 1e-4, (net, gap)
    start = torch.cat([v.flatten() for k, v in initial.generator.state_dict().items()
                       if v.is_floating_point() and k not in cancelled])  # fmt: skip
    moved = (eager_weights["generator"] - start).norm() / start.norm()
    assert moved > 1e-3, moved  # and training moved them


def test_compile_max_says_once_when_torch_compile_ran_updates_without_cuda_graphs(monkeypatch, capsys):
    """reduce-overhead falls back to plain compiled code silently; after the first step the loop says so."""
    counter = [3]  # inductor's skip counter before the run
    monkeypatch.setattr(speed_module, "cudagraph_skips", lambda: counter[0])
    check = speed_module.GraphCheck(Speed(compile="max"))
    counter[0] = 5  # two fell back while the first step compiled
    check.after_step()
    check.after_step()  # nothing new: no note
    counter[0] = 6  # one more when replayed later
    check.after_step()
    err = capsys.readouterr().err
    assert err.count("torch.compile ran 2 more update graph(s) without CUDA graphs") == 1
    assert err.count("torch.compile ran 1 more update graph(s)") == 1 and err.count("note:") == 2
    monkeypatch.setattr(speed_module, "cudagraph_skips", lambda: pytest.fail("read without compile=max"))
    speed_module.GraphCheck(Speed(compile="default")).after_step()
    assert capsys.readouterr().err == ""
    monkeypatch.undo()
    assert speed_module.cudagraph_skips() >= 0  # inductor's counter exists in this torch


@pytest.mark.slow
def test_the_training_benchmark_writes_one_json_line_per_measurement(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "scripts" / "benchmark.py"
    out = tmp_path / "bench.jsonl"
    args = [sys.executable, str(script), "train", "--device", "cpu", "--models", "cnn32", "--width", "0.0625",
            "--settings", "fp32,bf16", "--steps", "2", "--warmup", "1", "--images", "300", "--out", str(out),
            "--command", f"{sys.executable} -c pass", "--command-iters", "10"]  # fmt: skip
    done = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["bench"], r.get("setting")) for r in lines] == [("train", "fp32"), ("train", "bf16"), ("command", None)]
    for record in lines[:2]:
        assert record["g_iters_per_s"] > 0 and record["ms_per_d_update"] > 0 and record["ms_per_g_update"] > 0
        assert (record["batch_d"], record["batch_g"], record["n_dis"]) == (64, 128, 5)
        assert record["cudagraph_skips"] == 0  # eager: nothing compiled, nothing skipped
    assert lines[1]["precision"] == "bf16" and lines[2]["returncode"] == 0 and lines[2]["g_iters_per_s"] > 0
    bad = subprocess.run(args[:2] + ["train", "--settings", "fp8"], capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0 and "unknown setting" in bad.stderr


@pytest.mark.slow
def test_the_fid_benchmark_gives_the_time_of_the_four_numbers_beside_fids(tmp_path):
    """scripts/benchmark.py fid offline (seeded random Inception weights): FID's parts and what precision,
    recall, density and coverage add, then N x N of them alone with the memory of their blocks."""
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "scripts" / "benchmark.py"
    out = tmp_path / "fid.jsonl"
    args = [sys.executable, str(script), "fid", "--device", "cpu", "--model", "cnn32", "--width", "0.0625",
            "--n", "16", "--batch", "8", "--repeats", "1", "--offline", "--prdc-n", "64",
            "--out", str(out)]  # fmt: skip
    env = os.environ | {"TORCH_HOME": str(tmp_path / "no_weights"), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(args, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    timed, alone = (json.loads(line) for line in out.read_text().splitlines())
    assert timed["bench"] == "fid" and timed["weights"] == "random" and timed["n"] == 16
    assert timed["seconds_total"] >= timed["seconds_generate_and_features"] > 0 and timed["seconds_prdc"] > 0
    assert timed["prdc_features"] == "2000 real vs 16 generated"
    assert alone["prdc_n"] == 64 and alone["seconds_prdc_n_x_n"] > 0
    assert alone["prdc_blocks_mib"] == round(3 * 64 * 64 * 4 / 2**20, 1)  # one block holds all 64 x 64


@pytest.mark.slow
def test_the_step_profile_says_the_host_time_and_the_waits_and_writes_a_trace(tmp_path):
    """scripts/profile_step.py on the CPU: the finite flags are read once a step at least (a wait on a GPU)."""
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "scripts" / "profile_step.py"
    out, trace = tmp_path / "profile.jsonl", tmp_path / "trace.json"
    args = [sys.executable, str(script), "--device", "cpu", "--model", "cnn32", "--width", "0.0625",
            "--setting", "fp32", "--steps", "2", "--warmup", "1", "--images", "300",
            "--out", str(out), "--trace", str(trace)]  # fmt: skip
    done = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    (record,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert record["bench"] == "profile" and record["setting"] == "fp32" and record["steps"] == 2
    assert 0 < record["host_ms_per_step"] <= record["ms_per_step"] * 1.01
    assert record["waits_per_step"]["aten::_local_scalar_dense"] >= 1
    assert json.loads(trace.read_text())["traceEvents"]
    bad = subprocess.run(args[:2] + ["--setting", "fp8"], capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0 and "unknown setting 'fp8'" in bad.stderr


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="on a CUDA machine the phase would measure for minutes")
def test_the_gpu_check_script_checks_its_phases_first_and_logs_each_phase_and_its_exit(tmp_path):
    """scripts/gpu_check.sh (the GPU measurements of docs/speed.md) on this CUDA-less machine: an unknown phase is
    refused before anything runs; a phase that fails is logged with its exit status, and the next one runs."""
    import subprocess
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "scripts" / "gpu_check.sh"
    bad = subprocess.run(["bash", str(script), str(tmp_path / "a"), "tests", "fp8"], capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown phase 'fp8'" in bad.stderr and not (tmp_path / "a").exists()
    out = tmp_path / "b"
    env = {**os.environ, "PYTHON": sys.executable}
    done = subprocess.run(["bash", str(script), str(out), "fid", "fid"], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=300)  # fmt: skip
    assert done.returncode == 0 and done.stdout.count("== fid (at most 50 s)\n   exit 2 after ") == 2, done.stdout
    assert "CUDA is not available here" in (out / "fid.log").read_text()  # the benchmark's one-line error
    assert "torch " + torch.__version__ in (out / "env.txt").read_text()


def test_training_on_cuda_times_cudnn_algorithms_and_on_the_cpu_does_not():
    """Fixed batch shapes: on a CUDA device set_backends turns cuDNN's algorithm timing on (FID and IS turn it
    off for themselves: tests/test_metrics.py); elsewhere it stays off."""
    before = (torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark)
    try:
        speed_module.set_backends(Speed(tf32=True), torch.device("cuda"))  # sets flags only: no GPU needed
        assert torch.backends.cudnn.benchmark and torch.backends.cudnn.allow_tf32
        speed_module.set_backends(Speed(), torch.device("cpu"))
        assert not torch.backends.cudnn.benchmark and not torch.backends.cudnn.allow_tf32
    finally:
        torch.set_float32_matmul_precision(before[0])
        torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark = before[1:]
