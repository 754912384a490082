"""Several metric rules on one set of images (``python -m sngan.evaluate ... also=[...]``): the images are
generated once (the most any rule takes, from the one seeded stream, so each rule's first images are the ones it
would draw alone) and embedded once per feature network, resize and feature size; each rule's measures then
take their share of the features, as its ``Scorer`` alone would."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from sngan.metrics.features import extract, generated_batches, uint8_batches
from sngan.metrics.measures import measure, named
from sngan.metrics.scoring import Scorer


def generated(sample_fn: Callable[[int], torch.Tensor], scorers: list[Scorer], batch: int) -> torch.Tensor:
    """The images every rule of ``scorers`` takes: the most any takes, as uint8 (rounded as PNGs are)."""
    n = max(scorer.rule.n_generated for scorer in scorers)
    return torch.cat(list(generated_batches(sample_fn, n, batch)))


def score_several(scorers: list[Scorer], images: torch.Tensor) -> list[dict[str, float]]:
    """Each scorer's numbers on ``images`` (uint8, in the order drawn), one feature pass per network, resize and
    feature size (with the logits where any rule on it computes IS)."""
    passes: dict[tuple[str, str, int], tuple[np.ndarray, np.ndarray | None]] = {}
    results = []
    for scorer in scorers:
        net = scorer.extractor
        key = (net.name, net.resize, net.dims)
        if key not in passes:
            alike = [s for s in scorers if (s.extractor.name, s.extractor.resize, s.extractor.dims) == key]
            n = max(s.rule.n_generated for s in alike)
            logits = any("is" in s.rule.measures for s in alike) and net.with_logits
            passes[key] = extract(net, uint8_batches(images[:n], scorer.batch_size), scorer.device, logits)
        features, logits = passes[key]
        assert scorer.reference is not None, "a scorer with its reference statistics"
        n = scorer.rule.n_generated  # the rule's own images, as its scorer alone would embed them
        mine = features[:n], None if logits is None else logits[:n]
        found = measure(*mine, scorer.reference, scorer.rule, scorer.device)
        results.append(named(found, scorer.rule.network))
    return results
