"""The loop's evaluations: the synthetic quality measure and a metric rule's FID/IS/KID of G and its EMA, drawn
from fixed seeds (same weights, same numbers: ``python -m sngan.evaluate`` reproduces them), and the best FID."""

from __future__ import annotations

from collections.abc import Callable

import torch

from sngan.data import ImageData
from sngan.inference import EVAL_SEED_OFFSET, SeededSampler
from sngan.metrics import class_agreement, evaluate_synthetic
from sngan.metrics.measures import headline_key
from sngan.metrics.scoring import Scorer
from sngan.training.state import Run
from sngan.training.tracking import Tracker
from sngan.utils import distributed
from sngan.utils.memory import EvaluationOutOfMemory, noted


def score(
    run: Run, data: ImageData, tracker: Tracker, scorer: Scorer | None, seed: int, eval_samples: int
) -> dict[str, float]:
    """Synthetic quality (``eval_samples`` images) and FID/IS/KID of G (and of its EMA), drawn from
    ``seed`` + EVAL_SEED_OFFSET: same weights, same numbers."""
    device, seed = run.fixed_z.device, seed + EVAL_SEED_OFFSET
    result: dict[str, float] = {}
    nets = {"": run.generator} | ({"ema/": run.ema} if run.ema is not None else {})
    main = distributed.current().is_main
    # Conditional: classes as often as in the training set (the real side's mix), whatever train.fake_labels.
    sampler = lambda net: SeededSampler(net, device, seed, class_counts=run.class_counts)  # noqa: E731
    distributed.sync_buffers(run.generator, run.ema)  # every rank samples with rank 0's BatchNorm statistics
    failures: list[str] = []  # out of memory in the synthetic check (rank 0): said to every rank at the end
    for prefix, net in nets.items():
        if data.prototypes is not None and main and not failures:  # cheap: rank 0 alone
            with noted(failures, device):
                found = evaluate_synthetic(sampler(net), data.prototypes, n=eval_samples)
                if run.classes:  # classes are the prototypes: does G obey its label?
                    per_class = max(1, eval_samples // len(run.classes))
                    found |= class_agreement(class_streams(net, device, seed), data.prototypes, per_class)
                result |= {f"{prefix}synthetic/{k}": v for k, v in found.items()}
        if scorer is not None:  # its own sampler from the same seed: python -m sngan.evaluate reproduces it
            result |= {f"{prefix}{scorer.rule.name}/{k}": v for k, v in scorer(sampler(net)).items()}
    result, failed = distributed.broadcast((result, failures))  # every rank takes the same best.pt decision
    if failed:
        raise EvaluationOutOfMemory(failed[0])
    if result:
        tracker.metrics(result, run.step)
    return result


def new_best(run: Run, result: dict[str, float], rule: str, network: str = "inception") -> bool:
    """Whether ``result`` holds the lowest FID of rule ``rule`` yet (the Frechet distance on its ``network``; the
    EMA's where there is one); if so, ``run`` records it (a run scored under another rule before starts over)."""
    key = f"{'ema/' if run.ema is not None else ''}{rule}/{headline_key(network)}"
    if key in result and (run.best_metric != key or run.best_fid is None or result[key] < run.best_fid):
        run.best_fid, run.best_step, run.best_metric = result[key], run.step, key
        return True
    return False


def skipped_evaluation(step: int, why: str, batch_size: int) -> str:
    return (
        f"warning: the evaluation at step {step} ran out of memory ({why}) and is skipped; training goes on "
        f"and the next evaluation runs as scheduled. To fit it, embed fewer images at once "
        f"(inception.batch_size={batch_size}, e.g. {max(1, batch_size // 2)}), keep the training images in host "
        f"memory (train.data_on=host), or score the saved checkpoints afterwards with python -m sngan.evaluate."
    )


def class_streams(net: torch.nn.Module, device: torch.device, seed: int) -> Callable[[int, int], torch.Tensor]:
    """``draw(k, n)``: the next n images of class k, from one seeded stream per class (seed + k), so that
    drawing a class in batches gives the images one draw would."""
    streams: dict[int, SeededSampler] = {}

    def draw(k: int, n: int) -> torch.Tensor:
        if k not in streams:
            streams[k] = SeededSampler(net, device, seed + k, label=k)
        return streams[k](n)

    return draw
