"""The trainer, at K = 1 (a single trial) and K > 1 (a pack): it learns, is deterministic,
resumes exactly, reports NaN per member, and trains each member of a pack as that trial's
own K = 1 run would.

Pack-vs-single equivalence is checked in float32 on the CPU against one-member trainers with
the same init seeds, batch order, lr, weight decay, mode and schedule. A pack computes the
same math with other kernels (grouped convolution, batched matmul, concatenated weights), so
the results agree to float32 rounding, not bit for bit. Tolerances, and why:

- Parameters after every epoch: ``atol=1e-5, rtol=1e-4``. One step's rounding differences
  are ~1e-7 relative; Adam divides by sqrt(v), which amplifies them in near-zero-gradient
  coordinates, and a few dozen steps compound them; measured: at most 9.4e-7 absolute after
  4 epochs of this test's trials (one ATen thread, see conftest.py). A real mistake (a wrong
  lr or wd, another batch, a leaked gradient) moves parameters by ~lr = 1e-3 per step, two
  orders of magnitude above this tolerance.
- Validation accuracy per epoch: equal. With parameters this close, an argmax flips only for
  an image whose top two logits tie to ~1e-5; the measured differences go in the messages.
- Same trainer, same inputs (resume, same seed): bit-equal, since with one thread the whole
  computation is deterministic by construction.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sweeper.spec import TrainingSpec
from sweeper.train.data import Dataset
from sweeper.train.model import SimpleCNN
from sweeper.train.optimizers import make_optimizer
from sweeper.train.order import make_scheduler
from sweeper.train.trainer import Member, Trainer

ATOL, RTOL = 1e-5, 1e-4
ORDER_SEED = 7
# (init seed, optimizer, lr, weight decay): different modes, lrs and decays in one pack.
TRIALS = [
    (1, "adamw", 1e-3, 1e-2),
    (2, "adam", 3e-4, 1e-3),
    (3, "adamw", 2e-3, 0.5),
]


def _model(seed: int) -> SimpleCNN:
    torch.manual_seed(seed)
    return SimpleCNN()


def _trainer(
    data: Dataset,
    spec: TrainingSpec,
    trials: list[tuple[int, str, float, float]],
    *,
    order_seed: int = ORDER_SEED,
    start_epoch: int = 0,
) -> tuple[Trainer, list[Member]]:
    trainer = Trainer(data, spec, order_seed=order_seed, start_epoch=start_epoch)
    members = [
        trainer.add(_model(s), optimizer_name=o, lr=lr, weight_decay=wd) for s, o, lr, wd in trials
    ]
    return trainer, members


def _single(
    data: Dataset, spec: TrainingSpec, trial: tuple[int, str, float, float], start: int = 0
) -> Trainer:
    """A trial alone (K = 1) on the pack's batch order, from pack epoch ``start``."""
    return _trainer(data, spec, [trial], start_epoch=start)[0]


def _max_param_error(a: torch.nn.Module, b: torch.nn.Module) -> float:
    """Largest |a - b| beyond the allowed ``ATOL + RTOL * |b|`` (0 when within)."""
    worst = 0.0
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        excess = ((p - q).abs() - (ATOL + RTOL * q.abs())).max().item()
        worst = max(worst, excess)
    return worst


def _max_abs(a: torch.nn.Module, b: torch.nn.Module) -> float:
    return max(
        (p - q).abs().max().item() for p, q in zip(a.parameters(), b.parameters(), strict=True)
    )


def _assert_same_run(member: torch.nn.Module, single: torch.nn.Module, where: str) -> None:
    error = _max_abs(member, single)
    assert _max_param_error(member, single) <= 0, f"{where}: parameters differ by {error:.3g}"


# -- every K ---------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [1, 3])
def test_learns_a_learnable_task_well_above_chance(data: Dataset, k: int) -> None:
    trainer, _ = _trainer(data, TrainingSpec(epochs=4), TRIALS[:k])
    history = [trainer.run_epoch() for _ in range(4)]
    best = [max(r.val_accuracy for r in results) for results in history]
    assert best[-1] >= 0.8, f"best accuracy per epoch {best} (chance is 0.1)"
    assert [r.epoch for r in history[-1]] == [4] * k


@pytest.mark.parametrize("k", [1, 3])
def test_same_seeds_same_run(data: Dataset, k: int) -> None:
    a, _ = _trainer(data, TrainingSpec(), TRIALS[:k], order_seed=3)
    b, _ = _trainer(data, TrainingSpec(), TRIALS[:k], order_seed=3)
    assert a.train_epoch() == b.train_epoch()
    c, _ = _trainer(data, TrainingSpec(), TRIALS[:k], order_seed=4)
    assert c.train_epoch() != a.train_epoch()


@pytest.mark.parametrize("k", [1, 3])
def test_resume_from_checkpoint_is_bit_identical(data: Dataset, k: int, tmp_path: Path) -> None:
    """Two epochs straight equal one epoch, a save through torch.save, a fresh trainer
    started at the members' clock, one more epoch: bit for bit."""
    spec = TrainingSpec(epochs=2, schedule="cosine")
    straight, straight_members = _trainer(data, spec, TRIALS[:k], order_seed=5)
    straight.run_epoch()
    straight.run_epoch()

    first, first_members = _trainer(data, spec, TRIALS[:k], order_seed=5)
    first.run_epoch()
    torch.save([first.member_state(m) for m in first_members], tmp_path / "ckpt.pt")
    states = torch.load(tmp_path / "ckpt.pt", weights_only=True)

    resumed = Trainer(data, spec, order_seed=5, start_epoch=1)
    members = [
        resumed.add(_model(99), optimizer_name=o, lr=lr, weight_decay=wd, resume=(state, 1))
        for (_, o, lr, wd), state in zip(TRIALS[:k], states, strict=True)
    ]
    assert [m.order_offset for m in members] == [0] * k
    results = resumed.run_epoch()
    assert [r.epoch for r in results] == [2] * k
    for a, b in zip(straight_members, members, strict=True):
        for (name, p), q in zip(
            a.model.state_dict().items(), b.model.state_dict().values(), strict=True
        ):
            assert torch.equal(p, q), name


@pytest.mark.parametrize("k", [1, 2])
def test_a_diverging_member_is_reported_not_raised(data: Dataset, k: int) -> None:
    """NaN is a result, never an exception; a healthy pack-mate trains as if alone."""
    spec = TrainingSpec(epochs=2)
    trainer = Trainer(data, spec, order_seed=ORDER_SEED)
    trainer.add(_model(1), optimizer_name="adamw", lr=1e7, weight_decay=1e-3)
    if k == 2:
        good_trial = (2, "adamw", 1e-3, 1e-3)
        trainer.add(_model(2), optimizer_name="adamw", lr=1e-3, weight_decay=1e-3)
    results = trainer.run_epoch()
    assert not results[0].finite, f"lr 1e7 should diverge, loss {results[0].train_loss}"
    if k == 2:
        single = _single(data, spec, good_trial)
        expected = single.run_epoch()[0]
        assert results[1].finite and results[1].val_accuracy == expected.val_accuracy
        _assert_same_run(trainer.members[1].model, single.members[0].model, "healthy mate")


def test_step_schedule_decays_the_lr(data: Dataset) -> None:
    trainer, (member,) = _trainer(
        data, TrainingSpec(schedule="step", step_size=1, gamma=0.5), TRIALS[:1]
    )
    assert member.lr == pytest.approx(1e-3)
    trainer.train_epoch()
    assert member.lr == pytest.approx(5e-4)
    assert trainer.optimizer is not None
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(1e-3), "epoch 1 ran at 1e-3"


def test_a_checkpoint_in_the_earlier_single_trainer_format_resumes(data: Dataset) -> None:
    """Checkpoints written before trainers were unified (a FusedAdamW state dict and a
    torch scheduler on it) still resume: same weights, moments, step count and next lr."""
    spec = TrainingSpec(epochs=3, schedule="cosine")
    model = _model(4)
    optimizer = make_optimizer("adamw", model.parameters(), 1e-3, 1e-2)
    scheduler = make_scheduler(optimizer, spec)
    assert scheduler is not None
    for p in model.parameters():
        p.grad = torch.full_like(p, 0.01)
    optimizer.step()
    scheduler.step()
    old = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
    }
    trainer = Trainer(data, spec, order_seed=ORDER_SEED, start_epoch=1)
    member = trainer.add(
        _model(0), optimizer_name="adamw", lr=1e-3, weight_decay=1e-2, resume=(old, 1)
    )
    assert member.lr == optimizer.param_groups[0]["lr"]
    trainer.run_epoch()
    assert trainer.optimizer is not None
    state = trainer.optimizer.state_dict()["state"][0]
    assert float(state["step"]) == 1 + len(range(0, len(data.train_y), spec.batch_size))


# -- K > 1: a pack trains each member as its own run -----------------------------------------


def test_pack_matches_single_runs(data: Dataset) -> None:
    spec = TrainingSpec(epochs=3, schedule="cosine")
    pack, members = _trainer(data, spec, TRIALS)
    singles = [_single(data, spec, trial) for trial in TRIALS]
    for epoch in range(1, spec.epochs + 1):
        packed = pack.run_epoch()
        for i, (member, result, single) in enumerate(zip(members, packed, singles, strict=True)):
            expected = single.run_epoch()[0]
            where = f"trial {i} epoch {epoch}"
            error = _max_abs(member.model, single.members[0].model)
            _assert_same_run(member.model, single.members[0].model, where)
            assert result.epoch == expected.epoch == epoch
            assert result.train_loss == pytest.approx(expected.train_loss, rel=1e-5), where
            assert result.val_accuracy == expected.val_accuracy, (
                f"{where}: val_acc {result.val_accuracy} vs {expected.val_accuracy} "
                f"(max param diff {error:.3g})"
            )
    # The pack really learnt: the task is learnable well above chance (0.1).
    assert max(r.val_accuracy for r in packed) > 0.5


def test_refill_and_shrink_keep_each_member_exact(data: Dataset) -> None:
    """A member leaves after epoch 1, a fresh one joins; every member still matches its run.

    The newcomer joins at pack epoch 1, so its epoch e runs in pack epoch 1 + e: a one-member
    trainer started at epoch 1 on the same order reproduces it.
    """
    spec = TrainingSpec(epochs=3, schedule="step", step_size=1, gamma=0.5)
    pack, members = _trainer(data, spec, TRIALS[:2])
    singles = {id(members[i]): _single(data, spec, TRIALS[i]) for i in range(2)}
    pack.run_epoch()
    for i in range(2):
        singles[id(members[i])].run_epoch()
    pack.remove(members[1])  # "pruned": the pack shrinks ...
    seed, opt, lr, wd = TRIALS[2]
    newcomer = pack.add(_model(seed), optimizer_name=opt, lr=lr, weight_decay=wd)
    assert newcomer.order_offset == 1
    singles[id(newcomer)] = _single(data, spec, TRIALS[2], start=1)  # ... and is refilled
    for _ in range(2):
        results = pack.run_epoch()
        for member, result in zip(pack.members, results, strict=True):
            single = singles[id(member)]
            expected = single.run_epoch()[0]
            where = f"member {pack.members.index(member)} epoch {result.epoch}"
            error = _max_abs(member.model, single.members[0].model)
            _assert_same_run(member.model, single.members[0].model, where)
            assert result.val_accuracy == expected.val_accuracy, f"{where} ({error:.3g})"
            assert result.train_loss == pytest.approx(expected.train_loss, rel=1e-5), where
    assert [m.epochs_done for m in pack.members] == [3, 2]


def test_a_member_checkpoint_resumes_in_another_pack_or_alone(
    data: Dataset, tmp_path: Path
) -> None:
    """A member saved after epoch 1 (through torch.save, as the worker does) continues in a
    new pack that has already trained an epoch with other members (another position in the
    flat buffers, its epoch 2 in that pack's epoch 2) and in a one-member trainer, exactly
    as the uninterrupted run does."""
    spec = TrainingSpec(epochs=3, schedule="cosine")
    seed, opt, lr, wd = TRIALS[1]  # adam: the mode must survive the round trip too
    first = Trainer(data, spec, order_seed=ORDER_SEED)
    member = first.add(_model(seed), optimizer_name=opt, lr=lr, weight_decay=wd)
    first.add(_model(9), optimizer_name="adamw", lr=1e-3, weight_decay=1e-2)
    first.run_epoch()
    torch.save({"trainer": first.member_state(member)}, tmp_path / "ckpt.pt")
    saved = torch.load(tmp_path / "ckpt.pt", weights_only=True)["trainer"]
    assert (tmp_path / "ckpt.pt").stat().st_size < 3 * 4 * 600_000, "one member, not the pack"

    uninterrupted = _single(data, spec, TRIALS[1])
    uninterrupted.run_epoch()

    second = Trainer(data, spec, order_seed=ORDER_SEED)
    second.add(_model(8), optimizer_name="adamw", lr=5e-4, weight_decay=1e-2)
    second.run_epoch()
    resumed = second.add(_model(0), optimizer_name=opt, lr=lr, weight_decay=wd, resume=(saved, 1))
    assert resumed.order_offset == 0 and resumed.lr == uninterrupted.members[0].lr

    alone = Trainer(data, spec, order_seed=ORDER_SEED, start_epoch=1)
    alone_member = alone.add(
        _model(0), optimizer_name=opt, lr=lr, weight_decay=wd, resume=(saved, 1)
    )
    for epoch in (2, 3):
        expected = uninterrupted.run_epoch()[0]
        packed = dict(zip(second.members, second.run_epoch(), strict=True))[resumed]
        single = alone.run_epoch()[0]
        assert packed.epoch == single.epoch == epoch
        _assert_same_run(resumed.model, uninterrupted.members[0].model, f"pack, epoch {epoch}")
        # Alone on the same order from the checkpoint: the same steps as the uninterrupted
        # run, from a state that equals its own up to rounding only, so the same bound. (Not
        # bit for bit: the checkpoint's epoch 1 ran in a pack of two, through the grouped
        # forward, and oneDNN picks its convolution kernels by the CPU's instruction set; on
        # an AVX-512 machine the pack's epoch 1 and a lone trial's differ in the last bits.)
        _assert_same_run(alone_member.model, uninterrupted.members[0].model, f"alone, {epoch}")
        assert packed.val_accuracy == single.val_accuracy == expected.val_accuracy
        assert packed.train_loss == pytest.approx(expected.train_loss, rel=1e-5)
