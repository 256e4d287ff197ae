"""``best``: the answer each known-truth study supports, and no stronger."""

from __future__ import annotations

import math

import pytest

from sweeper.analysis import study_model
from sweeper.analysis.decay import decay_check, schedule

from .test_noise import snap_with_spec
from .truths import (
    flat_grid,
    grid_plus_probe,
    random_study,
    replicated,
    split_grid,
    uniform,
)


def best_of(builder):  # type: ignore[no-untyped-def]
    trials, spec = builder()
    return study_model.best_of(snap_with_spec(trials, spec))


def test_split_grid_lr_matters_and_adamw_wd_does_not() -> None:
    info = best_of(split_grid)
    assert info.best is not None and info.best.optimizer == "adamw"
    lr, wd = info.params
    assert lr.matters is True and lr.within == (2.2e-4, 1e-3)
    assert wd.matters is False and wd.tried == (1e-4, 1e-1)
    # Adam at low wd is as good as AdamW: it is honestly in the set too.
    assert "adam" in info.optimizers_within and len(info.within) == 15
    assert info.verdict.startswith("lr matters (best 0.00022..0.001); wd does not in [0.0001, 0.1]")
    assert "15 configurations within noise (the top one is a single run)" in info.verdict


def test_flat_study_names_no_winner() -> None:
    info = best_of(flat_grid)
    assert len(info.within) == 16
    assert info.verdict == (
        "nothing is shown to matter: all 16 configurations are within noise of the best"
    )


def test_uniform_values_tie_without_error() -> None:
    info = best_of(uniform)
    assert info.best is not None and info.best.mean == 0.5 and len(info.within) == 12
    assert info.best.numbers == (0,)  # ties: the earliest trial


def test_random_study_ranges_come_from_the_trials() -> None:
    info = best_of(random_study)
    lr, wd = info.params
    assert lr.matters is True and wd.matters is False
    assert len(info.within) == 8


def test_an_off_grid_probe_that_beats_the_grid_by_more_than_noise_is_alone() -> None:
    info = best_of(grid_plus_probe)
    assert info.best is not None and (info.best.lr, info.best.weight_decay) == (3e-4, 5e-3)
    assert len(info.within) == 1 and info.best.n == 1


def test_replicated_best_carries_its_seeds_and_interval() -> None:
    info = best_of(replicated)
    assert info.best is not None and info.best.n == 3 and info.best.seeds == (1000, 1001, 1002)
    assert info.best.low == pytest.approx(0.6963, abs=1e-4)
    assert info.best.high == pytest.approx(0.7237, abs=1e-4)
    # Within noise: the single run at lr 1e-3 (0.705) and at wd 1e-2 (0.69); not 0.65 or 0.55.
    assert sorted(c.mean for c in info.within) == pytest.approx([0.69, 0.705, 0.71])


def test_decay_warning_on_the_default_space_and_none_when_decay_can_act() -> None:
    # The numbers: 50,000 images, batch 32 -> 1,563 steps per epoch.
    sched = schedule(10, 32, None)
    assert sched.steps_per_epoch == 1563
    check = decay_check((1e-4, 1e-3), (1e-4, 1e-2), sched)
    assert check.max_shrink == pytest.approx(1 - (1 - 1e-5) ** 15630)  # 14.5%
    assert check.warning is not None and "14.5%" in check.warning
    assert check.wd_that_matters == pytest.approx((1 / (1e-3 * 15630), 1 / (1e-4 * 15630)))
    assert decay_check((1e-4, 1e-3), (1e-4, 1.0), sched).warning is None


def test_a_sampler_that_moves_lr_and_wd_together_names_neither() -> None:
    """Trials along a diagonal (wd = 10 lr, as a sampler that homes in on good lrs leaves
    them): only lr drives the value, yet the within-noise set is narrow in both. Nothing
    isolates wd's effect, so the verdict must not say that wd matters."""
    from .truths import _trial, spec

    lrs = [1e-4 * 10 ** (i / 9) for i in range(10)]
    trials = [  # a steep lr effect: 0.5 per decade squared, far above a point of noise
        _trial(i, lr, 10 * lr, 0.70 - 0.5 * math.log10(lr / 4.6e-4) ** 2, "adamw", ("adamw",))
        for i, lr in enumerate(lrs)
    ]
    info = study_model.best_of(snap_with_spec(trials, spec("diagonal", sampler="tpe")))
    _, wd = info.params
    assert wd.coverage is not None and wd.coverage < 0.75, "the set is narrow in wd"
    assert wd.matters is False, info.verdict
    assert "wd matters" not in info.verdict and "wd not shown to matter" in info.verdict
