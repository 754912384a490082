"""Sample-quality measures. Nothing here knows about models or configs: callers
pass a ``sample_fn(n) -> Tensor`` that returns n images in [-1, 1]."""

from .synthetic import class_agreement, evaluate_synthetic, synthetic_quality

__all__ = ["class_agreement", "evaluate_synthetic", "synthetic_quality"]
