"""What the loop logs every ``train.monitor_every`` steps: spectral norms, gradient norms, D's outputs.

Reads only. D is evaluated in eval mode (no power iteration) on a fixed real
batch and on fakes from the fixed z (G in eval mode: BatchNorm statistics are
not updated); gradient norms are those the last D and G updates left behind.
No RNG is drawn, so a run with monitoring is bit-identical to one without.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from sngan.inference import generate
from sngan.training.spectral import SpectralMonitor, sn_layers
from sngan.training.step import call
from sngan.training.tracking import Tracker


@dataclass
class Monitor:
    spectral: SpectralMonitor
    fixed_real: torch.Tensor  # [-1, 1], on the training device
    fixed_real_y: torch.Tensor | None = None  # their classes, for a conditional D

    @classmethod
    def create(
        cls, discriminator: nn.Module, chain: bool, fixed_real: torch.Tensor, fixed_real_y: torch.Tensor | None = None
    ) -> Monitor:
        spectral = SpectralMonitor(discriminator, chain)
        spectral.record_input_shapes(fixed_real, fixed_real_y)
        return cls(spectral, fixed_real, fixed_real_y)

    @torch.no_grad()
    def log(
        self,
        generator: nn.Module,
        discriminator: nn.Module,
        fixed_z: torch.Tensor,
        tracker: Tracker,
        step: int,
        fixed_y: torch.Tensor | None = None,
        grad_norms: dict[str, torch.Tensor] | None = None,
    ) -> dict[str, float]:
        """Log the spectral norms, ``grad_norms`` ("grad_norm/d" and "/g": ``iteration.generator_iteration``
        measures them right after each network's update) and histograms of D's outputs."""
        scalars = self.spectral.measure() | {k: float(v) for k, v in (grad_norms or {}).items()}
        tracker.scalars(scalars, step)
        fake = generate(generator, fixed_z, fixed_y)
        d_mode = discriminator.training
        discriminator.eval()
        try:
            outs = (("real", call(discriminator, self.fixed_real, self.fixed_real_y)),
                    ("fake", call(discriminator, fake, fixed_y)))  # fmt: skip
            for name, out in outs:
                values = out.float().cpu()
                values = values[torch.isfinite(values)]  # a diverging D (on_nonfinite=skip) must not stop the run
                if len(values):
                    tracker.histogram(f"d_out_hist/{name}", values, step)
        finally:
            discriminator.train(d_mode)
        return scalars


def custom_scalars_layout(discriminator: nn.Module, rule: str | None) -> dict[str, dict[str, list]]:
    """TensorBoard's Custom Scalars tab: losses, D outputs, spectral norms, metrics, each a group."""
    layers = [name for name, _ in sn_layers(discriminator)]
    spectral = {
        f"sigma {kind}": ["Multiline", [rf"sigma/.*/{kind}$"]]
        for kind in ("estimate", "exact", "gap", "normalized", "operator")
    }
    layout = {
        "losses": {"D and G loss": ["Multiline", [r"loss/d$", r"loss/g$"]],
                   "learning rate": ["Multiline", [r"lr/"]]},
        "D outputs": {"mean D(x) on real and fake": ["Multiline", [r"d_out/real$", r"d_out/fake$"]],
                      "gradient norms": ["Multiline", [r"grad_norm/"]]},
        "spectral norms": spectral | {"Lipschitz estimate": ["Multiline", [r"lipschitz/"]]}
        | {f"layer {name}": ["Multiline", [rf"sigma/{name}/"]] for name in layers[:12]},
    }  # fmt: skip
    metrics = {"synthetic": ["Multiline", [r"synthetic/quality$", r"synthetic/mode_coverage$"]]}
    if rule:
        metrics |= {f"{rule} {k}": ["Multiline", [rf"(ema/)?{rule}/{k}"]] for k in ("fid", "is_mean", "kid_mean")}
    layout["metrics"] = metrics
    return layout
