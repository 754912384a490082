"""Class-conditional SNGAN: conditional BatchNorm G, projection D, labels from every labelled dataset,
class-aware sampling, and a synthetic run that shows the conditioning works."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import TINY, compose_cfg, evaluate_cfg, inception_cfg, run_training, validated
from PIL import Image
from test_data import files_exist_integrity  # noqa: F401  (a fixture)

from sngan.cli.command_settings import check_sample
from sngan.config import ConfigError
from sngan.data import load_images, make_prototypes
from sngan.inference import SeededSampler, export_generator, generator_from_checkpoint, load_generator
from sngan.metrics import class_agreement
from sngan.models import build_models, is_spectrally_normalized
from sngan.models.layers import ConditionalBatchNorm2d
from sngan.sample import sample
from sngan.utils import checkpoint as ckpt

COND = ["experiment=quickstart_conditional"]


# ---------------------------------------------------------------- models


@pytest.mark.parametrize("name,res,k", [("resnet32", 32, 10), ("resnet48", 48, 7)])
def test_conditional_models_shapes_parameter_counts_and_initial_gains(name, res, k):
    g, d = build_models(name, 16, 0.125, True, k)
    g0, d0 = build_models(name, 16, 0.125, True)
    z, y = torch.randn(3, 16), torch.tensor([0, k - 1, 1])
    x = g(z, y)
    assert x.shape == (3, 3, res, res) and d(x, y).shape == (3,)
    cbns = [m for m in g.modules() if isinstance(m, ConditionalBatchNorm2d)]
    assert len(cbns) == 2 * len(g.blocks)  # every block BatchNorm; the last BatchNorm stays plain
    for m in cbns:
        assert torch.all(m.gain.weight == 1) and torch.all(m.bias.weight == 0) and m.gain.weight.shape[0] == k
    # Each conditional BN: K gains and K biases per channel instead of one affine pair.
    extra_g = sum((k - 1) * 2 * m.gain.weight.shape[1] for m in cbns)
    assert sum(p.numel() for p in g.parameters()) - sum(p.numel() for p in g0.parameters()) == extra_g
    width = d.dense.parametrizations.weight.original.shape[1]
    assert sum(p.numel() for p in d.parameters()) - sum(p.numel() for p in d0.parameters()) == k * width
    assert is_spectrally_normalized(d.embed)
    assert not is_spectrally_normalized(build_models(name, 16, 0.125, False, k)[1].embed)


def test_projection_term_is_the_inner_product_of_the_class_embedding_and_the_pooled_features():
    _, d = build_models("resnet32", 16, 0.125, True, 5)
    d.eval()
    x, y = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 4])
    h = torch.relu(d.blocks(x)).sum(dim=(2, 3))
    expected = d.dense(h).squeeze(1) + (d.embed.weight[y] * h).sum(1)
    torch.testing.assert_close(d(x, y), expected)
    # The embedding is spectrally normalized: once the power iteration has run, its largest singular value is 1.
    d.train()
    for _ in range(30):
        d.embed(y)
    d.eval()
    assert torch.linalg.matrix_norm(d.embed.weight, 2).item() == pytest.approx(1.0, rel=1e-3)


def test_networks_refuse_missing_or_unexpected_labels_and_cnns_have_no_conditional_version():
    g, d = build_models("resnet32", 8, 0.125, True, 3)
    with pytest.raises(ValueError, match="pass class labels"):
        g(torch.randn(2, 8))
    g0, _ = build_models("resnet32", 8, 0.125)
    with pytest.raises(ValueError, match="takes no class labels"):
        g0(torch.randn(2, 8), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="no class-conditional version"):
        build_models("cnn32", 8, 0.125, True, 3)
    with pytest.raises(ConfigError, match=r"model 'cnn32' has no class-conditional version.*resnet32, resnet48"):
        validated(compose_cfg(TINY + ["model.conditional=true"]))


# ---------------------------------------------------------------- labels


def test_labels_and_class_names_from_cifar_stl_folder_and_synthetic(tmp_path, files_exist_integrity):  # noqa: F811
    base = tmp_path / "cifar-10-batches-py"
    base.mkdir()
    for i, name in enumerate([f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]):
        data = np.zeros((3, 3072), dtype=np.uint8)
        with open(base / name, "wb") as f:
            pickle.dump({"data": data, "labels": [i % 10, 9, 4]}, f, protocol=2)
    with open(base / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"c{i}" for i in range(10)]}, f)
    cifar = load_images("cifar10", str(tmp_path), 32, "train")
    assert cifar.labels.tolist()[:6] == [0, 9, 4, 1, 9, 4] and cifar.classes[9] == "c9"

    stl = tmp_path / "stl10_binary"
    stl.mkdir()
    for split, labels in (("train", [3, 10]), ("test", [1, 1])):  # the files store 1..10
        np.zeros((2, 3, 96, 96), dtype=np.uint8).tofile(stl / f"{split}_X.bin")
        np.array(labels, dtype=np.uint8).tofile(stl / f"{split}_y.bin")
    np.zeros((1, 3, 96, 96), dtype=np.uint8).tofile(stl / "unlabeled_X.bin")
    labeled = load_images("stl10", str(tmp_path), 48, "train")
    assert labeled.labels.tolist() == [2, 9] and len(labeled.classes) == 10
    assert load_images("stl10", str(tmp_path), 48, "unlabeled").labels is None
    assert load_images("stl10", str(tmp_path), 48, "train+unlabeled").labels is None

    folder = tmp_path / "folder"
    for cls, n in (("zebra", 2), ("ant", 1)):
        (folder / cls).mkdir(parents=True)
        for i in range(n):
            Image.new("RGB", (40, 40), (10 * i, 0, 0)).save(folder / cls / f"{i}.png")
    found = load_images("folder", str(folder), 32)
    assert found.classes == ["ant", "zebra"] and sorted(found.labels.tolist()) == [0, 1, 1]
    (folder / ".ipynb_checkpoints").mkdir()
    Image.new("RGB", (40, 40)).save(folder / ".ipynb_checkpoints" / "0.png")  # hidden: not a class
    assert load_images("folder", str(folder), 32).classes == ["ant", "zebra"]
    Image.new("RGB", (40, 40)).save(folder / "loose.png")  # an image outside any class folder
    assert load_images("folder", str(folder), 32).labels is None

    synthetic = load_images("synthetic", "", 32, synthetic_size=200, synthetic_modes=5)
    nearest = torch.cdist(synthetic.images.float().flatten(1), ((synthetic.prototypes + 1) * 127.5).flatten(1))
    assert torch.equal(nearest.argmin(1), synthetic.labels) and len(synthetic.classes) == 5


# ---------------------------------------------------------------- training


@pytest.fixture(scope="module")
def conditional_run(tmp_path_factory):
    """The conditional quick start (700 steps on synthetic, prototypes as classes), with an EMA."""
    run_dir = tmp_path_factory.mktemp("conditional")
    result = run_training(run_dir, COND + ["train.ema_decay=0.9"])
    return run_dir, result


def test_conditional_generator_obeys_its_label_on_synthetic(conditional_run):
    _, result = conditional_run
    # For every class k, at least 90% of the good samples drawn for k lie nearest prototype k.
    assert result["synthetic/class_accuracy_min"] >= 0.9, result
    assert result["synthetic/class_coverage"] >= 0.8 and result["synthetic/quality"] >= 0.5, result


def test_an_unconditional_generator_matches_a_requested_class_only_about_one_time_in_k(quickstart_run):
    run_dir, result = quickstart_run
    assert result["synthetic/quality"] >= 0.5  # it draws good samples, just not of a chosen class
    g, _ = generator_from_checkpoint(ckpt.find_latest(run_dir))
    protos = make_prototypes(10, 32, 0)
    found = class_agreement(lambda k, n: SeededSampler(g, torch.device("cpu"), 7 + k)(n), protos, 200)
    assert 0.03 <= found["class_accuracy"] <= 0.2, found


def test_conditional_checkpoints_grids_and_resume(conditional_run):
    run_dir, _ = conditional_run
    state = ckpt.load(ckpt.find_latest(run_dir))
    assert state["classes"] == [f"prototype_{i}" for i in range(10)]
    assert state["fixed_y"].tolist() == [k for k in range(10) for _ in range(6)]  # grid_size 64 -> 6 per class
    with Image.open(run_dir / "samples" / "step_00000700.png") as grid:
        assert grid.size == (2 + 6 * 34, 2 + 10 * 34)  # one row of 6 per class
    assert (run_dir / "samples" / "ema_step_00000700.png").is_file()
    run_training(run_dir, COND + ["train.ema_decay=0.9", "train.steps=702", "resume=auto"])
    assert ckpt.load(ckpt.find_latest(run_dir))["step"] == 702


def test_sample_one_class_all_classes_and_refusals(conditional_run, tmp_path):
    run_dir, _ = conditional_run
    path = ckpt.find_latest(run_dir)
    protos = make_prototypes(10, 32, 0)

    def sampled(*overrides):
        return check_sample(compose_sample([f"ckpt={path}", f"out={tmp_path}", *overrides]))

    files = sample(sampled("class=prototype_3", "n=20"))
    images = torch.stack([torch.from_numpy(np.array(Image.open(f))).permute(2, 0, 1) for f in files])
    nearest = torch.cdist(images.float().flatten(1) / 127.5 - 1, protos.flatten(1)).argmin(1)
    assert (nearest == 3).float().mean() >= 0.9
    (grid,) = sample(sampled("classes=all", "n=4"))
    with Image.open(grid) as img:
        assert img.size == (2 + 4 * 34, 2 + 10 * 34)
    with pytest.raises(ConfigError, match=r"class=12 is not a class of this generator; it knows 10 classes"):
        sample(sampled("class=12"))
    with pytest.raises(ConfigError, match="interpolations take one class"):
        sampled("classes=all", "interpolate=true")
    (interp,) = sample(sampled("class=2", "interpolate=true", "n=2", "frames=3"))
    assert interp.name == "interpolation.png"
    run_training(tmp_path / "u", TINY + ["train.steps=2"])
    uncond = ckpt.find_latest(tmp_path / "u")
    with pytest.raises(ConfigError, match="this generator is unconditional"):
        sample(check_sample(compose_sample([f"ckpt={uncond}", f"out={tmp_path}", "classes=all"])))


def compose_sample(overrides):
    from hydra import compose, initialize_config_module

    with initialize_config_module(config_module="sngan.configs", version_base="1.3"):
        return compose(config_name="sample", overrides=overrides)


def test_export_and_load_generator_keep_the_classes(conditional_run, tmp_path):
    run_dir, _ = conditional_run
    out, meta = export_generator(ckpt.find_latest(run_dir), tmp_path / "g.safetensors")
    assert json.loads(meta.read_text())["classes"][0] == "prototype_0"
    g = load_generator(out)
    assert g.num_classes == 10 and g.classes[4] == "prototype_4"
    assert g(torch.randn(2, g.z_dim), torch.tensor([1, 2])).shape == (2, 3, 32, 32)


# ---------------------------------------------------------------- bad input


def test_checkpoints_written_before_conditional_models_existed_still_resume(tmp_path):
    run_training(tmp_path, TINY + ["train.steps=2"])
    path = ckpt.find_latest(tmp_path)
    state = ckpt.load(path)
    del state["config"]["model"]["conditional"]  # as an older sngan wrote it
    for key in ("fixed_y", "classes", "rng_ranks", "replicas"):
        state.pop(key)
    ckpt.save_atomic(state, path)
    run_training(tmp_path, TINY + ["train.steps=3", "resume=auto"])
    assert ckpt.load(ckpt.find_latest(tmp_path))["step"] == 3


def test_conditional_runs_need_labels(tmp_path):
    with pytest.raises(ConfigError, match="STL-10's 'unlabeled' split holds unlabeled images"):
        validated(compose_cfg(["model=resnet48", "dataset=stl10", "model.conditional=true"]))
    folder = tmp_path / "flat"
    folder.mkdir()
    for i in range(4):
        Image.new("RGB", (32, 32), (60 * i, 0, 0)).save(folder / f"{i}.png")
    with pytest.raises(ConfigError, match=r"needs class labels.*subfolder of .* \(one folder per class\)"):
        run_training(tmp_path / "run", COND + ["dataset=folder", f"dataset.root={folder}", "train.steps=1"])


def test_resume_refuses_a_folder_whose_classes_changed(tmp_path):
    folder = tmp_path / "images"
    for cls in ("cat", "dog"):
        (folder / cls).mkdir(parents=True)
        for i in range(8):
            Image.new("RGB", (32, 32), (20 * i, 100 if cls == "cat" else 0, 0)).save(folder / cls / f"{i}.png")
    args = COND + ["dataset=folder", f"dataset.root={folder}", "train.steps=1", "train.eval_every=1",
                   "train.checkpoint_every=1", "model.width=0.125"]  # fmt: skip
    run_training(tmp_path / "run", args)
    (folder / "dog").rename(folder / "wolf")
    with pytest.raises(
        ckpt.CheckpointError, match=r"trained on the classes \['cat', 'dog'\].*now has \['cat', 'wolf'\]"
    ):
        run_training(tmp_path / "run", args + ["train.steps=2", "resume=auto"])


@pytest.mark.slow
def test_conditional_training_under_torchrun_keeps_replicas_identical(tmp_path):
    run_dir = tmp_path / "run"
    args = COND + ["model.width=0.125", "train.steps=2", "train.checkpoint_every=2", "train.eval_every=2",
                   f"hydra.run.dir={run_dir}"]  # fmt: skip
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m", "sngan.train"]
    out = subprocess.run(cmd + args, env=os.environ | {"OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                         timeout=300)  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    state = ckpt.load(ckpt.find_latest(run_dir))
    assert state["replicas"][0] == state["replicas"][1] and len(state["classes"]) == 10


def test_evaluate_scores_a_conditional_generator_with_classes_drawn_uniformly(conditional_run, with_inception):
    from test_commands import TINY_METRICS

    from sngan.evaluate import evaluate

    run_dir, _ = conditional_run
    inception = inception_cfg(dims=64, stats_dir=os.environ["SNGAN_STATS_DIR"], batch_size=16)
    cfg = evaluate_cfg(ckpt=str(ckpt.find_latest(run_dir)), metrics=TINY_METRICS, inception=inception,
                         device="cpu")  # fmt: skip
    doc, _ = evaluate(cfg)
    rows = {row["network"]: row for row in doc["results"]}
    assert set(rows) == {"g", "ema"} and all(np.isfinite(row["fid"]) and row["fid"] > 0 for row in rows.values())


def test_intra_class_fid_is_labelled_per_class_and_lower_for_the_right_labels(
    conditional_run, with_inception, tmp_path
):
    from test_commands import TINY_METRICS

    from sngan.evaluate import evaluate, intra_class_references, scorer_for
    from sngan.metrics.class_scoring import intra_class_fid
    from sngan.metrics.scoring import load_extractor

    run_dir, _ = conditional_run
    path = ckpt.find_latest(run_dir)
    stats_dir = os.environ["SNGAN_STATS_DIR"]
    inception = inception_cfg(dims=64, stats_dir=stats_dir, batch_size=50)
    metrics = TINY_METRICS.__class__(**{**TINY_METRICS.__dict__, "n_fake": 100, "n_real": 200})
    out = str(tmp_path / "intra.json")  # not beside the checkpoint: another test's table of this rule is there
    cfg = evaluate_cfg(ckpt=str(path), metrics=metrics, inception=inception, device="cpu", intra_class=True, out=out)
    doc, _ = evaluate(cfg)
    row = doc["results"][0]
    per_class = [row[f"intra_fid/{k}"] for k in range(10)]
    assert row["intra_fid"] == pytest.approx(np.mean(per_class)) and doc["intra_class"]["n_fake_per_class"] == 10
    # One pass over the reference images made both the per-class cache and the reference statistics.
    (cache,) = Path(stats_dir).glob("*_classes.npz")
    assert sorted(p.name for p in Path(stats_dir).glob("*.npz")) == [cache.name.replace("_classes", ""), cache.name]
    written = cache.stat().st_mtime_ns
    # Against each class's real images, samples of that class score better than samples of the next class.
    state, cpu, extractor = ckpt.load(path), torch.device("cpu"), load_extractor(inception)
    refs = intra_class_references(cfg, state, extractor, cpu)
    assert cache.stat().st_mtime_ns == written  # read from the cache
    scorer = scorer_for(cfg, state, cpu, extractor)
    g, _ = generator_from_checkpoint(path, ema=False)
    shifted = intra_class_fid(scorer, refs, lambda k: SeededSampler(g, cpu, 1, label=(k + 1) % 10), 10)
    assert row["intra_fid"] < shifted["intra_fid"] / 2, (row["intra_fid"], shifted["intra_fid"])


def test_intra_class_fid_needs_a_conditional_checkpoint(quickstart_run, with_inception):
    from test_commands import TINY_METRICS

    from sngan.evaluate import evaluate

    run_dir, _ = quickstart_run
    inception = inception_cfg(dims=64, stats_dir=os.environ["SNGAN_STATS_DIR"])
    cfg = evaluate_cfg(ckpt=str(ckpt.find_latest(run_dir)), metrics=TINY_METRICS, inception=inception,
                         device="cpu", intra_class=True)  # fmt: skip
    with pytest.raises(ConfigError, match="intra_class=true scores a class-conditional generator"):
        evaluate(cfg)
