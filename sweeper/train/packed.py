"""K trials trained as one stacked model: same minibatches, one optimizer step for all.

Contract:

- A ``PackedTrainer`` holds members, one per trial. Each member is a ``SimpleCNN`` with its
  own ``nn.Parameter`` leaves, its optimizer mode (``adamw`` | ``adam``), lr, weight decay,
  LR schedule and epoch count. One ``FusedAdamW`` holds the members as parameter groups, one
  group per member, so each trial's lr, weight decay and mode are that group's own
  hyperparameters (exact, not a scaled or shared value), and one ``step()`` updates all.
- Forward: the members' parameters are concatenated/stacked on every step (a few MB of
  copies) and the pack runs as one model: conv1 as one convolution with K*32 output
  channels, conv2 as a grouped convolution (``groups=K``), the two linear layers as batched
  matmuls. (``torch.func.vmap`` over ``functional_call`` computes the same, but agreed with
  single runs only to ~2e-5 after one epoch where this path agrees to ~1e-7;
  ``bench/trial_throughput.py`` times both.) The loss is the sum of the members' mean
  cross-entropies. No operation mixes members, so each member's gradient is the one its
  single-trial run computes, up to float rounding of the different kernels; autograd
  delivers it into that member's own parameters (views of the optimizer's flat gradient buffer).
- Batch order: every member sees the same minibatches. Pack epoch ``t`` visits the training
  set in ``epoch_order(n, order_seed, t)``. A member that joined at pack epoch ``t0`` runs
  its own epoch ``e`` during pack epoch ``t0 - 1 + e`` (``Member.order_offset = t0 - 1``):
  its batch order is a function of (order_seed, order_offset, e), so a single-trial
  ``Trainer`` with ``seed=order_seed`` reproduces it.
- The step loop does no host synchronisation: per-member loss sums stay on the device and are
  read once per epoch. The spec's execution options (``sweeper.train.execution``: bf16
  autocast, channels_last, CUDA graphs) apply; a membership change re-captures the graph.
- A non-finite loss is reported (``EpochResult.train_loss`` is NaN or inf), not raised: the
  caller fails that trial and removes it; the others go on unaffected.
- Members may be added and removed between epochs. The optimizer is then rebuilt over the
  current members; survivors keep their parameters, moments and step counts exactly, and a
  new member starts fresh (step 0, zero moments), as its single-trial run would.
- Checkpoints: ``member_state`` saves a member in ``Trainer.state_dict()``'s format, and
  ``add(..., resume=...)`` continues from such a state (a pack's or a single trial's), so a
  trial interrupted in either kind of worker resumes in either kind.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812 (torch's own convention)

from sweeper.optim import FusedAdamW
from sweeper.spec import TrainingSpec
from sweeper.train.data import Dataset, normalise
from sweeper.train.execution import Execution, StepLoop
from sweeper.train.loop import EpochResult, epoch_order, make_scheduler
from sweeper.train.model import N_CLASSES, SimpleCNN
from sweeper.train.optimizers import BETAS, EPS


class _Schedule:
    """A member's LR schedule, computed by torch's own scheduler on a stand-in optimizer.

    The pack's optimizer has one group per member and members are at different epochs, so
    one torch scheduler over it cannot serve them all. Driving torch's scheduler class over a
    one-group stand-in gives each member the exact lr sequence (same recurrence, same float
    operations) its single-trial ``Trainer`` would get.
    """

    def __init__(self, lr: float, spec: TrainingSpec) -> None:
        self._stand_in = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=lr)
        self._scheduler = make_scheduler(self._stand_in, spec)
        # A no-op step (no gradients): torch warns if a scheduler steps before its optimizer.
        self._stand_in.step()

    @property
    def lr(self) -> float:
        return float(self._stand_in.param_groups[0]["lr"])

    def step(self) -> None:
        if self._scheduler is not None:
            self._scheduler.step()

    def state_dict(self) -> dict[str, Any] | None:
        """The torch scheduler's state, as ``Trainer.state_dict()`` stores it (None: none)."""
        return self._scheduler.state_dict() if self._scheduler is not None else None

    def load_state_dict(self, state: dict[str, Any] | None, lr: float) -> None:
        """Continue a saved schedule whose next epoch runs at ``lr``."""
        self._stand_in.param_groups[0]["lr"] = lr
        if self._scheduler is not None and state is not None:
            self._scheduler.load_state_dict(state)


@dataclass(eq=False)
class Member:
    """One trial inside a pack. ``epochs_done`` counts the epochs it has trained."""

    model: SimpleCNN
    optimizer_name: str
    weight_decay: float
    schedule: _Schedule
    order_offset: int  # pack epochs that ran before this member joined
    epochs_done: int = 0
    tag: Any = field(default=None)  # the caller's handle (the worker's trial)
    # Optimizer state of a resumed member, by its parameters' order; installed on rebuild.
    resumed_state: dict[int, dict[str, torch.Tensor]] = field(default_factory=dict)

    @property
    def lr(self) -> float:
        """The lr of the member's next epoch (its schedule applied)."""
        return self.schedule.lr


def _cat(models: Sequence[nn.Module], name: str) -> torch.Tensor:
    return torch.cat([m.get_parameter(name) for m in models])


def _stack(models: Sequence[nn.Module], name: str) -> torch.Tensor:
    return torch.stack([m.get_parameter(name) for m in models])


def grouped_forward(models: Sequence[SimpleCNN], x: torch.Tensor) -> torch.Tensor:
    """Logits ``(K, N, 10)`` of K SimpleCNNs on the same input ``x`` ``(N, 3, 32, 32)``.

    Layer for layer ``SimpleCNN.forward``: conv1 of all members is one convolution (the input
    is shared, so output channels just concatenate); conv2 is a grouped convolution whose
    group k reads only member k's 32 channels; the linear layers are batched matmuls.
    """
    k, n = len(models), x.shape[0]
    h = F.conv2d(x, _cat(models, "conv1.weight"), _cat(models, "conv1.bias"), padding=1)
    h = F.max_pool2d(F.relu(h), 2, 2)
    w2, b2 = _cat(models, "conv2.weight"), _cat(models, "conv2.bias")
    h = F.max_pool2d(F.relu(F.conv2d(h, w2, b2, padding=1, groups=k)), 2, 2)
    # (N, K*64, 8, 8) -> (K, N, 4096): member k's features in SimpleCNN's flatten order.
    h = h.reshape(n, k, -1).transpose(0, 1)
    w, b = _stack(models, "fc1.weight"), _stack(models, "fc1.bias")
    h = F.relu(torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2)))
    w, b = _stack(models, "fc2.weight"), _stack(models, "fc2.bias")
    return torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2))


class PackedTrainer:
    """Trains the members of one pack together; see the module docstring for the promises."""

    def __init__(self, data: Dataset, spec: TrainingSpec, *, order_seed: int) -> None:
        """The spec's execution options apply to the pack as to a single trial."""
        self.data = data
        self.spec = spec
        self.order_seed = order_seed
        self.device = data.train_x.device
        self.execution = Execution.of(spec, self.device)
        self.members: list[Member] = []
        self.optimizer: FusedAdamW | None = None
        self.epochs_run = 0  # pack epochs so far
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
        tag: Any,
        resume: tuple[dict[str, Any], int] | None = None,
    ) -> Member:
        """Add a trial whose ``model`` is already on the pack's device; it joins next epoch.

        ``resume = (state, epochs_done)`` continues a trial from a checkpoint: ``state`` in
        ``Trainer.state_dict()``'s format (``member_state`` writes it) after ``epochs_done``
        epochs. It keeps its weights, moments, step counts and schedule; its next epoch
        follows the pack's batch order (``order_offset = epochs_run - epochs_done``).
        """
        member = Member(
            model,
            optimizer_name,
            weight_decay,
            _Schedule(lr, self.spec),
            order_offset=self.epochs_run,
            tag=tag,
        )
        if resume is not None:
            state, epochs_done = resume
            model.load_state_dict(state["model"])
            saved = state["optimizer"]
            member.schedule.load_state_dict(state["scheduler"], saved["param_groups"][0]["lr"])
            member.resumed_state = dict(saved["state"])
            member.epochs_done = epochs_done
            member.order_offset = self.epochs_run - epochs_done
        self.members.append(member)
        self._stale = True
        return member

    def remove(self, member: Member) -> None:
        """Take ``member`` out of the pack (pruned, finished or failed)."""
        self.members.remove(member)
        self._stale = True

    def _rebuild(self) -> None:
        """One FusedAdamW over the current members, carrying survivors' state exactly."""
        old = self.optimizer
        if old is not None:
            old.release_parameters()
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
        self.steps.reset()  # new buffers: a captured step would read the old ones
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
        """``member`` as ``Trainer.state_dict()`` would save it after the same epochs.

        Call it between epochs, before membership changes are applied (a member removed
        since the last epoch still has its state; one added has none yet). A single-trial
        ``Trainer`` or another pack resumes from it. Tensors are copies: a view would make
        ``torch.save`` write the whole pack's flat buffer.
        """
        optimizer = self.optimizer
        slot = next((i for i, m in enumerate(self._models) if m is member.model), None)
        if optimizer is None or slot is None:
            raise RuntimeError("the member has not trained in this pack yet")
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
                # The lr of its next epoch, as a Trainer's stepped scheduler leaves it.
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
            return grouped_forward(models, inputs).float()

    def _step(self, index: torch.Tensor) -> torch.Tensor:
        """One minibatch for every member; their K mean losses."""
        optimizer = self.optimizer
        assert optimizer is not None
        k = len(self._models)
        logits = self._logits(self._models, self.data.train_x[index])
        # Per-member mean cross-entropy, as each single trial's loss; their sum's gradient
        # with respect to member k's parameters is member k's own gradient.
        losses = F.cross_entropy(
            logits.reshape(-1, N_CLASSES), self.data.train_y[index].repeat(k), reduction="none"
        )
        losses = losses.view(k, -1).mean(dim=1)
        optimizer.zero_grad()
        losses.sum().backward()
        optimizer.step()
        return losses

    def train_epoch(self) -> list[float]:
        """One pack epoch: every member trains one epoch; returns their mean losses."""
        if not self.members:
            raise RuntimeError("the pack has no members")
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
        order = epoch_order(
            len(self.data.train_y), self.order_seed, self.epochs_run + 1, self.device
        )
        means = self.steps.run(order).tolist()
        self.epochs_run += 1
        for member in self.members:
            member.epochs_done += 1
            member.schedule.step()
        return means

    @torch.no_grad()
    def evaluate(self) -> list[float]:
        """Each member's accuracy on the test split, in large batches."""
        models = [m.model for m in self.members]
        for model in models:
            model.eval()
        correct = torch.zeros(len(models), dtype=torch.int64, device=self.device)
        # Activations grow with K: keep one evaluation batch's memory about that of one trial.
        step = max(1, self.spec.eval_batch_size // len(models))
        for start in range(0, len(self.data.test_y), step):
            logits = self._logits(models, self.data.test_x[start : start + step])
            hits = logits.argmax(dim=2) == self.data.test_y[start : start + step]
            correct += hits.sum(dim=1)
        n = max(len(self.data.test_y), 1)
        return [c / n for c in correct.tolist()]

    def run_epoch(self) -> list[EpochResult]:
        """Train one pack epoch, then evaluate; one result per member, in member order.

        Each result carries the member's own epoch number. The seconds are the pack's wall
        time (the members share it).
        """
        started = time.perf_counter()
        losses = self.train_epoch()
        accuracies = self.evaluate()
        seconds = time.perf_counter() - started
        return [
            EpochResult(m.epochs_done, loss, acc, seconds)
            for m, loss, acc in zip(self.members, losses, accuracies, strict=True)
        ]


def is_finite(result: EpochResult) -> bool:
    """False when the member's training loss became NaN or infinite."""
    return math.isfinite(result.train_loss)
