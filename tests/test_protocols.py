"""Issue 40: scores under other protocols. DINOv2 features (FD_DINOv2, KID, precision/recall/density/coverage on
them), clean-fid's clean resize, and reference statistics that record the protocol that made them.

DINOv2 here is timm's ViT-S/14 DINOv2 with seeded random weights (the product's ViT-L/14 differs only in width
and depth: the same code path, a twentieth of the work); nothing is downloaded."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers import compose_cfg, dataset_cfg, inception_cfg, metrics_cfg, validated
from scipy import linalg
from torch.nn import functional as F

from sngan.config import ConfigError
from sngan.data import make_synthetic
from sngan.metrics.features import extract, uint8_batches
from sngan.metrics.inception import InceptionError, InceptionFeatures, Weights
from sngan.metrics.reference import MetricsError, reference_stats, stats_path
from sngan.metrics.resize import clean_resize
from sngan.metrics.scoring import make_scorer

timm = pytest.importorskip("timm")  # the dinov2 extra; the dev extra installs it
from sngan.metrics import dinov2  # noqa: E402

SMALL = "vit_small_patch14_dinov2.lvd142m"
CPU = torch.device("cpu")


def images(n: int, seed: int, size: int = 32) -> torch.Tensor:
    return (torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 255).round().to(torch.uint8)


@pytest.fixture(scope="module")
def small_state():
    """Seeded random ViT-S/14 DINOv2 weights as the real file holds them: position embeddings for 518x518."""
    torch.manual_seed(0)
    return dinov2.build_network(SMALL, img_size=518).state_dict()


@pytest.fixture(scope="module")
def dino(small_state):
    return dinov2.DinoV2Features.from_state_dict(small_state, "legacy", SMALL)


@pytest.fixture(scope="module")
def shallow_dino():
    """DINOv2 ViT-S/14 cut to two blocks: features of the same kind at a twelfth of the work, for the tests of
    what is computed from them."""
    torch.manual_seed(1)
    return dinov2.DinoV2Features(timm.create_model(SMALL, pretrained=False, img_size=224, num_classes=0, depth=2))


# ---------------------------------------------------------------- clean resize


@pytest.mark.parametrize("size", [299, 224])
def test_clean_resize_equals_clean_fids_on_the_same_images(size):
    """clean-fid's "clean" mode (cleanfid.resize.build_resizer("clean") is make_resizer("PIL", False, "bicubic",
    (299, 299))): float32 HWC in [0, 255], not rounded; ours, on the same uint8 images, equal to the bit."""
    from cleanfid.resize import make_resizer

    theirs = make_resizer("PIL", False, "bicubic", (size, size))
    batch = torch.cat([images(3, 0), make_synthetic(2, 32, seed=1).images])
    ours = clean_resize(batch, size)
    assert ours.dtype == torch.float32 and ours.shape == (5, 3, size, size)
    for mine, image in zip(ours, batch, strict=True):
        reference = theirs(image.permute(1, 2, 0).numpy())
        assert np.array_equal(mine.permute(1, 2, 0).numpy(), reference)
    assert not torch.equal(ours, ours.round())  # float values, not rounded back to uint8
    same = images(2, 3, size)
    assert torch.equal(clean_resize(same, size), same.float())  # already at the size: as they are


def test_the_clean_and_legacy_resizes_give_other_inception_features(random_inception_state):
    net = InceptionFeatures(random_inception_state, dims=64, logits=False)
    batch = make_synthetic(4, 32, seed=2).images
    legacy, _ = extract(net, uint8_batches(batch, 4), CPU, logits=False)
    net.resize = "clean"
    clean, _ = extract(net, uint8_batches(batch, 4), CPU, logits=False)
    assert clean.shape == legacy.shape and not np.allclose(clean, legacy, rtol=1e-3)


# ---------------------------------------------------------------- DINOv2


def test_the_product_network_is_dinov2_vit_l14_at_224_with_1024_features():
    with torch.device("meta"):
        net = dinov2.build_network()
    assert net.patch_embed.patch_size == (14, 14) and net.patch_embed.img_size == (224, 224)
    assert len(net.blocks) == 24 and net.num_features == 1024 and net.pos_embed.shape == (1, 1 + 16 * 16, 1024)


def test_dinov2_preprocessing_equals_edm2s_detector_on_the_same_images(small_state, dino):
    """NVlabs/edm2 calculate_metrics.py DINOv2Detector: uint8 -> bicubic antialiased resize to 224 (no clamp) ->
    /255 -> ImageNet mean/std -> the torch.hub model, whose position embeddings for 518x518 are resampled at every
    forward with scale (16 + 0.1) / 37 (bicubic, no antialias). Written out here from those sources."""
    batch = images(2, 5)
    x = F.interpolate(batch.float(), size=(224, 224), mode="bicubic", antialias=True) / 255
    x = (x - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor([0.229, 0.224, 0.225]).view(
        1, 3, 1, 1
    )
    net = dinov2.build_network(SMALL)
    state = dict(small_state)
    cls, grid = state["pos_embed"][:, :1], state["pos_embed"][:, 1:].reshape(1, 37, 37, -1).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, scale_factor=(16.1 / 37, 16.1 / 37), mode="bicubic", antialias=False)
    state["pos_embed"] = torch.cat([cls, grid.permute(0, 2, 3, 1).reshape(1, 256, -1)], dim=1)
    net.load_state_dict(state)
    with torch.no_grad():
        reference = net.eval()(x)
    ours, logits = extract(dino, uint8_batches(batch, 2), CPU)
    assert logits is None and ours.shape == (2, 384)
    # The same operations; ours divides by 255 before the resize (as for Inception), EDM2 after: ~1 ulp apart.
    assert np.allclose(ours, reference.double().numpy(), rtol=1e-5, atol=1e-5)
    # timm's own resampling (by size, antialiased) would give other features: the hub's is the one used.
    assert not torch.equal(dinov2.hub_pos_embed(small_state["pos_embed"], 16), _timm_resampled(small_state))


def _timm_resampled(state: dict[str, torch.Tensor]) -> torch.Tensor:
    from timm.layers import resample_abs_pos_embed

    return resample_abs_pos_embed(state["pos_embed"], [16, 16], num_prefix_tokens=1)


def test_dinov2_under_the_clean_resize_reads_clean_fids_224_pixels(small_state):
    clean = dinov2.DinoV2Features.from_state_dict(small_state, "clean", SMALL)
    batch = images(2, 6)
    ours, _ = extract(clean, uint8_batches(batch, 2), CPU)
    x = (clean_resize(batch, 224) / 255 - clean.mean) / clean.std
    with torch.no_grad():
        assert np.allclose(ours, clean.net(x).double().numpy(), rtol=1e-6, atol=1e-6)


def test_fd_dinov2_equals_the_frechet_distance_computed_independently(shallow_dino, tmp_path):
    """The rule's FD on DINOv2 features against statistics of the reference images, and an independent
    computation from the same features (numpy's covariance, scipy's square root)."""
    rule = metrics_cfg(name="t", n_fake=30, n_real=40, network="dinov2", measures=["fid", "kid", "prdc"],
                       kid_subsets=2, kid_subset_size=10, prdc_n=20)  # fmt: skip
    dataset = dataset_cfg("synthetic", size=40, resolution=32)
    weights = Weights(tmp_path / "w.safetensors", "sha")
    scorer = make_scorer(rule, inception_cfg(stats_dir=str(tmp_path)), dataset, CPU, extractor=(shallow_dino, weights))
    generated = images(30, 7)
    result = scorer.images(generated)
    assert set(result) == {"fd_dinov2", "kid_mean_dinov2", "kid_std_dinov2", "precision_dinov2", "recall_dinov2",
                           "density_dinov2", "coverage_dinov2"}  # fmt: skip
    with torch.no_grad():  # the network alone, on the same images: EDM2's resize and normalization
        fake, real = (
            shallow_dino(x.float() / 255)[0].double().numpy() for x in (generated, make_synthetic(40, 32).images)
        )
    mu1, mu2, s1, s2 = fake.mean(0), real.mean(0), np.cov(fake, rowvar=False), np.cov(real, rowvar=False)
    root = linalg.sqrtm(s1 @ s2).real
    independent = float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * root))
    assert result["fd_dinov2"] == pytest.approx(independent, rel=1e-5)
    said = scorer.describe()
    assert said["network"] == "dinov2" and said["resize"] == "legacy" and said["dims"] == 384
    assert said["dinov2_sha256"] == "sha" and "inception_sha256" not in said
    assert scorer.reference_path.name.endswith("_dinov2.npz")


def test_a_missing_weights_file_or_timm_is_one_paragraph(tmp_path, monkeypatch):
    with pytest.raises(InceptionError, match="inception.dinov2_weights points at .*does not exist"):
        dinov2.resolve_weights(str(tmp_path / "none.safetensors"))
    monkeypatch.setitem(__import__("sys").modules, "timm", None)
    with pytest.raises(InceptionError, match=r"pip install 'sngan\[dinov2\]'"):
        dinov2.build_network()


# ---------------------------------------------------------------- statistics record their protocol


def test_statistics_made_under_one_protocol_are_refused_under_another(tmp_path, random_inception_state):
    net = InceptionFeatures(random_inception_state, dims=64, logits=False, resize="clean")
    dataset = dataset_cfg("synthetic", size=60, resolution=32)
    inc = inception_cfg(stats_dir=str(tmp_path), dims=64)
    weights = Weights(tmp_path / "w.pth", "sha")
    ref, path, computed = reference_stats(dataset, "train", 50, inc, net, weights, CPU)
    assert computed and path.name.endswith("_64d_clean.npz") and (ref.network, ref.resize) == ("inception", "clean")
    legacy = stats_path(str(tmp_path), dataset, "train", 50, 64)
    legacy.write_bytes(path.read_bytes())  # a file of the clean protocol where the legacy one's belongs
    net.resize = "legacy"
    with pytest.raises(MetricsError, match="made with network=inception resize=clean, but the rule asks for "
                                           "network=inception resize=legacy"):  # fmt: skip
        reference_stats(dataset, "train", 50, inc, net, weights, CPU)
    # metrics.stats= a file of another protocol: refused too.
    rule = metrics_cfg(name="mine", n_fake=20, is_split_size=10, is_splits=2, stats=str(path))
    with pytest.raises(MetricsError, match="resize=clean"):
        make_scorer(rule, inc, dataset, CPU, extractor=(net, weights))


# ---------------------------------------------------------------- rules


def test_rules_name_their_network_and_resize_and_dinov2_takes_no_inception_score():
    cfg = validated(compose_cfg(["experiment=quickstart", "metrics=fd_dinov2_50k_train"]))
    assert (cfg.metrics.network, cfg.metrics.resize, cfg.metrics.measures) == (
        "dinov2",
        "legacy",
        ["fid", "kid", "prdc"],
    )
    cfg = validated(compose_cfg(["experiment=quickstart", "metrics=fid50k_train_clean"]))
    assert (cfg.metrics.network, cfg.metrics.resize, cfg.metrics.n_fake) == ("inception", "clean", 50_000)
    with pytest.raises(ConfigError, match="Inception Score needs Inception's classifier"):
        validated(compose_cfg(["experiment=quickstart", "metrics=fd_dinov2_50k_train", "metrics.name=mine",
                               "metrics.measures=[fid,is]"]))  # fmt: skip
    with pytest.raises(ConfigError, match="names a fixed rule on network=inception resize=legacy"):
        validated(compose_cfg(["experiment=quickstart", "metrics=fid50k_train", "metrics.resize=clean"]))
    with pytest.raises(ConfigError, match="metrics.network.*choose one of: inception, dinov2"):
        validated(compose_cfg(["experiment=quickstart", "metrics=fid_paper", "metrics.name=x", "metrics.network=clip"]))


# ---------------------------------------------------------------- several rules in one evaluate


def test_several_rules_in_one_evaluate_generate_once_and_give_each_rules_own_numbers(
    tmp_path, with_inception, monkeypatch
):
    """metrics= and also=[two rule files]: the images are drawn once (the most any rule takes), each rule writes
    its own table, and each table's numbers are those the rule gives alone."""
    from hydra import compose, initialize_config_module
    from test_outputs_safety import tiny_run

    import sngan.evaluate
    from sngan.cli.command_settings import check_evaluate
    from sngan.inference import SeededSampler

    run = tiny_run(tmp_path / "run", (1,))
    tiny = ["metrics=fid_paper", "metrics.name=tiny", "metrics.n_fake=10", "metrics.n_real=20", "metrics.prdc_n=0",
            "metrics.kid_subsets=2", "metrics.kid_subset_size=8", "metrics.is_splits=2",
            "metrics.is_split_size=5"]  # fmt: skip
    own = "defaults:\n  - fid_paper\n  - _self_\nn_real: 20\nprdc_n: 0\nkid_subsets: 2\nkid_subset_size: 8\n"
    (tmp_path / "clean.yaml").write_text(
        own + "name: tiny_clean\nn_fake: 10\nis_split_size: 5\nis_splits: 2\nresize: clean\n"
    )
    (tmp_path / "more.yaml").write_text(own + "name: tiny_more\nn_fake: 16\nis_split_size: 12\nis_splits: 2\n")
    drawn: list[int] = []

    class Counted(SeededSampler):
        def __call__(self, n: int) -> torch.Tensor:
            drawn.append(n)
            return super().__call__(n)

    monkeypatch.setattr(sngan.evaluate, "SeededSampler", Counted)

    def evaluate(*extra: str) -> dict:
        common = [f"ckpt={run}/checkpoints/ckpt_00000001.pt", "inception.dims=64", "device=cpu", "batch_size=5"]
        with initialize_config_module(config_module="sngan.configs", version_base="1.3"):
            raw = compose(config_name="evaluate", overrides=[*common, *tiny, *extra])
        return sngan.evaluate.evaluate(check_evaluate(raw))[0]

    evaluate(f"also=[{tmp_path / 'clean.yaml'},{tmp_path / 'more.yaml'}]")
    assert sum(drawn) == 24  # once: tiny_more's IS takes 2 x 12, the most of the three rules
    tables = {rule: json.loads((run / "checkpoints" / f"ckpt_00000001.{rule}.json").read_text())
              for rule in ("tiny", "tiny_clean", "tiny_more")}  # fmt: skip
    assert tables["tiny_clean"]["resize"] == "clean" and "resize" not in tables["tiny"]
    drawn.clear()
    alone = evaluate("overwrite=true")  # tiny alone: the same numbers as in the shared pass
    assert sum(drawn) == 10
    for key, value in alone["results"][0].items():
        assert tables["tiny"]["results"][0][key] == (
            pytest.approx(value, rel=1e-6, abs=1e-9) if isinstance(value, float) else value
        )
    assert tables["tiny_clean"]["results"][0]["fid"] != pytest.approx(alone["results"][0]["fid"], rel=1e-3)
    with pytest.raises(ConfigError, match="also="):
        evaluate("also=[tiny]", "overwrite=true")  # the main rule again
    with pytest.raises(ConfigError, match="neither out=, intra_class=true nor images="):
        evaluate(f"also=[{tmp_path / 'more.yaml'}]", f"out={tmp_path / 't.json'}")


# ---------------------------------------------------------------- DINOv2 through the commands


@pytest.fixture
def two_block_dinov2(tmp_path, monkeypatch):
    """The product's loader on a two-block ViT-S/14 DINOv2 (its file written with seeded random weights, position
    embeddings for 518x518 as the real file's): the whole command path at a fraction of ViT-L/14's cost."""
    two_blocks = lambda model=SMALL, img_size=224: timm.create_model(  # noqa: E731
        SMALL, pretrained=False, img_size=img_size, num_classes=0, depth=2
    )
    monkeypatch.setattr(dinov2, "build_network", two_blocks)
    torch.manual_seed(2)
    path = tmp_path / "dinov2.safetensors"
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in dinov2.build_network(img_size=518).state_dict().items()}, str(path))
    return path


def test_a_run_scored_on_dinov2_logs_fd_dinov2_and_keeps_the_best_by_it(two_block_dinov2, tmp_path):
    from helpers import TINY, run_training

    from sngan.utils import checkpoint as ckpt

    rule = ["metrics=fd_dinov2_50k_train", "metrics.name=tiny_dino", "metrics.n_fake=20", "metrics.n_real=30",
            "metrics.kid_subsets=2", "metrics.kid_subset_size=10", "metrics.prdc_n=12",
            f"inception.dinov2_weights={two_block_dinov2}", f"inception.stats_dir={tmp_path / 'stats'}"]  # fmt: skip
    result = run_training(tmp_path / "run", [*TINY, *rule, "train.steps=2", "dataset.size=60"])
    assert result["tiny_dino/fd_dinov2"] > 0 and "tiny_dino/precision_dinov2" in result
    assert not any(key.endswith(("/fid", "is_mean")) for key in result), result
    state = ckpt.load(tmp_path / "run" / "checkpoints" / "best.pt")
    assert state["best"]["metric"] == "ema/tiny_dino/fd_dinov2"  # the EMA's FD_DINOv2 chooses best.pt
    stats = list((tmp_path / "stats").glob("*.npz"))
    assert len(stats) == 1 and stats[0].name.endswith("_30_dinov2.npz")
    from sngan.training.progress import headline

    assert headline(result).startswith("ema/tiny_dino/fd_dinov2=")  # the number progress lines carry


def test_fid_stats_on_dinov2_writes_statistics_named_and_recorded_by_their_protocol(
    two_block_dinov2, tmp_path, command_line
):
    from sngan.metrics.fid import load_reference

    done = command_line("fid_stats", "dataset=synthetic", "dataset.size=40", "dataset.resolution=32", "n=30",
                        "network=dinov2", "resize=clean", f"inception.dinov2_weights={two_block_dinov2}",
                        f"inception.stats_dir={tmp_path}", "device=cpu", cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    path = tmp_path / "synthetic-k10-n40-s0_train_32px_30_dinov2_clean.npz"
    ref = load_reference(path)
    assert (ref.network, ref.resize, ref.mu.shape) == ("dinov2", "clean", (384,))
    bad = command_line("fid_stats", "dataset=synthetic", "network=clip", cwd=tmp_path)
    assert bad.returncode == 2 and "network" in bad.stderr and "inception, dinov2" in bad.stderr
