"""Batch order and LR schedules: what a trial's epoch ``e`` sees, as a function of numbers
the trial records.

Contract:

- ``epoch_order(n, seed, epoch, device)`` is the shuffled order of pack epoch ``epoch``: a
  function of (seed, epoch) only, so a resumed or re-run trial sees the batches an
  uninterrupted one would, without saving RNG state.
- ``Schedule`` is one trial's per-epoch lr sequence, computed by torch's own scheduler class
  on a one-group stand-in optimizer. Trials trained together sit at different epochs of
  their own schedules, so one scheduler on the shared optimizer cannot serve them; the
  stand-in gives each trial exactly the lr sequence (same recurrence, same float
  operations) a scheduler on its own optimizer would, and its ``state_dict`` is that
  scheduler's, which checkpoints store.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from sweeper.spec import TrainingSpec


def epoch_order(n: int, seed: int, epoch: int, device: torch.device) -> torch.Tensor:
    """The shuffled indices ``0..n-1`` of epoch ``epoch``, a function of (seed, epoch) only.

    Computed on ``device`` (no host round trip in the training loop).
    """
    # A generator per epoch, seeded from (seed, epoch): resumable without saving RNG state.
    generator = torch.Generator(device=device)
    generator.manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=generator, device=device)


def make_scheduler(
    optimizer: torch.optim.Optimizer, spec: TrainingSpec
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """The spec's per-epoch LR schedule: none, cosine over all epochs, or step decay."""
    if spec.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=spec.epochs)
    if spec.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, spec.step_size, gamma=spec.gamma)
    return None


class Schedule:
    """One trial's lr per epoch; see the module docstring."""

    def __init__(self, lr: float, spec: TrainingSpec) -> None:
        self._stand_in = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=lr)
        self._scheduler = make_scheduler(self._stand_in, spec)
        # A no-op step (no gradients): torch warns if a scheduler steps before its optimizer.
        self._stand_in.step()

    @property
    def lr(self) -> float:
        """The lr of the trial's next epoch."""
        return float(self._stand_in.param_groups[0]["lr"])

    def step(self) -> None:
        """Advance by one epoch."""
        if self._scheduler is not None:
            self._scheduler.step()

    def state_dict(self) -> dict[str, Any] | None:
        """The torch scheduler's state (None: no schedule)."""
        return self._scheduler.state_dict() if self._scheduler is not None else None

    def load_state_dict(self, state: dict[str, Any] | None, lr: float) -> None:
        """Continue a saved schedule whose next epoch runs at ``lr``."""
        self._stand_in.param_groups[0]["lr"] = lr
        if self._scheduler is not None and state is not None:
            self._scheduler.load_state_dict(state)
