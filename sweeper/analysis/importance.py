"""Which hyperparameter matters: per optimizer with intervals; Optuna's pooled evaluators opt-in.

Promises:

- ``importance_info(snap)`` returns, per optimizer, the shares of lr, weight decay and their
  interaction with 95% bootstrap intervals (``sweeper.analysis.effects``), with several
  optimizers the optimizer x wd interaction, and the same shares at each epoch over every trial
  that reported it (COMPLETE and PRUNED alike: the trials a pruner stopped count for the
  epochs they ran). A share is marked *shown* exactly when the claim about that term says it
  matters (``claims.mark_shares``: one presence test behind every "matters"); the shares at
  each epoch carry no claim and are never marked. This default path is pure numpy: it never
  imports ``optuna.importance`` (which loads scikit-learn and scipy.stats, 1.5-2 s) and builds
  no in-memory copy of the study.
- Optuna's pooled evaluators run only when asked for, ``evaluators=("ped-anova", "fanova")``
  (the CLI's ``--evaluators``): PED-ANOVA (Optuna 5's default) and fANOVA over COMPLETE
  trials, each normalised to sum to 1, and PED-ANOVA at each epoch over COMPLETE, PRUNED
  and RUNNING trials. They pool every optimizer into one answer, which is misleading when
  the optimizers disagree (on an Adam-vs-AdamW grid: PED-ANOVA 0.00 and fANOVA 0.52 for wd
  where AdamW's is ~0 and Adam's ~0.9), and they cost seconds: hence opt-in.
  ``ImportanceInfo.evaluators`` records which ran.
- Both pooled evaluators see lr and weight_decay in log10 units (the units they were sampled
  in). Optuna's fANOVA integrates its forest over the search box in linear units even for a
  log parameter, which gives the lowest decade of lr almost no weight; handing it log10 values
  makes the marginal variances those of the space as it was searched.
- Zero variance, too few trials and ties give notes, never an exception (fANOVA's "zero total
  variance" included). Deterministic (fixed seeds) and pure: it reads only the snapshot.

fANOVA settings: Optuna's default forest (64 trees of depth 64) took 10.9 s on a 1,000-trial
study on a 2-core CPU; 16 trees of depth 6 took 0.2 s and moved no importance by more than
0.03 on the same study. A 2-3 parameter space needs no deeper trees.
"""

from __future__ import annotations

import contextlib
import logging
import math
import warnings
from collections.abc import Callable, Collection, Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np
import optuna
from numpy.typing import NDArray
from optuna.distributions import BaseDistribution, FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState
from threadpoolctl import threadpool_limits

from sweeper.analysis.claims import mark_shares
from sweeper.analysis.effects import Decomposition, decompose, decompose_optimizers
from sweeper.analysis.noise import sd_at
from sweeper.analysis.study_model import best_of, noise_of
from sweeper.snapshot import StudySnapshot, curve_of, final_value, optimizer_of, trial_points

FANOVA_TREES = 16
FANOVA_DEPTH = 6
FANOVA_SEED = 0
# Fewer trials than this and an importance is noise: the top 10% PED-ANOVA contrasts with the
# rest would hold a single trial, and a forest cannot split.
MIN_TRIALS = 8
# PED-ANOVA compares the top 10% of trials with all of them; below 50 trials that top holds
# fewer than the 5 trials its authors recommend.
PED_TOP_QUANTILE = 0.1
PED_RECOMMENDED = 50
# Epochs evaluated at most (spread evenly, last epoch always included): one PED-ANOVA per epoch.
MAX_EPOCHS = 25
# Optuna's pooled evaluators, run only when asked for (the CLI's --evaluators).
EVALUATORS = ("ped-anova", "fanova")


class EpochImportance(NamedTuple):
    """PED-ANOVA on the accuracy at one epoch, over every trial that reached it."""

    epoch: int
    n_trials: int
    n_pruned: int  # of n_trials, those later pruned
    importances: dict[str, float] | None  # None when fewer than MIN_TRIALS reached the epoch


class EpochShares(NamedTuple):
    """One optimizer's lr / wd shares, with intervals, at one epoch (pruned trials count)."""

    epoch: int
    optimizer: str
    result: Decomposition


class ImportanceInfo(NamedTuple):
    """Importances per parameter (each dict sums to 1, ordered by importance).

    ``ped_anova``, ``fanova`` and ``per_epoch`` are Optuna's evaluators over the whole study,
    None / () unless asked for (``evaluators`` says which ran): with several optimizers they
    pool them (a note says so). ``by_optimizer`` holds, per
    optimizer, the shares of lr, wd and their interaction with 95% bootstrap intervals
    (``sweeper.analysis.effects``), ``across`` the decomposition with the optimizer as a
    factor (the optimizer x wd interaction), ``per_epoch_by_optimizer`` the same shares at
    each epoch.
    """

    params: tuple[str, ...]
    ped_anova: dict[str, float] | None
    fanova: dict[str, float] | None
    n_complete: int
    per_epoch: tuple[EpochImportance, ...]
    notes: tuple[str, ...]
    by_optimizer: tuple[tuple[str, Decomposition], ...] = ()
    across: Decomposition | None = None
    per_epoch_by_optimizer: tuple[EpochShares, ...] = ()
    evaluators: tuple[str, ...] = ()  # the pooled evaluators that ran (opt-in), EVALUATORS order


def _as_searched(trial: FrozenTrial) -> FrozenTrial:
    """``trial`` as a COMPLETE trial of an in-memory study, in the units it was searched in.

    Log-sampled floats move to log10 units. The copy keeps the reported curve, and marks in
    ``system_attrs`` whether the original completed (with a finite value) or was pruned: the
    evaluators count COMPLETE trials only, so every trial is COMPLETE here and the targets
    below select which ones a computation uses (a NaN target leaves a trial out).
    """
    final = final_value(trial) if trial.state != TrialState.RUNNING else None
    curve = curve_of(trial)
    # The value is only a placeholder for trials that did not complete: no target reads it.
    value = final if final is not None else (curve[-1][1] if curve else 0.0)
    params: dict[str, Any] = {}
    dists: dict[str, BaseDistribution] = {}
    for name, dist in trial.distributions.items():
        x = trial.params[name]
        if isinstance(dist, FloatDistribution | IntDistribution) and dist.log:
            params[name] = math.log10(x)
            dists[name] = FloatDistribution(math.log10(dist.low), math.log10(dist.high))
        else:
            params[name] = x
            dists[name] = dist
    return optuna.trial.create_trial(
        value=value,
        params=params,
        distributions=dists,
        intermediate_values=dict(curve),
        system_attrs={
            "complete": trial.state == TrialState.COMPLETE and final is not None,
            "pruned": trial.state == TrialState.PRUNED,
        },
    )


def _normalised(raw: dict[str, float]) -> dict[str, float] | None:
    total = sum(raw.values())
    if not math.isfinite(total) or total <= 0:
        return None
    return {k: float(v / total) for k, v in sorted(raw.items(), key=lambda kv: -kv[1])}


@contextlib.contextmanager
def _optuna_logs_off() -> Iterator[None]:
    logger = logging.getLogger("optuna")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def _quiet(fn: Callable[[], dict[str, float]]) -> dict[str, float]:
    """``fn()``, its warnings silenced and its failures on degenerate data turned into {}.

    Optuna warns on small samples and on a custom target's direction; both are handled here
    (MIN_TRIALS, the sign of the target). fANOVA raises RuntimeError("Encountered zero total
    variance in all trees") when the values it sees are all equal (Optuna 5.0), and PED-ANOVA
    can divide by zero on ties: an empty result becomes a note, never an exception.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return fn()
        except (RuntimeError, ValueError, ZeroDivisionError, FloatingPointError):
            return {}


def _ped_anova(
    view: optuna.Study, params: list[str], target: Callable[[FrozenTrial], float]
) -> dict[str, float] | None:
    """Normalised PED-ANOVA of ``target`` (lower is better; NaN leaves a trial out)."""
    from optuna.importance import PedAnovaImportanceEvaluator  # see importance_info

    evaluator = PedAnovaImportanceEvaluator(target_quantile=PED_TOP_QUANTILE)
    return _normalised(_quiet(lambda: evaluator.evaluate(view, params=params, target=target)))


def _epochs(all_epochs: Sequence[int]) -> list[int]:
    if len(all_epochs) <= MAX_EPOCHS:
        return list(all_epochs)
    step = (len(all_epochs) - 1) / (MAX_EPOCHS - 1)
    return sorted({all_epochs[round(i * step)] for i in range(MAX_EPOCHS)})


def _check_evaluators(evaluators: Collection[str]) -> tuple[str, ...]:
    """``evaluators`` in ``EVALUATORS`` order; ``ValueError`` naming any unknown one."""
    unknown = sorted(set(evaluators) - set(EVALUATORS))
    if unknown:
        raise ValueError(
            f"unknown importance evaluator {', '.join(unknown)}: choose from "
            + ", ".join(EVALUATORS)
        )
    return tuple(e for e in EVALUATORS if e in evaluators)


def importance_info(snap: StudySnapshot, evaluators: Collection[str] = ()) -> ImportanceInfo:
    """Per-optimizer shares with intervals (always) and, for each name in ``evaluators``
    (``"ped-anova"``, ``"fanova"``), Optuna's pooled evaluator over the whole study.

    Raises ``ValueError`` for a name not in ``EVALUATORS``.
    """
    asked = _check_evaluators(evaluators)
    used = [
        t
        for t in snap.trials
        if t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING) and t.params
    ]
    if not used:
        none = ("no trial has parameters yet",)
        return ImportanceInfo((), None, None, 0, (), none, evaluators=asked)
    # Parameters every used trial has: fANOVA cannot evaluate a parameter some trials lack.
    names = set(used[0].distributions)
    for t in used[1:]:
        names &= set(t.distributions)
    params = sorted(names, key=lambda n: ({"lr": 0, "weight_decay": 1}.get(n, 2), n))
    varied = [p for p in params if not _single(used, p)]
    notes: list[str] = []
    finals = [
        v for t in used if t.state == TrialState.COMPLETE and (v := final_value(t)) is not None
    ]
    n_complete = len(finals)
    distinct = set(finals)
    attributable = False  # enough distinct completed values over a varied parameter
    if n_complete < MIN_TRIALS:
        noun = "trial" if n_complete == 1 else "trials"
        notes.append(f"{n_complete} completed {noun}: importances need at least {MIN_TRIALS}")
    elif len(distinct) == 1:
        notes.append(
            f"every completed trial scored {distinct.pop():.4g}: no parameter explains anything"
        )
    elif not varied:
        notes.append("every trial has the same parameters: nothing to attribute")
    else:
        attributable = True
    all_epochs = sorted(
        {e for t in used for e, v in t.intermediate_values.items() if math.isfinite(v)}
    )
    if not all_epochs:
        notes.append("no trial reported intermediate values: no importance per epoch")
    optimizer_names = sorted({optimizer_of(t) for t in used}, key=lambda n: (n != "adamw", n))
    ped = fan = None
    per_epoch: tuple[EpochImportance, ...] = ()
    if asked:
        ped, fan, per_epoch, pooled_notes = _pooled(snap, used, varied, asked, attributable)
        notes += pooled_notes
        if len(optimizer_names) > 1 and (ped is not None or fan is not None):
            notes.append("PED-ANOVA and fANOVA pool the optimizers; read the shares per optimizer")
    by_opt, across, by_epoch = _per_optimizer(snap, optimizer_names, _epochs(all_epochs))
    return ImportanceInfo(
        tuple(varied),
        ped,
        fan,
        n_complete,
        per_epoch,
        tuple(notes),
        by_opt,
        across,
        by_epoch,
        asked,
    )


def _pooled(
    snap: StudySnapshot,
    used: Sequence[FrozenTrial],
    varied: Sequence[str],
    asked: Sequence[str],
    evaluate: bool,
) -> tuple[
    dict[str, float] | None, dict[str, float] | None, tuple[EpochImportance, ...], list[str]
]:
    """Optuna's evaluators over every optimizer pooled: (PED-ANOVA, fANOVA, PED-ANOVA per
    epoch, notes). ``evaluate`` False (too few trials, equal values, nothing varied) skips
    the whole-study evaluators; the per-epoch ones judge each epoch's trials on their own."""
    direction = (
        optuna.study.StudyDirection.MAXIMIZE
        if snap.maximize
        else optuna.study.StudyDirection.MINIMIZE
    )
    with _optuna_logs_off():  # creating a study logs an INFO line; this one is internal
        view = optuna.create_study(direction=direction, study_name="sweeper-importance")
    sign = -1.0 if snap.maximize else 1.0  # PED-ANOVA with a target wants lower = better
    view.add_trials([_as_searched(t) for t in used])
    trials = view.get_trials(deepcopy=False)
    n_complete = sum(1 for t in trials if t.system_attrs["complete"])
    notes: list[str] = []

    def final(t: FrozenTrial) -> float:
        return float(t.value) if t.system_attrs["complete"] else math.nan  # type: ignore[arg-type]

    ped = fan = None
    if evaluate:
        if "ped-anova" in asked:
            ped = _ped_anova(view, list(varied), lambda t: sign * final(t))
            if n_complete < PED_RECOMMENDED:
                notes.append(
                    "PED-ANOVA's top 10% holds fewer than 5 trials: read importances as rough"
                )
            if ped is None:
                notes.append("PED-ANOVA found no difference between the top 10% and the rest")
        if "fanova" in asked:
            # Imported only when asked for: optuna.importance imports scikit-learn (and
            # scipy.stats) for fANOVA's forest, 1.5-2 s of start-up.
            from optuna.importance import FanovaImportanceEvaluator

            fanova = FanovaImportanceEvaluator(
                n_trees=FANOVA_TREES, max_depth=FANOVA_DEPTH, seed=FANOVA_SEED
            )
            fan = _normalised(
                _quiet(lambda: fanova.evaluate(view, params=list(varied), target=final))
            )
            if fan is None:
                notes.append("fANOVA's forest explains none of the variance (ties?)")
    per_epoch = []
    if "ped-anova" in asked:
        all_epochs = sorted({e for t in trials for e in t.intermediate_values})
        for epoch in _epochs(all_epochs):
            reached = [t for t in trials if epoch in t.intermediate_values]
            n_pruned = sum(1 for t in reached if t.system_attrs["pruned"])
            imp = None
            if varied and len(reached) >= MIN_TRIALS:

                def at_epoch(t: FrozenTrial, e: int = epoch) -> float:
                    return sign * t.intermediate_values.get(e, math.nan)

                imp = _ped_anova(view, list(varied), at_epoch)
            per_epoch.append(EpochImportance(epoch, len(reached), n_pruned, imp))
    return ped, fan, tuple(per_epoch), notes


def _unit(x: float, bounds: tuple[float, float]) -> float:
    lo, hi = math.log10(bounds[0]), math.log10(bounds[1])
    return (math.log10(x) - lo) / (hi - lo) if hi > lo else 0.5


def _per_optimizer(
    snap: StudySnapshot, names: Sequence[str], epochs: Sequence[int]
) -> tuple[tuple[tuple[str, Decomposition], ...], Decomposition | None, tuple[EpochShares, ...]]:
    """lr / wd shares with intervals per optimizer, across optimizers, and per epoch."""
    from sweeper.snapshot import LR, WD
    from sweeper.snapshot import axis_bounds as _bounds

    points = trial_points(snap)
    if not points:
        return (), None, ()
    lr_b = _bounds(snap, LR, [p.lr for p in points])
    wd_b = _bounds(snap, WD, [p.weight_decay for p in points])
    model = noise_of(snap)
    by_number = {t.number: t for t in snap.trials}
    # Every point's place in the unit box, its final value and its value at each epoch, as
    # arrays built in one pass: each (optimizer, epoch) below is then a mask, not a loop over
    # the trials (25 epochs x 10,000 trials at most).
    unit_u = np.array([_unit(p.lr, lr_b) for p in points])
    unit_v = np.array([_unit(p.weight_decay, wd_b) for p in points])
    owner = np.array([p.optimizer for p in points], dtype=object)
    finals = np.array(
        [p.value if p.state == "complete" and p.value is not None else np.nan for p in points]
    )
    at = np.full((len(points), len(epochs)), np.nan)
    for i, p in enumerate(points):
        curve = by_number[p.number].intermediate_values
        for k, e in enumerate(epochs):
            got = curve.get(e)
            if got is not None:
                at[i, k] = got

    def noise(values: NDArray[np.float64]) -> float | None:
        return sd_at(model, float(np.mean(values)) if len(values) else None)

    def runs(
        name: str, k: int | None
    ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
        y = finals if k is None else at[:, k]
        keep = (owner == name) & np.isfinite(y)  # NaN: not complete, or no finite report
        return unit_u[keep], unit_v[keep], y[keep]

    # One BLAS thread, as in sweeper.analysis.surface: the matrices are thin (n x 10) and on
    # a busy 2-core machine OpenBLAS's two threads spin against each other (an SVD of
    # 10,000 x 10 took 64 ms instead of 4).
    with threadpool_limits(limits=1):
        final = {name: runs(name, None) for name in names}
        # Whether a share is shown is the claims' one presence test (``claims.mark_shares``).
        said = best_of(snap).claims
        by_opt = tuple(
            (name, mark_shares(decompose(*final[name], noise(final[name][2])), said, name))
            for name in names
        )
        across = None
        if len(names) > 1:
            every = np.concatenate([ys for _, _, ys in final.values()])
            across = mark_shares(decompose_optimizers(final, noise(every)), said, None)
        by_epoch = []
        for k, epoch in enumerate(epochs):
            for name in names:
                u, v, y = runs(name, k)
                by_epoch.append(EpochShares(epoch, name, decompose(u, v, y, noise(y))))
    return by_opt, across, tuple(by_epoch)


def _single(trials: Sequence[FrozenTrial], name: str) -> bool:
    """True when ``name`` takes one value in all ``trials`` (nothing to attribute to it)."""
    dist: BaseDistribution = trials[0].distributions[name]
    if dist.single():
        return True
    return len({repr(t.params[name]) for t in trials}) <= 1
