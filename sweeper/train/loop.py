"""One trial's training: epochs of shuffled minibatches, validation accuracy after each.

Contract:

- ``Trainer`` owns a model, an optimizer and an LR schedule over a device-resident
  ``Dataset``; ``train_epoch(epoch)`` runs one epoch and ``evaluate()`` returns validation
  accuracy on the test split. Epochs are numbered from 1.
- The batch order of epoch ``e`` depends only on (seed, e): a run resumed from a checkpoint
  after epoch ``e`` sees exactly the batches an uninterrupted run would have seen.
- The hot loop does no host synchronisation: indices are permuted on the device, inputs are
  normalised on the device, and the loss is summed on the device and read once per epoch.
  The spec's execution options (bf16 autocast, channels_last, CUDA graphs for the step) apply
  as ``sweeper.train.execution`` describes.
- A non-finite epoch loss raises ``NonFiniteLoss`` (the trial fails; the worker goes on).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from sweeper.spec import TrainingSpec
from sweeper.train.data import Dataset, normalise
from sweeper.train.execution import Execution, StepLoop
from sweeper.train.optimizers import make_optimizer


class NonFiniteLoss(RuntimeError):
    """The training loss became NaN or infinite."""


@dataclass(frozen=True)
class EpochResult:
    epoch: int
    train_loss: float  # mean cross-entropy over the epoch's minibatches
    val_accuracy: float  # fraction of the test split classified correctly
    seconds: float  # wall time of training plus evaluation


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present; otherwise the named device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def make_scheduler(
    optimizer: torch.optim.Optimizer, spec: TrainingSpec
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """The spec's per-epoch LR schedule: none, cosine over all epochs, or step decay."""
    if spec.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=spec.epochs)
    if spec.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, spec.step_size, gamma=spec.gamma)
    return None


def epoch_order(n: int, seed: int, epoch: int, device: torch.device) -> torch.Tensor:
    """The shuffled indices ``0..n-1`` of epoch ``epoch``, a function of (seed, epoch) only.

    Computed on ``device``. Packed trials (``sweeper.train.packed``) share one order this way.
    """
    # A generator per epoch, seeded from (seed, epoch): resumable without saving RNG state.
    generator = torch.Generator(device=device)
    generator.manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=generator, device=device)


class Trainer:
    """Trains one model; see the module docstring for the promises."""

    def __init__(
        self,
        model: nn.Module,
        data: Dataset,
        spec: TrainingSpec,
        *,
        optimizer_name: str,
        lr: float,
        weight_decay: float,
        seed: int,
    ) -> None:
        self.model = model
        self.data = data
        self.spec = spec
        self.seed = seed
        self.device = data.train_x.device
        self.optimizer = make_optimizer(optimizer_name, model.parameters(), lr, weight_decay)
        self.scheduler = make_scheduler(self.optimizer, spec)
        self.loss_fn = nn.CrossEntropyLoss()
        self.execution = Execution.of(spec, self.device).with_optimizer(self.optimizer)
        self.steps = StepLoop(
            self._step, batch_size=spec.batch_size, cuda_graph=self.execution.cuda_graphs
        )

    def _epoch_order(self, epoch: int) -> torch.Tensor:
        return epoch_order(len(self.data.train_y), self.seed, epoch, self.device)

    def _step(self, index: torch.Tensor) -> torch.Tensor:
        inputs = self.execution.inputs(normalise(self.data.train_x[index]))
        with self.execution.autocast(self.device):
            loss = self.loss_fn(self.model(inputs), self.data.train_y[index])
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return loss

    def train_epoch(self, epoch: int) -> float:
        """One pass over the training set in shuffled minibatches; returns the mean loss."""
        self.model.train()
        # The schedule's lr of this epoch, uploaded now: captured steps read it from the device.
        self.optimizer.sync_hyperparameters()
        mean = float(self.steps.run(self._epoch_order(epoch)))
        if self.scheduler is not None:
            self.scheduler.step()
        if not math.isfinite(mean):
            raise NonFiniteLoss(f"training loss is {mean} at epoch {epoch}")
        return mean

    @torch.no_grad()
    def evaluate(self) -> float:
        """Accuracy on the test split, in large batches."""
        self.model.eval()
        correct = torch.zeros((), dtype=torch.int64, device=self.device)
        step = self.spec.eval_batch_size
        for start in range(0, len(self.data.test_y), step):
            inputs = self.execution.inputs(normalise(self.data.test_x[start : start + step]))
            with self.execution.autocast(self.device):
                logits = self.model(inputs)
            correct += (logits.argmax(dim=1) == self.data.test_y[start : start + step]).sum()
        return int(correct) / max(len(self.data.test_y), 1)

    def run_epoch(self, epoch: int) -> EpochResult:
        """Train one epoch, then evaluate."""
        started = time.perf_counter()
        loss = self.train_epoch(epoch)
        accuracy = self.evaluate()
        return EpochResult(epoch, loss, accuracy, time.perf_counter() - started)

    # -- checkpoints ------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue bit-for-bit: model, optimizer, schedule."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler else None,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state.get("scheduler") is not None:
            self.scheduler.load_state_dict(state["scheduler"])
