import functools
import json
import re
import subprocess
import sys
import time

import pytest
import torch
from helpers import TINY, run_training
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from sngan.training.iteration import lr_factor
from sngan.utils import checkpoint as ckpt


def scalar_steps(run_dir, tag):
    return [e.step for e in scalar_events(run_dir, tag)]


def test_two_step_run_writes_checkpoint_events_samples_and_provenance(tmp_path):
    result = run_training(tmp_path, TINY + ["train.steps=2"])
    assert set(result) >= {"synthetic/quality", "synthetic/modes_covered", "synthetic/median_distance"}
    latest = ckpt.find_latest(tmp_path)
    assert latest is not None and latest.name == "ckpt_00000002.pt"
    state = ckpt.load(latest)
    assert state["step"] == 2 and state["config"]["model"]["name"] == "cnn32"
    assert any(k.endswith("parametrizations.weight.0._u") for k in state["discriminator"])
    assert set(state["rng"]) == {"python", "numpy", "torch", "cuda"} and "sampler" in state
    assert state["provenance"]["torch_version"] == str(torch.__version__)
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))
    assert (tmp_path / "samples" / "step_00000002.png").is_file()
    prov = json.loads((tmp_path / "provenance.json").read_text())
    assert prov["checkpoint_format_version"] == ckpt.FORMAT_VERSION and prov["device"] == "cpu"
    assert "n_dis" in (tmp_path / "config.yaml").read_text()
    assert scalar_steps(tmp_path, "loss/d") == [1, 2]
    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    tags = acc.Tags()
    assert {
        "lr/g",
        "lr/d",
        "d_out/real",
        "d_out/fake",
        "loss/g",
        "speed/g_iters_per_s",
        "synthetic/quality",
        "synthetic/mode_coverage",
    } <= set(tags["scalars"])
    assert {"data/real", "samples/fixed_z"} <= set(tags["images"])


def test_learning_rate_decays_linearly_to_zero():
    assert lr_factor(0, 100, "linear") == 1.0
    assert lr_factor(50, 100, "linear") == 0.5
    assert lr_factor(99, 100, "linear") == pytest.approx(0.01)
    assert lr_factor(50, 100, "none") == 1.0


def test_resume_continues_from_the_saved_step_with_identical_state(tmp_path):
    """4 steps straight vs 2 steps + resume for 2 more, with the default n_dis 5,
    EMA on and the learning rate decaying every step: bit-identical state and losses."""
    common = TINY + ["train.steps=4", "train.n_dis=5", "train.keep_checkpoints=10", "train.ema_decay=0.9"]
    straight = tmp_path / "straight"
    run_training(straight, common)
    resumed = tmp_path / "resumed"
    half = ckpt.checkpoint_path(straight, 2)
    run_training(resumed, common + [f"resume={half}"])
    a = ckpt.load(ckpt.checkpoint_path(straight, 4))
    b = ckpt.load(ckpt.checkpoint_path(resumed, 4))
    assert a["ema"] is not None and (straight / "samples" / "ema_step_00000004.png").is_file()
    for net in ("generator", "discriminator", "ema"):
        assert a[net].keys() == b[net].keys()
        for key in a[net]:
            assert torch.equal(a[net][key], b[net][key]), f"{net}.{key}"
    for opt in ("opt_g", "opt_d"):
        for pa, pb in zip(a[opt]["state"].values(), b[opt]["state"].values()):
            assert all(torch.equal(pa[k], pb[k]) for k in pa)
    assert torch.equal(a["sampler"]["perm"], b["sampler"]["perm"]) and a["sampler"]["pos"] == b["sampler"]["pos"]
    assert torch.equal(a["rng"]["torch"], b["rng"]["torch"])
    for tag in ("loss/d", "loss/g", "d_out/real", "lr/g"):
        straight_values = [e.value for e in scalar_events(straight, tag)][2:]
        assert straight_values == [e.value for e in scalar_events(resumed, tag)], tag


def scalar_events(run_dir, tag):
    acc = EventAccumulator(str(run_dir / "tb"))
    acc.Reload()
    return acc.Scalars(tag)


def test_resume_auto_in_the_same_folder_continues_curves_without_duplicates(tmp_path):
    run_training(tmp_path, TINY + ["train.steps=4", "train.keep_checkpoints=10"])
    # Pretend the run died after step 4's events but resumes from step 2's checkpoint.
    ckpt.checkpoint_path(tmp_path, 4).unlink()
    # TensorBoard orders event files by name: <seconds>.<host>.<pid>.<counter>. Within one second of
    # one process an unpadded counter (9 -> 10) can sort a newer file first; real resumes are new processes.
    time.sleep(1.1)
    run_training(tmp_path, TINY + ["train.steps=6", "resume=auto"])
    assert scalar_steps(tmp_path, "loss/d") == [1, 2, 3, 4, 5, 6]
    assert ckpt.find_latest(tmp_path).name == "ckpt_00000006.pt"


def test_resume_from_another_architecture_is_refused_clearly(tmp_path):
    run_training(tmp_path / "a", TINY + ["train.steps=2"])
    with pytest.raises(ckpt.CheckpointError, match=r"another architecture \(model\.width: 0\.125 in the checkpoint"):
        run_training(tmp_path / "b", TINY + ["train.steps=4", "model.width=0.25", f"resume={tmp_path / 'a'}"])
    # Same architecture, other data: refused as another experiment; forced, the data order does not fit.
    other_data = TINY + ["train.steps=4", "dataset.size=300", f"resume={tmp_path / 'a'}"]
    with pytest.raises(ckpt.CheckpointError, match=r"dataset\.size: 200 -> 300.*resume_force=true"):
        run_training(tmp_path / "c", other_data)
    with pytest.raises(ckpt.CheckpointError, match="does not fit this configuration"):
        run_training(tmp_path / "c", other_data + ["resume_force=true"])


def test_resume_names_each_changed_setting_and_refuses_those_of_the_experiment(tmp_path, capsys):
    run_training(tmp_path, TINY + ["train.steps=2", NO_MONITOR])
    config, before = (tmp_path / "config.yaml").read_text(), sorted(ckpt.list_checkpoints(tmp_path))
    for change, shown in [
        ("loss=wasserstein", "loss.name: 'hinge' -> 'wasserstein'"),
        ("train.n_dis=3", "train.n_dis: 1 -> 3"),
        ("train.batch_size_d=16", "train.batch_size_d: 8 -> 16"),
        ("optim.lr_d=1e-4", "optim.lr_d: 0.002 -> 0.0001"),
        ("dataset.modes=5", "dataset.modes: 10 -> 5"),
    ]:
        with pytest.raises(ckpt.CheckpointError, match=re.escape(shown) + ".*resume_force=true"):
            run_training(tmp_path, TINY + ["train.steps=4", "resume=auto", change, NO_MONITOR])
    assert (tmp_path / "config.yaml").read_text() == config and sorted(ckpt.list_checkpoints(tmp_path)) == before
    capsys.readouterr()
    run_training(tmp_path, TINY + ["train.steps=3", "resume=auto", "train.eval_every=3", NO_MONITOR])
    assert (
        "note: resuming with changed settings (train.eval_every: 2 -> 3; train.steps: 2 -> 3)"
        in capsys.readouterr().err
    )
    run_training(tmp_path, TINY + ["train.steps=4", "resume=auto", "train.n_dis=2", "resume_force=true", NO_MONITOR])
    assert "train.n_dis: 1 -> 2" in capsys.readouterr().err and "n_dis: 2" in (tmp_path / "config.yaml").read_text()


def test_resume_with_steps_the_checkpoint_has_reached_says_so(tmp_path):
    run_training(tmp_path, TINY + ["train.steps=4", NO_MONITOR])
    for steps in (4, 2):
        with pytest.raises(ckpt.CheckpointError, match=rf"is at step 4 and train.steps={steps}: there is nothing left"):
            run_training(tmp_path, TINY + [f"train.steps={steps}", "resume=auto", NO_MONITOR])


def test_fresh_start_in_a_folder_holding_a_run_is_refused(tmp_path):
    run_training(tmp_path, TINY + ["train.steps=2"])
    before = sorted(p.name for p in ckpt.list_checkpoints(tmp_path))
    with pytest.raises(ckpt.CheckpointError, match=r"another configuration \(differs in train\.n_dis\).*resume=auto"):
        run_training(tmp_path, TINY + ["train.steps=2", "train.n_dis=3"])
    with pytest.raises(ckpt.CheckpointError, match="already holds a run, newest checkpoint ckpt_00000002.pt"):
        run_training(tmp_path, TINY + ["train.steps=2"])
    assert sorted(p.name for p in ckpt.list_checkpoints(tmp_path)) == before


def test_resume_auto_falls_back_to_the_newest_checkpoint_that_loads(tmp_path, capsys):
    run_training(tmp_path, TINY + ["train.steps=4", "train.keep_checkpoints=10"])
    newest = ckpt.checkpoint_path(tmp_path, 4)
    newest.write_bytes(newest.read_bytes()[:100])  # truncated, as by a crash
    run_training(tmp_path, TINY + ["train.steps=6", "resume=auto"])
    err = capsys.readouterr().err
    assert "skipping Checkpoint" in err and "ckpt_00000004.pt" in err
    assert "Resumed from" in err and "ckpt_00000002.pt at step 2" in err
    assert ckpt.load(ckpt.checkpoint_path(tmp_path, 6))["step"] == 6


def test_resume_auto_with_only_corrupt_checkpoints_refuses_instead_of_starting_over(tmp_path):
    run_training(tmp_path, TINY + ["train.steps=2"])
    only = ckpt.checkpoint_path(tmp_path, 2)
    only.write_bytes(b"garbage")
    with pytest.raises(ckpt.CheckpointError, match="holds no loadable checkpoint"):
        run_training(tmp_path, TINY + ["train.steps=4", "resume=auto"])
    assert only.read_bytes() == b"garbage"


@pytest.mark.slow
def test_cli_two_steps_from_another_working_directory(tmp_path):
    proc = subprocess.run(  # with the worker's OMP_NUM_THREADS (tests/conftest.py)
        [sys.executable, "-m", "sngan.train", "experiment=quickstart", "train.steps=2", "train.eval_samples=100"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    (run_dir,) = (tmp_path / "outputs" / "quickstart").iterdir()
    assert (run_dir / "checkpoints" / "ckpt_00000002.pt").is_file()
    assert list((run_dir / "tb").glob("events.out.tfevents.*"))
    assert (run_dir / ".hydra" / "config.yaml").is_file() and (run_dir / "config.yaml").is_file()
    assert "Run folder" in proc.stderr


NO_MONITOR = "train.monitor_every=null"  # monitoring calls D too, which would shift the NaN hook's count


def nan_after(calls: int):
    """A forward hook that turns D's output into NaN from the given call on."""
    count = {"n": 0}

    def hook(module, inputs, output):
        count["n"] += 1
        return output * float("nan") if count["n"] > calls else output

    return hook


def inject_nan(monkeypatch, calls: int):
    """NaN from D's call ``calls`` + 1 on; counts only training calls (run tests with monitoring off)."""
    import sngan.cli.build as train_module

    real_build = train_module.build_models

    def build(*args, **kwargs):
        g, d = real_build(*args, **kwargs)
        d.register_forward_hook(nan_after(calls))
        return g, d

    monkeypatch.setattr(train_module, "build_models", build)


def test_nonfinite_loss_stops_naming_step_and_network_with_the_last_good_state_saved(tmp_path, monkeypatch):
    from sngan.training.iteration import NonFiniteError

    # n_dis 1: D is called twice per step (D update, G update); call 7 is step 4's D update.
    inject_nan(monkeypatch, calls=6)
    with pytest.raises(NonFiniteError, match=r"discriminator update of step 4 \(loss/d=nan") as err:
        run_training(tmp_path, TINY + ["train.steps=10", "train.checkpoint_every=100", "train.n_dis=1", NO_MONITOR])
    assert "train.on_nonfinite=skip" in str(err.value)
    state = ckpt.load(ckpt.find_latest(tmp_path))
    assert state["step"] == 3
    assert all(torch.isfinite(v).all() for v in state["discriminator"].values() if v.is_floating_point())
    assert all(torch.isfinite(v).all() for v in state["generator"].values() if v.is_floating_point())


def test_nonfinite_updates_are_skipped_and_counted_when_asked(tmp_path, monkeypatch):
    inject_nan(monkeypatch, calls=6)  # every D output from step 4 on is NaN
    run_training(tmp_path, TINY + ["train.steps=5", "train.n_dis=1", "train.on_nonfinite=skip", NO_MONITOR])
    state = ckpt.load(ckpt.find_latest(tmp_path))
    assert state["step"] == 5 and state["skipped"] == {"discriminator": 2, "generator": 2}
    assert all(torch.isfinite(v).all() for v in state["discriminator"].values() if v.is_floating_point())
    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    assert [e.value for e in acc.Scalars("nonfinite/skipped_d")] == [0, 0, 0, 1, 2]


def test_ema_averages_parameters_and_copies_buffers():
    from sngan.models import build_models
    from sngan.training.state import make_ema, update_ema

    g, _ = build_models("cnn32", width=0.125)
    ema = make_ema(g)
    before = [p.clone() for p in ema.parameters()]
    with torch.no_grad():
        for p in g.parameters():
            p.add_(1.0)
        g.bn0.running_mean.fill_(3.0)
    update_ema(ema, g, decay=0.75)
    for avg, old, new in zip(ema.parameters(), before, g.parameters()):
        assert torch.allclose(avg, 0.75 * old + 0.25 * new, atol=1e-6)
    assert torch.all(ema.bn0.running_mean == 3.0)
    assert not any(p.requires_grad for p in ema.parameters())


def test_nonfinite_stop_keeps_the_checkpoint_of_the_last_step_instead_of_overwriting_it(tmp_path, monkeypatch):
    from sngan.training.iteration import NonFiniteError

    saved = []
    real_save = ckpt.save_atomic
    monkeypatch.setattr(ckpt, "save_atomic", lambda state, path, keep=None: saved.append(path.name) or real_save(
        state, path, keep))  # fmt: skip
    # n_dis 2: three D calls per step; call 11 is step 4's second D update, after a finite first one.
    inject_nan(monkeypatch, calls=10)
    with pytest.raises(NonFiniteError, match=r"discriminator update of step 4.*saved as .*ckpt_00000003.pt"):
        run_training(tmp_path, TINY + ["train.steps=10", "train.checkpoint_every=1", "train.n_dis=2", NO_MONITOR])
    assert saved == ["ckpt_00000001.pt", "ckpt_00000002.pt", "ckpt_00000003.pt"]  # not written twice
    assert ckpt.load(ckpt.find_latest(tmp_path))["step"] == 3


def test_nonfinite_stop_saves_the_state_before_the_failed_step_which_resumes(tmp_path):
    """lr 1e38: step 1's D update is finite (D's weights ~1e38), its G update is not. The saved state must be
    the one before step 1 (not D's applied update), so that resuming it at a sane rate trains on."""
    from helpers import compose_cfg, validated

    from sngan.cli.build import build_run
    from sngan.data import load_split
    from sngan.training.iteration import NonFiniteError

    wild = tmp_path / "wild"
    overrides = TINY + ["train.steps=5", "optim.lr_g=1e38", "optim.lr_d=1e38", NO_MONITOR]
    with pytest.raises(NonFiniteError, match=r"The state after step 0, the last completed one, is saved as"):
        run_training(wild, overrides)
    saved = ckpt.load(ckpt.find_latest(wild))
    cfg = validated(compose_cfg(overrides))
    initial = build_run(cfg, load_split(cfg.dataset), torch.device("cpu"))  # the same seeded start
    assert saved["step"] == 0
    for name, net in (("discriminator", initial.discriminator), ("generator", initial.generator)):
        for key, value in net.state_dict().items():
            assert torch.equal(saved[name][key], value), (name, key)
    assert saved["opt_d"]["state"] == saved["opt_g"]["state"] == {}  # Adam has not stepped
    assert saved["sampler"]["pos"] == initial.sampler.state_dict()["pos"]  # step 1's batch is drawn again
    run_training(wild, TINY + ["train.steps=2", "resume=auto", "resume_force=true", NO_MONITOR])  # trains on
    assert ckpt.load(ckpt.find_latest(wild))["step"] == 2


def test_resume_from_another_run_into_a_folder_holding_checkpoints_is_refused(tmp_path):
    run_training(tmp_path / "a", TINY + ["train.steps=2"])
    run_training(tmp_path / "b", TINY + ["train.steps=2"])
    before = sorted(p.name for p in (tmp_path / "b" / "checkpoints").iterdir())
    with pytest.raises(ckpt.CheckpointError, match=r"already holds a run of its own \(1 checkpoint\(s\), newest ckpt_"):
        run_training(tmp_path / "b", TINY + ["train.steps=4", f"resume={tmp_path / 'a'}"])
    assert sorted(p.name for p in (tmp_path / "b" / "checkpoints").iterdir()) == before
    # Into a fresh folder it continues run a from its step 2.
    run_training(tmp_path / "c", TINY + ["train.steps=4", f"resume={tmp_path / 'a'}"])
    assert ckpt.load(ckpt.find_latest(tmp_path / "c"))["step"] == 4


def test_monitoring_survives_a_diverged_discriminator_under_skip(tmp_path, monkeypatch):
    inject_nan(monkeypatch, calls=8)  # D's outputs turn NaN mid-run; histograms keep the finite values only
    run_training(
        tmp_path, TINY + ["train.steps=5", "train.n_dis=1", "train.on_nonfinite=skip", "train.monitor_every=1"]
    )
    assert ckpt.load(ckpt.find_latest(tmp_path))["step"] == 5


def fake_clock(monkeypatch, seconds_per_call: float):
    """The loop's ``WallClock`` reads a clock that advances ``seconds_per_call`` at every read."""
    import sngan.training.loop as loop_module
    from sngan.training.stopping import WallClock

    now = {"t": 0.0}

    def clock():
        now["t"] += seconds_per_call
        return now["t"]

    monkeypatch.setattr(loop_module, "WallClock", functools.partial(WallClock, clock=clock))


def test_max_minutes_stops_with_a_checkpoint_and_the_run_resumes_to_the_end(tmp_path, monkeypatch):
    from sngan.training.stopping import TimeLimit

    fake_clock(monkeypatch, 20.0)  # every clock read advances 20 s
    with pytest.raises(TimeLimit) as stopped:
        run_training(tmp_path, TINY + ["train.steps=50", "train.checkpoint_every=100", "train.max_minutes=1"])
    step = stopped.value.step
    assert 0 < step < 50 and "max_minutes=1" in str(stopped.value)
    assert ckpt.load(ckpt.find_latest(tmp_path))["step"] == step
    fake_clock(monkeypatch, 0.0)  # time stands still: the resumed run's limit counts from its own start
    run_training(tmp_path, TINY + ["train.steps=50", "train.checkpoint_every=100", "train.max_minutes=1",
                                   "resume=auto"])  # fmt: skip
    assert ckpt.load(ckpt.find_latest(tmp_path))["step"] == 50


def test_checkpoint_minutes_saves_on_wall_time(tmp_path, monkeypatch):
    fake_clock(monkeypatch, 25.0)
    run_training(tmp_path, TINY + ["train.steps=8", "train.checkpoint_every=100", "train.checkpoint_minutes=1",
                                   "train.keep_checkpoints=100"])  # fmt: skip
    steps = [ckpt.load(p)["step"] for p in ckpt.list_checkpoints(tmp_path)]
    assert len(steps) >= 3 and steps[-1] == 8  # time-based saves in between, and the final one


@pytest.mark.slow
def test_max_minutes_on_the_command_line_exits_0_and_says_how_to_resume(tmp_path, train_cli):
    args = ["experiment=quickstart", "train.steps=100000", "train.max_minutes=0.001", f"hydra.run.dir={tmp_path}"]
    proc = train_cli(*args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "stopped at train.max_minutes=0.001" in proc.stderr and "resume=auto" in proc.stderr
    assert ckpt.find_latest(tmp_path) is not None
