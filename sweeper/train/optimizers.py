"""The optimizers a study can name, built for one model.

``adamw`` is decoupled weight decay, ``adam`` coupled L2 (the AdamW paper's comparison).
Both run on ``sweeper.optim.FusedAdamW`` when it is importable, else on torch's own
AdamW / Adam with the same arguments. ``implementation_name`` says which, for provenance.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

BETAS = (0.9, 0.999)  # torch's and the tutorial's defaults
EPS = 1e-8


def _fused_class() -> type[torch.optim.Optimizer] | None:
    try:
        from sweeper.optim import FusedAdamW
    except ImportError:
        return None
    return FusedAdamW


def make_optimizer(
    name: str, params: Iterable[torch.nn.Parameter], lr: float, weight_decay: float
) -> torch.optim.Optimizer:
    """An optimizer ``name`` in ("adamw", "adam") over ``params``."""
    fused = _fused_class()
    if fused is not None:
        return fused(params, lr=lr, betas=BETAS, eps=EPS, weight_decay=weight_decay, mode=name)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, betas=BETAS, eps=EPS, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, betas=BETAS, eps=EPS, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}")


def implementation_name(optimizer: torch.optim.Optimizer) -> str:
    """How ``optimizer`` computes its step, e.g. ``FusedAdamW/triton`` or ``torch.AdamW``."""
    detail = getattr(optimizer, "implementation", None)
    if detail is not None:
        return f"{type(optimizer).__name__}/{detail}"
    return f"torch.{type(optimizer).__name__}"
