"""Training of K >= 1 trials at once: same minibatches, one optimizer step for all.

A single trial is a pack of one: the same class, the same code path, with one member.

Contract:

- A ``Trainer`` holds members, one per trial. Each member is a ``SimpleCNN`` with its own
  ``nn.Parameter`` leaves, its optimizer mode (``adamw`` | ``adam``), lr, weight decay and
  LR ``Schedule``. One ``FusedAdamW`` holds the members as parameter groups, one group per
  member, so each trial's lr, weight decay and mode are its group's own hyperparameters
  (exact, not scaled or shared), and one ``step()`` updates all.
- Forward and loss: ``sweeper.train.grouped`` (the tutorial's forward for K = 1, the grouped
  model for K > 1).
- Batch order: the trainer has a clock of pack epochs, starting at ``start_epoch``. Pack
  epoch ``t`` visits the training set in ``epoch_order(n, order_seed, t)``. A member's epoch
  ``e`` runs in pack epoch ``order_offset + e``, where ``order_offset`` is the clock when it
  joined minus the epochs it had already done; so its batch order is a function of
  (order_seed, order_offset, e), the numbers its trial records. A fresh single trial is
  (seed, 0, e); a trial resumed by a trainer started at its own clock continues on exactly
  the batches an uninterrupted run would have seen.
- The step loop does no host synchronisation: per-member loss sums stay on the device and are
  read once per epoch. The spec's execution options (``sweeper.train.execution``) apply; a
  membership change rebuilds the optimizer and re-captures the CUDA graph.
- A non-finite loss is reported (``EpochResult.finite`` is False), never raised: the caller
  fails that trial and removes it; the others go on unaffected.
- Members join and leave between epochs. Survivors keep their parameters, moments and step
  counts exactly; a new member starts fresh (step 0, zero moments), as its own run would.
- Checkpoints: ``member_state`` saves a member as a one-group trainer's state (``model``,
  ``optimizer``, ``scheduler``: the format of ``sweeper.work.checkpoints``), and
  ``add(..., resume=...)`` continues from such a state, so a trial interrupted in a pack of
  any size resumes in a pack of any size.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from sweeper.optim import FusedAdamW
from sweeper.spec import TrainingSpec
from sweeper.train.data import Dataset, normalise
from sweeper.train.execution import Execution, StepLoop
from sweeper.train.grouped import forward, member_losses
from sweeper.train.model import SimpleCNN
from sweeper.train.optimizers import BETAS, EPS
from sweeper.train.order import Schedule, epoch_order


@dataclass(frozen=True)
class EpochResult:
    """One member's epoch."""

    epoch: int  # the member's own epoch number, from 1
    train_loss: float  # mean cross-entropy over the epoch's minibatches
    val_accuracy: float  # fraction of the test split classified correctly
    seconds: float  # wall time of the pack's training plus evaluation (members share it)
    val_loss: float = math.nan  # mean cross-entropy on the test split

    @property
    def finite(self) -> bool:
        """False when the training loss became NaN or infinite."""
        return math.isfinite(self.train_loss)


@dataclass(eq=False)
class Member:
    """One trial inside a trainer."""

    model: SimpleCNN
    optimizer_name: str
    weight_decay: float
    schedule: Schedule
    order_offset: int  # its epoch e runs in pack epoch order_offset + e
    epochs_done: int = 0  # epochs it has trained, in this trainer or before it resumed
    # Optimizer state of a resumed member, by its parameters' order; installed on rebuild.
    resumed_state: dict[int, dict[str, torch.Tensor]] = field(default_factory=dict)

    @property
    def lr(self) -> float:
        """The lr of the member's next epoch (its schedule applied)."""
        return self.schedule.lr


class Trainer:
    """Trains its members together; see the module docstring for the promises."""

    def __init__(
        self, data: Dataset, spec: TrainingSpec, *, order_seed: int, start_epoch: int = 0
    ) -> None:
        """``order_seed`` and ``start_epoch`` set the batch-order clock (module docstring)."""
        self.data = data
        self.spec = spec
        self.order_seed = order_seed
        self.clock = start_epoch  # pack epochs completed on this order
        self.device = data.train_x.device
        self.execution = Execution.of(spec, self.device)
        self.members: list[Member] = []
        self.optimizer: FusedAdamW | None = None
        self._stale = True  # membership changed since the optimizer was built
        self._models: list[SimpleCNN] = []  # the members' models, as the optimizer holds them
        self.steps = StepLoop(self._step, batch_size=spec.batch_size)

    # -- membership -------------------------------------------------------------------------

    def add(
        self,
        model: SimpleCNN,
        *,
        optimizer_name: str,
        lr: float,
        weight_decay: float,
        resume: tuple[dict[str, Any], int] | None = None,
    ) -> Member:
        """Add a trial whose ``model`` is already on the trainer's device; it trains from the
        next epoch on.

        ``resume = (state, epochs_done)`` continues a trial from a checkpoint: ``state`` in
        ``member_state``'s format after ``epochs_done`` epochs. It keeps its weights,
        moments, step counts and schedule.
        """
        member = Member(model, optimizer_name, weight_decay, Schedule(lr, self.spec), self.clock)
        if resume is not None:
            state, epochs_done = resume
            model.load_state_dict(state["model"])
            saved = state["optimizer"]
            member.schedule.load_state_dict(state["scheduler"], saved["param_groups"][0]["lr"])
            member.resumed_state = dict(saved["state"])
            member.epochs_done = epochs_done
            member.order_offset = self.clock - epochs_done
        self.members.append(member)
        self._stale = True
        return member

    def remove(self, member: Member) -> None:
        """Take ``member`` out (pruned, finished or failed)."""
        self.members.remove(member)
        self._stale = True

    def _rebuild(self) -> None:
        """One FusedAdamW over the current members, carrying survivors' state exactly."""
        old = self.optimizer
        params = [list(m.model.parameters()) for m in self.members]
        groups: list[dict[str, Any]] = [
            {
                "params": member_params,
                "lr": m.lr,
                "weight_decay": m.weight_decay,
                "mode": m.optimizer_name,
            }
            for m, member_params in zip(self.members, params, strict=True)
        ]
        optimizer = FusedAdamW(groups, betas=BETAS, eps=EPS)
        self.steps.reset()  # a new optimizer: a captured step would run the old one
        self.execution = self.execution.with_optimizer(optimizer)
        self.steps.cuda_graph = self.execution.cuda_graphs
        saved = optimizer.state_dict()
        # State dicts number parameters across groups in order, as ``params`` lists them.
        index = 0
        for member, member_params in zip(self.members, params, strict=True):
            for local, p in enumerate(member_params):
                state = old.state.get(p) if old is not None else None
                state = state or member.resumed_state.get(local)
                if state:  # a survivor or a resumed trial; a new member starts fresh
                    saved["state"][index] = {k: v.clone() for k, v in state.items()}
                index += 1
            member.resumed_state = {}
        if saved["state"]:
            optimizer.load_state_dict(saved)
        self.optimizer = optimizer
        self._models = [m.model for m in self.members]
        self._stale = False

    def member_state(self, member: Member) -> dict[str, Any]:
        """``member`` as a one-group trainer's state after the same epochs.

        Call it between epochs, before membership changes are applied (a member removed
        since the last epoch still has its state; one added has none yet). Tensors are
        copies, so a saved checkpoint never shares storage with the live optimizer.
        """
        optimizer = self.optimizer
        slot = next((i for i, m in enumerate(self._models) if m is member.model), None)
        if optimizer is None or slot is None:
            raise RuntimeError("the member has not trained in this trainer yet")
        group = optimizer.param_groups[slot]
        hyper = {k: v for k, v in group.items() if k != "params"}
        return {
            "model": {k: v.detach().clone() for k, v in member.model.state_dict().items()},
            "optimizer": {
                "state": {
                    i: {k: v.detach().clone() for k, v in optimizer.state[p].items()}
                    for i, p in enumerate(group["params"])
                    if optimizer.state.get(p)
                },
                # The lr of its next epoch, as a stepped scheduler leaves its optimizer.
                "param_groups": [
                    {**hyper, "lr": member.lr, "params": list(range(len(group["params"])))}
                ],
            },
            "scheduler": member.schedule.state_dict(),
        }

    # -- training ---------------------------------------------------------------------------

    def _logits(self, models: Sequence[SimpleCNN], images: torch.Tensor) -> torch.Tensor:
        inputs = self.execution.inputs(normalise(images))
        with self.execution.autocast(self.device):
            return forward(models, inputs).float()

    def _step(self, index: torch.Tensor) -> torch.Tensor:
        """One minibatch for every member; their K mean losses."""
        optimizer = self.optimizer
        assert optimizer is not None
        logits = self._logits(self._models, self.data.train_x[index])
        losses = member_losses(logits, self.data.train_y[index])
        optimizer.zero_grad()
        losses.sum().backward()
        optimizer.step()
        return losses

    def train_epoch(self) -> list[float]:
        """One pack epoch: every member trains one epoch; returns their mean losses."""
        if not self.members:
            raise RuntimeError("the trainer has no members")
        if self._stale:
            self._rebuild()
        optimizer = self.optimizer
        assert optimizer is not None
        for group, member in zip(optimizer.param_groups, self.members, strict=True):
            group["lr"] = member.lr  # its schedule's value for this epoch
        # Uploaded now: captured steps read the lrs from the device.
        optimizer.sync_hyperparameters()
        for model in self._models:
            model.train()
        order = epoch_order(len(self.data.train_y), self.order_seed, self.clock + 1, self.device)
        means = self.steps.run(order).tolist()
        if self.execution.cuda_graphs and not self.steps.cuda_graph:
            # The capture failed and the loop fell back to eager steps: record what ran.
            self.execution = dataclasses.replace(self.execution, cuda_graphs=False)
        self.clock += 1
        for member in self.members:
            member.epochs_done += 1
            member.schedule.step()
        return means

    @torch.no_grad()
    def evaluate(self) -> list[tuple[float, float]]:
        """Each member's (accuracy, mean cross-entropy) on the test split, in large batches."""
        models = [m.model for m in self.members]
        for model in models:
            model.eval()
        correct = torch.zeros(len(models), dtype=torch.int64, device=self.device)
        loss = torch.zeros(len(models), dtype=torch.float64, device=self.device)
        # Activations grow with K: keep one evaluation batch's memory about that of one trial.
        step = max(1, self.spec.eval_batch_size // len(models))
        for start in range(0, len(self.data.test_y), step):
            logits = self._logits(models, self.data.test_x[start : start + step])
            targets = self.data.test_y[start : start + step]
            correct += (logits.argmax(dim=2) == targets).sum(dim=1)
            loss += member_losses(logits, targets).double() * len(targets)
        n = max(len(self.data.test_y), 1)
        return [(c / n, v / n) for c, v in zip(correct.tolist(), loss.tolist(), strict=True)]

    def run_epoch(self) -> list[EpochResult]:
        """Train one pack epoch, then evaluate; one result per member, in member order."""
        started = time.perf_counter()
        losses = self.train_epoch()
        evaluations = self.evaluate()
        seconds = time.perf_counter() - started
        return [
            EpochResult(m.epochs_done, loss, acc, seconds, val_loss)
            for m, loss, (acc, val_loss) in zip(self.members, losses, evaluations, strict=True)
        ]
