"""Sample-quality measures: FID, IS, KID and PRDC from Inception features (registered by name in
``measures.MEASURES``), intra-class FID, and the synthetic set's quality measure. The measures take a
``sample_fn(n) -> Tensor`` that returns n images in [-1, 1], or the images' features."""

from .measures import MEASURES, Measure, measure
from .synthetic import class_agreement, evaluate_synthetic, synthetic_quality

__all__ = ["MEASURES", "Measure", "class_agreement", "evaluate_synthetic", "measure", "synthetic_quality"]
