"""``best``: the answer each known-truth study supports, and no stronger."""

from __future__ import annotations

import math

import pytest

from sweeper.analysis import study_model
from sweeper.analysis.claims import ABSENT, INCONCLUSIVE, MATTERS, UNTESTABLE
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


def kinds(info):  # type: ignore[no-untyped-def]
    return {(c.subject, c.optimizer): c.kind for c in info.claims.claims}


def test_split_grid_lr_matters_adam_wd_matters_and_adam_is_worse() -> None:
    info = best_of(split_grid)
    assert info.best is not None and info.best.optimizer == "adamw"
    k = kinds(info)
    assert k[("lr", "adamw")] == MATTERS and k[("weight_decay", "adam")] == MATTERS
    # AdamW's wd is inert in truth, but 0.3-point runs judged at the 1-point prior cannot
    # bound its effect inside ±1 point: not "matters", not "does not" either.
    assert k[("weight_decay", "adamw")] == INCONCLUSIVE
    assert k[("optimizer", "adam vs adamw")] == MATTERS
    assert k[("optimizer x weight_decay", "adam vs adamw")] == MATTERS
    opt = info.claims.get("optimizer")
    assert opt is not None and opt.effect is not None and opt.high is not None
    assert opt.effect < 0 and opt.high < 0  # Adam below AdamW, the interval excludes 0
    assert info.verdict.startswith("adamw: lr matters (")
    assert "the optimizer matters (adam " in info.verdict and "below adamw" in info.verdict
    # Adam at low wd is as good as AdamW: it is honestly in the set too.
    assert "adam" in info.optimizers_within and len(info.within) == 15
    assert info.verdict.endswith(
        "15 configurations within noise of the best (the top one is a single run)"
    )


def test_flat_study_claims_nothing() -> None:
    info = best_of(flat_grid)
    assert len(info.within) == 16
    assert set(kinds(info).values()) == {INCONCLUSIVE}
    assert info.verdict.startswith("lr inconclusive, wd inconclusive: 16 configurations")
    wd = info.claims.get("weight_decay")
    assert wd is not None and "to bound wd's effect inside the margin" in wd.settle
    assert "(now 16); runs spread over the wd range with its ends included" in wd.settle


def test_uniform_values_tie_without_error() -> None:
    info = best_of(uniform)
    assert info.best is not None and info.best.mean == 0.5 and len(info.within) == 12
    assert info.best.numbers == (0,)  # ties: the earliest trial
    est = info.estimate
    assert est is not None and est.low < 0.5 < est.high and "close race" in est.basis


def test_random_study_of_ten_runs_claims_nothing_and_says_why() -> None:
    """Ten runs leave 4 residual degrees of freedom around the quadratic: too few to check
    the 1-point prior noise the claims would rest on, so nothing is claimed."""
    info = best_of(random_study)
    assert set(kinds(info).values()) == {UNTESTABLE}
    lr = info.claims.get("lr")
    assert lr is not None and "leave 4 degrees of freedom to check the noise" in lr.sentence
    assert "about 11 runs, or seed replicates" in lr.sentence
    assert len(info.within) == 8


def test_an_off_grid_probe_that_beats_the_grid_is_the_best() -> None:
    info = best_of(grid_plus_probe)
    assert info.best is not None and (info.best.lr, info.best.weight_decay) == (3e-4, 5e-3)
    # The probe sits 3.5 points above the grid's smooth surface: that scatter raises the
    # per-run sd above the prior (1.2 points), so two grid cells join it within noise.
    assert info.model.sd_run is not None and info.model.sd_run > 0.01
    assert "scatter" in info.model.source
    assert len(info.within) == 3 and info.best.n == 1
    # 3.5 points ahead of the runner-up at 1 point of noise: no close race; the corrected
    # estimate sits below the raw single run, and the interval covers a wide range.
    est = info.estimate
    assert est is not None and est.basis == "every run" and est.k == 17
    assert est.low < est.estimate < 0.74 < est.high


def test_replicated_best_rests_on_its_replicates() -> None:
    info = best_of(replicated)
    assert info.best is not None and info.best.n == 3 and info.best.seeds == (1000, 1001, 1002)
    assert info.best.low == pytest.approx(0.6963, abs=1e-4)
    assert info.best.high == pytest.approx(0.7237, abs=1e-4)
    # Within noise: the single run at lr 1e-3 (0.705) and at wd 1e-2 (0.69); not 0.65 or 0.55.
    assert sorted(c.mean for c in info.within) == pytest.approx([0.69, 0.705, 0.71])
    est = info.estimate
    assert est is not None and est.basis == "its 2 seed replicates"
    assert est.raw == pytest.approx(0.715)  # (0.72 + 0.71) / 2: the search run left out
    assert est.low < 0.715 < est.high
    # Six configurations cannot fit a quadratic surface: nothing is claimed, and it says why.
    assert set(kinds(info).values()) == {UNTESTABLE}
    assert "too few to fit a surface" in info.verdict or "untestable" in info.verdict


def test_decay_warning_on_the_default_space_and_none_when_decay_can_act() -> None:
    # The numbers: 50,000 images, batch 32 -> 1,563 steps per epoch.
    sched = schedule(10, 32, None)
    assert sched.steps_per_epoch == 1563
    check = decay_check((1e-4, 1e-3), (1e-4, 1e-2), sched)
    assert check.max_shrink == pytest.approx(1 - (1 - 1e-5) ** 15630)  # 14.5%
    assert check.warning is not None and "14.5%" in check.warning
    assert check.wd_that_matters == pytest.approx((1 / (1e-3 * 15630), 1 / (1e-4 * 15630)))
    assert decay_check((1e-4, 1e-3), (1e-4, 1.0), sched).warning is None
    # lr x wd >= 1 wipes a weight in one step: the shrink is whole, not an overflow.
    assert decay_check((1e-6, 1e7), (1e-3, 1e-3), sched).max_shrink == 1.0


def test_a_sampler_that_moves_lr_and_wd_together_names_neither() -> None:
    """Trials along a diagonal (wd = 10 lr, as a sampler that homes in on good lrs leaves
    them): only lr drives the value, but nothing can tell lr's effect from wd's. Neither may
    be said to matter, nor not to."""
    from .truths import _trial, spec

    lrs = [1e-4 * 10 ** (i / 9) for i in range(10)]
    trials = [  # a steep lr effect: 0.5 per decade squared, far above a point of noise
        _trial(i, lr, 10 * lr, 0.70 - 0.5 * math.log10(lr / 4.6e-4) ** 2, "adamw", ("adamw",))
        for i, lr in enumerate(lrs)
    ]
    info = study_model.best_of(snap_with_spec(trials, spec("diagonal", sampler="tpe")))
    k = kinds(info)
    assert k[("weight_decay", "adamw")] not in (MATTERS, ABSENT), info.verdict
    assert "wd matters" not in info.verdict and "wd does not" not in info.verdict
