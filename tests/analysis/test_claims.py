"""The three kinds of statement, each against a truth built for it (seeded noise)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sweeper.analysis import noise as nm
from sweeper.analysis.best import best_info
from sweeper.analysis.claims import (
    ABSENT,
    INCONCLUSIVE,
    MATTERS,
    UNTESTABLE,
    claims,
    effect_range,
)

BOX = ((1e-4, 1e-3), (1e-4, 1e-2))


def study(truth, n: int, sd: float, seed: int, seeds: int = 1, opts=("adamw",)):  # type: ignore[no-untyped-def]
    """``n`` random configurations per optimizer, ``seeds`` runs each (the later ones marked as
    replicates), values truth(opt, u, v) + N(0, sd)."""
    rng = np.random.default_rng(seed)
    obs, k = [], 0
    for opt in opts:
        for _ in range(n):
            u, v = rng.uniform(), rng.uniform()
            lr, wd = 10 ** (-4 + u), 10 ** (-4 + 2 * v)
            first = k
            for s in range(seeds):
                value = truth(opt, u, v) + sd * rng.standard_normal()
                obs.append(nm.Observation(k, opt, lr, wd, value, k, first if s else None))
                k += 1
    return nm.noise_model(obs)


def test_a_flat_wd_measured_finely_does_not_matter_and_the_sentence_says_by_how_much() -> None:
    """120 configurations x 4 seeds at 0.3 points of noise: wd's whole effect (its largest
    change anywhere in the box) is bounded inside ±1 point, lr's 6-point peak is shown. (60 x
    4 is not enough: the bound is the 98.3% point of the largest range over 25 rows.)"""
    model = study(lambda o, u, v: 0.6 - 0.06 * (u - 0.6) ** 2 / 0.36, 120, 0.003, 1, seeds=4)
    said = claims(model, BOX)
    lr, wd = said.get("lr"), said.get("weight_decay")
    assert lr is not None and lr.kind == MATTERS and lr.p is not None and lr.p < 1e-6
    assert wd is not None and wd.kind == ABSENT, wd.sentence
    assert wd.bound is not None and wd.bound < 0.01
    assert "less than ±1.0 points" in wd.sentence and "[0.0001, 0.01]" in wd.sentence
    # A tighter margin than the data can bound turns the same runs inconclusive.
    tight = claims(model, BOX, margin=0.001).get("weight_decay")
    assert tight is not None and tight.kind == INCONCLUSIVE and tight.settle


def test_an_effect_that_exists_is_never_called_absent_and_the_margin_is_in_the_claim() -> None:
    """A 1.5-point wd slope: with margin 1 point never "does not matter"; with margin 3 points
    it may be, and the sentence names ±3."""
    truth = lambda o, u, v: 0.6 - 0.015 * v  # noqa: E731
    model = study(truth, 80, 0.003, 2, seeds=4)
    assert claims(model, BOX).get("weight_decay").kind != ABSENT  # type: ignore[union-attr]
    wide = claims(model, BOX, margin=0.03).get("weight_decay")
    assert wide is not None and wide.kind in (ABSENT, MATTERS)
    if wide.kind == ABSENT:
        assert "±3.0 points" in wide.sentence


def test_flat_truth_gives_no_matters_in_any_of_40_studies_of_every_claim() -> None:
    """Bonferroni over the study's tests: at most 5% of flat studies may say anything
    matters. 40 studies: expected 0-2 (binomial, p = 0.05); 5 or more has probability 0.05."""
    false = 0
    for seed in range(40):
        said = claims(study(lambda o, u, v: 0.6, 48, 0.01, 100 + seed), BOX)
        false += any(c.kind == MATTERS for c in said.claims)
    assert false <= 4, f"{false} of 40 flat studies said something matters"


def test_the_optimizers_main_effect_is_tested_and_its_interval_holds_the_truth() -> None:
    truth = lambda o, u, v: 0.6 - (0.10 if o == "adam" else 0.0) - 0.04 * (u - 0.5) ** 2  # noqa: E731
    model = study(truth, 30, 0.01, 3, opts=("adamw", "adam"))
    opt = claims(model, BOX).get("optimizer")
    assert opt is not None and opt.kind == MATTERS and opt.optimizer == "adam vs adamw"
    assert opt.low is not None and opt.high is not None and opt.low < -0.10 < opt.high < 0
    assert "below adamw" in opt.sentence


def test_unknown_noise_claims_nothing() -> None:
    """Losses (not accuracies) without replicates: no noise, no claim."""
    rng = np.random.default_rng(4)
    obs = [
        nm.Observation(i, "adamw", 10 ** rng.uniform(-4, -3), 10 ** rng.uniform(-4, -2), 3.0 + i)
        for i in range(20)
    ]
    said = claims(nm.noise_model(obs), BOX)
    assert {c.kind for c in said.claims} == {UNTESTABLE}
    assert "noise unknown" in said.claims[0].sentence


def test_pruned_trials_are_named_as_left_out() -> None:
    model = study(lambda o, u, v: 0.6, 20, 0.01, 5)
    info = best_info(model, box=BOX, n_pruned=7)
    assert info.claims.note.startswith("7 pruned trials left out")


def test_effect_range_is_the_largest_change_along_the_axis() -> None:
    g = np.linspace(0, 1, 25)
    uu, vv = np.meshgrid(g, g)  # rows follow v
    surface = 0.02 * uu * vv  # lr moves the value by 2 points at the top wd, 0 at the bottom
    assert effect_range(surface.ravel()[None, :], "lr")[0] == pytest.approx(0.02)
    assert effect_range(surface.ravel()[None, :], "weight_decay")[0] == pytest.approx(0.02)
    assert math.isclose(effect_range((0 * uu).ravel()[None, :], "lr")[0], 0.0)


def test_best_says_pruned_trials_were_not_counted_in_its_table_and_json() -> None:
    from sweeper.dashboard.view_commands import best_rows, best_table

    model = study(lambda o, u, v: 0.6 - 0.04 * (u - 0.5) ** 2, 20, 0.01, 6)
    info = best_info(model, box=BOX, n_pruned=7)
    run = {"number": 3, "value": 0.61, "params": {"lr": 3e-4, "weight_decay": 1e-3},
           "provenance": {}}  # fmt: skip
    out = best_rows(run, info)
    assert out["pruned_left_out"] == 7 and out["claims_note"].startswith("7 pruned trials")
    text = best_table(out)
    assert "7 pruned trials not counted (their final value is unknown)" in text
    assert "note: 7 pruned trials left out" in text
