"""Spectral norms of the discriminator, read without disturbing training.

For every spectrally normalized layer this reports

- ``estimate``: the power-iteration sigma the parametrization divides by,
  u^T W v with the stored u, v (W: the weight reshaped to a matrix);
- ``exact``: the largest singular value of that matrix (torch.linalg);
- ``gap``: (estimate - exact) / exact;
- ``normalized``: the exact largest singular value of W / estimate, the matrix
  the layer really uses (about 1 by construction);
- for convolutions, ``operator``: the operator norm of the normalized
  convolution itself at the layer's real input size, by power iteration
  through conv and conv-transpose. It is not the reshaped-kernel sigma: for
  3x3 kernels it can be up to about 3x larger (or smaller).

Everything reads ``parametrizations.weight.original`` and the u/v buffers
directly: reading ``module.weight`` in train mode would run a power iteration
and move u, changing training. Nothing here touches an RNG either (the conv
power iteration starts from a deterministic vector).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F


def sn_layers(net: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, module) of every layer whose weight is spectrally normalized, in forward order."""
    return [(name, module) for name, module in net.named_modules() if _is_sn(module)]


def _is_sn(module: nn.Module) -> bool:
    parametrizations = getattr(module, "parametrizations", None)
    # weight normalization (constraint=wn) is a parametrization too: spectral norm is the one with u and v
    return parametrizations is not None and "weight" in parametrizations and hasattr(parametrizations.weight[0], "_u")


def weight_layers(net: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, module) of every convolution and linear layer, normalized or not (for the SN ablation), and
    of a projection discriminator's class embedding."""
    kinds = (nn.Conv2d, nn.Linear, nn.Embedding)
    return [(name, m) for name, m in net.named_modules() if isinstance(m, kinds)]


def _matrix_and_estimate(module: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    plist = module.parametrizations.weight
    sn = plist[0]
    matrix = sn._reshape_weight_to_matrix(plist.original.detach())
    estimate = torch.vdot(sn._u, torch.mv(matrix, sn._v))
    return matrix, estimate


def exact_sigma(matrix: torch.Tensor) -> float:
    return float(torch.linalg.matrix_norm(matrix.detach().double(), ord=2))


def conv_operator_norm(
    weight: torch.Tensor,
    conv: nn.Conv2d,
    in_shape: tuple[int, int, int],
    iterations: int = 30,
    start: torch.Tensor | None = None,
) -> tuple[float, torch.Tensor]:
    """Largest singular value of x -> conv(x, weight) (no bias) on inputs of shape ``in_shape``
    (C, H, W), by power iteration on A^T A; returns it and the last vector (to warm-start)."""
    x = start if start is not None else torch.ones(1, *in_shape, dtype=weight.dtype, device=weight.device)
    kw = {"stride": conv.stride, "padding": conv.padding, "dilation": conv.dilation, "groups": conv.groups}
    sigma = torch.zeros((), dtype=weight.dtype, device=weight.device)
    with torch.no_grad():
        for _ in range(iterations):
            x = x / x.norm()
            y = F.conv2d(x, weight, **kw)
            sigma = y.norm()
            back = F.conv_transpose2d(y, weight, **kw)
            # conv_transpose may come out smaller than the input (stride > 1): pad to the input size
            pad_h, pad_w = in_shape[1] - back.shape[2], in_shape[2] - back.shape[3]
            x = F.pad(back, (0, pad_w, 0, pad_h)) if pad_h or pad_w else back
    return float(sigma), x


@dataclass
class SpectralMonitor:
    """Per-layer spectral norms of D and a product-of-norms Lipschitz estimate.

    ``chain`` says whether D is a plain chain of layers and 1-Lipschitz
    activations (then the product is an upper bound on D's Lipschitz
    constant); for a ResNet D (residual sums, sum pooling) it is a heuristic.
    """

    discriminator: nn.Module
    chain: bool
    input_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    _vectors: dict[str, torch.Tensor] = field(default_factory=dict)

    def record_input_shapes(self, example: torch.Tensor, labels: torch.Tensor | None = None) -> None:
        """Learn each layer's input size from one eval-mode forward (no power iteration, no RNG);
        ``labels``: the example's classes, for a conditional D."""
        hooks = []
        for name, module in weight_layers(self.discriminator):
            hooks.append(module.register_forward_hook(self._shape_hook(name)))
        was_training = self.discriminator.training
        self.discriminator.eval()
        try:
            with torch.no_grad():
                self.discriminator(example[:1]) if labels is None else self.discriminator(example[:1], labels[:1])
        finally:
            self.discriminator.train(was_training)
            for hook in hooks:
                hook.remove()

    def _shape_hook(self, name: str):
        def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
            self.input_shapes[name] = tuple(inputs[0].shape[1:])

        return hook

    @torch.no_grad()
    def measure(self) -> dict[str, float]:
        """Scalars for TensorBoard: ``sigma/<layer>/{estimate,exact,gap,normalized,operator}`` (and ``gain``
        where SN has a learned gain: ``normalized`` and ``operator`` are then of gain * W / sigma, the matrix the
        layer uses), ``lipschitz/bound`` (chain) or ``lipschitz/heuristic`` (ResNet)."""
        out: dict[str, float] = {}
        product = 1.0
        for name, module in weight_layers(self.discriminator):
            tag, gain = f"sigma/{name}", 1.0
            if _is_sn(module):
                matrix, estimate = _matrix_and_estimate(module)
                exact, est = exact_sigma(matrix), float(estimate)
                out |= {f"{tag}/estimate": est, f"{tag}/exact": exact, f"{tag}/gap": (est - exact) / exact}
                gamma = getattr(module.parametrizations.weight[0], "gamma", None)  # a learned gain (wgan_gp_sn)
                if gamma is not None:  # the layer uses gamma * W / sigma: its norm is |gamma|, not 1
                    out[f"{tag}/gain"] = gain = float(gamma)
                weight = module.parametrizations.weight.original.detach() / estimate * gain
            else:  # an unnormalized layer: its raw weight is what the layer uses
                weight, est = module.weight.detach(), 1.0
                exact = exact_sigma(weight.flatten(1))
                out[f"{tag}/exact"] = exact
            out[f"{tag}/normalized"] = layer_norm = abs(gain) * exact / est
            if isinstance(module, nn.Conv2d) and name in self.input_shapes:
                warm = self._vectors.get(name)  # the last vector: a few iterations keep it converged
                op, self._vectors[name] = conv_operator_norm(
                    weight, module, self.input_shapes[name], iterations=50 if warm is None else 10, start=warm
                )
                out[f"{tag}/operator"] = layer_norm = op
            if not isinstance(module, nn.Embedding):  # the projection is a side branch, not a link of the chain
                product *= layer_norm
        out["lipschitz/bound" if self.chain else "lipschitz/heuristic"] = product
        return out


def grad_norm(name: str, net: nn.Module) -> dict[str, torch.Tensor]:
    """{"grad_norm/<name>": L2 norm of the gradients the last update left in ``net``} (empty if it left
    none), a tensor on their device: no wait. Read it before the next update: under compile=max the
    gradients live in CUDA-graph memory that the next captured update (of either network) may reuse."""
    grads = [p.grad.detach() for p in net.parameters() if p.grad is not None]
    if not grads:
        return {}
    return {f"grad_norm/{name}": torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)).float())}
