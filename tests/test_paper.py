"""The paper's settings and figures: Table 1's settings A-F as optim options, the CNN experiments pinned to
Table 2's rows, the resumable sweep (a finished cell is not trained again) and the figure commands
(python -m sngan.paper_figures; scripts/benchmark.py methods)."""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from helpers import TINY, compose_cfg, run_training, validated

from sngan.config import to_container
from sngan.utils import checkpoint as ckpt

ROOT = Path(__file__).resolve().parent.parent
# Miyato et al., ICLR 2018, Table 1 (p.7): Adam's alpha, beta1, beta2, and n_dis.
TABLE_1 = {
    "setting_a": (1e-4, 0.5, 0.9, 5),
    "setting_b": (1e-4, 0.5, 0.999, 1),
    "setting_c": (2e-4, 0.5, 0.999, 1),
    "setting_d": (1e-3, 0.5, 0.9, 5),
    "setting_e": (1e-3, 0.5, 0.999, 5),
    "setting_f": (1e-3, 0.9, 0.999, 5),
}
PAPER_METHODS = ["weight_clip", "gan_gp", "wgan_gp", "bn", "ln", "wn", "orthonormal", "sn"]  # Figure 1 (a)


def resolved(overrides: list[str]) -> tuple:
    cfg = validated(compose_cfg(overrides))
    return cfg.optim.lr_g, cfg.optim.lr_d, cfg.optim.beta1, cfg.optim.beta2, cfg.train.n_dis, cfg.optim.decay


@pytest.mark.parametrize("option", TABLE_1)
def test_settings_a_to_f_resolve_to_table_1(option):
    lr, beta1, beta2, n_dis = TABLE_1[option]
    expected = (lr, lr, beta1, beta2, n_dis, "none")  # the paper decays no learning rate in these runs
    assert resolved([f"optim={option}"]) == expected
    for grid in ("paper_grid_synthetic", "paper_grid_cifar10", "paper_grid_stl10"):  # the sweeps keep them
        assert resolved([f"experiment={grid}", f"optim={option}"]) == expected
    assert resolved([f"optim={option}", "train.n_dis=3"])[4] == 3  # the command line still wins


def test_the_figure_command_reads_the_settings_the_option_files_hold():
    from sngan.metrics.published import table1

    assert table1() == {k[-1].upper(): (v[0], v[0], *v[1:]) for k, v in TABLE_1.items()}
    assert resolved([]) == (2e-4, 2e-4, 0.0, 0.9, 5, "linear")  # adam_sngan, the ResNets' default, as before


def test_cnn_experiments_pin_table_2s_sn_gan_rows():
    cifar = validated(compose_cfg(["experiment=sngan_cnn32_cifar10"]))
    assert (cifar.model.name, cifar.dataset.name, cifar.loss.name, cifar.constraint.name) == (
        "cnn32", "cifar10", "nonsaturating", "sn")  # fmt: skip
    assert resolved(["experiment=sngan_cnn32_cifar10"]) == resolved(["optim=setting_c"])
    stl = validated(compose_cfg(["experiment=sngan_cnn48_stl10"]))
    assert (stl.model.name, stl.dataset.name, stl.dataset.split, stl.loss.name, stl.constraint.name) == (
        "cnn48", "stl10", "unlabeled", "nonsaturating", "sn")  # fmt: skip
    assert resolved(["experiment=sngan_cnn48_stl10"]) == resolved(["optim=setting_b"])  # footnote 4
    for cfg in (cifar, stl):  # 100K updates (p.6); batches: chainer-gan-lib's 64 (the paper gives none)
        assert (cfg.train.steps, cfg.train.batch_size_d, cfg.train.batch_size_g) == (100_000, 64, 64)


def test_the_readme_targets_are_the_pinned_rows_of_table_2():
    from sngan.metrics.published import TABLE2

    text = (ROOT / "README.md").read_text()
    for experiment, key in (("sngan_cnn32_cifar10", ("cifar10", "sn", False, 100_000)),
                            ("sngan_cnn48_stl10", ("stl10", "sn", False, 100_000))):  # fmt: skip
        row = next(line for line in text.splitlines() if line.startswith(f"| `{experiment}`"))
        name, is_mean, is_std, fid = TABLE2[key]
        assert f"{is_mean:.2f} ± {f'{is_std:.2f}'.lstrip('0')}" in row and f"{fid:.1f}" in row, row
        assert f'"{name}"' in row, row


# ----------------------------------------------------------------- the resumable sweep


def files_of(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in folder.rglob("*") if p.is_file() and p.name != "sngan.lock"}  # fmt: skip


def test_a_finished_run_is_left_as_it_is_under_auto_skip_finished(tmp_path, capsys):
    run_training(tmp_path, TINY + ["train.steps=2"])
    before = files_of(tmp_path)
    assert run_training(tmp_path, TINY + ["train.steps=2", "resume=auto_skip_finished"]) == {}
    assert "is finished: ckpt_00000002.pt is at step 2 and train.steps=2" in capsys.readouterr().err
    assert files_of(tmp_path) == before
    with pytest.raises(ckpt.CheckpointError, match=r"train\.n_dis: 1 -> 2"):  # another experiment: refused
        run_training(tmp_path, TINY + ["train.steps=2", "train.n_dis=2", "resume=auto_skip_finished"])
    with pytest.raises(ckpt.CheckpointError, match="nothing left to train"):  # resume=auto keeps its refusal
        run_training(tmp_path, TINY + ["train.steps=2", "resume=auto"])
    run_training(tmp_path, TINY + ["train.steps=3", "resume=auto_skip_finished"])  # more steps: it trains on
    assert ckpt.step_of(ckpt.list_checkpoints(tmp_path)[-1]) == 3


def sweeper(train_cli: Any, folder: Path) -> Any:
    tiny = ["model.width=0.125", "dataset.size=200", "train.eval_every=2", "train.checkpoint_every=2",
            "train.eval_samples=100", "train.steps=2", f"hydra.sweep.dir={folder}"]  # fmt: skip
    folder.parent.mkdir(parents=True, exist_ok=True)
    return lambda *overrides: train_cli("experiment=paper_grid_synthetic", *tiny, *overrides, cwd=folder.parent)


@pytest.mark.slow
def test_a_finished_sweep_cell_is_skipped_on_rerun_and_the_figures_show_every_cell(tmp_path, train_cli):
    folder = tmp_path / "grid"
    sweep = sweeper(train_cli, folder)
    cells = ["constraint=sn,wn", "optim=setting_b,setting_d"]
    first = sweep(*cells)
    assert first.returncode == 0, first.stderr[-3000:]
    names = sorted(p.name for p in folder.iterdir() if p.is_dir())
    # named by the overrides that define the cell (sorted by Hydra), not by the job's number
    named = "constraint={},dataset.size=200,model.width=0.125,optim=setting_{}"
    assert names == [named.format(m, s) for m in ("sn", "wn") for s in "bd"]
    cell_files = lambda: {k: v for k, v in files_of(folder).items() if k != "multirun.yaml"}  # noqa: E731 (Hydra's)
    before = cell_files()
    again = sweep(*cells, "train.eval_every=1")  # cadences are no part of a cell's name
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stderr.count("is finished") == 4 and cell_files() == before
    from sngan.paper_figures import main

    main([str(folder)])
    quality = (folder / "figures" / "fig1_quality.csv").read_text().splitlines()
    assert {tuple(line.split(",")[:3]) for line in quality[1:]} == {
        (m, "nonsaturating", s) for m in ("sn", "wn") for s in "BD"}  # fmt: skip
    spectra = (folder / "figures" / "fig3_singular_values.csv").read_text()
    assert "\nsn," in spectra and "\nwn," in spectra  # D rebuilt as each trained it (WN: its parametrization)
    assert all((folder / "figures" / f"{n}.png").stat().st_size > 0 for n in ("fig1_quality", "fig2_modes"))


# ----------------------------------------------------------------- the figures


@functools.cache
def method_config(grid: str, method: str) -> str:
    """The resolved config of ``method``'s cells (JSON, so that each cell changes its own copy)."""
    loss = ["loss=wasserstein"] if method.startswith("wgan_gp") else []
    overrides = [f"experiment={grid}", f"constraint={method}", "model.width=0.125", *loss]
    return json.dumps(to_container(compose_cfg(overrides)))


def fake_cell(sweep_dir: Path, method: str, setting: str, grid: str, row: dict, checkpoint: bool) -> None:
    """A run folder as a finished sweep cell leaves it: config.yaml, .hydra/overrides.yaml, metrics.jsonl, and
    a checkpoint holding D as ``method`` builds it (untrained)."""
    from sngan.models import build_models

    config = json.loads(method_config(grid, method))
    lr, beta1, beta2, n_dis = TABLE_1[setting]  # as optim=setting composes (test_settings_a_to_f_resolve_...)
    config["optim"] |= {"lr_g": lr, "lr_d": lr, "beta1": beta1, "beta2": beta2, "decay": "none"}
    config["train"]["n_dis"] = n_dis
    overrides = [f"experiment={grid}", f"constraint={method}", f"optim={setting}"]
    run = sweep_dir / ",".join(overrides[1:])
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    (run / "metrics.jsonl").write_text(json.dumps({"step": config["train"]["steps"], **row}) + "\n")
    if checkpoint:
        _, d = build_models(config["model"]["name"], 128, 0.125, None, 0, constraint=method)
        state = {"format_version": ckpt.FORMAT_VERSION, "step": config["train"]["steps"], "config": config,
                 "discriminator": d.state_dict(), "classes": None}  # fmt: skip
        (run / "checkpoints").mkdir()
        torch.save(state, ckpt.checkpoint_path(run, config["train"]["steps"]))


def test_the_figure_command_on_a_finished_sweep_draws_every_method_and_setting_beside_the_paper(tmp_path, capsys):
    from sngan.paper_figures import main

    for i, method in enumerate(PAPER_METHODS):
        for j, setting in enumerate(TABLE_1):
            rule = "fid_paper_final"  # the grid's: IS over 10 splits, hence a std
            row = {f"{rule}/is_mean": 5.0 + 0.1 * i + 0.01 * j, f"{rule}/is_std": 0.1, f"{rule}/fid": 60.0 - i}
            fake_cell(tmp_path, method, setting, "paper_grid_cifar10", row, checkpoint=j == 0)
    main([str(tmp_path)])
    figures = tmp_path / "figures"
    for name in ("fig1_inception_score", "fig2_fid", "fig3_singular_values"):
        assert (figures / f"{name}.png").read_bytes()[:4] == b"\x89PNG", name
    rows = list(csv_rows(figures / "fig1_inception_score.csv"))
    assert {(r["method"], r["setting"]) for r in rows} == {(m, s) for m in PAPER_METHODS for s in "ABCDEF"}
    assert {r["std"] for r in rows} == {"0.1"}  # IS's std over its 10 splits: the error bars
    marked = {r["method"]: (r["setting"], float(r["paper"])) for r in rows if r["paper"]}
    assert marked["sn"] == ("F", 7.42) and marked["weight_clip"] == ("F", 6.41) and len(marked) == 8  # best IS: F
    fid = {r["method"]: r["paper_row"] for r in csv_rows(figures / "fig2_fid.csv") if r["paper"]}
    assert fid["sn"] == "SN-GANs" and len(fid) == 8
    spectra = list(csv_rows(figures / "fig3_singular_values.csv"))
    assert {r["method"] for r in spectra} == set(PAPER_METHODS)
    assert {int(r["layer"]) for r in spectra} == set(range(1, 8))  # the standard CNN's 7 convolutions
    assert all(0.0 <= float(r["squared_singular_value_scaled"]) <= 1.0 + 1e-12 for r in spectra)
    assert "Wrote" in capsys.readouterr().err


def csv_rows(path: Path) -> list[dict[str, str]]:
    import csv

    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_without_a_metric_rule_the_figures_plot_the_synthetic_quality_and_modes(tmp_path, capsys):
    from sngan.paper_figures import main

    for method in ("sn", "none"):
        for setting in ("setting_b", "setting_d"):
            row = {"synthetic/quality": 0.5, "synthetic/modes_covered": 7}
            fake_cell(tmp_path, method, setting, "paper_grid_synthetic", row, checkpoint=False)
    main([str(tmp_path), "--out", str(tmp_path / "out")])
    assert "no run in" in capsys.readouterr().err  # no checkpoint: no Figure 3, said so
    modes = csv_rows(tmp_path / "out" / "fig2_modes.csv")
    assert {(r["method"], r["setting"], r["value"], r["generator"]) for r in modes} == {
        (m, s, "7.0", "G") for m in ("sn", "none") for s in "BD"}  # fmt: skip
    assert not (tmp_path / "out" / "fig3_singular_values.png").exists()


def test_the_figure_command_names_a_folder_without_runs(tmp_path, capsys):
    from sngan.paper_figures import main

    with pytest.raises(SystemExit) as stop:
        main([str(tmp_path)])
    assert stop.value.code == 2 and "holds no run folders" in capsys.readouterr().err
    assert not (tmp_path / "figures").exists()


def test_figure_3_reads_the_weight_each_layer_multiplies_by(tmp_path):
    from sngan.models import build_models
    from sngan.paper_figures import layer_spectra

    config = to_container(compose_cfg(["model=cnn32", "model.width=0.25", "constraint=wn"]))
    _, d = build_models("cnn32", 128, 0.25, None, 0, constraint="wn")
    spectra = layer_spectra({"config": config, "discriminator": d.state_dict(), "classes": None})
    assert len(spectra) == 7 and all(abs(float(s2[0]) - 1.0) < 1e-12 for _, s2 in spectra)
    assert all(bool((s2[:-1] >= s2[1:]).all()) for _, s2 in spectra)  # sorted, largest first
    raw = d.body[0].parametrizations.weight.original.detach().double().flatten(1)
    unit = raw / raw.norm(dim=1, keepdim=True)  # each row at norm 1: what WN multiplies by (footnote 8)
    expected, unexpected = (torch.linalg.svdvals(w) ** 2 for w in (unit, raw))
    assert torch.allclose(spectra[0][1], expected / expected.max(), atol=1e-9)
    assert not torch.allclose(spectra[0][1], unexpected / unexpected.max(), atol=1e-3)


@pytest.mark.slow
def test_the_methods_benchmark_draws_figure_10(tmp_path):
    script = ROOT / "scripts" / "benchmark.py"
    args = [sys.executable, str(script), "methods", "--device", "cpu", "--width", "0.0625", "--steps", "1",
            "--warmup", "0", "--images", "64", "--methods", "sn,wn,none", "--out", str(tmp_path)]  # fmt: skip
    done = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = csv_rows(tmp_path / "fig10_time_per_100_updates.csv")
    assert [r["method"] for r in rows] == ["sn", "wn", "none"]
    assert all(float(r["seconds_per_100_g_updates"]) > 0 and r["n_dis"] == "5" for r in rows)
    assert (tmp_path / "fig10_time_per_100_updates.png").read_bytes()[:4] == b"\x89PNG"
