"""The optimizers a study can name, built for one model.

``adamw`` is decoupled weight decay, ``adam`` coupled L2 (the AdamW paper's comparison); both
run on the project's ``FusedAdamW`` (one Triton launch per step on CUDA, ATen's fused kernel
on the CPU). ``implementation_name`` records which path ran, for provenance.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from sweeper.optim import FusedAdamW

BETAS = (0.9, 0.999)  # torch's and the tutorial's defaults
EPS = 1e-8  # torch's default


def make_optimizer(
    name: str, params: Iterable[torch.nn.Parameter], lr: float, weight_decay: float
) -> FusedAdamW:
    """``FusedAdamW`` in mode ``name`` ("adamw" or "adam") over ``params``."""
    return FusedAdamW(params, lr=lr, betas=BETAS, eps=EPS, weight_decay=weight_decay, mode=name)


def implementation_name(optimizer: torch.optim.Optimizer) -> str:
    """How ``optimizer`` computes its step, e.g. ``FusedAdamW/triton``."""
    detail = getattr(optimizer, "implementation", None)
    if detail is not None:
        return f"{type(optimizer).__name__}/{detail}"
    return f"torch.{type(optimizer).__name__}"
