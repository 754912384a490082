"""Precision, recall, density and coverage (sngan/metrics/prdc.py) against the ``prdc`` package, Naeem et al.'s
own implementation (sklearn's float64 distances, the whole matrix at once): equal to 1e-6 on random feature
sets, on a mode-collapsed toy case and whatever the block size; and where they are reported."""

import contextlib
import io

import numpy as np
import prdc as naeem
import pytest
import torch

from sngan.metrics import prdc as ours
from sngan.metrics.fid import KID_FEATURES_KEPT
from sngan.metrics.fid import KID_FEATURES_KEPT as PRDC_MAX
from sngan.metrics.measures import prdc_reals


def reference(real: np.ndarray, fake: np.ndarray) -> dict[str, float]:
    """The package's numbers, k = 3 for precision and recall and k = 5 for density and coverage."""
    with contextlib.redirect_stdout(io.StringIO()):  # it prints the counts
        pr, dc = naeem.compute_prdc(real, fake, 3), naeem.compute_prdc(real, fake, 5)
    return {"precision": pr["precision"], "recall": pr["recall"], "density": dc["density"], "coverage": dc["coverage"]}


def clusters(rng: np.random.Generator, n: int, centres: np.ndarray, which: np.ndarray, spread: float) -> np.ndarray:
    """``n`` points around the centres picked by ``which``, like pool features: non-negative, 0-3."""
    picks = rng.choice(which, n)
    return np.abs(centres[picks] + spread * rng.normal(size=(n, centres.shape[1]))).astype(np.float32)


@pytest.mark.parametrize(("n_real", "n_fake", "dims", "shift"), [(300, 200, 16, 0.0), (600, 450, 128, 0.05),
                                                                  (1000, 1000, 2048, 0.02)])  # fmt: skip
def test_equal_to_the_prdc_package_on_random_feature_sets(n_real, n_fake, dims, shift):
    rng = np.random.default_rng(n_real)
    centres = rng.uniform(0, 2, size=(10, dims))
    real = clusters(rng, n_real, centres, np.arange(10), 0.3)
    fake = clusters(rng, n_fake, centres + shift, np.arange(10), 0.3)
    got, expected = ours.prdc(real, fake), reference(real, fake)
    assert got == pytest.approx(expected, abs=1e-6)
    assert 0 < got["precision"] < 1 or 0 < got["recall"] < 1  # a case with something to get wrong


def test_a_mode_collapsed_generator_keeps_precision_and_loses_recall_and_coverage():
    rng = np.random.default_rng(7)
    centres = rng.uniform(1, 3, size=(10, 64))
    real = clusters(rng, 1000, centres, np.arange(10), 0.2)
    collapsed = clusters(rng, 500, centres, np.array([3]), 0.2)  # every sample from 1 of the 10 clusters
    healthy = clusters(rng, 500, centres, np.arange(10), 0.2)  # from all 10, as the reals
    got, well = ours.prdc(real, collapsed), ours.prdc(real, healthy)
    assert got == pytest.approx(reference(real, collapsed), abs=1e-6)
    assert well == pytest.approx(reference(real, healthy), abs=1e-6)
    # k = 3 in 64 dimensions: even a sample of the real distribution has precision ~0.7, not 1
    assert got["precision"] >= well["precision"] - 0.05 and got["density"] >= well["density"] - 0.1
    assert got["recall"] < 0.2 and got["coverage"] < 0.2  # 1 mode of 10
    assert well["recall"] > 0.6 and well["coverage"] > 0.8


def test_the_numbers_do_not_depend_on_the_block_size(monkeypatch):
    rng = np.random.default_rng(3)
    real, fake = rng.random((257, 32), dtype=np.float32), rng.random((190, 32), dtype=np.float32)
    whole = ours.prdc(real, fake)
    monkeypatch.setattr(ours, "BLOCK_FLOATS", 257 * 7 + 3)  # 7 rows a block, the last one short
    assert ours.prdc(real, fake) == whole
    radii = ours.kth_neighbour_radii(torch.as_tensor(real), (3, 5))
    assert radii[3].shape == (257,) and bool((radii[3] <= radii[5]).all())


def test_too_few_features_are_refused_with_the_counts():
    with pytest.raises(ValueError, match="more than 5 real and 3 generated features; got 5 and 50"):
        ours.prdc(np.zeros((5, 4)), np.zeros((50, 4)))


def test_the_real_subset_is_fixed_and_the_cap_matches_what_statistics_files_keep():
    features = np.arange(40, dtype=np.float32).reshape(20, 2)
    assert prdc_reals(features, 30) is features
    first, again = prdc_reals(features, 8), prdc_reals(features, 8)
    assert len(first) == 8 and np.array_equal(first, again) and len(np.unique(first[:, 0])) == 8
    assert PRDC_MAX == KID_FEATURES_KEPT
