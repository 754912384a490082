"""The synthetic quality measure scores samples in chunks as they are drawn: the memory it holds does not
grow with the sample count (train.eval_samples=300000 was killed by the kernel's OOM killer at 24 GB in the
first evaluation), and the numbers are those of scoring all samples at once."""

from __future__ import annotations

import weakref
from collections.abc import Callable

import pytest
import torch
from helpers import TINY, compose_cfg, validated

from sngan.config import ConfigError
from sngan.data import make_prototypes
from sngan.metrics import class_agreement, evaluate_synthetic, synthetic_quality
from sngan.metrics import synthetic as synthetic_module
from sngan.models import build_models
from sngan.training.evaluation import class_streams

PROTOS = make_prototypes(10, 32, 0)


def old_nearest(samples: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The nearest prototype as the measure found it before chunking: one [N, K] cdist of all samples."""
    flat_s, flat_p = samples.reshape(len(samples), -1).double(), PROTOS.reshape(len(PROTOS), -1).double()
    return (torch.cdist(flat_s, flat_p) ** 2 / flat_s.shape[1]).sqrt().min(dim=1)


def old_quality(samples: torch.Tensor) -> dict[str, float]:
    nearest_dist, nearest = old_nearest(samples)
    good = nearest_dist <= 0.25
    per_mode = torch.bincount(nearest[good], minlength=10)
    covered = int((per_mode >= len(samples) / 40).sum())
    return {
        "quality": float(good.float().mean()),
        "modes_covered": float(covered),
        "mode_coverage": covered / 10,
        "median_distance": float(nearest_dist.median()),
    }


def samples_like_a_generators(n: int, seed: int) -> torch.Tensor:
    """Prototypes (uneven mode counts) plus noise of many sizes: good, borderline and bad samples."""
    gen = torch.Generator().manual_seed(seed)
    modes = torch.randint(0, 10, (n,), generator=gen) % torch.randint(4, 11, (n,), generator=gen)
    scale = torch.rand(n, 1, 1, 1, generator=gen) * 0.5
    return (PROTOS[modes] + scale * torch.randn(n, 3, 32, 32, generator=gen)).clamp(-1, 1)


def test_chunked_scores_are_the_all_at_once_scores():
    samples = samples_like_a_generators(1037, 0)
    new, old = synthetic_quality(samples, PROTOS), old_quality(samples)
    assert 0.2 < old["quality"] < 0.9 and 3 < old["modes_covered"] < 10  # a case where every number matters
    for key in ("quality", "modes_covered", "mode_coverage"):
        assert new[key] == old[key], key
    # the same median sample: its distance summed directly instead of through cdist's matrix product
    assert new["median_distance"] == pytest.approx(old["median_distance"], rel=1e-12, abs=0)
    for batch in (1, 7, 250, 1037):  # scored as drawn, in any batch size: bit for bit the same numbers
        draw = iter(samples.split(batch))
        assert evaluate_synthetic(lambda n, d=draw: next(d), PROTOS, n=1037, batch=batch) == new


def test_class_agreement_in_batches_equals_one_draw_per_class():
    def old_agreement(draws: dict[int, torch.Tensor]) -> dict[str, float]:
        hits, goods, per_class = 0, 0, []
        for k, samples in draws.items():
            nearest_dist, nearest = old_nearest(samples)
            good = nearest_dist <= 0.25
            if good.any():
                hits, goods = hits + int((nearest[good] == k).sum()), goods + int(good.sum())
                per_class.append(int((nearest[good] == k).sum()) / int(good.sum()))
        return {
            "class_accuracy": hits / goods,
            "class_accuracy_min": min(per_class),
            "class_coverage": len(per_class) / 10,
        }

    draws = {k: samples_like_a_generators(600, k) for k in range(10)}
    taken = {k: 0 for k in range(10)}

    def stream(k: int, n: int) -> torch.Tensor:  # the next n of class k's 600
        taken[k] += n
        return draws[k][taken[k] - n : taken[k]]

    assert class_agreement(stream, PROTOS, 600, batch=250) == old_agreement(draws)
    assert taken == {k: 600 for k in range(10)}


def track(make: Callable[[int], torch.Tensor]) -> tuple[Callable[[int], torch.Tensor], dict[str, int]]:
    """``make`` wrapped to count its batches alive at once, and the largest batch asked for."""
    seen = {"alive": 0, "most_alive": 0, "largest": 0}

    def gone() -> None:
        seen["alive"] -= 1

    def sample_fn(n: int) -> torch.Tensor:
        out = make(n)
        seen["alive"] += 1
        seen["most_alive"], seen["largest"] = max(seen["most_alive"], seen["alive"]), max(seen["largest"], n)
        weakref.finalize(out, gone)
        return out

    return sample_fn, seen


def test_memory_held_does_not_grow_with_the_sample_count(monkeypatch):
    rows = []
    measure = synthetic_module.rms_to_prototypes
    monkeypatch.setattr(synthetic_module, "rms_to_prototypes", lambda s, p: rows.append(len(s)) or measure(s, p))
    sample_fn, seen = track(lambda n: PROTOS[torch.arange(n) % 10] * 0.9)
    found = evaluate_synthetic(sample_fn, PROTOS, n=5000, batch=250)
    assert found["quality"] == 1.0 and found["modes_covered"] == 10
    assert seen["most_alive"] <= 2 and max(rows) <= 250  # one batch of pixels and of distances at a time
    rows.clear()
    synthetic_quality(PROTOS[torch.arange(5000) % 10], PROTOS)
    assert max(rows) <= synthetic_module.CHUNK  # given all samples, the [N, K] matrix is still made in chunks
    sample_class, seen = track(lambda n: PROTOS[torch.zeros(n, dtype=torch.long)])
    class_agreement(lambda k, n: sample_class(n), PROTOS, n_per_class=600, batch=250)
    assert seen["largest"] <= 250 and seen["most_alive"] <= 2


def test_the_training_loops_class_streams_continue_each_class():
    torch.manual_seed(0)
    g, _ = build_models("resnet32", z_dim=8, width=0.125, num_classes=3)
    one = class_streams(g, torch.device("cpu"), 5)(2, 7)
    draw = class_streams(g, torch.device("cpu"), 5)
    parts = [draw(2, 3), draw(1, 4), draw(2, 4)]  # another class in between does not disturb class 2
    torch.testing.assert_close(torch.cat([parts[0], parts[2]]), one, rtol=0, atol=1e-5)


def test_eval_samples_has_an_upper_limit_that_says_why():
    validated(compose_cfg(TINY + ["train.eval_samples=1000000"]))
    with pytest.raises(ConfigError, match=r"train.eval_samples=1000001 .* at most 1,000,000: .* standard error"):
        validated(compose_cfg(TINY + ["train.eval_samples=1000001"]))
