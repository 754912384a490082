"""Adam as the paper uses it, its learning rate set in place, and its state loaded from a checkpoint."""

from __future__ import annotations

import torch
from torch import nn


def adam(params: list[nn.Parameter], lr: float, betas: tuple[float, float], device: torch.device) -> torch.optim.Adam:
    """Adam as the paper uses it; fused where torch has it (CUDA, CPU): one kernel per step, a skip on the
    device for non-finite updates, and the learning rate a tensor, so a captured step reads the current
    rate instead of freezing the first one."""
    if device.type in ("cuda", "cpu"):
        return torch.optim.Adam(params, lr=torch.tensor(lr, device=device), betas=betas, fused=True)
    return torch.optim.Adam(params, lr=lr, betas=betas)


def set_rate(opt: torch.optim.Optimizer, lr: float) -> None:
    """Set the learning rate in place (a tensor rate stays the same tensor)."""
    for group in opt.param_groups:
        device = group["params"][0].device
        if isinstance(group["lr"], torch.Tensor) and group["lr"].device == device:
            group["lr"].fill_(lr)
        elif opt.defaults.get("fused"):  # a checkpoint's rate, or one from before rates were tensors
            group["lr"] = torch.tensor(lr, device=device)
        else:
            group["lr"] = lr


def load_optimizer(opt: torch.optim.Optimizer, saved: dict) -> None:
    """Load a checkpoint's optimizer state into ``opt`` as it was built here: the implementation flags
    (fused, foreach) stay this optimizer's, whatever wrote the checkpoint, and Adam's moments take the
    memory format of their parameters (a channels_last run resumed on the CPU, or the reverse)."""
    flags = {key: opt.defaults.get(key) for key in ("fused", "foreach", "capturable") if key in opt.defaults}
    opt.load_state_dict({"state": saved["state"], "param_groups": [g | flags for g in saved["param_groups"]]})
    for param, state in opt.state.items():
        for key in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"):
            if key in state and state[key].stride() != param.stride():
                state[key] = torch.empty_like(param).copy_(state[key])
