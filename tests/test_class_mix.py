"""Fakes' classes follow the training set's class frequencies (train.fake_labels=data, the default):
drawn in the D and G updates, recorded in checkpoints and exports, used by evaluation and sampling.
Balanced datasets (CIFAR, STL-10) keep the uniform draw exactly as before."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import compose_cfg, dataset_cfg, inception_cfg, run_training, sample_cfg, validated
from PIL import Image
from torch import nn

from sngan.config import ConfigError
from sngan.data import make_synthetic
from sngan.inference import SeededSampler, export_generator, generator_from_checkpoint, load_generator
from sngan.models import build_models
from sngan.models.sampling import label_cdf, sample_y
from sngan.training.losses import LOSSES
from sngan.training.optim import adam
from sngan.training.step import Recipe, d_step, g_step
from sngan.utils import checkpoint as ckpt

CPU = torch.device("cpu")
COND = ["experiment=quickstart_conditional", "model.width=0.125"]


def test_label_cdf_is_none_for_balanced_classes_and_draws_follow_the_counts():
    assert label_cdf(None) is None and label_cdf([]) is None and label_cdf([7, 7, 7]) is None
    cdf = label_cdf([1, 0, 3])
    assert cdf.tolist() == [0.25, 0.25, 1.0]
    y = sample_y(40_000, 3, CPU, cdf, torch.Generator().manual_seed(0))
    share = torch.bincount(y, minlength=3).double() / len(y)
    assert share[1] == 0 and share[0].item() == pytest.approx(0.25, abs=0.01), share  # an empty class never
    # without a CDF: the uniform draw, the very stream of randint (balanced runs draw what they always drew)
    uniform = sample_y(64, 10, CPU, None, torch.Generator().manual_seed(3))
    assert torch.equal(uniform, torch.randint(0, 10, (64,), generator=torch.Generator().manual_seed(3)))
    assert sample_y(5, 0, CPU, cdf) is None


class Recorder(nn.Module):
    """A conditional D that remembers the labels it was called with."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner, self.seen = inner, []

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        self.seen.append(y.clone())
        return self.inner(x, y)


def test_d_and_g_updates_draw_the_fakes_classes_from_the_cdf():
    torch.manual_seed(0)
    g, d = build_models("resnet32", 8, 0.0625, True, 3)
    d = Recorder(d)
    opt_g, opt_d = adam(list(g.parameters()), 1e-4, (0.0, 0.9), CPU), adam(list(d.parameters()), 1e-4, (0.0, 0.9), CPU)
    loss, real, real_y = LOSSES.get("hinge"), torch.rand(16, 3, 32, 32) * 2 - 1, torch.zeros(16, dtype=torch.long)
    only_two = label_cdf([0, 0, 5])
    d_step(g, d, opt_d, real, real_y, Recipe(loss, 8, 3, fake_cdf=only_two))
    g_step(g, d, opt_g, 12, CPU, Recipe(loss, 8, 3, fake_cdf=only_two))
    (d_y,), (g_y,) = d.seen[:1], d.seen[1:]
    assert torch.equal(d_y[:16], real_y) and (d_y[16:] == 2).all() and len(d_y) == 32  # real labels, then fakes'
    assert (g_y == 2).all() and len(g_y) == 12
    d_step(g, d, opt_d, real, real_y, Recipe(loss, 8, 3))  # no CDF: uniform, all three classes among 16 fakes
    assert set(d.seen[-1][16:].tolist()) == {0, 1, 2}


def test_build_run_keeps_the_counts_and_draws_by_them_unless_fake_labels_is_uniform():
    from sngan.cli.build import build_run

    data = make_synthetic(40, 32, k=4)
    assert data.class_counts() is None  # synthetic classes are uniform draws: uniform mix, as before
    assert build_run(validated(compose_cfg(COND)), data, CPU).class_counts is None
    data.labels, data.uniform_classes = torch.tensor([0] * 20 + [1] * 10 + [3] * 10), False  # class 2: no image
    run = build_run(validated(compose_cfg(COND)), data, CPU)
    assert run.class_counts == [20, 10, 0, 10] and run.fake_cdf.tolist() == [0.5, 0.75, 0.75, 1.0]
    run = build_run(validated(compose_cfg(COND + ["train.fake_labels=uniform"])), data, CPU)
    assert run.class_counts == [20, 10, 0, 10] and run.fake_cdf is None
    data.labels = torch.arange(40) % 4  # balanced: uniform, as before
    assert build_run(validated(compose_cfg(COND)), data, CPU).fake_cdf is None
    assert build_run(validated(compose_cfg(["experiment=quickstart"])), data, CPU).class_counts is None
    with pytest.raises(ConfigError, match=r"train.fake_labels.*choose one of: data, uniform"):
        validated(compose_cfg(COND + ["train.fake_labels=balanced"]))


def make_folder(root, cats: int = 12, dogs: int = 4):
    for cls, n in (("cat", cats), ("dog", dogs)):
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.new("RGB", (32, 32), (15 * i, 120 if cls == "cat" else 0, 40)).save(root / cls / f"{i}.png")
    return root


def folder_args(root) -> list[str]:
    every = ["train.checkpoint_every=1", "train.eval_every=1", "train.sample_every=1"]
    return COND + every + ["dataset=folder", f"dataset.root={root}", "train.batch_size_d=4", "train.batch_size_g=4"]


@pytest.fixture(scope="module")
def imbalanced_run(tmp_path_factory: pytest.TempPathFactory):
    """One training step on a folder of 12 cats and 4 dogs."""
    root = tmp_path_factory.mktemp("mix")
    run_training(root / "run", folder_args(make_folder(root / "images")) + ["train.steps=1"])
    return root, ckpt.find_latest(root / "run")


def test_the_loop_draws_by_the_mix_and_a_resumed_run_keeps_its_checkpoints_mix(tmp_path, monkeypatch, capsys):
    import sngan.training.step

    drawn = []
    real_sample_y = sngan.training.step.sample_y
    monkeypatch.setattr(sngan.training.step, "sample_y", lambda n, k, dev, cdf=None, rng=None: drawn.append(cdf) or
                        real_sample_y(n, k, dev, cdf, rng))  # fmt: skip
    args = folder_args(make_folder(tmp_path / "images")) + ["train.steps=1"]
    run_training(tmp_path / "run", args)
    assert len(drawn) == 2 and all(cdf.tolist() == [0.75, 1.0] for cdf in drawn)  # the D and the G update
    for i in (0, 1):  # two cats turn out to be dogs: the data's mix is now [10, 6]
        (tmp_path / "images" / "cat" / f"{i}.png").rename(tmp_path / "images" / "dog" / f"was_cat_{i}.png")
    with pytest.raises(ckpt.CheckpointError, match="training images differ"):  # relabelled: other data
        run_training(tmp_path / "run", args[:-1] + ["train.steps=2", "resume=auto"])
    run_training(tmp_path / "run", args[:-1] + ["train.steps=2", "resume=auto", "resume_force=true"])
    assert "images per class are now [10, 6]" in capsys.readouterr().err and drawn[-1].tolist() == [0.75, 1.0]
    path = ckpt.find_latest(tmp_path / "run")
    state = ckpt.load(path)
    assert state["class_counts"] == [12, 4]
    state.pop("class_counts")  # a run started before the mix was recorded goes on drawing uniformly
    ckpt.save_atomic(state, path)
    run_training(tmp_path / "run", args[:-1] + ["train.steps=3", "resume=auto"])
    assert drawn[-1] is None and ckpt.load(ckpt.find_latest(tmp_path / "run"))["class_counts"] is None


def test_a_conditional_run_on_an_imbalanced_folder_resumes_bit_exactly(tmp_path):
    args = folder_args(make_folder(tmp_path / "images")) + ["train.steps=3", "train.keep_checkpoints=5"]
    run_training(tmp_path / "straight", args)
    run_training(tmp_path / "resumed", args + [f"resume={ckpt.checkpoint_path(tmp_path / 'straight', 1)}"])
    a, b = (ckpt.load(ckpt.checkpoint_path(tmp_path / run, 3)) for run in ("straight", "resumed"))
    for net in ("generator", "discriminator"):
        assert all(torch.equal(a[net][key], b[net][key]) for key in a[net]), net
    assert a["class_counts"] == b["class_counts"] == [12, 4]


def test_training_evaluation_samples_with_the_runs_mix(tmp_path):
    from sngan.cli.build import build_run
    from sngan.training.evaluation import score
    from sngan.training.tracking import NullTracker

    data = make_synthetic(16, 32, k=2)
    data.labels, data.uniform_classes = torch.tensor([0] * 12 + [1] * 4), False
    cfg = validated(compose_cfg(COND))
    run = build_run(cfg, data, CPU)
    seen = []

    class Scorer:
        rule = type("Rule", (), {"name": "rule"})

        def __call__(self, sample_fn):
            seen.append(sample_fn.cdf)
            return {"fid": 1.0}

    data.prototypes = None  # a real dataset: FID only
    assert score(run, data, NullTracker(tmp_path), Scorer(), cfg.seed, cfg.train.eval_samples) == {"rule/fid": 1.0}
    assert [cdf.tolist() for cdf in seen] == [[0.75, 1.0]]


def test_seeded_samples_do_not_depend_on_how_they_are_batched_or_skipped():
    g, _ = build_models("resnet32", 8, 0.0625, True, 3)
    g.class_counts, g.z_dim = [5, 1, 2], 8
    one = SeededSampler(g, CPU, 3)._noise(127)
    split = SeededSampler(g, CPU, 3)
    parts = [split._noise(k) for k in (7, 50, 70)]
    assert torch.equal(torch.cat([z for z, _ in parts]), one[0]) and torch.equal(
        torch.cat([y for _, y in parts]), one[1]
    )
    skipped = SeededSampler(g, CPU, 3)
    skipped.skip(57)  # what a later rank of torchrun does
    assert torch.equal(skipped._noise(70)[0], one[0][57:])
    unconditional, _ = build_models("resnet32", 8, 0.0625, False, 0)
    unconditional.z_dim = 8
    z, y = SeededSampler(unconditional, CPU, 3)._noise(20)
    assert y is None and z.shape == (20, 8)


def test_checkpoints_exports_and_samplers_carry_the_class_mix(imbalanced_run):
    root, path = imbalanced_run
    assert ckpt.load(path)["class_counts"] == [12, 4]
    g, info = generator_from_checkpoint(path)
    assert g.class_counts == [12, 4] and info["class_counts"] == [12, 4]
    y = SeededSampler(g, CPU, 0)._noise(4000)[1]  # evaluation draws classes as the training set has them
    assert (y == 1).double().mean().item() == pytest.approx(0.25, abs=0.025)
    assert (SeededSampler(g, CPU, 0, label=1)._noise(50)[1] == 1).all()  # intra-class: one class
    y = SeededSampler(g, CPU, 0, class_counts=[1, 1])._noise(4000)[1]  # explicit counts win
    assert (y == 1).double().mean().item() == pytest.approx(0.5, abs=0.03)
    out, meta = export_generator(path, root / "g.safetensors")
    assert json.loads(meta.read_text())["class_counts"] == [12, 4] and load_generator(out).class_counts == [12, 4]


def test_sample_draws_the_class_mix_and_old_or_damaged_counts_are_handled(imbalanced_run, tmp_path):
    from sngan.sample import labels_for

    _, path = imbalanced_run
    g, _ = generator_from_checkpoint(path)
    y = labels_for(g, sample_cfg(ckpt=str(path)), 4000, torch.Generator().manual_seed(1))
    assert (y == 1).double().mean().item() == pytest.approx(0.25, abs=0.025)
    state = ckpt.load(path)
    state.pop("class_counts")  # as sngan wrote checkpoints before it recorded the class mix: uniform
    ckpt.save_atomic(state, tmp_path / "old.pt")
    g, _ = generator_from_checkpoint(tmp_path / "old.pt")
    assert g.class_counts is None and (SeededSampler(g, CPU, 0)._noise(4000)[1] == 1).double().mean() > 0.45
    state["class_counts"] = [12, -4]
    ckpt.save_atomic(state, tmp_path / "bad.pt")
    with pytest.raises(ckpt.CheckpointError, match=r"not a count for each of its 2 classes.*damaged or was edited"):
        generator_from_checkpoint(tmp_path / "bad.pt")


def test_exports_without_or_with_damaged_counts(imbalanced_run, tmp_path):
    root, path = imbalanced_run
    out, meta = export_generator(path, tmp_path / "g.safetensors")
    doc = json.loads(meta.read_text())
    meta.write_text(json.dumps({k: v for k, v in doc.items() if k != "class_counts"}))  # an older export
    assert load_generator(out).class_counts is None
    meta.write_text(json.dumps(doc | {"class_counts": [True, 3]}))
    with pytest.raises(ckpt.CheckpointError, match="not a count for each of its 2 classes"):
        load_generator(out)


def test_a_folders_reference_set_spreads_over_its_subfolders_and_follows_its_contents(tmp_path, monkeypatch):
    from types import SimpleNamespace

    import sngan.metrics.class_scoring
    import sngan.metrics.reference
    import sngan.metrics.scoring
    from sngan.data import load_images
    from sngan.metrics.class_scoring import class_reference_stats
    from sngan.metrics.inception import Weights
    from sngan.metrics.reference import reference_stats

    embedded = []

    def features(extractor, batches, device, logits=True):  # a stand-in network: 4 pixel values per image
        images = torch.cat(list(batches))
        embedded.append(images)
        return images.flatten(1)[:, ::700].double().numpy(), None

    monkeypatch.setattr(sngan.metrics.reference, "extract", features)  # the reference images' one feature pass
    root = make_folder(tmp_path / "images")
    dataset = dataset_cfg("folder", root=str(root), resolution=32)
    inception = inception_cfg(stats_dir=str(tmp_path / "stats"), batch_size=64, dims=64)
    weights, data = Weights(tmp_path / "w.pth", "sha"), load_images("folder", str(root), 32)
    net = SimpleNamespace(name="inception", resize="legacy", dims=64)  # what the cache is named by
    _, path, _ = reference_stats(dataset, "train", 8, inception, net, weights, CPU)
    assert path.name.endswith("_32px_8-spread_64d.npz")  # never the name of a first-8 set cached before
    assert torch.equal(embedded[0], data.images[::2])  # 6 cats and 2 dogs, not the first 8 cats
    stats, _ = class_reference_stats(dataset, "train", 8, 2, inception, net, weights, CPU)
    assert torch.equal(embedded[1], data.images[::2]) and len(stats) == 2
    assert reference_stats(dataset, "train", 8, inception, net, weights, CPU)[2] is False  # cached
    Image.new("RGB", (32, 32), (9, 9, 9)).save(root / "dog" / "new.png")  # the folder changed: recomputed
    _, again, computed = reference_stats(dataset, "train", 8, inception, net, weights, CPU)
    assert computed and again != path and len(embedded) == 3
