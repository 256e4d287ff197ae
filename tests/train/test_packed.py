"""A pack of K trials trains each member exactly as K single-trial runs would.

Equivalence is checked in float32 on the CPU against ``sweeper.train.loop.Trainer`` runs with
the same init seeds, the same batch order (``seed=order_seed``), lr, weight decay, mode and
schedule. The pack computes the same math with different kernels (grouped convolution,
batched matmul, concatenated weights), so results agree to float32 rounding, not bit for bit.

Tolerances, and why:

- Parameters after every epoch: ``atol=1e-5, rtol=1e-4``. One step's rounding differences
  are ~1e-7 relative; Adam divides by sqrt(v), which amplifies them in near-zero-gradient
  coordinates, and a few dozen steps compound them; measured: at most 9.4e-7 absolute after
  4 epochs of this test's trials. Anything that is a real mistake (a wrong
  lr or wd, another batch, a leaked gradient) moves parameters by ~lr = 1e-3 per step,
  two orders of magnitude above this tolerance.
- Validation accuracy per epoch: equal. With parameters this close, an argmax flips only for
  an image whose top two logits tie to ~1e-5; the measured differences go in the messages.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sweeper.spec import DataSpec, TrainingSpec
from sweeper.train.data import Dataset, load_dataset
from sweeper.train.loop import Trainer
from sweeper.train.model import SimpleCNN
from sweeper.train.packed import PackedTrainer, is_finite

ATOL, RTOL = 1e-5, 1e-4
ORDER_SEED = 7
# (init seed, optimizer, lr, weight decay): different modes, lrs and decays in one pack.
TRIALS = [
    (1, "adamw", 1e-3, 1e-2),
    (2, "adam", 3e-4, 1e-3),
    (3, "adamw", 2e-3, 0.5),
]


@pytest.fixture(scope="module")
def data(tiny_official: Path) -> Dataset:
    return load_dataset(DataSpec(), str(tiny_official))


def _model(seed: int) -> SimpleCNN:
    torch.manual_seed(seed)
    return SimpleCNN()


def _single(data: Dataset, spec: TrainingSpec, trial: tuple[int, str, float, float]) -> Trainer:
    seed, opt, lr, wd = trial
    return Trainer(
        _model(seed), data, spec, optimizer_name=opt, lr=lr, weight_decay=wd, seed=ORDER_SEED
    )


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


def test_pack_matches_single_runs(data: Dataset) -> None:
    spec = TrainingSpec(epochs=3, schedule="cosine")
    pack = PackedTrainer(data, spec, order_seed=ORDER_SEED)
    for i, (seed, opt, lr, wd) in enumerate(TRIALS):
        pack.add(_model(seed), optimizer_name=opt, lr=lr, weight_decay=wd, tag=i)
    singles = [_single(data, spec, trial) for trial in TRIALS]
    for epoch in range(1, spec.epochs + 1):
        packed = pack.run_epoch()
        for member, result, single in zip(pack.members, packed, singles, strict=True):
            expected = single.run_epoch(epoch)
            where = f"trial {member.tag} epoch {epoch}"
            error = _max_abs(member.model, single.model)
            assert _max_param_error(member.model, single.model) <= 0, (
                f"{where}: parameters differ by up to {error:.3g}"
            )
            assert result.epoch == epoch
            assert result.train_loss == pytest.approx(expected.train_loss, rel=1e-5), where
            assert result.val_accuracy == expected.val_accuracy, (
                f"{where}: val_acc {result.val_accuracy} vs {expected.val_accuracy} "
                f"(max param diff {error:.3g})"
            )
    # The pack really learnt: the task is learnable well above chance (0.1).
    assert max(r.val_accuracy for r in packed) > 0.5


def test_refill_and_shrink_keep_each_member_exact(data: Dataset) -> None:
    """A member leaves after epoch 1, a fresh one joins; every member still matches its run.

    The newcomer joins at pack epoch 2, so its epoch e uses the pack's order of epoch 1 + e:
    a single ``Trainer`` reproduces that by being asked for epoch ``1 + e``.
    """
    spec = TrainingSpec(epochs=3, schedule="step", step_size=1, gamma=0.5)
    pack = PackedTrainer(data, spec, order_seed=ORDER_SEED)
    members = [
        pack.add(_model(s), optimizer_name=o, lr=lr, weight_decay=wd, tag=i)
        for i, (s, o, lr, wd) in enumerate(TRIALS[:2])
    ]
    singles = {i: _single(data, spec, TRIALS[i]) for i in range(2)}
    offsets = {0: 0, 1: 0}
    pack.run_epoch()
    for i in range(2):
        singles[i].run_epoch(1)
    pack.remove(members[1])  # "pruned": the pack shrinks ...
    seed, opt, lr, wd = TRIALS[2]
    newcomer = pack.add(_model(seed), optimizer_name=opt, lr=lr, weight_decay=wd, tag=2)
    assert newcomer.order_offset == 1
    singles[2], offsets[2] = _single(data, spec, TRIALS[2]), 1  # ... and is refilled
    for _ in range(2):
        results = pack.run_epoch()
        for member, result in zip(pack.members, results, strict=True):
            i = member.tag
            expected = singles[i].run_epoch(offsets[i] + result.epoch)
            error = _max_abs(member.model, singles[i].model)
            where = f"trial {i} epoch {result.epoch}"
            assert _max_param_error(member.model, singles[i].model) <= 0, (
                f"{where}: parameters differ by up to {error:.3g}"
            )
            assert result.val_accuracy == expected.val_accuracy, f"{where} ({error:.3g})"
            assert result.train_loss == pytest.approx(expected.train_loss, rel=1e-5), where
    assert [m.epochs_done for m in pack.members] == [3, 2]


def test_a_diverging_member_does_not_touch_its_pack_mates(data: Dataset) -> None:
    spec = TrainingSpec(epochs=2)
    pack = PackedTrainer(data, spec, order_seed=ORDER_SEED)
    pack.add(_model(1), optimizer_name="adamw", lr=1e7, weight_decay=1e-3, tag="nan")
    pack.add(_model(2), optimizer_name="adamw", lr=1e-3, weight_decay=1e-3, tag="ok")
    single = _single(data, spec, (2, "adamw", 1e-3, 1e-3))
    bad, good = pack.run_epoch()
    assert not is_finite(bad), f"lr 1e7 should diverge, loss {bad.train_loss}"
    expected = single.run_epoch(1)
    assert is_finite(good) and good.val_accuracy == expected.val_accuracy
    error = _max_abs(pack.members[1].model, single.model)
    assert _max_param_error(pack.members[1].model, single.model) <= 0, f"diff {error:.3g}"


def _assert_same_run(member: torch.nn.Module, single: torch.nn.Module, where: str) -> None:
    error = _max_abs(member, single)
    assert _max_param_error(member, single) <= 0, f"{where}: parameters differ by {error:.3g}"


def test_a_member_checkpoint_resumes_in_a_pack_or_a_single_trainer(
    data: Dataset, tmp_path: Path
) -> None:
    """A member saved after epoch 1 (through torch.save, as the worker does) continues in a
    new pack and in a single ``Trainer`` exactly as the uninterrupted single run does.

    The new pack has trained one epoch already, with other members, so the resumed member
    sits at another position in the flat buffers and joins with a negative order offset
    (its epoch 2 runs in the new pack's epoch 2).
    """
    spec = TrainingSpec(epochs=3, schedule="cosine")
    seed, opt, lr, wd = TRIALS[1]  # adam: the mode must survive the round trip too
    first = PackedTrainer(data, spec, order_seed=ORDER_SEED)
    member = first.add(_model(seed), optimizer_name=opt, lr=lr, weight_decay=wd, tag=1)
    first.add(_model(9), optimizer_name="adamw", lr=1e-3, weight_decay=1e-2, tag=9)
    first.run_epoch()
    torch.save({"trainer": first.member_state(member)}, tmp_path / "ckpt.pt")
    saved = torch.load(tmp_path / "ckpt.pt", weights_only=True)["trainer"]
    assert (tmp_path / "ckpt.pt").stat().st_size < 3 * 4 * 600_000, "one member, not the pack"

    uninterrupted = _single(data, spec, TRIALS[1])
    uninterrupted.run_epoch(1)

    second = PackedTrainer(data, spec, order_seed=ORDER_SEED)
    second.add(_model(8), optimizer_name="adamw", lr=5e-4, weight_decay=1e-2, tag=8)
    second.run_epoch()
    resumed = second.add(
        _model(0), optimizer_name=opt, lr=lr, weight_decay=wd, tag=1, resume=(saved, 1)
    )
    assert resumed.order_offset == 0 and resumed.lr == uninterrupted.optimizer.param_groups[0]["lr"]

    single = _single(data, spec, TRIALS[1])
    single.load_state_dict(saved)
    for epoch in (2, 3):
        expected = uninterrupted.run_epoch(epoch)
        packed = dict(zip(second.members, second.run_epoch(), strict=True))[resumed]
        alone = single.run_epoch(epoch)
        assert packed.epoch == epoch
        _assert_same_run(resumed.model, uninterrupted.model, f"pack, epoch {epoch}")
        _assert_same_run(single.model, uninterrupted.model, f"single, epoch {epoch}")
        assert packed.val_accuracy == alone.val_accuracy == expected.val_accuracy
        for result in (packed, alone):
            assert result.train_loss == pytest.approx(expected.train_loss, rel=1e-5)
