"""How training runs on a device: precision, memory layout, and CUDA graphs for the step.

Contract:

- ``resolve_device(name)``: ``auto`` is CUDA when present, else the CPU.
- ``Execution.of(spec, device)`` resolves the spec's ``precision``, ``channels_last`` and
  ``cuda_graphs`` for one device. ``precision = "bf16"`` runs forward passes and losses under
  bf16 autocast (on any device; parameters, gradients and optimizer state stay float32).
  ``channels_last`` hands convolutions NHWC inputs. ``cuda_graphs`` applies on CUDA only, and
  ``with_optimizer`` drops it for an optimizer whose step cannot be captured (ATen's fused
  kernels). ``describe()`` names the result, for provenance.
- ``StepLoop(step, batch_size=B, cuda_graph=...)`` runs an epoch: ``step(index)`` for every
  minibatch of the epoch's order, where ``step`` does the whole training step (gather,
  forward, loss, zero_grad, backward, optimizer step) and returns the minibatch's loss, a
  scalar or one per packed trial. ``run(order)`` returns the epoch's mean loss as a device
  tensor: the loop itself never synchronises with the host.
- With ``cuda_graph=True`` the first ``WARMUP_STEPS`` full batches after construction or
  ``reset()`` run eagerly on a side stream (they are real training steps: CUDA graphs need
  a warmed-up allocator and autograd), the next full batch is captured as one graph, and it
  and every later full batch are then one index copy and one replay. A final partial batch
  runs eagerly. Replays run the captured kernels on the same buffers: the trajectory is
  the eager one's to float rounding (libraries may choose other algorithms under capture).
  A capture that raises turns graphs off for this loop (``capture_error`` says why): the
  batch and the rest run eagerly, nothing is lost.
- The captured graph reads fixed addresses: call ``reset()`` whenever anything ``step``
  touches is reallocated (the optimizer rebuilt, packed members added or removed). Values
  the step reads from host memory are frozen at capture: upload a changed lr before the
  replays (``FusedAdamW.sync_hyperparameters()``), which the trainers do every epoch.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from sweeper.optim import FusedAdamW
from sweeper.spec import TrainingSpec

# Eager steps before a capture. PyTorch's CUDA-graph notes warm up whole-network captures
# with a few iterations on a side stream; 3 is what their examples use.
WARMUP_STEPS = 3

Step = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Execution:
    """The resolved execution options of one device; see the module docstring."""

    bf16: bool = False
    channels_last: bool = False
    cuda_graphs: bool = False

    @classmethod
    def of(cls, spec: TrainingSpec, device: torch.device) -> Execution:
        return cls(
            bf16=spec.precision == "bf16",
            channels_last=spec.channels_last,
            cuda_graphs=spec.cuda_graphs and device.type == "cuda",
        )

    def with_optimizer(self, optimizer: FusedAdamW) -> Execution:
        """These options, minus CUDA graphs when ``optimizer.step()`` cannot be captured."""
        if self.cuda_graphs and not optimizer.capturable:
            return dataclasses.replace(self, cuda_graphs=False)
        return self

    def describe(self) -> str:
        """E.g. ``"bf16+channels_last+cuda_graph"``; ``"fp32"`` when nothing is on."""
        parts = ["bf16" if self.bf16 else "fp32"]
        if self.channels_last:
            parts.append("channels_last")
        if self.cuda_graphs:
            parts.append("cuda_graph")
        return "+".join(parts)

    def inputs(self, images: torch.Tensor) -> torch.Tensor:
        """Normalised float images in the memory layout the convolutions should get."""
        if self.channels_last:
            return images.contiguous(memory_format=torch.channels_last)
        return images

    def autocast(self, device: torch.device) -> contextlib.AbstractContextManager[Any]:
        """bf16 autocast around a forward pass and its loss, when ``bf16`` is on."""
        if not self.bf16:
            return contextlib.nullcontext()
        # No cast cache: a cached cast made during capture would be a stale copy in replays.
        return torch.autocast(device.type, dtype=torch.bfloat16, cache_enabled=False)


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present; otherwise the named device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


class StepLoop:
    """Runs an epoch's training steps, eagerly or as CUDA-graph replays; see the module."""

    def __init__(self, step: Step, *, batch_size: int, cuda_graph: bool = False) -> None:
        self.step = step
        self.batch_size = batch_size
        self.cuda_graph = cuda_graph
        self.captures = 0  # graphs captured so far (one per reset that reached a replay)
        self.capture_error: str | None = None  # why a capture failed (then it runs eagerly)
        self.reset()

    def reset(self) -> None:
        """Forget the captured graph and the loss buffer; the next steps warm up again."""
        self._graph: torch.cuda.CUDAGraph | None = None
        self._index: torch.Tensor | None = None
        self._total: torch.Tensor | None = None
        self._warm_steps = 0

    def run(self, order: torch.Tensor) -> torch.Tensor:
        """One epoch over ``order`` in minibatches; the mean of the steps' losses."""
        if self._total is not None:
            self._total.zero_()
        n_batches = 0
        for start in range(0, len(order), self.batch_size):
            index = order[start : start + self.batch_size]
            if self.cuda_graph and len(index) == self.batch_size:
                self._graphed(index)
            else:
                self._eager(index)
            n_batches += 1
        if self._total is None:
            raise ValueError("an epoch needs at least one training example")
        return self._total / n_batches

    def _eager(self, index: torch.Tensor) -> None:
        loss = self.step(index).detach().float()
        if self._total is None:
            self._total = torch.zeros_like(loss)
        self._total += loss

    def _graphed(self, index: torch.Tensor) -> None:
        if self._graph is None and self._warm_steps < WARMUP_STEPS:
            side = torch.cuda.Stream(index.device)
            side.wait_stream(torch.cuda.current_stream(index.device))
            with torch.cuda.stream(side):
                self._eager(index)
            torch.cuda.current_stream(index.device).wait_stream(side)
            self._warm_steps += 1
            return
        if self._graph is None:
            try:
                self._capture(index)
            except RuntimeError as err:
                # A step that cannot be captured (a library's kernel that syncs, an allocator
                # in a state capture refuses) trains on eagerly: capturing ran nothing, so
                # this batch has not been trained yet. The trainer records what ran.
                self.capture_error = str(err).strip().splitlines()[0] if str(err) else repr(err)
                self.cuda_graph = False
                self._graph = None
                self._eager(index)
                return
        assert self._graph is not None and self._index is not None
        self._index.copy_(index)
        self._graph.replay()

    def _capture(self, index: torch.Tensor) -> None:
        """Record one step into a graph; capturing runs nothing, the caller replays it."""
        assert self._total is not None  # the warm-up steps made it
        self._index = index.clone()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self._total += self.step(self._index).detach().float()
        self._graph = graph
        self.captures += 1
