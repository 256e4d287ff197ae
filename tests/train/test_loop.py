"""The training loop learns, is deterministic, resumes exactly and flags NaN."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sweeper.spec import DataSpec, TrainingSpec
from sweeper.train.data import load_dataset
from sweeper.train.loop import NonFiniteLoss, Trainer
from sweeper.train.model import SimpleCNN


def _trainer(data_root: Path, seed: int = 0, lr: float = 1e-3, **spec: object) -> Trainer:
    torch.manual_seed(seed)
    data = load_dataset(DataSpec(), str(data_root))
    return Trainer(
        SimpleCNN(),
        data,
        TrainingSpec(**spec),  # type: ignore[arg-type]
        optimizer_name="adamw",
        lr=lr,
        weight_decay=1e-2,
        seed=seed,
    )


def test_learns_a_learnable_task_well_above_chance(tiny_official: Path) -> None:
    trainer = _trainer(tiny_official, epochs=4)
    accuracies = [trainer.run_epoch(e).val_accuracy for e in range(1, 5)]
    assert accuracies[-1] >= 0.8, f"accuracy per epoch {accuracies} (chance is 0.1)"


def test_same_seed_same_run(tiny_official: Path) -> None:
    a, b = _trainer(tiny_official, seed=3), _trainer(tiny_official, seed=3)
    assert a.train_epoch(1) == b.train_epoch(1)
    c = _trainer(tiny_official, seed=4)
    assert c.train_epoch(1) != a.train_epoch(2)


def test_resume_from_checkpoint_is_bit_identical(tiny_official: Path) -> None:
    """Two epochs straight equal one epoch, a save/load into a fresh trainer, one more."""
    straight = _trainer(tiny_official, seed=5, schedule="cosine", epochs=2)
    straight.train_epoch(1)
    straight.train_epoch(2)
    first = _trainer(tiny_official, seed=5, schedule="cosine", epochs=2)
    first.train_epoch(1)
    state = first.state_dict()
    resumed = _trainer(tiny_official, seed=99, schedule="cosine", epochs=2)
    resumed.seed = 5  # the worker restores the trial's seed before resuming
    resumed.load_state_dict(state)
    resumed.train_epoch(2)
    for (name, p), q in zip(
        straight.model.state_dict().items(), resumed.model.state_dict().values(), strict=True
    ):
        assert torch.equal(p, q), name


def test_step_schedule_decays_the_lr(tiny_official: Path) -> None:
    trainer = _trainer(tiny_official, schedule="step", step_size=1, gamma=0.5)
    trainer.train_epoch(1)
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(5e-4)


def test_divergence_raises_non_finite_loss(tiny_official: Path) -> None:
    trainer = _trainer(tiny_official, lr=1e6)
    with pytest.raises(NonFiniteLoss, match="at epoch"):
        for epoch in range(1, 4):
            trainer.train_epoch(epoch)
