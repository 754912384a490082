"""DINOv2 ViT-L/14 features for the Frechet distance FD_DINOv2 (Stein et al., NeurIPS 2023; EDM2, Karras et al.
2024) and for precision/recall/density/coverage and KID on the same features (``metrics.network=dinov2``).

The network is timm's ``vit_large_patch14_dinov2.lvd142m`` (Meta's ``dinov2_vitl14`` weights), read at 224x224
as EDM2's and dgm-eval's detectors read it: images in [0, 1], resized to 224x224 (``legacy``: EDM2's bicubic
with antialias; ``clean``: sngan/metrics/resize.py), normalized with ImageNet's mean and std; the feature is the
1,024-d class token after the last LayerNorm (the torch.hub model's ``forward``). The weights hold position
embeddings for 518x518 (37x37 patches); they are resampled to 16x16 as the torch.hub model does at every
forward (bicubic, ``scale_factor`` (16 + 0.1) / 37, no antialias; dinov2/models/vision_transformer.py), not as
timm does by default (by size, antialiased), so that the features are EDM2's and dgm-eval's.

timm is an optional extra (``pip install 'sngan[dinov2]'``): imported only where this network is asked for.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from sngan.metrics.inception import InceptionError, Weights, sha256_of

MODEL = "vit_large_patch14_dinov2.lvd142m"
HUB_FILE = "https://huggingface.co/timm/vit_large_patch14_dinov2.lvd142m (model.safetensors)"
META_FILE = "https://dl.fbaipublicfiles.com/dinov2/dinov2_vitl14/dinov2_vitl14_pretrain.pth"
INPUT_SIZE = 224
PATCH = 14
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # ImageNet's, as EDM2 and dgm-eval normalize


def _timm():  # noqa: ANN202
    try:
        import timm
    except ImportError as exc:
        raise InceptionError(
            "metrics.network=dinov2 needs the timm package, which is not installed: pip install 'sngan[dinov2]' "
            "(or pip install timm), or choose a rule on Inception (metrics.network=inception)."
        ) from exc
    return timm


def build_network(model: str = MODEL, img_size: int = INPUT_SIZE) -> nn.Module:
    """The architecture, uninitialised by a file, at ``img_size`` (no classifier: its output is the feature)."""
    return _timm().create_model(model, pretrained=False, img_size=img_size, num_classes=0)


def hub_pos_embed(pos_embed: torch.Tensor, grid: int) -> torch.Tensor:
    """Position embeddings [1, 1 + g*g, d] of a g x g patch grid resampled to ``grid`` x ``grid`` as the torch.hub
    DINOv2 model does (``interpolate_offset`` 0.1: scale (grid + 0.1) / g, bicubic, no antialias)."""
    cls, patches = pos_embed[:, :1], pos_embed[:, 1:]
    old = int(round(patches.shape[1] ** 0.5))
    if old == grid:
        return pos_embed
    image = patches.reshape(1, old, old, -1).permute(0, 3, 1, 2).float()
    scale = (grid + 0.1) / old
    resized = F.interpolate(image, scale_factor=(scale, scale), mode="bicubic", antialias=False)
    assert resized.shape[-2:] == (grid, grid), resized.shape
    return torch.cat([cls, resized.permute(0, 2, 3, 1).reshape(1, grid * grid, -1).to(pos_embed.dtype)], dim=1)


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """timm's model.safetensors, or Meta's .pth (the same names, and a mask token the features never use)."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    state.pop("mask_token", None)
    return state


class DinoV2Features(nn.Module):
    """images in [0, 1] -> (features [N, 1024] in fp32, None): the class token after the last LayerNorm."""

    name = "dinov2"
    with_logits = False
    input_size = INPUT_SIZE

    def __init__(self, net: nn.Module, resize: str = "legacy") -> None:
        super().__init__()
        self.net = net.eval().requires_grad_(False)
        self.dims = int(net.num_features)
        self.resize = resize
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1), persistent=False)

    @classmethod
    def from_state_dict(
        cls, state: dict[str, torch.Tensor], resize: str = "legacy", model: str = MODEL
    ) -> DinoV2Features:
        net = build_network(model)
        state = dict(state)
        state["pos_embed"] = hub_pos_embed(state["pos_embed"], INPUT_SIZE // PATCH)
        net.load_state_dict(state)
        return cls(net, resize)

    @classmethod
    def from_file(cls, weights: Weights, resize: str = "legacy", model: str = MODEL) -> DinoV2Features:
        try:
            return cls.from_state_dict(read_state_dict(weights.path), resize, model)
        except InceptionError:
            raise
        except Exception as exc:
            raise InceptionError(
                f"The DINOv2 weights file '{weights.path}' cannot be loaded as {model} ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0][:200]}). Download {HUB_FILE} or {META_FILE} again and name it in "
                f"inception.dinov2_weights=."
            ) from exc

    def place(self, device: torch.device) -> DinoV2Features:
        return self.to(device)

    def forward(self, images: torch.Tensor, logits: bool = False) -> tuple[torch.Tensor, None]:
        x = images.float()
        if x.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):  # legacy: EDM2's resize (clean: done before, on uint8)
            x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bicubic", antialias=True)
        return self.net((x - self.mean) / self.std).float(), None


def resolve_weights(path: str | None) -> Weights:
    """A local weights file (``inception.dinov2_weights``), or timm's download into the Hugging Face cache."""
    if path is None:
        try:
            from huggingface_hub import hf_hub_download

            print(f"Fetching the DINOv2 ViT-L/14 weights ({HUB_FILE}) ...", file=sys.stderr)
            file = Path(hf_hub_download(f"timm/{MODEL}", "model.safetensors"))
        except InceptionError:
            raise
        except Exception as exc:
            raise InceptionError(
                f"The DINOv2 weights are not available: the download from {HUB_FILE} failed ({exc}). Download it "
                f"(or {META_FILE}) elsewhere and name it: inception.dinov2_weights=/path/to/model.safetensors; or "
                f"choose a rule on Inception."
            ) from exc
    else:
        file = Path(path).expanduser()
        if not file.is_file():
            raise InceptionError(
                f"The DINOv2 weights are not available: inception.dinov2_weights points at '{file}', which does not "
                f"exist. Download {HUB_FILE} or {META_FILE} and name it there, or choose a rule on Inception."
            )
    return Weights(file, sha256_of(file))
