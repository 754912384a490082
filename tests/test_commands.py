"""Metrics in training, and the evaluate / sample / export commands and load_generator on a checkpoint
written by a short training run (random Inception weights from the ``with_inception`` fixture)."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from helpers import TINY, evaluate_cfg, inception_cfg, metrics_cfg, run_training, sample_cfg
from PIL import Image

import sngan
from sngan.cli.command_settings import EvaluateConfig
from sngan.cli.log_file import copied_to
from sngan.config import ConfigError
from sngan.data import DatasetError, to_uint8
from sngan.evaluate import evaluate, evaluate_images
from sngan.export import main as export_main  # noqa: F401  (the entry point imports)
from sngan.inference import (
    EVAL_SEED_OFFSET,
    SeededSampler,
    export_generator,
    generator_from_checkpoint,
    generator_from_state,
    load_generator,
)
from sngan.metrics.inception import InceptionError
from sngan.metrics.reference import MetricsError
from sngan.sample import main as sample_main  # noqa: F401
from sngan.sample import sample
from sngan.utils import checkpoint as ckpt

# A small rule of our own (named, so it is never mistaken for fid_paper) on 64-d features.
METRICS = [
    "metrics=fid_paper", "metrics.name=tiny", "metrics.n_fake=32", "metrics.n_real=150",
    "metrics.is_split_size=16", "metrics.is_splits=2", "metrics.kid_subsets=10", "metrics.kid_subset_size=32",
    "inception.dims=64", "dataset.size=150",
]  # fmt: skip
TINY_METRICS = metrics_cfg(
    name="tiny", n_fake=32, n_real=150, is_split_size=16, is_splits=2, kid_subsets=10, kid_subset_size=32
)
# The same reference statistics, half the generated images: for tests of which rows a table has, not of the numbers
TINY16 = metrics_cfg(
    name="tiny16", n_fake=16, n_real=150, is_split_size=8, is_splits=2, kid_subsets=10, kid_subset_size=16
)


def stats_of(run_dir: Path) -> Path:
    """Where the ``trained`` run's reference statistics are cached."""
    return run_dir.parent / "stats_run"


@pytest.fixture(scope="module")
def trained(tmp_path_factory, inception_home):
    """Four steps with EMA and metrics every 2 steps: checkpoints at 2 and 4, best.pt, metrics.jsonl."""
    run_dir = tmp_path_factory.mktemp("metrics_run")
    env = {"TORCH_HOME": str(inception_home), "SNGAN_STATS_DIR": str(stats_of(run_dir))}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        with copied_to(run_dir / "train.log"):  # what the command line run keeps of its output
            result = run_training(run_dir, TINY + METRICS + ["train.steps=4", "train.ema_decay=0.5"])
    finally:
        for k, v in saved.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    return run_dir, result


def test_training_logs_fid_is_kid_of_g_and_ema_under_the_rule_name(trained):
    run_dir, result = trained
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [2, 4]
    for prefix in ("", "ema/"):
        for key in ("fid", "is_mean", "is_std", "kid_mean", "kid_std", "precision", "recall", "density", "coverage"):
            assert all(f"{prefix}tiny/{key}" in line for line in lines), key
    assert all(line["tiny/fid"] > 0 and line["tiny/is_mean"] >= 1 for line in lines)
    assert all(0 <= line[f"tiny/{k}"] <= 1 for line in lines for k in ("precision", "recall", "coverage"))
    from test_train import scalar_steps

    assert scalar_steps(run_dir, "ema/tiny/fid") == [2, 4]
    assert scalar_steps(run_dir, "tiny/coverage") == [2, 4]


def test_best_checkpoint_is_the_one_with_the_lowest_ema_fid(trained):
    run_dir, _ = trained
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    best_line = min(lines, key=lambda line: line["ema/tiny/fid"])
    best = ckpt.load(run_dir / "checkpoints" / "best.pt")
    assert best["step"] == best_line["step"]
    assert best["best"] == {"metric": "ema/tiny/fid", "fid": best_line["ema/tiny/fid"], "step": best_line["step"]}
    assert [p.name for p in ckpt.list_checkpoints(run_dir)] == ["ckpt_00000002.pt", "ckpt_00000004.pt"]
    said = (run_dir / "train.log").read_text().splitlines()  # each save is one line, best.pt's too
    assert f"checkpoint step {best['step']}: {run_dir / 'checkpoints' / 'best.pt'}" in said
    assert [line for line in said if line.startswith("checkpoint step ")][-1].endswith("ckpt_00000004.pt")


def test_evaluate_reproduces_the_in_training_numbers_and_writes_labelled_json(trained, with_inception):
    run_dir, _ = trained
    (stats,) = stats_of(run_dir).glob("*.npz")
    written = stats.stat().st_mtime_ns
    inception = inception_cfg(dims=64, stats_dir=str(stats.parent))  # the statistics training computed
    path = run_dir / "checkpoints" / "ckpt_00000004.pt"
    cfg = evaluate_cfg(ckpt=str(path), metrics=TINY_METRICS, inception=inception, device="cpu")
    doc, out = evaluate(cfg)
    assert out == run_dir / "checkpoints" / "ckpt_00000004.tiny.json"
    assert json.loads(out.read_text()) == doc
    assert doc["rule"] == "tiny" and doc["n_fake"] == 32 and doc["n_real"] == 150 and doc["dims"] == 64
    assert len(doc["inception_sha256"]) == 64 and doc["inception_weights"].endswith(
        "pt_inception-2015-12-05-6726825d.pth"
    )
    logged = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])
    rows = {row["network"]: row for row in doc["results"]}
    assert set(rows) == {"g", "ema"} and rows["g"]["step"] == 4
    # Same weights, same fixed seed: the same numbers as training logged, to rounding (training's G is
    # channels_last on the CPU, evaluate's is contiguous: their convolutions round differently, ~1e-8 here).
    assert rows["g"]["fid"] == pytest.approx(logged["tiny/fid"], rel=1e-6)
    assert rows["ema"]["is_mean"] == pytest.approx(logged["ema/tiny/is_mean"], rel=1e-6)
    for key in ("precision", "recall", "density", "coverage"):  # counts of the same distances: equal
        assert rows["ema"][key] == pytest.approx(logged[f"ema/tiny/{key}"], abs=1e-9), key
    assert doc["prdc"] == "k=3 (precision, recall), k=5 (density, coverage): 150 real vs 32 generated features"
    assert [p.name for p in stats.parent.glob("*.npz")] == [stats.name] and stats.stat().st_mtime_ns == written


def test_evaluate_a_run_folder_gives_one_table(trained, with_inception, tmp_path, monkeypatch, command_line):
    run_dir, _ = trained
    out = tmp_path / "table.json"
    monkeypatch.setenv("SNGAN_STATS_DIR", str(stats_of(run_dir)))  # the reference statistics training computed
    proc = command_line(
        "evaluate", f"ckpt={run_dir}", *METRICS[:-2], "inception.dims=64", "metrics.name=tiny16", "metrics.n_fake=16",
        "metrics.kid_subset_size=16", "metrics.is_split_size=8", f"out={out}", "device=cpu", cwd=tmp_path,  # TINY16
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(out.read_text())
    names = [(Path(r["checkpoint"]).name, r["network"]) for r in doc["results"]]
    assert names == [(n, net) for n in ("ckpt_00000002.pt", "ckpt_00000004.pt", "best.pt") for net in ("g", "ema")]
    assert json.loads(proc.stdout) == doc


def test_evaluating_a_run_folder_skips_a_damaged_file_and_keeps_each_row_as_it_goes(
    trained, with_inception, tmp_path, monkeypatch, capsys
):
    import shutil

    import sngan.evaluate

    run_dir, _ = trained
    copy = tmp_path / "run"
    shutil.copytree(run_dir / "checkpoints", copy / "checkpoints")
    # Damaged meanwhile (e.g. pruned by a running job): the first file, which the others' settings are read
    # from, and a later one
    damaged = [copy / "checkpoints" / name for name in ("ckpt_00000002.pt", "best.pt")]
    for path in damaged:
        path.write_bytes(b"pruned mid-way")
    (stats,) = stats_of(run_dir).glob("*.npz")
    inception = inception_cfg(dims=64, stats_dir=str(stats.parent))
    cfg = evaluate_cfg(ckpt=str(copy), metrics=TINY16, inception=inception, device="cpu", batch_size=7)
    doc, out = evaluate(cfg)
    assert [(Path(r["checkpoint"]).name, r["network"]) for r in doc["results"]] == [
        ("ckpt_00000004.pt", net) for net in ("g", "ema")
    ]
    err = capsys.readouterr().err
    assert all(f"{path} is left out of the table" in err for path in damaged)
    assert json.loads(out.read_text()) == doc and doc["skipped"] == [str(path) for path in damaged]
    # batch_size changes memory, not the numbers: the default batch gives the same FID
    again, _ = evaluate(evaluate_cfg(ckpt=str(copy / "checkpoints" / "ckpt_00000004.pt"), metrics=TINY16,
                                       inception=inception, device="cpu", out=str(tmp_path / "b.json")))  # fmt: skip
    assert again["results"][0]["fid"] == pytest.approx(doc["results"][0]["fid"], rel=1e-6)
    with pytest.raises(ckpt.CheckpointError):  # a single damaged file is an error
        evaluate(dataclasses.replace(cfg, ckpt=str(damaged[0])))
    # Stopped after its first row (here: a failure), the file holds that row.
    calls = []

    def stop_at_the_second_row(*args):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return ""

    monkeypatch.setattr(sngan.evaluate, "format_row", stop_at_the_second_row)  # as evaluate imports it
    with pytest.raises(KeyboardInterrupt):
        evaluate(evaluate_cfg(ckpt=str(copy), metrics=TINY16, inception=inception, device="cpu",
                                out=str(tmp_path / "partial.json")))  # fmt: skip
    assert len(json.loads((tmp_path / "partial.json").read_text())["results"]) == 1


def images_cfg(overrides: list[str], **values: Any) -> EvaluateConfig:
    """evaluate's settings for images=, the dataset given as on the command line."""
    from helpers import _composed, _with

    from sngan.cli.command_settings import check_evaluate

    return check_evaluate(_with(_composed("evaluate", overrides), values))


# The ``trained`` run's dataset (experiment=quickstart at 32 px, METRICS' size), as a user names it for images=.
RUN_DATASET = ["dataset=synthetic", "dataset.size=150", "dataset.resolution=32"]


def the_runs_own_samples(run_dir: Path, n: int = 32) -> tuple[Path, torch.Tensor]:
    """The n images evaluate scores for the last checkpoint's G (same weights, same seed), as uint8."""
    path = run_dir / "checkpoints" / "ckpt_00000004.pt"
    state = ckpt.load(path)
    generator, _ = generator_from_state(state, path, False)
    sampler = SeededSampler(generator, torch.device("cpu"), int(state["config"]["seed"]) + EVAL_SEED_OFFSET)
    return path, to_uint8(sampler(n))


def test_evaluate_images_gives_a_folder_or_npz_of_samples_the_numbers_of_their_checkpoint(
    trained, with_inception, tmp_path
):
    """Same protocol for any images: G's samples written as PNGs, or as a .npz (either layout), score exactly
    what the checkpoint scores; a larger set is cut to the rule's n_fake, and the JSON says what was read."""
    run_dir, _ = trained
    (stats,) = stats_of(run_dir).glob("*.npz")
    inception = inception_cfg(dims=64, stats_dir=str(stats.parent))  # the statistics training computed
    path, images = the_runs_own_samples(run_dir, 16)
    doc, _ = evaluate(evaluate_cfg(ckpt=str(path), metrics=TINY16, inception=inception, device="cpu"))
    expected = next(row for row in doc["results"] if row["network"] == "g")
    folder = tmp_path / "samples"
    folder.mkdir()
    for i, image in enumerate(torch.cat([images, images[:5]])):  # 21 images: the first 16 are scored
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(folder / f"{i:04d}.png")
    np.savez(tmp_path / "nhwc.npz", images.permute(0, 2, 3, 1).numpy())
    np.savez(tmp_path / "nchw.npz", images=images.numpy())
    for source in (folder, tmp_path / "nhwc.npz", tmp_path / "nchw.npz"):
        cfg = images_cfg([f"images={source}", *RUN_DATASET], metrics=TINY16, inception=inception, device="cpu")
        got, out = evaluate_images(cfg)
        (row,) = got["results"]
        assert out == source.with_name(f"{source.stem}.tiny16.json") and json.loads(out.read_text()) == got
        for key in ("fid", "is_mean", "kid_mean", "precision", "recall", "density", "coverage"):
            assert row[key] == pytest.approx(expected[key], rel=1e-9, abs=1e-12), (source.name, key)
        assert got["reference_stats"] == doc["reference_stats"] and got["resized"] is None
        assert row["count"] == (21 if source == folder else 16) and got["sizes"] == {"32x32": 16}  # of those scored


def test_evaluate_images_reads_the_images_a_rules_inception_score_needs_beyond_its_fid(
    trained, with_inception, tmp_path, capsys
):
    """A rule shaped like fid_paper_final (IS over more images than FID's n_fake): images= reads the IS images
    too and prints the checkpoint's IS; fewer images than the IS splits hold give FID alone and say why."""
    run_dir, _ = trained
    (stats,) = stats_of(run_dir).glob("*.npz")
    inception = inception_cfg(dims=64, stats_dir=str(stats.parent))
    final = metrics_cfg(name="tiny16x2", n_fake=16, n_real=150, is_split_size=16, is_splits=2, kid_subsets=10,
                        kid_subset_size=16)  # fmt: skip
    path, images = the_runs_own_samples(run_dir, 32)
    doc, _ = evaluate(evaluate_cfg(ckpt=str(path), metrics=final, inception=inception, device="cpu"))
    expected = next(row for row in doc["results"] if row["network"] == "g")
    assert "is_mean" in expected and "is_std" in expected
    np.savez(tmp_path / "all.npz", images=images.numpy())
    np.savez(tmp_path / "fid_only.npz", images=images[:20].numpy())
    cfg = images_cfg([f"images={tmp_path / 'all.npz'}", *RUN_DATASET], metrics=final, inception=inception,
                     device="cpu")  # fmt: skip
    (row,) = evaluate_images(cfg)[0]["results"]
    for key in ("fid", "is_mean", "is_std", "kid_mean", "precision"):
        assert row[key] == pytest.approx(expected[key], rel=1e-9, abs=1e-12), key
    capsys.readouterr()
    cfg = images_cfg([f"images={tmp_path / 'fid_only.npz'}", *RUN_DATASET], metrics=final, inception=inception,
                     device="cpu")  # fmt: skip
    (row,) = evaluate_images(cfg)[0]["results"]
    assert row["fid"] == pytest.approx(expected["fid"], rel=1e-9) and "is_mean" not in row
    assert (
        "no Inception Score: rule tiny16x2 takes it over 2 splits of 16 images: 32; 20 images"
        in capsys.readouterr().err
    )


def test_evaluate_images_resizes_like_the_reals_and_says_so_and_refuses_what_it_cannot_score(
    trained, with_inception, tmp_path, capsys
):
    run_dir, _ = trained
    (stats,) = stats_of(run_dir).glob("*.npz")
    inception = inception_cfg(dims=64, stats_dir=str(stats.parent))
    _, images = the_runs_own_samples(run_dir)

    def run(source: Path, *more: str) -> dict[str, Any]:
        cfg = images_cfg([f"images={source}", *RUN_DATASET, *more], metrics=TINY_METRICS, inception=inception,
                         device="cpu")  # fmt: skip
        return evaluate_images(cfg)[0]

    # a multiple of the reals' size: averaged by blocks (as STL-10's reals), which undoes a plain upscaling
    np.savez(tmp_path / "big.npz", images.repeat_interleave(2, 2).repeat_interleave(2, 3).numpy())
    doc = run(tmp_path / "big.npz")
    assert doc["resized"] == "64x64 -> 32x32 by averaging 2x2 blocks" and doc["sizes"] == {"64x64": 32}
    assert "note: resized as the reals are read: 64x64 -> 32x32 by averaging 2x2 blocks" in capsys.readouterr().err
    # what cannot be scored: each a one-paragraph DatasetError / MetricsError naming the fix
    (tmp_path / "empty").mkdir()
    np.savez(tmp_path / "few.npz", images[:20].numpy())
    np.savez(tmp_path / "float.npz", images.float().numpy() / 255)
    np.save(tmp_path / "bare.npy", images[:20].numpy())
    (tmp_path / "bare.npy").rename(tmp_path / "bare.npz")  # numpy.save's one array under a .npz name: read too
    (tmp_path / "junk.npz").write_text("not numpy")
    np.savez(tmp_path / "two.npz", a=images.numpy(), b=images.numpy())
    cases = {
        tmp_path / "empty": "holds no images with extensions",
        tmp_path / "few.npz": "holds 20 images but rule tiny scores 32. Give at least 32, or a rule with fewer",
        tmp_path / "float.npz": "]: save (x * 255).round().clip(0, 255).astype('uint8')",  # values in [0, 1]
        tmp_path / "bare.npz": "holds 20 images but rule tiny scores 32",
        tmp_path / "junk.npz": "it is not a .npz written by numpy.savez",
        tmp_path / "nowhere": "does not exist",
        tmp_path / "two.npz": "holds arrays ['a', 'b']; which are the images?",
    }
    for source, message in cases.items():
        with pytest.raises((DatasetError, MetricsError), match=re.escape(message)):
            run(source)
    for bad, message in [
        ([], "nothing to score"),
        ([f"images={tmp_path}", "ckpt=x"], "give ckpt= or images=, not both"),
        ([f"images={tmp_path}"], "needs real images to be judged against. Add dataset=NAME"),
        ([f"images={tmp_path}", "dataset=synthetic"], "set dataset.resolution"),
        ([f"images={tmp_path}", "dataset=cifar10", "data_root=/data"], "data_root= is for ckpt="),
        ([f"images={tmp_path}", "dataset=cifar10", "intra_class=true"], "intra_class=true is for ckpt="),
        (
            [f"images={tmp_path}", "dataset=cifar10", "metrics.name=t", "metrics.n_fake=3"],
            "need more than 3 fake images; give more, or turn them off (metrics.prdc_n=0)",
        ),
    ]:
        with pytest.raises(ConfigError, match=re.escape(message)):
            images_cfg(bad)
    assert not (tmp_path / "nowhere").exists()  # a mistyped path creates nothing


def test_image_sets_are_resized_as_their_datasets_reals_and_read_no_further_than_asked(tmp_path):
    """STL-10's reals are averaged by 2x2 blocks (96 -> 48): so are images scored against them; folder's are
    fitted by PIL's bicubic filter, and so are images scored against them. ``limit`` decodes only the images
    to be scored."""
    from sngan.data.image_sets import load_image_set

    rng = np.random.default_rng(0)
    big = rng.integers(0, 256, (6, 96, 96, 3), dtype=np.uint8)
    np.savez(tmp_path / "big.npz", images=big)
    stl = load_image_set(str(tmp_path / "big.npz"), 48, "stl10", limit=4)
    area = torch.nn.functional.interpolate(torch.from_numpy(big[:4]).permute(0, 3, 1, 2).float(), 48, mode="area")
    assert torch.equal(stl.images, area.round().clamp(0, 255).to(torch.uint8))
    assert (stl.total, stl.resized, stl.sizes) == (6, "96x96 -> 48x48 by averaging 2x2 blocks", {"96x96": 4})
    fitted = load_image_set(str(tmp_path / "big.npz"), 48, "folder")
    assert fitted.resized == "96x96 -> 48x48 by bicubic fit" and not torch.equal(fitted.images[:4], stl.images)
    (tmp_path / "mixed").mkdir()
    for i, size in enumerate((32, 40)):
        Image.fromarray(big[i, :size, :size]).save(tmp_path / "mixed" / f"{i}.png")
    with pytest.raises(DatasetError, match=re.escape("several sizes (32x32, 40x40)")):
        load_image_set(str(tmp_path / "mixed"), None)  # against a statistics file alone: no size to bring them to


def test_sample_writes_pngs_a_grid_and_interpolations(trained, tmp_path):
    run_dir, _ = trained
    best = str(run_dir / "checkpoints" / "best.pt")
    files = sample(sample_cfg(ckpt=best, n=5, out=str(tmp_path / "png"), device="cpu"))
    assert [p.name for p in files] == [f"{i:06d}.png" for i in range(5)]
    assert Image.open(files[0]).size == (32, 32)
    (grid,) = sample(sample_cfg(ckpt=best, n=4, out=str(tmp_path / "grid"), grid=True, device="cpu"))
    assert grid.name == "grid.png" and Image.open(grid).size == (2 + 2 * 34, 2 + 2 * 34)
    (strip,) = sample(sample_cfg(ckpt=best, n=2, out=str(tmp_path / "i"), interpolate=True, frames=5, device="cpu"))
    assert Image.open(strip).size == (2 + 5 * 34, 2 + 2 * 34)
    # Same seed, same images.
    again = sample(sample_cfg(ckpt=best, n=5, out=str(tmp_path / "png2"), device="cpu"))
    assert files[3].read_bytes() == again[3].read_bytes()
    # A folder holding numbered samples is not mixed into: refused, or replaced with overwrite=true.
    with pytest.raises(ConfigError, match=r"already holds 5 numbered samples .*overwrite=true"):
        sample(sample_cfg(ckpt=best, n=3, out=str(tmp_path / "png"), device="cpu"))
    (tmp_path / "png" / "mine.png").write_bytes(b"not ours")
    sample(sample_cfg(ckpt=best, n=3, out=str(tmp_path / "png"), device="cpu", overwrite=True))
    assert sorted(p.name for p in (tmp_path / "png").iterdir()) == [
        "000000.png",
        "000001.png",
        "000002.png",
        "mine.png",
    ]


def test_load_generator_and_export_round_trip(trained, tmp_path):
    run_dir, _ = trained
    path = run_dir / "checkpoints" / "ckpt_00000004.pt"
    g = sngan.load_generator(path)  # the public API, no Hydra
    assert not g.training and g.z_dim == 4
    state = ckpt.load(path)
    z = torch.randn(6, g.z_dim)
    plain = load_generator(path, ema=False)
    assert torch.equal(plain.dense.weight, state["generator"]["dense.weight"])
    assert torch.equal(g.dense.weight, state["ema"]["dense.weight"])  # auto picks the EMA
    weights, meta = export_generator(path, tmp_path / "g.safetensors")
    info = json.loads(meta.read_text())
    assert info["model"] == "cnn32" and info["z_dim"] == 4 and info["ema"] is True and info["step"] == 4
    exported = load_generator(weights)
    with torch.no_grad():
        assert torch.equal(exported(z), g(z))
    proc = subprocess.run(
        [sys.executable, "-m", "sngan.export", f"ckpt={path}", f"out={tmp_path / 'cli'}", "ema=false"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "cli.json").read_text())["ema"] is False
    with torch.no_grad():
        assert torch.equal(load_generator(tmp_path / "cli.safetensors")(z), plain(z))


def test_generator_from_checkpoint_refuses_ema_the_run_did_not_keep(tmp_path):
    run_training(tmp_path, TINY + ["train.steps=2", "train.ema_decay=null"])  # the quick start keeps one
    with pytest.raises(ckpt.CheckpointError, match="holds no EMA generator"):
        generator_from_checkpoint(ckpt.find_latest(tmp_path), ema=True)


def test_missing_weights_stop_training_before_it_starts(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    with pytest.raises(InceptionError, match="pt_inception-2015-12-05-6726825d.pth"):
        run_training(tmp_path / "run", TINY + METRICS + ["train.steps=2", f"inception.weights={tmp_path}/none.pth"])
    assert not (tmp_path / "run" / "checkpoints").exists() and not (tmp_path / "run" / "tb").exists()


def test_renamed_rule_is_required_when_a_preset_is_changed():
    from helpers import compose_cfg, validated

    with pytest.raises(ConfigError, match="metrics.name"):
        validated(compose_cfg(["metrics=fid_paper", "metrics.n_fake=100"]))
    with pytest.raises(ConfigError, match="has none"):
        validated(compose_cfg(["experiment=quickstart", "metrics=fid10k_test"]))
    assert validated(compose_cfg(["metrics=fid50k_train"])).metrics.n_real is None
