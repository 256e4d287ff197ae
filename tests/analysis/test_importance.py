"""Importance: the evaluators find the parameter that matters, and pruned trials count."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from dashboard.factory import make_trial, synthetic_trials
from optuna.trial import TrialState

from sweeper.analysis import study_model
from sweeper.analysis.importance import EVALUATORS, MIN_TRIALS, importance_info
from sweeper.snapshot import from_trials


def lr_only_trials(n: int, seed: int = 0) -> list:
    """Accuracy depends on lr alone (a peak at 4e-4); wd is pure noise."""
    rng = np.random.default_rng(seed)
    trials = []
    for i in range(n):
        lr, wd = 10 ** rng.uniform(-4, -3), 10 ** rng.uniform(-4, -2)
        acc = 0.7 - 0.3 * (math.log10(lr / 4e-4)) ** 2 + rng.normal(0, 0.002)
        trials.append(make_trial(i, lr=float(lr), wd=float(wd), curve={1: acc / 2, 2: acc}))
    return trials


POOLED = EVALUATORS  # Optuna's pooled evaluators, asked for


def test_default_runs_no_pooled_evaluator() -> None:
    """By default only the per-optimizer shares: Optuna's pooled evaluators are opt-in."""
    info = importance_info(from_trials(lr_only_trials(150)))
    assert info.evaluators == () and info.ped_anova is None and info.fanova is None
    assert info.per_epoch == () and info.notes == ()
    ((name, d),) = info.by_optimizer
    assert name == "adamw" and d.shares is not None and d.shares["lr"].share > 0.9
    assert {e.epoch for e in info.per_epoch_by_optimizer} == {1, 2}
    with pytest.raises(ValueError, match="unknown importance evaluator forest"):
        importance_info(from_trials(lr_only_trials(10)), ("forest",))


def test_the_default_path_never_loads_scikit_learn_or_scipy_stats() -> None:
    """Without evaluators no optuna.importance, sklearn or scipy.stats is imported: they cost
    1.5-2 s of every command's start-up (checked in a fresh interpreter)."""
    code = (
        "import sys\n"
        "from dashboard.factory import synthetic_trials\n"
        "from sweeper.analysis.importance import importance_info\n"
        "from sweeper.snapshot import from_trials\n"
        "importance_info(from_trials(synthetic_trials(60, epochs=2)))\n"
        "bad = [m for m in ('optuna.importance', 'sklearn', 'scipy.stats') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    tests = Path(__file__).resolve().parent.parent
    path = os.pathsep.join(str(p) for p in (tests, tests.parent, os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "PYTHONPATH": path}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr


def test_both_evaluators_rank_the_parameter_that_matters_first() -> None:
    info = importance_info(from_trials(lr_only_trials(150)), POOLED)
    assert info.evaluators == ("ped-anova", "fanova")
    assert info.params == ("lr", "weight_decay")
    assert info.ped_anova is not None and info.fanova is not None
    assert info.ped_anova["lr"] > 0.7, info.ped_anova
    assert info.fanova["lr"] > 0.8, info.fanova
    for result in (info.ped_anova, info.fanova):
        assert sum(result.values()) == pytest.approx(1.0)
        assert list(result) == ["lr", "weight_decay"]  # ordered by importance
    assert info.notes == ()


def test_per_epoch_importance_counts_pruned_trials() -> None:
    """Pruned trials enter every epoch they reported; completed ones every epoch."""
    trials = lr_only_trials(60)
    for t in trials[:30]:  # prune half of them after epoch 1
        t.state = TrialState.PRUNED
        t.intermediate_values.pop(2)
        t.value = None
    info = importance_info(from_trials(trials), POOLED)
    assert info.n_complete == 30
    (e1, e2) = info.per_epoch
    assert (e1.epoch, e1.n_trials, e1.n_pruned) == (1, 60, 30)
    assert (e2.epoch, e2.n_trials, e2.n_pruned) == (2, 30, 0)
    assert e1.importances is not None and e1.importances["lr"] > 0.7


def test_per_epoch_importance_sees_what_completed_trials_hide() -> None:
    """Completed trials all share one wd; the pruned ones vary it, and wd drove them out.

    Optuna's evaluators (completed trials only) can say nothing about wd; epoch 1, which
    includes the pruned trials, finds it matters.
    """
    rng = np.random.default_rng(1)
    trials = []
    for i in range(40):
        lr = float(10 ** rng.uniform(-4, -3))
        wd = 1e-3 if i < 20 else float(10 ** rng.uniform(-2.3, -2))
        acc = 0.7 - (0.3 if wd > 1e-3 else 0.0) + float(rng.normal(0, 0.003))
        state = TrialState.COMPLETE if i < 20 else TrialState.PRUNED
        curve = {1: acc} if state == TrialState.PRUNED else {1: acc, 2: acc + 0.01}
        trials.append(make_trial(i, lr=lr, wd=wd, state=state, curve=curve))
    info = importance_info(from_trials(trials), ("ped-anova",))
    assert info.fanova is None  # not asked for
    assert info.per_epoch[0].n_pruned == 20
    epoch1 = info.per_epoch[0].importances
    assert epoch1 is not None and epoch1["weight_decay"] > 0.8, epoch1


def test_too_few_trials_give_no_importance_and_say_why() -> None:
    trials = lr_only_trials(MIN_TRIALS - 1)
    info = importance_info(from_trials(trials), POOLED)
    assert info.ped_anova is None and info.fanova is None
    assert (
        info.notes[0]
        == f"{MIN_TRIALS - 1} completed trials: importances need at least {MIN_TRIALS}"
    )


def test_optimizer_is_assessed_when_searched_and_results_are_deterministic() -> None:
    snap = from_trials(synthetic_trials(80, optimizers=("adamw", "adam"), epochs=3, seed=2))
    first, second = importance_info(snap, POOLED), importance_info(snap, POOLED)
    assert set(first.params) == {"lr", "weight_decay", "optimizer"}
    assert first == second
    assert any("read importances as rough" in n for n in first.notes)  # < 50 completed


def test_no_trial_with_parameters() -> None:
    info = importance_info(from_trials([]))
    assert info.params == () and info.notes == ("no trial has parameters yet",)


def _snap(builder):  # type: ignore[no-untyped-def]
    trials, spec = builder()
    return from_trials(trials, name=spec["name"])._replace(user_attrs={"spec": spec})


def test_importance_per_optimizer_finds_what_pooling_hides() -> None:
    """AdamW's wd is inert, Adam's wd wrecks it: pooled fANOVA says ~0.5 for wd; split by
    optimizer wd is ~0 under AdamW and ~1 under Adam, and the optimizer x wd interaction
    carries a third of the variance. Each share's mark is the claim's verdict."""
    from .truths import split_grid

    assert not any("pool the optimizers" in n for n in importance_info(_snap(split_grid)).notes)
    info = importance_info(_snap(split_grid), POOLED)
    assert info.fanova is not None and 0.3 < info.fanova["weight_decay"] < 0.7  # pooled
    assert any("pool the optimizers" in n for n in info.notes)
    shares = {name: d.shares for name, d in info.by_optimizer}
    adamw, adam = shares["adamw"], shares["adam"]
    assert adamw is not None and adam is not None
    assert adamw["weight_decay"].share < 0.01 and adamw["weight_decay"].high < 0.3
    assert not adamw["weight_decay"].shown and adamw["lr"].shown
    assert adamw["lr"].share > 0.95 and adamw["lr"].low > 0.6
    assert adam["weight_decay"].share > 0.95 and adam["weight_decay"].low > 0.95
    assert adam["weight_decay"].shown
    for d in shares.values():
        for s in d.values():
            assert s.low <= s.share <= s.high
    assert info.across is not None and info.across.shares is not None
    inter = info.across.shares["optimizer x weight_decay"]
    assert 0.25 < inter.share < 0.35 and inter.low > 0.2 and inter.shown
    assert info.across.shares["optimizer"].shown  # Adam averages 18.6 points below AdamW
    said = study_model.best_of(_snap(split_grid)).claims
    assert said.get("optimizer x weight_decay").kind == "matters"  # type: ignore[union-attr]
    # Per epoch: one entry per epoch and optimizer, with intervals.
    epochs = {(e.epoch, e.optimizer) for e in info.per_epoch_by_optimizer}
    assert epochs == {(1, "adamw"), (1, "adam"), (2, "adamw"), (2, "adam")}


def test_flat_study_shows_nothing_matters_with_wide_intervals() -> None:
    from .truths import flat_grid

    ((_name, d),) = importance_info(_snap(flat_grid)).by_optimizer
    assert d.shares is not None and not any(s.shown for s in d.shares.values())
    assert "no claim shows any term to matter" in d.note
    assert d.shares["lr"].high - d.shares["lr"].low > 0.5


def test_uniform_values_give_notes_not_errors() -> None:
    """fANOVA raises 'zero total variance' on >= 8 equal values; here it is a note."""
    from .truths import uniform

    info = importance_info(_snap(uniform), POOLED)
    assert info.ped_anova is None and info.fanova is None
    assert info.notes[0] == "every completed trial scored 0.5: no parameter explains anything"
    ((_name, d),) = info.by_optimizer
    assert d.shares is None and d.note == "all 12 runs scored the same (0.5): nothing to attribute"
    # Ties in part of the study (8 equal values among varied ones) do not raise either.
    trials, _spec = uniform(8)
    trials += lr_only_trials(12, seed=4)[:4]
    for i, t in enumerate(trials):
        t.number = i
    importance_info(from_trials(trials), POOLED)


def test_the_cli_names_the_same_evaluators() -> None:
    from sweeper.dashboard.view_commands import EVALUATOR_NAMES

    assert EVALUATOR_NAMES == EVALUATORS
