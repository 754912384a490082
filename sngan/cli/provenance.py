"""Where a run came from (package, commit, torch, CUDA, device) and which
device it runs on."""

from __future__ import annotations

import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from sngan.utils.checkpoint import FORMAT_VERSION


def package_version() -> str:
    try:
        return metadata.version("sngan")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def git_commit() -> str | None:
    """The commit of the checkout this package runs from, if it is one."""
    root = Path(__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return None
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine() or device.type


def provenance(device: torch.device) -> dict[str, Any]:
    return {
        "sngan_version": package_version(),
        "git_commit": git_commit(),
        "torch_version": str(torch.__version__),
        "cuda_version": torch.version.cuda,
        "device": str(device),
        "device_name": device_name(device),
        "python_version": platform.python_version(),
        "checkpoint_format_version": FORMAT_VERSION,
    }


class DeviceError(ValueError):
    """The requested device does not exist here."""


def resolve_device(name: str, local_rank: int | None = None) -> torch.device:
    """'auto' picks CUDA, then MPS, then the CPU; anything else must exist. Under torchrun
    (``local_rank`` given) CUDA means this rank's own GPU, whatever index the name carries."""
    if local_rank is not None and (name == "cuda" or name.startswith("cuda:") or name == "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank % torch.cuda.device_count())
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise DeviceError(
            f"Invalid configuration: device={name!r} is not a device; use auto, cpu, cuda, cuda:N or mps."
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(
            f"Invalid configuration: device={name!r} but CUDA is not available here; use device=auto or device=cpu."
        )
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise DeviceError(
            f"Invalid configuration: device={name!r} but only {torch.cuda.device_count()} CUDA device(s) exist."
        )
    return device
