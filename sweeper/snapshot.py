"""A study's trials, read once: the table every analysis, view and command reads.

Promises:

- ``snapshot(study)`` is the only reader of a study's trials for the views: it loads them
  once (``sweeper._optuna.read``, one consistent pass, when given the ``RDBStorage``).
  ``runs_from_storage`` reads less: one ``Run`` row per finished trial, what ``sweeper best``
  needs of 100,000 trials. Everything else here is pure: it takes a ``StudySnapshot``.
- The conventions of studies that sweeper writes are read here and nowhere else: params
  ``lr`` and ``weight_decay`` (log floats) and ``optimizer`` (only when a study searches over
  several); the optimizer name in ``user_attrs["optimizer"]``; ``trial.report(val_accuracy,
  epoch)`` with epochs 1, 2, ...; a pruned trial reached ``max(intermediate_values)``.
- ``Run`` is the one row model of a finished trial (value, lr, wd, optimizer, seed,
  replicate): built from a ``FrozenTrial`` (``runs``) or from a stored row
  (``runs_from_storage``), the same fields the same way, so ``sweeper best`` and the views
  build their noise model from the same rows.
- Every function accepts an empty study, a study of one trial, all-pruned or failed trials,
  trials without intermediate values, and trials missing ``lr`` or ``weight_decay``. The
  "best" trial is the best COMPLETE trial in the study's direction.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import optuna
from optuna.distributions import FloatDistribution
from optuna.trial import FrozenTrial, TrialState

from sweeper import attrs
from sweeper.errors import UsageError

LR = attrs.LR
WD = attrs.WD
OPTIMIZER = attrs.OPTIMIZER
REPLICATE_OF = attrs.REPLICATE_OF
SEED = attrs.SEED
EPOCHS_RUN = attrs.EPOCHS_RUN


class StudySnapshot(NamedTuple):
    """Everything the views need, read once from storage at ``taken_at`` (local time, naive,
    as Optuna's ``FrozenTrial`` datetimes)."""

    name: str
    maximize: bool
    user_attrs: Mapping[str, Any]
    trials: tuple[FrozenTrial, ...]
    taken_at: dt.datetime


def snapshot(
    study: optuna.Study, storage: optuna.storages.BaseStorage | None = None
) -> StudySnapshot:
    """Read ``study`` once. Raises ``UsageError`` for a multi-objective study.

    Given the ``RDBStorage`` the study lives in, the trials are read in one fast consistent
    pass (``sweeper._optuna.read``, without the trials' system attributes, which no view
    reads); otherwise through the study (Optuna's ORM, cached between calls on the same study
    object, which suits a page that polls).
    """
    snapshot_guard(study)
    if isinstance(storage, optuna.storages.RDBStorage):
        from sweeper._optuna.read import read_trials

        # No view reads a trial's system attributes (a grid sampler stores its whole search
        # space in every trial's): they are left out.
        trials = tuple(read_trials(storage, study.study_name, system_attrs=False))
    else:
        trials = tuple(study.get_trials(deepcopy=False))
    return _snapshot_of(study, trials)


def snapshot_guard(study: optuna.Study) -> optuna.Study:
    """``study``, or ``UsageError`` when it has several objectives (the views read one)."""
    if len(study.directions) != 1:
        raise UsageError(
            f"study '{study.study_name}' has {len(study.directions)} objectives; "
            "sweeper's views read single-objective studies"
        )
    return study


def _snapshot_of(study: optuna.Study, trials: tuple[FrozenTrial, ...]) -> StudySnapshot:
    return StudySnapshot(
        name=study.study_name,
        maximize=study.direction == optuna.study.StudyDirection.MAXIMIZE,
        user_attrs=dict(study.user_attrs),
        trials=trials,
        taken_at=dt.datetime.now(),
    )


def from_trials(
    trials: Iterable[FrozenTrial], *, name: str = "study", maximize: bool = True
) -> StudySnapshot:
    """A snapshot of hand-made trials (tests, notebooks); ``taken_at`` is the latest time seen."""
    trials = tuple(trials)
    times = [t.datetime_complete or t.datetime_start for t in trials]
    seen = [t for t in times if t is not None]
    return StudySnapshot(name, maximize, {}, trials, max(seen) if seen else dt.datetime(1970, 1, 1))


# --------------------------------------------------------------------------- trial accessors


def optimizer_of(trial: FrozenTrial) -> str:
    """The optimizer a trial ran: the recorded name, else the searched param, else "adamw".

    sweeper records ``user_attrs["optimizer"]`` on every trial; a study created by hand may
    lack it, and AdamW is sweeper's default optimizer.
    """
    name = trial.user_attrs.get(OPTIMIZER, trial.params.get(OPTIMIZER, "adamw"))
    return str(name)


def epoch_reached(trial: FrozenTrial) -> int | None:
    """The last epoch the trial reported, or None when it reported none."""
    return max(trial.intermediate_values) if trial.intermediate_values else None


def curve_of(trial: FrozenTrial) -> tuple[tuple[int, float], ...]:
    """``(epoch, val accuracy)`` in epoch order, non-finite reports left out."""
    return tuple(
        (step, value)
        for step, value in sorted(trial.intermediate_values.items())
        if math.isfinite(value)
    )


def final_value(trial: FrozenTrial) -> float | None:
    """A COMPLETE trial's value; a PRUNED trial's last finite report; otherwise None."""
    if trial.state == TrialState.COMPLETE:
        value = trial.value
    elif trial.state == TrialState.PRUNED:
        curve = curve_of(trial)
        value = curve[-1][1] if curve else None
    else:
        value = None
    return value if value is not None and math.isfinite(value) else None


def lr_wd(trial: FrozenTrial) -> tuple[float, float] | None:
    """The trial's ``(lr, weight_decay)``, or None when it lacks either (``lr_wd_of``)."""
    return lr_wd_of(trial.params.get(LR), trial.params.get(WD))


def lr_wd_of(lr: Any, wd: Any) -> tuple[float, float] | None:
    """``(lr, wd)`` as floats when both are positive numbers (log axes), else None."""
    if not isinstance(lr, int | float) or not isinstance(wd, int | float):
        return None
    if not (lr > 0 and wd > 0):  # log axes: a zero wd cannot be drawn (nor sampled in log)
        return None
    return float(lr), float(wd)


def optimizers(snap: StudySnapshot) -> tuple[str, ...]:
    """The optimizers the study's trials ran, AdamW first (the reference)."""
    names = {optimizer_of(t) for t in snap.trials}
    return tuple(sorted(names, key=lambda n: (n != "adamw", n)))


def better(snap: StudySnapshot, a: float, b: float) -> bool:
    """Whether value ``a`` beats ``b`` in the study's direction."""
    return a > b if snap.maximize else a < b


def best_trial(
    snap: StudySnapshot, trials: Iterable[FrozenTrial] | None = None
) -> FrozenTrial | None:
    """The best COMPLETE trial (lowest number on ties), or None when there is none."""
    best: FrozenTrial | None = None
    for t in snap.trials if trials is None else trials:
        v = final_value(t)
        if t.state != TrialState.COMPLETE or v is None:
            continue
        if best is None or better(snap, v, best.value):  # type: ignore[arg-type]
            best = t
    return best


# --------------------------------------------------------------------------- the row model


class Run(NamedTuple):
    """One COMPLETE or PRUNED trial as the noise model and ``sweeper best`` read it."""

    number: int
    state: TrialState
    value: float | None  # a COMPLETE trial's finite value; None otherwise
    lr: float | None  # both or neither (``lr_wd_of``)
    weight_decay: float | None
    optimizer: str
    seed: int | None
    replicate_of: int | None  # the trial this one repeats with another seed
    epochs_run: int | None = None  # the last epoch it reported (attrs.EPOCHS_RUN)


def _int_or_none(x: Any) -> int | None:
    return x if isinstance(x, int) and not isinstance(x, bool) else None


def runs(snap: StudySnapshot) -> tuple[Run, ...]:
    """The snapshot's COMPLETE and PRUNED trials as ``Run`` rows, in trial order."""
    out = []
    for t in snap.trials:
        if t.state not in (TrialState.COMPLETE, TrialState.PRUNED):
            continue
        xy = lr_wd(t)
        out.append(
            Run(
                number=t.number,
                state=t.state,
                value=final_value(t) if t.state == TrialState.COMPLETE else None,
                lr=xy[0] if xy else None,
                weight_decay=xy[1] if xy else None,
                optimizer=optimizer_of(t),
                seed=_int_or_none(t.user_attrs.get(SEED)),
                replicate_of=_int_or_none(t.user_attrs.get(REPLICATE_OF)),
                epochs_run=_int_or_none(t.user_attrs.get(EPOCHS_RUN)),
            )
        )
    return tuple(out)


def runs_from_storage(
    study: optuna.Study, storage: optuna.storages.RDBStorage
) -> tuple[StudySnapshot, tuple[Run, ...]]:
    """The study's attributes (a snapshot without trials) and its ``Run`` rows, read in one
    indexed query (``sweeper._optuna.read.read_runs``): no learning curves, no
    ``FrozenTrial``. Equal to ``runs(snapshot(study, storage))``. Raises ``UsageError`` for a
    multi-objective study.
    """
    from sweeper._optuna.read import MISSING, read_runs

    head = _snapshot_of(snapshot_guard(study), ())  # the study's attributes: its spec
    rows = read_runs(
        storage,
        study.study_name,
        (LR, WD, OPTIMIZER),
        (OPTIMIZER, SEED, REPLICATE_OF, EPOCHS_RUN),
    )
    out = []
    for number, state, value, lr, wd, opt_param, opt_attr, seed, rep, epochs_run in rows:
        # optimizer_of and lr_wd, on the stored row instead of a FrozenTrial.
        xy = lr_wd_of(lr, wd)
        complete = state == TrialState.COMPLETE and value is not None and math.isfinite(value)
        out.append(
            Run(
                number=number,
                state=state,
                value=value if complete else None,
                lr=xy[0] if xy else None,
                weight_decay=xy[1] if xy else None,
                optimizer=str(opt_attr if opt_attr is not MISSING else (opt_param or "adamw")),
                seed=_int_or_none(seed),
                replicate_of=_int_or_none(rep),
                epochs_run=_int_or_none(epochs_run),
            )
        )
    return head, tuple(out)


# --------------------------------------------------------------------------- the lr x wd plane


class TrialPoint(NamedTuple):
    """One trial placed in the lr x wd plane."""

    number: int
    lr: float
    weight_decay: float
    value: float | None  # final val accuracy (COMPLETE) or last reported (PRUNED)
    state: str  # "complete" or "pruned"
    epoch: int | None  # last epoch reported
    optimizer: str


# The last snapshot's trial points: seven views of one report ask for them (1.3 s of a
# 10,000-trial report when each computed its own). Keyed by the identity of the snapshot's
# trials (kept alive here, so an id is never reused while it is cached).
_POINTS_MEMO: list[tuple[tuple[FrozenTrial, ...], tuple[TrialPoint, ...]]] = []


def trial_points(snap: StudySnapshot) -> tuple[TrialPoint, ...]:
    """COMPLETE and PRUNED trials that have an lr and a wd, in trial-number order.

    Computed once per snapshot (the result is immutable, so every view shares it).
    """
    for trials, points in _POINTS_MEMO:
        if trials is snap.trials:
            return points
    points = _trial_points(snap)
    _POINTS_MEMO[:] = [(snap.trials, points)]
    return points


def _trial_points(snap: StudySnapshot) -> tuple[TrialPoint, ...]:
    points = []
    for t in snap.trials:
        if t.state not in (TrialState.COMPLETE, TrialState.PRUNED):
            continue
        xy = lr_wd(t)
        if xy is None:
            continue
        points.append(
            TrialPoint(
                number=t.number,
                lr=xy[0],
                weight_decay=xy[1],
                value=final_value(t),
                state="complete" if t.state == TrialState.COMPLETE else "pruned",
                epoch=epoch_reached(t),
                optimizer=optimizer_of(t),
            )
        )
    return tuple(sorted(points, key=lambda p: p.number))


def axis_bounds(snap: StudySnapshot, name: str, seen: Sequence[float]) -> tuple[float, float]:
    """The search range of ``name`` from the trials' distributions, widened to cover ``seen``.

    The distribution's range shows the whole space searched, so unexplored corners show as
    unexplored; values outside it (a spec changed mid-study) still fit on the axes.
    """
    lows, highs = list(seen), list(seen)
    for t in snap.trials:
        dist = t.distributions.get(name)
        if isinstance(dist, FloatDistribution) and dist.low > 0:
            lows.append(dist.low)
            highs.append(dist.high)
    if not lows:
        return (1e-4, 1e-3) if name == LR else (1e-4, 1e-2)  # sweeper's default space
    low, high = min(lows), max(highs)
    if high <= low:  # one value: give the axis a decade around it
        low, high = low / math.sqrt(10), high * math.sqrt(10)
    return low, high
