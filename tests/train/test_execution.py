"""Execution options: what they resolve to, and that each trains what the plain path trains.

On the CPU: the step loop's batching, channels_last (same run to float32 rounding) and bf16
autocast (engaged: a different, still learning run). On CUDA only (skipped elsewhere; no GPU
here proves them): CUDA-graph replays against the eager loop, single and packed, including
a re-capture after the pack's membership changes. Replays run the eager kernels, but cuBLAS
may pick other algorithms under capture, so the runs are compared to float32 rounding
(1e-5, as the pack's equivalence tests), not bit for bit.
"""

from __future__ import annotations

import pytest
import torch

from sweeper.optim import FusedAdamW
from sweeper.spec import TrainingSpec
from sweeper.train.data import Dataset
from sweeper.train.execution import WARMUP_STEPS, Execution, StepLoop
from sweeper.train.model import SimpleCNN
from sweeper.train.trainer import Trainer

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
CPU, CUDA = torch.device("cpu"), torch.device("cuda")


def _trainer(data: Dataset, spec: TrainingSpec, seeds: tuple[int, ...] = (1,)) -> Trainer:
    """A trainer with one member per init seed (adamw, lr 1e-3, wd 1e-2), batch order 3."""
    trainer = Trainer(data, spec, order_seed=3)
    for seed in seeds:
        torch.manual_seed(seed)
        model = SimpleCNN().to(data.train_x.device)
        trainer.add(model, optimizer_name="adamw", lr=1e-3, weight_decay=1e-2)
    return trainer


def _max_abs(a: Trainer, b: Trainer) -> float:
    return max(
        (p - q).abs().max().item()
        for m, n in zip(a.members, b.members, strict=True)
        for p, q in zip(m.model.parameters(), n.model.parameters(), strict=True)
    )


def test_options_resolve_per_device() -> None:
    everything = TrainingSpec(precision="bf16", channels_last=True, cuda_graphs=True)
    assert Execution.of(everything, CPU) == Execution(bf16=True, channels_last=True)
    assert Execution.of(everything, CUDA).describe() == "bf16+channels_last+cuda_graph"
    assert Execution.of(TrainingSpec(), CUDA).describe() == "fp32+cuda_graph", "the default"
    assert Execution.of(TrainingSpec(), CPU).describe() == "fp32", "graphs are CUDA-only"
    assert Execution.of(TrainingSpec(cuda_graphs=False), CUDA).describe() == "fp32"
    images = torch.zeros(2, 3, 4, 4)
    assert (
        Execution(channels_last=True)
        .inputs(images)
        .is_contiguous(memory_format=torch.channels_last)
    )
    assert Execution().inputs(images) is images
    # An optimizer whose step cannot be captured (ATen's kernel here) turns graphs off.
    optimizer = FusedAdamW([torch.nn.Parameter(torch.zeros(3))])
    assert not Execution(cuda_graphs=True).with_optimizer(optimizer).cuda_graphs


def test_the_step_loop_averages_every_minibatch_including_the_last_partial_one() -> None:
    seen: list[list[int]] = []

    def step(index: torch.Tensor) -> torch.Tensor:
        seen.append(index.tolist())
        return torch.stack([index.sum(), -index.sum()]).float()  # two "members"

    loop = StepLoop(step, batch_size=4)
    mean = loop.run(torch.arange(10))
    assert seen == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert mean.tolist() == [15.0, -15.0]  # (6 + 22 + 17) / 3
    assert loop.run(torch.arange(4)).tolist() == [6.0, -6.0], "the sum restarts each epoch"
    assert loop.captures == 0


def test_channels_last_trains_the_same_run(data: Dataset) -> None:
    plain = _trainer(data, TrainingSpec())
    nhwc = _trainer(data, TrainingSpec(channels_last=True))
    for _ in (1, 2):
        (a,), (b,) = plain.run_epoch(), nhwc.run_epoch()
        assert b.train_loss == pytest.approx(a.train_loss, rel=1e-5)
        assert b.val_accuracy == a.val_accuracy
    # Different convolution kernels round differently; the runs stay float32-close.
    assert _max_abs(plain, nhwc) < 1e-4


def test_bf16_autocast_is_engaged_and_still_learns(data: Dataset) -> None:
    plain = _trainer(data, TrainingSpec())
    bf16 = _trainer(data, TrainingSpec(precision="bf16"))
    assert bf16.execution.describe() == "bf16"
    results = [(plain.run_epoch()[0], bf16.run_epoch()[0]) for _ in (1, 2, 3, 4)]
    losses = [(a.train_loss, b.train_loss) for a, b in results]
    # bf16 keeps 8 mantissa bits: every epoch's loss differs, yet the first (before the
    # runs drift apart) only by rounding, and both runs fit the task.
    assert all(a != b for a, b in losses), losses
    assert losses[0][1] == pytest.approx(losses[0][0], rel=0.01), losses
    assert results[-1][1].val_accuracy >= 0.8, "bf16 learns the learnable task too"
    assert all(p.dtype == torch.float32 for p in bf16.members[0].model.parameters())


def test_a_bf16_pack_learns(data: Dataset) -> None:
    pack = _trainer(data, TrainingSpec(precision="bf16"), seeds=(1, 2))
    results = [pack.run_epoch() for _ in range(4)]
    assert min(r.val_accuracy for r in results[-1]) >= 0.8, results[-1]


# -- CUDA graphs ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cuda_data(data: Dataset) -> Dataset:
    return data.to(CUDA)


@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_cuda_graph_replays_train_the_eager_run(cuda_data: Dataset, precision: str, k: int) -> None:
    seeds = (1, 2, 3)[:k]
    eager = _trainer(
        cuda_data,
        TrainingSpec(precision=precision, schedule="cosine", cuda_graphs=False),
        seeds,
    )
    graphed = _trainer(
        cuda_data, TrainingSpec(precision=precision, schedule="cosine", cuda_graphs=True), seeds
    )
    assert len(cuda_data.train_y) // 32 > WARMUP_STEPS + 1, "the epoch must reach replays"
    for epoch in (1, 2, 3):
        for a, b in zip(eager.run_epoch(), graphed.run_epoch(), strict=True):
            assert b.train_loss == pytest.approx(a.train_loss, rel=1e-5), epoch
            assert b.val_accuracy == a.val_accuracy
        assert graphed.execution.cuda_graphs, "FusedAdamW's Triton kernel is capturable"
        assert graphed.steps.captures == 1, "captured once, replayed every later full batch"
    assert _max_abs(eager, graphed) < 1e-5


@pytest.mark.cuda
@needs_cuda
def test_a_graphed_pack_recaptures_when_members_change(cuda_data: Dataset) -> None:
    eager = _trainer(cuda_data, TrainingSpec(cuda_graphs=False), seeds=(1, 2))
    graphed = _trainer(cuda_data, TrainingSpec(cuda_graphs=True), seeds=(1, 2))
    for p in (eager, graphed):
        p.run_epoch()
        p.remove(p.members[0])
        torch.manual_seed(5)
        model = SimpleCNN().to(CUDA)
        p.add(model, optimizer_name="adam", lr=2e-3, weight_decay=1e-3)
    assert graphed.steps.captures == 1
    for _ in range(2):
        for a, b in zip(eager.run_epoch(), graphed.run_epoch(), strict=True):
            assert b.train_loss == pytest.approx(a.train_loss, rel=1e-5)
            assert b.val_accuracy == a.val_accuracy
    assert graphed.steps.captures == 2, "one capture per membership"
    assert _max_abs(eager, graphed) < 1e-5


@pytest.mark.cuda
@needs_cuda
def test_a_step_that_cannot_be_captured_runs_eagerly() -> None:
    """A step that reads a value on the host (a sync: illegal under capture) makes the
    capture fail; the loop says why, runs that batch and the rest eagerly, and averages
    every batch exactly once."""
    seen: list[int] = []

    def step(index: torch.Tensor) -> torch.Tensor:
        seen.append(int(index[0]))  # .item() under capture raises
        return index.float().mean().reshape(1)

    loop = StepLoop(step, batch_size=2, cuda_graph=True)
    order = torch.arange(12, device=CUDA)
    mean = loop.run(order)
    assert not loop.cuda_graph and loop.captures == 0 and loop.capture_error
    assert seen == list(range(0, 12, 2)), "each batch trained once, in order"
    assert mean.item() == pytest.approx(order.float().mean().item())
