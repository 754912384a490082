"""FID, IS and KID against pytorch-fid and closed forms; the Inception network; the statistics cache."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import dataset_cfg, inception_cfg, metrics_cfg
from PIL import Image
from pytorch_fid.fid_score import calculate_frechet_distance

from sngan.config import MetricsConfig
from sngan.data import load_images, make_synthetic
from sngan.metrics.class_scoring import class_reference_stats
from sngan.metrics.features import extract, full_fp32, generated_batches, uint8_batches
from sngan.metrics.fid import (
    feature_statistics,
    frechet_distance,
    inception_score,
    kernel_inception_distance,
    load_reference,
    save_reference,
)
from sngan.metrics.inception import InceptionError, InceptionFeatures, Weights, random_state_dict, resolve_weights
from sngan.metrics.measures import measure
from sngan.metrics.reference import MetricsError, reference_stats
from sngan.metrics.scoring import load_extractor


def random_gaussian_stats(rng: np.random.Generator, d: int) -> tuple[np.ndarray, np.ndarray]:
    a = rng.normal(size=(d, 2 * d))
    return rng.normal(size=d), a @ a.T / (2 * d)


@pytest.mark.parametrize("d", [8, 64, 192])
def test_frechet_distance_equals_pytorch_fid(d):
    rng = np.random.default_rng(d)
    (mu1, s1), (mu2, s2) = random_gaussian_stats(rng, d), random_gaussian_stats(rng, d)
    ours = frechet_distance(mu1, s1, mu2, s2)
    theirs = calculate_frechet_distance(mu1, s1, mu2, s2)
    assert ours == pytest.approx(theirs, rel=1e-8)
    assert ours > 0


def test_frechet_distance_closed_form_and_zero():
    rng = np.random.default_rng(0)
    mu1, sigma = random_gaussian_stats(rng, 32)
    mu2 = mu1 + rng.normal(size=32)
    # Equal covariances: the trace term vanishes, FID = ||mu1 - mu2||^2.
    assert frechet_distance(mu1, sigma, mu2, sigma) == pytest.approx(float(((mu1 - mu2) ** 2).sum()), rel=1e-8)
    # Diagonal covariances: sum of (sqrt(a) - sqrt(b))^2.
    a, b = rng.uniform(0.5, 2, 16), rng.uniform(0.5, 2, 16)
    assert frechet_distance(np.zeros(16), np.diag(a), np.zeros(16), np.diag(b)) == pytest.approx(
        float(((np.sqrt(a) - np.sqrt(b)) ** 2).sum()), rel=1e-8
    )
    features = rng.normal(size=(500, 16))
    mu, s = feature_statistics(features)
    assert abs(frechet_distance(mu, s, mu, s)) < 1e-9


def test_inception_score_uniform_is_one_and_k_confident_classes_is_k():
    assert inception_score(np.zeros((100, 1008)), splits=10) == pytest.approx((1.0, 0.0), abs=1e-9)
    k, per_split = 7, 70
    logits = np.full((10 * per_split, 1008), -50.0)
    logits[np.arange(10 * per_split), np.arange(10 * per_split) % k] = 50.0
    mean, std = inception_score(logits, splits=10)
    assert mean == pytest.approx(k, rel=1e-6) and std < 1e-6
    # Every image confident in the same class: no diversity, IS = 1.
    same = np.full((100, 1008), -50.0)
    same[:, 3] = 50.0
    assert inception_score(same)[0] == pytest.approx(1.0, abs=1e-6)


def test_kid_unbiased_near_zero_for_one_distribution_and_negative_for_a_set_with_itself():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(600, 32)), rng.normal(size=(600, 32))
    mean, std = kernel_inception_distance(x, y, subsets=50, subset_size=300)
    assert abs(mean) < 3 * std + 1e-3
    shifted, _ = kernel_inception_distance(x, y + 0.5, subsets=50, subset_size=300)
    assert shifted > 10 * max(abs(mean), std)
    itself, _ = kernel_inception_distance(x, x, subsets=5, subset_size=600)
    assert -0.05 < itself < 0  # the diagonal is excluded from k(x, x) but not from k(x, y)


@pytest.fixture(scope="module")
def random_net(random_inception_state):
    return InceptionFeatures(random_inception_state, dims=64)


@pytest.mark.slow
@pytest.mark.parametrize("dims", [64, 192])
def test_random_inception_features_are_usable(dims):
    """The seeded random network the tests score with gives spread-out features; at 64 dims (what the tests
    use) of full rank, at 192 (the second block, only checked for its shape and spread here) on fewer images."""
    net = InceptionFeatures(random_state_dict(seed=0), dims=dims, logits=False)
    n = dims + 40 if dims == 64 else 12  # enough images for a covariance of full rank where it is checked
    images = make_synthetic(n, 32, seed=3).images
    features, logits = extract(net, uint8_batches(images, 100), torch.device("cpu"), logits=False)
    assert logits is None and features.shape == (n, dims) and features.dtype == np.float64
    std = features.std(axis=0)
    assert 1e-2 < std.min() and std.max() < 1e2
    if dims == 64:
        assert np.linalg.matrix_rank(np.cov(features, rowvar=False)) == dims


def test_one_pass_gives_features_and_1008_logits(random_net):
    images = torch.rand(4, 3, 32, 32)
    features, logits = random_net(images)
    assert features.shape == (4, 64) and logits is not None and logits.shape == (4, 1008)
    alone, none = random_net(images, logits=False)
    assert none is None and torch.equal(alone, features)


def test_on_the_cpu_the_network_runs_channels_last_with_the_same_features(random_net):
    images = torch.rand(6, 3, 32, 32)
    net = random_net.place(torch.device("cpu"))
    assert net.net.Conv2d_1a_3x3.conv.weight.is_contiguous(memory_format=torch.channels_last)
    fast, _ = net(images, logits=False)
    net.memory_format = torch.contiguous_format
    plain, _ = net.to(memory_format=torch.contiguous_format)(images, logits=False)
    assert not net.net.Conv2d_1a_3x3.conv.weight.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(fast, plain, rtol=1e-4, atol=1e-5)  # sums in another order, same features


def test_full_fp32_turns_tf32_and_cudnn_timing_off_and_restores_them_through_the_training_api():
    """Inside, TF32 is off by every getter torch has; none of them raises for a mix of the legacy and
    the newer settings (torch >= 2.9 raises so at the next cuBLAS or cuDNN call: FID after TF32 training)."""
    from sngan.training.speed import set_tf32

    def tf32() -> tuple[bool, bool, bool]:
        return (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
                torch._C._get_cublas_allow_tf32())  # fmt: skip

    before = (torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark)
    try:
        set_tf32(True)
        torch.backends.cudnn.benchmark = True  # what training sets on a GPU (speed.set_backends)
        with full_fp32():
            assert tf32() == (False, False, False) and not torch.backends.cudnn.benchmark
            assert torch.get_float32_matmul_precision() == "highest"
        assert tf32() == (True, True, True) and torch.backends.cudnn.benchmark
    finally:  # this process's settings as they were
        torch.set_float32_matmul_precision(before[0])
        torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark = before[1:]


def test_generated_images_are_rounded_like_pngs():
    x = torch.tensor([-1.0, -0.999, 0.0, 0.5, 1.0, 2.0]).view(1, 1, 2, 3)
    (batch,) = list(generated_batches(lambda n: x, 1, 10))
    assert batch.dtype == torch.uint8 and batch.flatten().tolist() == [0, 0, 128, 191, 255, 255]


@pytest.mark.slow
def test_score_of_a_set_against_its_own_statistics(random_net, tmp_path):
    images = make_synthetic(80, 32, seed=1).images
    features, logits = extract(random_net, uint8_batches(images, 40), torch.device("cpu"))
    ref = save_reference(tmp_path / "s.npz", features, "abc")
    rule = MetricsConfig("t", 80, "train", None, is_split_size=40, is_splits=2, kid_subsets=5, kid_subset_size=40)
    result = measure(features, logits, ref, rule)
    assert abs(result["fid"]) < 1e-6
    assert result["is_mean"] >= 1.0
    assert set(result) == {
        "fid",
        "is_mean",
        "is_std",
        "kid_mean",
        "kid_std",
        "precision",
        "recall",
        "density",
        "coverage",
    }
    # every generated feature is a real one: inside its own ball, and every real ball holds one
    assert result["precision"] == result["recall"] == result["coverage"] == 1.0 and result["density"] >= 1.0


@pytest.mark.slow
def test_reference_statistics_round_trip_and_are_not_recomputed(random_net, tmp_path):
    dataset = dataset_cfg("synthetic", size=150, resolution=32)
    inc = inception_cfg(stats_dir=str(tmp_path), batch_size=64, dims=64)
    cpu = torch.device("cpu")
    weights = Weights(tmp_path / "w.pth", "sha-a")
    ref, path, computed = reference_stats(dataset, "train", 100, inc, random_net, weights, cpu)
    assert computed and path.name == "synthetic-k10-n150-s0_train_32px_100_64d.npz"
    loaded = load_reference(path)
    assert np.array_equal(loaded.mu, ref.mu) and np.array_equal(loaded.sigma, ref.sigma)
    assert loaded.count == 100 and loaded.weights_sha256 == "sha-a" and loaded.features.shape == (100, 64)
    mtime = path.stat().st_mtime_ns
    again, _, computed = reference_stats(dataset, "train", 100, inc, random_net, weights, cpu)
    assert not computed and path.stat().st_mtime_ns == mtime and np.array_equal(again.sigma, ref.sigma)
    # Other weights: recomputed, never mixed in.
    _, _, computed = reference_stats(dataset, "train", 100, inc, random_net, Weights(weights.path, "sha-b"), cpu)
    assert computed and load_reference(path).weights_sha256 == "sha-b"


def test_per_class_statistics_embed_the_reference_images_once_and_are_cached(random_net, tmp_path, monkeypatch, capsys):
    import sngan.metrics.reference as reference

    dataset = dataset_cfg("synthetic", size=40, resolution=32, modes=3)
    inc = inception_cfg(stats_dir=str(tmp_path), batch_size=64, dims=64)
    cpu, weights = torch.device("cpu"), Weights(tmp_path / "w.pth", "sha-a")
    passes = []
    monkeypatch.setattr(reference, "extract", lambda *a, **k: passes.append(1) or extract(*a, **k))
    stats, cache = class_reference_stats(dataset, "train", 30, 3, inc, random_net, weights, cpu)
    assert len(passes) == 1 and cache.name == "synthetic-k3-n40-s0_train_32px_30_64d_classes.npz"
    # Each class's statistics are those of its own images' features.
    data = load_images("synthetic", "", 32, synthetic_size=40, synthetic_modes=3)
    features, _ = extract(random_net, uint8_batches(data.images[:30], 64), cpu, logits=False)
    for k, (mu, sigma) in enumerate(stats):
        mu_k, sigma_k = feature_statistics(features[data.labels[:30].numpy() == k])
        np.testing.assert_allclose(mu, mu_k, rtol=1e-12), np.testing.assert_allclose(sigma, sigma_k, rtol=1e-10)
    # The same pass wrote the reference statistics of all 30 images: the scorer does not embed them again.
    ref, _, computed = reference_stats(dataset, "train", 30, inc, random_net, weights, cpu)
    assert not computed and ref.count == 30 and np.allclose(ref.mu, features.mean(0))
    again, _ = class_reference_stats(dataset, "train", 30, 3, inc, random_net, weights, cpu)
    assert len(passes) == 1 and all(np.array_equal(a[1], b[1]) for a, b in zip(again, stats))
    # Other weights or an unreadable cache: recomputed, with a warning.
    class_reference_stats(dataset, "train", 30, 3, inc, random_net, Weights(weights.path, "sha-b"), cpu)
    cache.write_bytes(b"truncated")
    class_reference_stats(dataset, "train", 30, 3, inc, random_net, weights, cpu)
    assert len(passes) == 3 and "recomputing" in capsys.readouterr().err
    with pytest.raises(MetricsError, match="class 3 has 0 in the reference set"):
        class_reference_stats(dataset, "train", 30, 4, inc, random_net, weights, cpu)
    with pytest.raises(MetricsError, match=r"holds only 40.*metrics.name=fid_all_train metrics.n_real=null: all 40"):
        class_reference_stats(dataset, "train", 50, 3, inc, random_net, weights, cpu)


def test_missing_weights_error_names_the_file_and_where(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    with pytest.raises(InceptionError) as info:
        resolve_weights(None, download=False)
    message = str(info.value)
    assert "pt_inception-2015-12-05-6726825d.pth" in message and str(tmp_path / "th" / "hub" / "checkpoints") in message
    assert "github.com/mseitzer/pytorch-fid/releases" in message and "metrics=none" in message
    with pytest.raises(InceptionError, match="inception.weights points at"):
        resolve_weights(str(tmp_path / "nope.pth"))
    corrupt = tmp_path / "bad.pth"
    corrupt.write_bytes(b"not a checkpoint")
    with pytest.raises(InceptionError, match="cannot be loaded"):
        load_extractor(inception_cfg(weights=str(corrupt)))


def _write_pngs(folder: Path, images: torch.Tensor) -> None:
    folder.mkdir(parents=True)
    for i, img in enumerate(images):
        Image.fromarray(img.permute(1, 2, 0).numpy()).save(folder / f"{i:04d}.png")


def _pytorch_fid(env: dict[str, str], *paths: Path) -> float:
    out = subprocess.run(
        [sys.executable, "-m", "pytorch_fid", "--dims", "64", "--device", "cpu", "--num-workers", "0",
         *map(str, paths)],
        capture_output=True, text=True, env=env, timeout=600, check=True,
    )  # fmt: skip
    return float(re.search(r"FID:\s+([-\d.eE+]+)", out.stdout).group(1))


@pytest.mark.slow
def test_fid_of_two_folders_equals_python_m_pytorch_fid(inception_home, tmp_path, monkeypatch):
    a, b = tmp_path / "a", tmp_path / "b"
    _write_pngs(a, make_synthetic(80, 32, seed=0).images)  # 80 > 64 dims: covariances of full rank
    _write_pngs(b, make_synthetic(80, 32, seed=1, shift=0.3).images)
    env = {**os.environ, "TORCH_HOME": str(inception_home), "SNGAN_STATS_DIR": str(tmp_path / "stats")}
    files = []
    for folder in (a, b):  # our command, as a user runs it
        out = subprocess.run(
            [sys.executable, "-m", "sngan.fid_stats", "dataset=folder", f"dataset.root={folder}",
             "dataset.resolution=32", "inception.dims=64", "device=cpu"],
            capture_output=True, text=True, env=env, timeout=600,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        files.append(Path(out.stdout.strip().splitlines()[-1]))
    ra, rb = load_reference(files[0]), load_reference(files[1])
    ours = frechet_distance(ra.mu, ra.sigma, rb.mu, rb.sigma)
    theirs = _pytorch_fid(env, a, b)
    assert ours > 1e-3 and ours == pytest.approx(theirs, rel=1e-4)
    # Our statistics files are ones pytorch-fid reads (its function, in this process: they are .npz files).
    from pytorch_fid.fid_score import calculate_fid_given_paths

    monkeypatch.setenv("TORCH_HOME", str(inception_home))  # it loads its network before it reads them
    read = calculate_fid_given_paths([str(f) for f in files], batch_size=50, device="cpu", dims=64, num_workers=0)
    assert read == pytest.approx(theirs, rel=1e-4)


def test_a_published_statistics_file_replaces_the_cache(random_net, tmp_path):
    from sngan.metrics.reference import MetricsError
    from sngan.metrics.scoring import make_scorer

    rng = np.random.default_rng(0)
    mu, sigma = random_gaussian_stats(rng, 64)
    np.savez(tmp_path / "published.npz", mu=mu, sigma=sigma)  # what pytorch-fid --save-stats writes
    metrics = metrics_cfg(name="t", n_fake=20, is_split_size=10, is_splits=2, stats=str(tmp_path / "published.npz"))
    inc = inception_cfg(stats_dir=str(tmp_path / "cache"), dims=64)
    weights = Weights(tmp_path / "w.pth", "sha")
    dataset = dataset_cfg("synthetic", size=50, resolution=32)
    scorer = make_scorer(metrics, inc, dataset, torch.device("cpu"), extractor=(random_net, weights))
    result = scorer(lambda n: torch.rand(n, 3, 32, 32) * 2 - 1)
    assert set(result) == {"fid", "is_mean", "is_std"} and result["fid"] > 0  # no features, so no KID
    assert not (tmp_path / "cache").exists() and scorer.describe()["reference_stats"].endswith("published.npz")
    with pytest.raises(MetricsError, match="64"):
        make_scorer(metrics, inception_cfg(dims=192), dataset, torch.device("cpu"), extractor=(random_net, weights))
