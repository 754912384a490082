"""What the paper publishes that the figures need: its method labels, Table 1's settings A-F (as the option
files sngan/configs/optim/setting_*.yaml hold them) and Table 2's scores (Miyato et al. 2018, arXiv v1, p. 7-8)."""

from __future__ import annotations

from importlib import resources
from typing import Any

# constraint option -> its label in the paper's figures; the order is the paper's (Figure 1)
METHODS = {"weight_clip": "Weight clip.", "gan_gp": "GAN-GP", "wgan_gp": "WGAN-GP", "bn": "Batch Norm.",
           "ln": "Layer Norm.", "wn": "Weight Norm.", "orthonormal": "Orthonormal", "sn": "SN",
           "wgan_gp_sn": "WGAN-GP + SN", "none": "unconstrained"}  # fmt: skip
SETTINGS = "ABCDEF"
# Table 2 (p.8), standard CNN: (dataset, method, hinge loss, generator updates) -> (row, IS, IS std, FID).
# WGAN-GP + SN: Table 7 (App. E.1). Only the method's optimal setting is published.
TABLE2 = {
    ("cifar10", "weight_clip", False, 100_000): ("Weight clipping", 6.41, 0.11, 42.6),
    ("cifar10", "gan_gp", False, 100_000): ("GAN-GP", 6.93, 0.08, 37.7),
    ("cifar10", "wgan_gp", False, 100_000): ("WGAN-GP", 6.68, 0.06, 40.2),
    ("cifar10", "bn", False, 100_000): ("Batch Norm.", 6.27, 0.10, 56.3),
    ("cifar10", "ln", False, 100_000): ("Layer Norm.", 7.19, 0.12, 33.9),
    ("cifar10", "wn", False, 100_000): ("Weight Norm.", 6.84, 0.07, 34.7),
    ("cifar10", "orthonormal", False, 100_000): ("Orthonormal", 7.40, 0.12, 29.0),
    ("cifar10", "sn", False, 100_000): ("SN-GANs", 7.42, 0.08, 29.3),
    ("cifar10", "sn", True, 100_000): ("SN-GANs, Eq.(17)", 7.58, 0.12, 25.5),
    ("cifar10", "wgan_gp_sn", False, 100_000): ("Table 7: WGAN-GP w/ spectral norm", 7.20, 0.08, 32.0),
    ("stl10", "weight_clip", False, 100_000): ("Weight clipping", 7.57, 0.10, 64.2),
    ("stl10", "wgan_gp", False, 100_000): ("WGAN-GP", 8.42, 0.13, 55.1),
    ("stl10", "ln", False, 100_000): ("Layer Norm.", 7.61, 0.12, 75.6),
    ("stl10", "wn", False, 100_000): ("Weight Norm.", 7.16, 0.10, 73.4),
    ("stl10", "orthonormal", False, 100_000): ("Orthonormal", 8.56, 0.07, 46.7),
    ("stl10", "sn", False, 100_000): ("SN-GANs", 8.28, 0.09, 53.1),
    ("stl10", "orthonormal", False, 200_000): ("Orthonormal (2x updates)", 8.67, 0.08, 44.2),
    ("stl10", "sn", False, 200_000): ("SN-GANs (2x updates)", 8.69, 0.09, 47.5),
    ("stl10", "sn", True, 200_000): ("SN-GANs, Eq.(17) (2x updates)", 8.79, 0.14, 43.2),
}


def table1() -> dict[str, tuple[float, ...]]:
    """The settings A-F as the option files sngan/configs/optim/setting_*.yaml hold them: (lr_g, lr_d, beta1, beta2,
    n_dis), decay none."""
    import yaml

    found = {}
    for letter in SETTINGS:
        raw = yaml.safe_load((resources.files("sngan.configs.optim") / f"setting_{letter.lower()}.yaml").read_text())
        o = raw["optim"]
        found[letter] = (o["lr_g"], o["lr_d"], o["beta1"], o["beta2"], raw["train"]["n_dis"])
    return found


def setting_of(config: dict[str, Any], settings: dict[str, tuple[float, ...]]) -> str:
    o = config["optim"]
    ours = (o["lr_g"], o["lr_d"], o["beta1"], o["beta2"], config["train"]["n_dis"])
    for letter, values in settings.items():
        if o["decay"] == "none" and all(abs(a - b) <= 1e-12 for a, b in zip(ours, values)):
            return letter
    return "other"
