"""The Inception Score follows each rule's stated split size (issue 37): fid_paper is the SNGAN authors'
training-time IS (one split of 5,000), fid_paper_final their final one (10 splits of 5,000, 50,000 images),
never 10 splits of 500 under the paper's name; images that cannot fill the splits give no IS."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import compose_cfg, dataset_cfg, inception_cfg, metrics_cfg, validated
from scipy.special import softmax
from scipy.stats import entropy

from sngan.config import MetricsConfig
from sngan.metrics.fid import ReferenceStats, inception_score, save_reference
from sngan.metrics.inception import Weights
from sngan.metrics.measures import measure
from sngan.metrics.reference import MetricsError
from sngan.metrics.scoring import Scorer, describe_reference, make_scorer

CPU = torch.device("cpu")


def preset(name: str) -> MetricsConfig:
    return validated(compose_cfg([f"metrics={name}"])).metrics


def independent_is(logits: np.ndarray, split_size: int) -> list[float]:
    """exp(mean KL(p(y|x) || p(y))) of each consecutive split of ``split_size``: scipy's softmax and entropy."""
    scores = []
    for start in range(0, len(logits), split_size):
        p = softmax(logits[start : start + split_size], axis=1)
        scores.append(float(np.exp(np.mean(entropy(p, p.mean(axis=0), axis=1)))))
    return scores


def test_is_of_5000_image_splits_equals_an_independent_computation_and_differs_from_500_image_splits():
    rng = np.random.default_rng(0)
    # fixed logits of 50,000 images over 100 classes, peaked to different degrees (as a generator's are)
    logits = rng.normal(size=(50_000, 100)) * rng.uniform(0.5, 4.0, size=(50_000, 1))
    features = rng.normal(size=(50_000, 4))
    reference = ReferenceStats(np.zeros(4), np.eye(4))  # no real features: FID and IS only
    final, paper = preset("fid_paper_final"), preset("fid_paper")
    assert (final.is_split_size, final.is_splits, final.n_fake, paper.is_split_size, paper.is_splits) == (
        5000, 10, 5000, 5000, 1,
    )  # fmt: skip

    got = measure(features, logits, reference, final)
    expected = independent_is(logits, 5000)
    assert len(expected) == 10
    assert got["is_mean"] == pytest.approx(np.mean(expected), rel=1e-9)
    assert got["is_std"] == pytest.approx(np.std(expected), rel=1e-7)
    # FID of the first n_fake only: the 45,000 IS images beyond them leave it as fid_paper has it
    training = measure(features[:5000], logits[:5000], reference, paper)
    assert got["fid"] == training["fid"]
    # the training-time rule: one split of the first 5,000, and no std to report over one split
    assert set(training) == {"fid", "is_mean"}
    assert training["is_mean"] == pytest.approx(expected[0], rel=1e-9)
    # what fid_paper printed before: 10 splits of 500 of the same 5,000 images, biased low
    old = independent_is(logits[:5000], 500)
    assert inception_score(logits[:5000], 10)[0] == pytest.approx(np.mean(old), rel=1e-9)
    assert np.mean(old) < training["is_mean"] - 0.05 and abs(np.mean(old) - got["is_mean"]) > 0.05


def test_the_other_rules_state_their_split_sizes():
    assert (preset("fid50k_train").is_split_size, preset("fid50k_train").is_splits) == (5000, 10)
    assert (preset("fid10k_test").is_split_size, preset("fid10k_test").is_splits) == (1000, 10)
    for name in ("fid50k_train", "fid10k_test"):  # IS of exactly the FID images: nothing drawn beyond them
        assert preset(name).n_generated == preset(name).n_fake == preset(name).is_images


class Projection:
    """A stand-in for Inception: fixed random projections of the pixels to features and logits (fast)."""

    dims, with_logits, name, resize, input_size = 6, True, "inception", "legacy", 8

    def __init__(self) -> None:
        g = torch.Generator().manual_seed(0)
        self.w_f, self.w_l = torch.randn(3 * 8 * 8, 6, generator=g), torch.randn(3 * 8 * 8, 10, generator=g) * 3

    def place(self, device: torch.device) -> Projection:
        return self

    def __call__(self, images: torch.Tensor, logits: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        x = images.flatten(1)
        return x @ self.w_f, (x @ self.w_l if logits else None)


def stream(seed: int = 1):
    """A seeded sampler: the same images in the same order, however they are asked for."""
    g = torch.Generator().manual_seed(seed)
    return lambda n: torch.rand(n, 3, 8, 8, generator=g) * 2 - 1


def scorer(rule: MetricsConfig, tmp_path) -> Scorer:
    real = torch.rand(40, 3, 8, 8, generator=torch.Generator().manual_seed(2)) * 255  # the same reals each time
    features, _ = Projection()(real / 255)
    reference = save_reference(tmp_path / "ref.npz", features.double().numpy(), "sha")
    return Scorer(rule, Projection(), Weights(tmp_path / "w.pth", "sha"), reference, None, CPU, 5)  # type: ignore[arg-type]


def test_a_scorer_draws_the_is_images_beyond_n_fake_and_leaves_fid_kid_prdc_as_they_were(tmp_path):
    counts = dict(n_fake=12, real_split="train", n_real=None, kid_subsets=3, kid_subset_size=10, prdc_n=12)
    small = MetricsConfig("small", is_split_size=6, is_splits=2, **counts)  # IS of the 12 FID images
    large = MetricsConfig("large", is_split_size=9, is_splits=3, **counts)  # IS of 27: 15 drawn beyond them
    a, b = scorer(small, tmp_path)(stream()), scorer(large, tmp_path)(stream())
    for key in ("fid", "kid_mean", "kid_std", "precision", "recall", "density", "coverage"):
        assert a[key] == b[key], key
    pixels = stream()(27)
    _, logits = Projection()(((pixels.clamp(-1, 1) + 1) * 127.5).round() / 255)  # rounded as a PNG would be
    expected = independent_is(logits.double().numpy(), 9)
    assert b["is_mean"] == pytest.approx(np.mean(expected), rel=1e-6) and b["is_mean"] != a["is_mean"]
    assert b["is_std"] == pytest.approx(np.std(expected), rel=1e-5)


def test_images_that_cannot_fill_the_rules_splits_get_no_is_and_a_note(tmp_path, capsys):
    rule = MetricsConfig("r", 12, "train", None, is_split_size=10, is_splits=2, kid_subsets=3, kid_subset_size=10)
    images = (torch.rand(15, 3, 8, 8) * 255).to(torch.uint8)
    result = scorer(rule, tmp_path).images(images)
    assert "fid" in result and "kid_mean" in result and "is_mean" not in result and "is_std" not in result
    note = capsys.readouterr().err
    assert "no Inception Score: rule r takes it over 2 splits of 10 images: 20; 15 images cannot fill them" in note
    assert "is_mean" in scorer(rule, tmp_path).images(torch.cat([images, images]))  # 30 fill them


def test_the_evaluate_table_and_the_dry_run_state_the_is_protocol(tmp_path):
    from sngan.cli.tables import check_protocol
    from sngan.utils.outputs import OutputError

    described = scorer(preset("fid_paper_final"), tmp_path).describe()
    assert (described["rule"], described["is_split_size"], described["is_splits"]) == ("fid_paper_final", 5000, 10)
    # a table of fid_paper written before the split size (10 splits of 500) is not added to
    new = scorer(preset("fid_paper"), tmp_path).describe()
    old = {key: value for key, value in new.items() if key != "is_split_size"} | {"is_splits": 10}
    with pytest.raises(OutputError, match="is_split_size None there, 5000 now; is_splits 10 there, 1 now"):
        check_protocol(tmp_path / "eval_fid_paper.json", old, new)
    stats = tmp_path / "stats"
    for name, said in (
        ("fid_paper", "5,000 generated images (IS: 1 split of 5,000 images, no std) against"),
        ("fid_paper_final", "5,000 generated images (IS: 10 splits of 5,000 images: 50,000) against"),
        ("fid10k_test", "10,000 generated images (IS: 10 splits of 1,000 images: 10,000) against"),
    ):
        cfg = validated(compose_cfg(["dataset=cifar10", f"metrics={name}", f"inception.stats_dir={stats}"]))
        assert said in describe_reference(cfg.metrics, cfg.inception, cfg.dataset)


def test_a_preset_name_with_other_is_splits_is_refused_naming_the_rule_that_has_them(tmp_path):
    cfg = validated(compose_cfg(["dataset=cifar10", "metrics=fid_paper", "metrics.is_splits=10"]))
    refused = r"Score is 1 split of 5,000 images.*10 splits of 5,000 images: 50,000\. Use metrics=fid_paper_final"
    with pytest.raises(MetricsError, match=refused):
        describe_reference(cfg.metrics, cfg.inception, cfg.dataset)  # the dry run
    with pytest.raises(MetricsError, match="name of its own"):  # before Inception is loaded
        make_scorer(cfg.metrics, inception_cfg(weights=str(tmp_path / "none.pth")), cfg.dataset, CPU)
    renamed = metrics_cfg(name="fid_paper_500", n_fake=5000, n_real=10000, is_split_size=500, is_splits=10)
    dataset = dataset_cfg("cifar10")
    assert "IS: 10 splits of 500 images: 5,000" in describe_reference(renamed, inception_cfg(), dataset)


@pytest.mark.parametrize("key,value", [("is_split_size", 1), ("is_splits", 0)])
def test_split_counts_out_of_range_are_refused(key, value):
    from sngan.config import ConfigError

    with pytest.raises(ConfigError, match=f"metrics.{key}"):
        validated(compose_cfg(["metrics=fid_paper", "metrics.name=mine", f"metrics.{key}={value}"]))


def test_a_checkpoint_stored_before_the_split_size_still_loads_for_evaluate():
    """Runs before issue 37 stored fid_paper with 10 splits and no split size; evaluate validates the stored
    settings, and must not refuse them for the IS protocol they no longer name."""
    from pathlib import Path

    from sngan.cli.settings import check_stored
    from sngan.utils import checkpoint as ckpt

    stored = ckpt.load(Path(__file__).parent / "fixtures" / "legacy_cb20605" / "ckpt_00000002.pt")["config"]
    stored["metrics"] = {"name": "fid_paper", "n_fake": 5000, "real_split": "train", "n_real": 10000,
                         "is_splits": 10, "kid_subsets": 100, "kid_subset_size": 1000, "stats": None}  # fmt: skip
    assert check_stored(stored).metrics.name == "fid_paper"
