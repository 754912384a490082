"""pytorch-fid's FID Inception, yielding pool features and 1008-way logits in one pass.

The network is pytorch-fid's port of the 2015-12-05 TensorFlow Inception
(torchvision's InceptionV3 with the FID blocks swapped in). pytorch-fid's own
wrapper stops at the 2048-d pool and drops the final layer; the Inception
Score needs that layer's 1008 logits, and the weights file carries it, so
``InceptionFeatures`` runs the whole network once and returns both.

Inputs are images in [0, 1] at any size: they are resized to 299x299
(bilinear, align_corners=False) and scaled to [-1, 1], as pytorch-fid does.
"""

from __future__ import annotations

import hashlib
import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

# pytorch-fid's FID_WEIGHTS_URL (a test checks they agree). pytorch-fid itself is imported where the network
# is built: it imports torchvision, whose import costs every command seconds, FID or not.
WEIGHTS_URL = (
    "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth"
)
WEIGHTS_FILENAME = WEIGHTS_URL.rsplit("/", 1)[-1]  # pt_inception-2015-12-05-6726825d.pth
DIMS = {64: 0, 192: 1, 768: 2, 2048: 3}  # feature size -> last block needed (pytorch-fid's numbering)
LOGITS = 1008  # the fc layer of the 2015 TF Inception: 1,008 classes (1,000 + 8 unused)
_BLOCKS = [
    ["Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1"],
    ["Conv2d_3b_1x1", "Conv2d_4a_3x3", "maxpool2"],
    ["Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e"],
    ["Mixed_7a", "Mixed_7b", "Mixed_7c", "avgpool"],
]


class InceptionError(RuntimeError):
    """The Inception weights cannot be had; the message says which file to put where."""


@dataclass(frozen=True)
class Weights:
    path: Path
    sha256: str


def default_weights_path() -> Path:
    """Where pytorch-fid (through torch.hub) keeps the weights: $TORCH_HOME/hub/checkpoints/."""
    return Path(torch.hub.get_dir()) / "checkpoints" / WEIGHTS_FILENAME


def build_network() -> nn.Module:
    """The FID Inception architecture with uninitialised-by-file weights."""
    from pytorch_fid import inception as pf

    net = pf._inception_v3(num_classes=LOGITS, aux_logits=False, weights=None)
    net.Mixed_5b = pf.FIDInceptionA(192, pool_features=32)
    net.Mixed_5c = pf.FIDInceptionA(256, pool_features=64)
    net.Mixed_5d = pf.FIDInceptionA(288, pool_features=64)
    net.Mixed_6b = pf.FIDInceptionC(768, channels_7x7=128)
    net.Mixed_6c = pf.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6d = pf.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6e = pf.FIDInceptionC(768, channels_7x7=192)
    net.Mixed_7b = pf.FIDInceptionE_1(1280)
    net.Mixed_7c = pf.FIDInceptionE_2(2048)
    return net


def _missing(path: Path, cause: str) -> InceptionError:
    return InceptionError(
        f"The FID Inception weights are not available: {cause}. Download {WEIGHTS_URL} and put it at "
        f"{default_weights_path()} (the folder follows $TORCH_HOME), or put it anywhere and set "
        f"inception.weights=/path/to/{WEIGHTS_FILENAME}; or train without metrics (metrics=none)."
    )


def resolve_weights(path: str | None = None, download: bool = True) -> Weights:
    """The weights file (downloaded into $TORCH_HOME on first use when ``path`` is None) and its hash."""
    if path is not None:
        file = Path(path).expanduser()
        if not file.is_file():
            raise _missing(file, f"inception.weights points at '{file}', which does not exist")
    else:
        file = default_weights_path()
        if not file.is_file():
            if not download:
                raise _missing(file, f"'{file}' does not exist")
            try:
                file.parent.mkdir(parents=True, exist_ok=True)
                print(f"Downloading the FID Inception weights to {file} ...", file=sys.stderr)
                previous = socket.getdefaulttimeout()
                socket.setdefaulttimeout(60)  # a blocked network fails in a minute instead of hanging
                try:
                    torch.hub.download_url_to_file(WEIGHTS_URL, str(file), progress=False)
                finally:
                    socket.setdefaulttimeout(previous)
            except Exception as exc:  # URLError, OSError, HTTPError
                raise _missing(file, f"'{file}' does not exist and the download failed ({exc})") from exc
    return Weights(file, sha256_of(file))


def sha256_of(file: Path) -> str:
    digest = hashlib.sha256()
    with open(file, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


INPUT_SIZE = 299  # pytorch-fid's (and every published FID's): images are resized to 299x299 before the network


class InceptionFeatures(nn.Module):
    """images in [0, 1] -> (features [N, dims] in fp32, logits [N, 1008] or None). ``resize``: how images reach
    299x299 (sngan/metrics/resize.py): ``legacy`` here, pytorch-fid's bilinear; ``clean`` before, on uint8."""

    name = "inception"

    def __init__(
        self, state_dict: dict[str, torch.Tensor], dims: int = 2048, logits: bool = True, resize: str = "legacy"
    ) -> None:
        super().__init__()
        if dims not in DIMS:
            raise ValueError(f"dims must be one of {sorted(DIMS)}, not {dims}")
        self.dims, self.with_logits, self.resize = dims, logits, resize
        self.memory_format = torch.contiguous_format
        self.net = build_network()
        self.net.load_state_dict(state_dict)
        self.net.eval().requires_grad_(False)

    @property
    def input_size(self) -> int:
        return INPUT_SIZE

    @classmethod
    def from_file(
        cls, weights: Weights, dims: int = 2048, logits: bool = True, resize: str = "legacy"
    ) -> InceptionFeatures:
        try:
            state = torch.load(weights.path, map_location="cpu", weights_only=True)
            return cls(state, dims, logits, resize)
        except Exception as exc:
            raise InceptionError(
                f"The Inception weights file '{weights.path}' cannot be loaded ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0][:200]}). Delete it and download {WEIGHTS_URL} again."
            ) from exc

    def place(self, device: torch.device) -> InceptionFeatures:
        """Move to ``device``; on the CPU the network runs channels_last, where oneDNN's convolutions are
        a third faster (features equal to about 3e-6 relative: the sums run in another order)."""
        self.memory_format = torch.channels_last if device.type == "cpu" else torch.contiguous_format
        return self.to(device, memory_format=self.memory_format)

    def forward(self, images: torch.Tensor, logits: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``logits=False`` stops at the feature block (reference statistics need no logits)."""
        logits = logits and self.with_logits
        x = images.float()
        if x.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):  # legacy: pytorch-fid's resize (clean: done before, on uint8)
            x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
        x = (2 * x - 1).contiguous(memory_format=self.memory_format)
        features = None
        last = 3 if logits else DIMS[self.dims]
        for index, names in enumerate(_BLOCKS[: last + 1]):
            for name in names:
                x = getattr(self.net, name)(x)
            if index == DIMS[self.dims]:
                features = F.adaptive_avg_pool2d(x, (1, 1)).flatten(1)
        assert features is not None
        return features, (self.net.fc(torch.flatten(x, 1)) if logits else None)


@torch.no_grad()
def random_state_dict(seed: int = 0, calibration: int = 8) -> dict[str, torch.Tensor]:
    """Seeded random weights for offline tests and benchmarks, with usable features.

    Default-initialised convolutions followed by BatchNorm at its default running
    statistics make activations vanish or explode over 90 layers, so the
    BatchNorm running statistics are set from a batch of smooth random images
    (training-mode forward, cumulative average). Features then have per-feature
    std of order 0.1-1.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = build_network()
    coarse = torch.rand(calibration, 3, 8, 8, generator=gen)
    images = F.interpolate(coarse, size=(299, 299), mode="bilinear", align_corners=False) * 2 - 1
    for module in net.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # cumulative average over the calibration batch
    net.train()
    net(images)
    net.eval()
    return {k: v.clone() for k, v in net.state_dict().items()}


def save_random_weights(path: Path, seed: int = 0) -> Path:
    """Write seeded random weights where pytorch-fid (or inception.weights) will read them."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    torch.save(random_state_dict(seed), tmp)
    os.replace(tmp, path)
    return path
