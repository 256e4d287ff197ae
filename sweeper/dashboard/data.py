"""Pure extraction: a study's trials -> the NamedTuples every view draws.

Promises:

- ``snapshot(study)`` is the only function here that reads storage: it loads the trials once.
  Every other function takes a ``StudySnapshot`` and returns plain NamedTuples (numbers,
  tuples, numpy arrays); none imports Plotly, none touches the database, so each is tested on
  hand-made trials and the figures only draw.
- The conventions of studies that sweeper writes are read here and nowhere else: params
  ``lr`` and ``weight_decay`` (log floats) and ``optimizer`` (only when a study searches over
  several); the optimizer name in ``user_attrs["optimizer"]``; ``trial.report(val_accuracy,
  epoch)`` with epochs 1, 2, ...; a pruned trial reached ``max(intermediate_values)``.
- Every function accepts an empty study, a study of one trial, all-pruned or failed trials,
  trials without intermediate values, and trials missing ``lr`` or ``weight_decay`` (they are
  left out of the lr x wd views and counted in the summary). The "best" trial is the best
  COMPLETE trial in the study's direction.
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import optuna
from numpy.typing import NDArray
from optuna.distributions import FloatDistribution
from optuna.trial import FrozenTrial, TrialState

from sweeper import attrs
from sweeper.analysis import noise as nm
from sweeper.analysis.best import BestInfo, best_info
from sweeper.analysis.decay import (
    DEFAULT_TRAIN_SIZE,
    DecayCheck,
    Schedule,
    decay_check,
    memory_epochs,
    schedule,
)
from sweeper.errors import UsageError

LR = "lr"
WD = "weight_decay"
OPTIMIZER = attrs.OPTIMIZER
REPLICATE_OF = attrs.REPLICATE_OF
SEED = attrs.SEED
# What a worker records on every trial, shown with the best trial, in this order.
PROVENANCE_KEYS = (attrs.SEED, attrs.EPOCHS_RUN, attrs.OPTIMIZER, *attrs.PROVENANCE)
# Up to this many distinct values per axis a study is read as a grid (one heatmap cell per
# value); past it the values are binned. Grid specs in studies/ use 4-8 values per axis.
MAX_GRID_VALUES = 10
# A hand-made study (no spec) is read as a grid when this fraction of its configurations sit
# on the lattice of values that occur at least twice per axis (one probe off it is fine).
GRID_ON_FRACTION = 0.75
# Bins per axis for randomly sampled studies: fine enough to see a diagonal ridge, coarse
# enough that a few hundred trials fill most cells.
HEATMAP_BINS = 8
# Bands per axis in the decoupling view, and the fewest completed trials per band on average.
MAX_BANDS = 8
TRIALS_PER_BAND = 6
# Where the GP's sd reaches this fraction of its prior sd, the data no longer pin the surface
# down: the landscape's fog is thick there and the decoupling view drops the ridge.
SUPPORT_EDGE = 0.5
# Failure reasons listed in the summary; the rest are counted.
MAX_FAILURES_LISTED = 10


# --------------------------------------------------------------------------- the snapshot


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
    pass (``fastread``, without the trials' system attributes, which no view reads);
    otherwise through the study (Optuna's ORM, cached between calls on
    the same study object, which suits a page that polls).
    """
    snapshot_guard(study)
    if isinstance(storage, optuna.storages.RDBStorage):
        from sweeper.dashboard.fastread import read_trials

        # No view reads a trial's system attributes (a grid sampler stores its whole search
        # space in every trial's): they are left out.
        trials = tuple(read_trials(storage, study.study_name, system_attrs=False))
    else:
        trials = tuple(study.get_trials(deepcopy=False))
    return _snapshot_of(study, trials)


def best_from_storage(study: optuna.Study, storage: optuna.storages.RDBStorage) -> BestInfo:
    """``best_of(snapshot(study, storage))``, reading only what it needs: one row per
    COMPLETE or PRUNED trial (its value, lr, wd, optimizer, seed, replicate_of) in one
    indexed query (``fastread.read_runs``), no learning curves, no ``FrozenTrial``.
    ``sweeper best`` on 100,000 trials. Raises ``UsageError`` for a multi-objective study.
    """
    from sweeper.dashboard.fastread import MISSING, read_runs

    snap = _snapshot_of(snapshot_guard(study), ())  # the study's attributes: its spec
    rows = read_runs(
        storage, study.study_name, (LR, WD, OPTIMIZER), (OPTIMIZER, SEED, REPLICATE_OF)
    )
    found = []
    adamw_lr: list[float] = []
    adamw_wd: list[float] = []
    for number, state, value, lr, wd, opt_param, opt_attr, seed, rep in rows:
        # optimizer_of, _lr_wd and observations, on the row instead of a FrozenTrial.
        name = str(opt_attr if opt_attr is not MISSING else (opt_param or "adamw"))
        xy = _lr_wd_of(lr, wd)
        if xy is not None and name == "adamw":
            adamw_lr.append(xy[0])
            adamw_wd.append(xy[1])
        if state != TrialState.COMPLETE or value is None or not math.isfinite(value):
            continue
        found.append(
            nm.Observation(
                number=number,
                optimizer=name,
                lr=xy[0] if xy else None,
                weight_decay=xy[1] if xy else None,
                value=value,
                seed=seed if isinstance(seed, int) and not isinstance(seed, bool) else None,
                replicate_of=rep if isinstance(rep, int) and not isinstance(rep, bool) else None,
            )
        )
    st = setup(snap)
    model = nm.noise_model(found, maximize=snap.maximize, n_val=st.n_val)
    space = None
    if adamw_lr:
        space = (
            st.lr_space or (min(adamw_lr), max(adamw_lr)),
            st.wd_space or (min(adamw_wd), max(adamw_wd)),
        )
    return best_info(model, schedule=st.schedule, adamw_space=space)


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


def _lr_wd(trial: FrozenTrial) -> tuple[float, float] | None:
    return _lr_wd_of(trial.params.get(LR), trial.params.get(WD))


def _lr_wd_of(lr: Any, wd: Any) -> tuple[float, float] | None:
    if not isinstance(lr, int | float) or not isinstance(wd, int | float):
        return None
    if not (lr > 0 and wd > 0):  # log axes: a zero wd cannot be drawn (nor sampled in log)
        return None
    return float(lr), float(wd)


def optimizers(snap: StudySnapshot) -> tuple[str, ...]:
    """The optimizers the study's trials ran, AdamW first (the reference)."""
    names = {optimizer_of(t) for t in snap.trials}
    return tuple(sorted(names, key=lambda n: (n != "adamw", n)))


def _better(snap: StudySnapshot, a: float, b: float) -> bool:
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
        if best is None or _better(snap, v, best.value):  # type: ignore[arg-type]
            best = t
    return best


# --------------------------------------------------------------------------- the study's setup


class Setup(NamedTuple):
    """What the stored spec says about how values were measured and how trials were placed.

    Every field is None when the study has no (readable) spec: a study made by hand.
    """

    n_val: int | None  # validation images behind each accuracy
    schedule: Schedule | None  # epochs and steps per epoch of a full run
    sampler: str | None  # "grid", "tpe", "random", "qmc"
    grid: tuple[tuple[float, ...], tuple[float, ...]] | None  # (lr values, wd values)
    lr_space: tuple[float, float] | None
    wd_space: tuple[float, float] | None


def _get(tree: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(tree, Mapping):
            return None
        tree = tree.get(key)
    return tree


def _positive_int(x: Any) -> int | None:
    return x if isinstance(x, int) and not isinstance(x, bool) and x > 0 else None


def _space(spec: Any, name: str) -> tuple[float, float] | None:
    low, high = _get(spec, "space", name, "low"), _get(spec, "space", name, "high")
    if isinstance(low, int | float) and isinstance(high, int | float) and 0 < low <= high:
        return float(low), float(high)
    return None


def setup(snap: StudySnapshot) -> Setup:
    """Read the study's stored spec (``user_attrs["spec"]``, as ``spec_to_dict`` wrote it)."""
    spec = snap.user_attrs.get(attrs.SPEC)
    if not isinstance(spec, Mapping):
        return Setup(None, None, None, None, None, None)
    data = _get(spec, "data") or {}
    # A spec without val_size/train_size uses the whole CIFAR-10 split (spec.DataSpec).
    n_val = _positive_int(_get(data, "val_size")) or nm.DEFAULT_N_VAL
    epochs = _positive_int(_get(spec, "training", "epochs"))
    batch = _positive_int(_get(spec, "training", "batch_size"))
    sched = (
        schedule(epochs, batch, _positive_int(_get(data, "train_size")))
        if epochs and batch
        else None
    )
    kind = _get(spec, "sampler", "kind")
    grid = None
    points = _get(spec, "sampler", "params", "points")
    if kind == "grid" and isinstance(points, Mapping):
        lrs, wds = points.get(LR), points.get(WD)
        if isinstance(lrs, list) and isinstance(wds, list) and lrs and wds:
            grid = (tuple(sorted(float(x) for x in lrs)), tuple(sorted(float(x) for x in wds)))
    return Setup(
        n_val=n_val,
        schedule=sched,
        sampler=kind if isinstance(kind, str) else None,
        grid=grid,
        lr_space=_space(spec, LR),
        wd_space=_space(spec, WD),
    )


def _replicate_of(trial: FrozenTrial) -> int | None:
    x = trial.user_attrs.get(REPLICATE_OF)
    return x if isinstance(x, int) and not isinstance(x, bool) else None


def observations(
    snap: StudySnapshot, trials: Iterable[FrozenTrial] | None = None
) -> list[nm.Observation]:
    """COMPLETE trials with a finite value, as the noise model's observations."""
    out = []
    for t in snap.trials if trials is None else trials:
        if t.state != TrialState.COMPLETE:
            continue
        v = final_value(t)
        if v is None:
            continue
        xy = _lr_wd(t)
        seed = t.user_attrs.get(SEED)
        out.append(
            nm.Observation(
                number=t.number,
                optimizer=optimizer_of(t),
                lr=xy[0] if xy else None,
                weight_decay=xy[1] if xy else None,
                value=v,
                seed=seed if isinstance(seed, int) and not isinstance(seed, bool) else None,
                replicate_of=_replicate_of(t),
            )
        )
    return out


# The last snapshot's noise model. A report asks for it from six views; at 10,000 trials
# each computation costs ~50 ms. Keyed by the identity of the snapshot's trials and attrs
# (both kept alive here, so an id is never reused while it is cached).
_NOISE_MEMO: list[tuple[tuple[FrozenTrial, ...], Mapping[str, Any], bool, nm.NoiseModel]] = []


def noise_of(snap: StudySnapshot) -> nm.NoiseModel:
    """The study's noise model (``sweeper.analysis.noise``) over its completed trials.

    Computed once per snapshot: every view of one report shares one model.
    """
    for trials, user_attrs, maximize, model in _NOISE_MEMO:
        if trials is snap.trials and user_attrs is snap.user_attrs and maximize == snap.maximize:
            return model
    model = nm.noise_model(observations(snap), maximize=snap.maximize, n_val=setup(snap).n_val)
    _NOISE_MEMO[:] = [(snap.trials, snap.user_attrs, snap.maximize, model)]
    return model


def adamw_space(
    snap: StudySnapshot, points: Sequence[TrialPoint] | None = None
) -> tuple[tuple[float, float], tuple[float, float]] | None:
    """((lr low, high), (wd low, high)) searched with AdamW: the spec's space when it says,
    else what the AdamW trials tried; None without an AdamW trial. The decay axis is judged
    on this box (``decay.decay_check``) by ``best``, the report and the effective-decay view.
    """
    st = setup(snap)
    adamw = [
        p for p in (trial_points(snap) if points is None else points) if p.optimizer == "adamw"
    ]
    if not adamw:
        return None
    lrs = [p.lr for p in adamw]
    wds = [p.weight_decay for p in adamw]
    return st.lr_space or (min(lrs), max(lrs)), st.wd_space or (min(wds), max(wds))


def best_of(snap: StudySnapshot, model: nm.NoiseModel | None = None) -> BestInfo:
    """The best configuration, its indistinguishable set, the verdict and the decay warning."""
    model = model or noise_of(snap)
    return best_info(model, schedule=setup(snap).schedule, adamw_space=adamw_space(snap))


def _bounds(snap: StudySnapshot, name: str, seen: Sequence[float]) -> tuple[float, float]:
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


# --------------------------------------------------------------------------- 1. landscape


class TrialPoint(NamedTuple):
    """One trial placed in the lr x wd plane."""

    number: int
    lr: float
    weight_decay: float
    value: float | None  # final val accuracy (COMPLETE) or last reported (PRUNED)
    state: str  # "complete" or "pruned"
    epoch: int | None  # last epoch reported
    optimizer: str


class Surface(NamedTuple):
    """A GP fitted on log lr, log wd; ``mean``/``std`` rows follow ``weight_decay``."""

    lr: NDArray[np.float64]
    weight_decay: NDArray[np.float64]
    mean: NDArray[np.float64]
    std: NDArray[np.float64]
    prior_std: float
    length_scale: float  # in units of the log search range
    noise_std: float  # accuracy units
    n_fit: int
    # Where the surface is within noise of its peak: peak - mean <= 1.96 sqrt(sd^2 + sd_peak^2).
    # Far from the data the sd is large, so the region also covers what no trial rules out.
    within: NDArray[np.bool_] | None = None


class LandscapePanel(NamedTuple):
    """The trials of one optimizer and the surface fitted to its completed trials."""

    optimizer: str
    points: tuple[TrialPoint, ...]
    surface: Surface | None
    note: str  # why there is no surface, or how it was fitted


class LandscapeInfo(NamedTuple):
    """One panel per optimizer, sharing axes ranges and one colour scale."""

    panels: tuple[LandscapePanel, ...]
    lr_bounds: tuple[float, float]
    wd_bounds: tuple[float, float]
    value_range: tuple[float, float] | None  # of completed trials; None when there are none


# The last snapshot's trial points: seven views of one report ask for them (1.3 s of a
# 10,000-trial report when each computed its own). Keyed like _NOISE_MEMO.
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
        xy = _lr_wd(t)
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


def _unit(
    values: Sequence[float] | NDArray[np.float64], bounds: tuple[float, float]
) -> NDArray[np.float64]:
    lo, hi = math.log10(bounds[0]), math.log10(bounds[1])
    return (np.log10(np.asarray(values, dtype=np.float64)) - lo) / (hi - lo)


def _from_unit(u: NDArray[np.float64], bounds: tuple[float, float]) -> NDArray[np.float64]:
    lo, hi = math.log10(bounds[0]), math.log10(bounds[1])
    return np.asarray(10.0 ** (lo + u * (hi - lo)), dtype=np.float64)


def _run_sd(model: nm.NoiseModel, y: NDArray[np.float64]) -> float:
    """The noise model's per-run sd at accuracy ``mean(y)`` (0 when unknown)."""
    if model.sd_run is None:
        return 0.0
    if model.n_val is None:
        return model.sd_run
    return max(model.sd_run, nm.floor_sd(float(np.mean(y)), model.n_val))


def _within_peak(
    mean: NDArray[np.float64], std: NDArray[np.float64], maximize: bool
) -> NDArray[np.bool_]:
    k = int(np.argmax(mean) if maximize else np.argmin(mean))
    peak, peak_sd = mean.flat[k], std.flat[k]
    gap = (peak - mean) if maximize else (mean - peak)
    return np.asarray(gap <= nm.Z975 * np.sqrt(std**2 + peak_sd**2))


def landscape_info(snap: StudySnapshot) -> LandscapeInfo:
    """Trials in the lr x wd plane and, per optimizer, a GP surface over log lr, log wd.

    The surface is fitted on COMPLETE trials only: a pruned trial's accuracy is from an
    earlier epoch and would drag the surface down where the pruner acted, not where the
    hyperparameters are bad. Pruned trials are drawn on top, marked with their epoch.
    """
    points = trial_points(snap)
    model = noise_of(snap)
    lr_b = _bounds(snap, LR, [p.lr for p in points])
    wd_b = _bounds(snap, WD, [p.weight_decay for p in points])
    # The colour scale spans completed trials only: pruned trials are drawn in grey, and
    # their early-epoch accuracies would stretch the scale and flatten the surface's colours.
    values = [p.value for p in points if p.value is not None and p.state == "complete"]
    panels = []
    for name in optimizers(snap) or ("adamw",):
        mine = tuple(p for p in points if p.optimizer == name)
        done = [p for p in mine if p.state == "complete" and p.value is not None]
        surface, note = None, ""
        # Here, not at the top: the GP needs scipy.linalg, which `sweeper best` and
        # `sweeper importance` never use (a third of a second of start-up each).
        from sweeper.analysis import surface as gp

        if len(done) < gp.MIN_POINTS:
            note = (
                f"{len(done)} completed trial{'s' if len(done) != 1 else ''}: "
                f"a surface needs at least {gp.MIN_POINTS}"
            )
        else:
            x = np.column_stack(
                [_unit([p.lr for p in done], lr_b), _unit([p.weight_decay for p in done], wd_b)]
            )
            y = np.array([p.value for p in done], dtype=np.float64)
            fit = gp.fit_surface(x, y, min_noise_sd=_run_sd(model, y))
            surface = Surface(
                lr=_from_unit(fit.u, lr_b),
                weight_decay=_from_unit(fit.v, wd_b),
                mean=fit.mean,
                std=fit.std,
                prior_std=fit.prior_std,
                length_scale=fit.length_scale,
                noise_std=fit.noise_std,
                n_fit=fit.n_fit,
                within=_within_peak(fit.mean, fit.std, snap.maximize),
            )
            note = (
                f"GP on {fit.n_fit} completed trials; length scale {fit.length_scale:g} "
                f"of the log range, noise sd {fit.noise_std:.3g}"
            )
        panels.append(LandscapePanel(name, mine, surface, note))
    return LandscapeInfo(
        panels=tuple(panels),
        lr_bounds=lr_b,
        wd_bounds=wd_b,
        value_range=(min(values), max(values)) if values else None,
    )


# --------------------------------------------------------------------------- 2. decoupling


class Band(NamedTuple):
    """A band of one hyperparameter and the best completed trial inside it."""

    low: float
    high: float
    center: float  # geometric centre (the value itself for a grid)
    n_trials: int  # completed trials in the band
    best_number: int
    best_value: float
    best_other: float  # the other hyperparameter's value in the best configuration
    # The other hyperparameter's range over the band's configurations within noise of the
    # band's best (noise model): where in the band the best could as well be.
    within_low: float
    within_high: float
    n_within: int
    flat: bool  # the within-noise range covers the band's whole range of the other


class RidgePoint(NamedTuple):
    """Where the fitted surface peaks along one hyperparameter, at a value of the other."""

    at: float  # the fixed hyperparameter's value
    best: float  # the value of the other one that maximises the surface mean
    mean: float
    std: float
    # std below SUPPORT_EDGE x the prior's, and the row not flat within noise: the data pin
    # this point down
    supported: bool


class DecouplingPanel(NamedTuple):
    """For one optimizer: does the best lr move with wd (and the best wd with lr)?

    ``slope`` is the least-squares slope of log10(best lr) against log10(wd) over the wd
    bands: about 0 when lr and wd are decoupled (AdamW's claim), about -1 when only the
    product lr x wd matters (Adam with L2). None with fewer than three bands, or when the
    bands are flat within noise (``slope_note`` says "not identifiable"). ``slope_low`` and
    ``slope_high`` bound it (95%, a parametric bootstrap of the configuration means).
    """

    optimizer: str
    lr_by_wd: tuple[Band, ...]
    wd_by_lr: tuple[Band, ...]
    ridge_lr_by_wd: tuple[RidgePoint, ...]
    ridge_wd_by_lr: tuple[RidgePoint, ...]
    slope: float | None
    product: tuple[tuple[float, TrialPoint], ...]  # (lr x wd, trial), completed and pruned
    slope_low: float | None = None
    slope_high: float | None = None
    slope_note: str = ""


class DecouplingInfo(NamedTuple):
    panels: tuple[DecouplingPanel, ...]
    lr_bounds: tuple[float, float]
    wd_bounds: tuple[float, float]


def grid_of(
    snap: StudySnapshot, points: Sequence[TrialPoint] | None = None
) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """The study's (lr values, wd values) grid, or None when it is not a grid study.

    From the stored spec when there is one: its grid sampler's points, and never a grid for
    any other sampler (a random study of 10 trials has 10 distinct values per axis, not a
    10 x 10 grid). A study without a spec (made by hand) is a grid when the values that occur
    at least twice per axis hold at least ``GRID_ON_FRACTION`` of its configurations and fill
    at least half of their lattice.
    """
    st = setup(snap)
    if st.grid is not None:
        return st.grid
    if st.sampler is not None:
        return None
    pts = trial_points(snap) if points is None else points
    configs = {(p.lr, p.weight_decay) for p in pts}
    if len(configs) < 4:
        return None
    lr_counts: dict[float, int] = {}
    wd_counts: dict[float, int] = {}
    for lr, wd in configs:
        lr_counts[lr] = lr_counts.get(lr, 0) + 1
        wd_counts[wd] = wd_counts.get(wd, 0) + 1
    lrs = sorted(v for v, k in lr_counts.items() if k >= 2)
    wds = sorted(v for v, k in wd_counts.items() if k >= 2)
    if not (2 <= len(lrs) <= MAX_GRID_VALUES and 2 <= len(wds) <= MAX_GRID_VALUES):
        return None
    on = [c for c in configs if c[0] in lr_counts and lr_counts[c[0]] >= 2 and c[1] in wds]
    if len(on) < GRID_ON_FRACTION * len(configs) or len(on) < 0.5 * len(lrs) * len(wds):
        return None
    return tuple(lrs), tuple(wds)


def _edges(
    values: Sequence[float],
    bounds: tuple[float, float],
    n_bins: int,
    grid: Sequence[float] | None = None,
) -> list[tuple[float, float, float]]:
    """Bands ``(low, high, centre)``: one per grid value for a grid study, else log bins."""
    del values  # bands follow the study's design, never the values that happen to occur
    if grid:
        return [(v, v, v) for v in grid]
    cuts = np.geomspace(bounds[0], bounds[1], n_bins + 1)
    return [(float(a), float(b), float(math.sqrt(a * b))) for a, b in itertools.pairwise(cuts)]


def _in_band(x: float, band: tuple[float, float, float], last: bool) -> bool:
    low, high, _ = band
    if low == high:
        return math.isclose(x, low, rel_tol=1e-9)
    return low <= x < high or (last and x == high)


def _bands(
    snap: StudySnapshot,
    configs: Sequence[nm.Config],
    model: nm.NoiseModel,
    key: str,
    bounds: tuple[float, float],
    grid: Sequence[float] | None = None,
) -> tuple[tuple[Band, ...], list[list[nm.Config]]]:
    """Bands of ``key`` with the best configuration in each and the range within its noise."""
    get = (lambda c: c.lr) if key == LR else (lambda c: c.weight_decay)
    get_other = (lambda c: c.weight_decay) if key == LR else (lambda c: c.lr)
    n_bins = max(3, min(MAX_BANDS, sum(c.n for c in configs) // TRIALS_PER_BAND))
    edges = _edges([get(c) for c in configs], bounds, n_bins, grid)
    bands, members = [], []
    for i, edge in enumerate(edges):
        inside = [c for c in configs if _in_band(get(c), edge, i == len(edges) - 1)]
        if not inside:
            continue
        ranked = nm.indistinguishable(model, inside)
        best = ranked[0]
        others = [get_other(c) for c in ranked]
        tried = [get_other(c) for c in inside]
        flat = len(set(tried)) > 1 and min(others) <= min(tried) and max(others) >= max(tried)
        bands.append(
            Band(
                low=edge[0],
                high=edge[1],
                center=edge[2],
                n_trials=sum(c.n for c in inside),
                best_number=best.numbers[0],
                best_value=best.mean,
                best_other=get_other(best),
                within_low=min(others),
                within_high=max(others),
                n_within=len(ranked),
                flat=flat,
            )
        )
        members.append(inside)
    return tuple(bands), members


def _slope_interval(
    bands: Sequence[Band], members: Sequence[Sequence[nm.Config]], model: nm.NoiseModel
) -> tuple[float | None, float | None, str]:
    """A 95% interval for the slope of the wd ``bands``' best lr: redraw every
    configuration's mean (normal, sd = its standard error), re-pick each band's best, refit."""
    if len(bands) < 3:
        return None, None, "fewer than 3 bands"
    if all(b.flat for b in bands):
        return None, None, "not identifiable: every band is flat within noise"
    if any(c.se is None for m in members for c in m):
        return None, None, "noise unknown"
    rng = np.random.default_rng(0)
    x = np.log10([b.center for b in bands])
    # All draws at once, in the order a loop over (draw, band, configuration) would take
    # them; at 10,000 trials the loop took 0.85 s of a report.
    means = np.array([c.mean for m in members for c in m])
    ses = np.array([c.se for m in members for c in m], dtype=float)
    lrs = np.log10(np.array([c.lr for m in members for c in m], dtype=float))
    draws = means + ses * rng.standard_normal((SLOPE_DRAWS, len(means)))
    y = np.empty((SLOPE_DRAWS, len(members)))
    start = 0
    for k, inside in enumerate(members):
        block = draws[:, start : start + len(inside)]
        pick = np.argmax(block, axis=1) if model.maximize else np.argmin(block, axis=1)
        y[:, k] = lrs[start + pick]
        start += len(inside)
    xc = x - x.mean()
    slopes = (y - y.mean(axis=1, keepdims=True)) @ xc / (xc @ xc)  # least squares, per draw
    return float(np.percentile(slopes, 2.5)), float(np.percentile(slopes, 97.5)), ""


def _ridge(surface: Surface, along_lr: bool, maximize: bool) -> tuple[RidgePoint, ...]:
    """Where the surface mean peaks in each row (``along_lr``) or column of its grid.

    Far from the data the mean reverts to the average accuracy and its argmax is arbitrary;
    such points are kept but marked unsupported, and the figure leaves them out.
    """
    pick = np.argmax if maximize else np.argmin
    edge = SUPPORT_EDGE * surface.prior_std
    if along_lr:  # for each wd row, the lr that maximises the mean
        cells = [(i, int(j)) for i, j in enumerate(pick(surface.mean, axis=1))]
    else:
        cells = [(int(i), j) for j, i in enumerate(pick(surface.mean, axis=0))]
    # A row flat within noise has an arbitrary argmax: no point there is significantly worse
    # than the row's peak, so the ridge is not drawn through it.
    mean = surface.mean if along_lr else surface.mean.T
    std = surface.std if along_lr else surface.std.T
    peaks = [j if along_lr else i for i, j in cells]
    shaped = [
        bool(np.any(np.abs(mean[r, k] - mean[r]) > nm.Z975 * np.sqrt(std[r] ** 2 + std[r, k] ** 2)))
        for r, k in enumerate(peaks)
    ]
    return tuple(
        RidgePoint(
            at=float(surface.weight_decay[i] if along_lr else surface.lr[j]),
            best=float(surface.lr[j] if along_lr else surface.weight_decay[i]),
            mean=float(surface.mean[i, j]),
            std=float(surface.std[i, j]),
            supported=bool(surface.std[i, j] < edge) and shaped[k],
        )
        for k, (i, j) in enumerate(cells)
    )


SLOPE_DRAWS = 200  # bootstrap draws for the slope's interval: percentiles stable to ~0.02


def _slope(bands: Sequence[Band]) -> float | None:
    if len(bands) < 3:
        return None
    x = np.log10([b.center for b in bands])
    y = np.log10([b.best_other for b in bands])
    if np.ptp(x) == 0:
        return None
    return float(np.polyfit(x, y, 1)[0])


def decoupling_info(snap: StudySnapshot, landscape: LandscapeInfo | None = None) -> DecouplingInfo:
    """Per band, the best configuration and the range within its noise; the slope with its
    interval or "not identifiable"; the surface's ridges; accuracy against lr x wd.

    ``landscape`` is reused for the ridges when given (it holds the fitted surfaces).
    """
    land = landscape if landscape is not None else landscape_info(snap)
    model = noise_of(snap)
    grid = grid_of(snap)
    panels = []
    for panel in land.panels:
        configs = [
            c
            for c in model.configs
            if c.optimizer == panel.optimizer and c.lr is not None and c.weight_decay is not None
        ]
        by_wd, wd_members = _bands(snap, configs, model, WD, land.wd_bounds, grid and grid[1])
        by_lr, _ = _bands(snap, configs, model, LR, land.lr_bounds, grid and grid[0])
        low, high, note = _slope_interval(by_wd, wd_members, model)
        slope = None if note.startswith("not identifiable") else _slope(by_wd)
        panels.append(
            DecouplingPanel(
                optimizer=panel.optimizer,
                lr_by_wd=by_wd,
                wd_by_lr=by_lr,
                ridge_lr_by_wd=_ridge(panel.surface, True, snap.maximize) if panel.surface else (),
                ridge_wd_by_lr=_ridge(panel.surface, False, snap.maximize) if panel.surface else (),
                slope=slope,
                product=tuple(
                    (p.lr * p.weight_decay, p) for p in panel.points if p.value is not None
                ),
                slope_low=low,
                slope_high=high,
                slope_note=note,
            )
        )
    return DecouplingInfo(tuple(panels), land.lr_bounds, land.wd_bounds)


# --------------------------------------------------------------------------- 3. Adam vs AdamW


class Heatmap(NamedTuple):
    """Mean final accuracy of one optimizer's completed trials per (wd row, lr column) cell.

    ``mean`` is NaN where a cell has no completed trial; ``n_pruned`` counts the pruned ones.
    """

    optimizer: str
    mean: NDArray[np.float64]
    n_complete: NDArray[np.int64]
    n_pruned: NDArray[np.int64]
    best_cell: tuple[int, int] | None  # (row, column) of the best mean in the study's direction
    # Cells not significantly worse than the best cell (noise model: se = sd / sqrt(n)).
    within: NDArray[np.bool_] | None = None


class ComparisonInfo(NamedTuple):
    """Heatmaps on shared cells and one colour scale, AdamW first.

    ``lr``/``weight_decay`` are cell centres; ``lr_edges``/``wd_edges`` the cells' bounds
    (equal to the centre for a grid study). ``zrange`` is None when no cell has a value.
    """

    lr: tuple[float, ...]
    weight_decay: tuple[float, ...]
    lr_edges: tuple[tuple[float, float], ...]
    wd_edges: tuple[tuple[float, float], ...]
    heatmaps: tuple[Heatmap, ...]
    zrange: tuple[float, float] | None
    binned: bool
    off_grid: tuple[TrialPoint, ...] = ()  # trials of a grid study off its grid, drawn on top


def comparison_info(snap: StudySnapshot) -> ComparisonInfo:
    """Per optimizer, mean final accuracy on a shared lr x wd lattice (the AdamW paper's view).

    A grid study (``grid_of``: the spec's grid) gets a cell per grid value and its off-grid
    trials as points on top; any other study gets ``HEATMAP_BINS`` log-spaced bins per axis.
    """
    points = trial_points(snap)
    lr_b = _bounds(snap, LR, [p.lr for p in points])
    wd_b = _bounds(snap, WD, [p.weight_decay for p in points])
    grid = grid_of(snap, points)
    lr_cells = _edges([p.lr for p in points], lr_b, HEATMAP_BINS, grid and grid[0])
    wd_cells = _edges([p.weight_decay for p in points], wd_b, HEATMAP_BINS, grid and grid[1])
    model = noise_of(snap)
    off_grid: list[TrialPoint] = []
    heatmaps = []
    for name in optimizers(snap):
        shape = (len(wd_cells), len(lr_cells))
        total = np.zeros(shape)
        n_done = np.zeros(shape, dtype=np.int64)
        n_pruned = np.zeros(shape, dtype=np.int64)
        for p in points:
            if p.optimizer != name:
                continue
            i = _cell(p.weight_decay, wd_cells)
            j = _cell(p.lr, lr_cells)
            if i is None or j is None:
                off_grid.append(p)
                continue
            if p.state == "complete" and p.value is not None:
                total[i, j] += p.value
                n_done[i, j] += 1
            elif p.state == "pruned":
                n_pruned[i, j] += 1
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(n_done > 0, total / np.maximum(n_done, 1), np.nan)
        best = None
        if np.isfinite(mean).any():
            flat = np.nanargmax(mean) if snap.maximize else np.nanargmin(mean)
            row, col = np.unravel_index(flat, mean.shape)
            best = (int(row), int(col))
        heatmaps.append(
            Heatmap(name, mean, n_done, n_pruned, best, _within_cells(model, mean, n_done, best))
        )
    finite = [h.mean[np.isfinite(h.mean)] for h in heatmaps]
    values = np.concatenate(finite) if finite else np.array([])
    return ComparisonInfo(
        lr=tuple(c for _, _, c in lr_cells),
        weight_decay=tuple(c for _, _, c in wd_cells),
        lr_edges=tuple((a, b) for a, b, _ in lr_cells),
        wd_edges=tuple((a, b) for a, b, _ in wd_cells),
        heatmaps=tuple(heatmaps),
        zrange=(float(values.min()), float(values.max())) if values.size else None,
        binned=grid is None,
        off_grid=tuple(off_grid),
    )


def _within_cells(
    model: nm.NoiseModel,
    mean: NDArray[np.float64],
    n: NDArray[np.int64],
    best: tuple[int, int] | None,
) -> NDArray[np.bool_] | None:
    """Cells whose mean is not significantly worse than the best cell's."""
    if best is None or model.sd_run is None:
        return None
    sd = np.full(mean.shape, model.sd_run)
    if model.n_val is not None:
        p = np.clip(np.nan_to_num(mean), 0.0, 1.0)
        sd = np.maximum(sd, np.sqrt(p * (1 - p) / model.n_val))
    se = sd / np.sqrt(np.maximum(n, 1))
    gap = (mean[best] - mean) if model.maximize else (mean - mean[best])
    with np.errstate(invalid="ignore"):
        return np.asarray((n > 0) & (gap <= model.t * np.sqrt(se**2 + se[best] ** 2)))


def _cell(x: float, cells: Sequence[tuple[float, float, float]]) -> int | None:
    for i, cell in enumerate(cells):
        if _in_band(x, cell, i == len(cells) - 1):
            return i
    return None


# --------------------------------------------------------------------------- 4. slices


class SliceInfo(NamedTuple):
    """Accuracy against one hyperparameter at a time (Optuna's ``plot_slice``), one point per
    configuration of the noise model, so seed replicates are one point with their interval.

    ``configs`` are the completed configurations with an lr and a wd (AdamW's first, then in
    trial order); each carries its mean over seeds, ``n`` and the noise model's 95% interval
    ``low``..``high``. The figure draws that interval as an error bar where ``n >= 2``: a
    single run's interval rests on the pooled estimate alone, so ``single_run_halfwidth``
    (t x the per-run sd at the median accuracy) is stated once instead of drawn on every
    point. Pruned trials are left out (their accuracy is from an earlier epoch) and counted.
    """

    configs: tuple[nm.Config, ...]
    optimizers: tuple[str, ...]
    lr_bounds: tuple[float, float]
    wd_bounds: tuple[float, float]
    n_replicated: int  # configurations with two or more runs
    single_run_halfwidth: float | None  # None when the noise is unknown
    noise: str  # where the per-run sd comes from (the noise model's one line)
    n_pruned: int


def slice_info(snap: StudySnapshot) -> SliceInfo:
    """Every completed configuration's mean and 95% interval, placed at its lr and wd."""
    model = noise_of(snap)
    points = trial_points(snap)
    names = optimizers(snap)
    configs = sorted(
        (c for c in model.configs if c.lr is not None and c.weight_decay is not None),
        key=lambda c: (names.index(c.optimizer) if c.optimizer in names else 0, c.numbers[0]),
    )
    half = None
    if model.sd_run is not None and configs:
        middle = float(np.median([c.mean for c in configs]))
        sd = model.sd_run
        if model.n_val is not None:
            sd = max(sd, nm.floor_sd(middle, model.n_val))
        half = model.t * sd
    return SliceInfo(
        configs=tuple(configs),
        optimizers=tuple(n for n in names if any(c.optimizer == n for c in configs)),
        lr_bounds=_bounds(snap, LR, [p.lr for p in points]),
        wd_bounds=_bounds(snap, WD, [p.weight_decay for p in points]),
        n_replicated=sum(1 for c in configs if c.n >= 2),
        single_run_halfwidth=half,
        noise=model.source,
        n_pruned=sum(1 for p in points if p.state == "pruned"),
    )


# --------------------------------------------------------------------------- effective decay


# When the study does not record its schedule (a study made by hand): the tutorial's batch of
# 32 on CIFAR-10's 50,000 training images, the spec's defaults. The view says it assumed them.
ASSUMED_BATCH = 32


class EffectiveDecayInfo(NamedTuple):
    """AdamW's trials on the axes its weight decay really sets: lr and the decay's memory
    1 / (lr * wd * steps per epoch), in epochs (``sweeper.analysis.decay``).

    ``configs`` are AdamW's completed configurations (mean over seeds) and ``memory`` their
    memories; ``pruned`` / ``pruned_memory`` the pruned AdamW trials. ``check`` is the same
    judgement ``sweeper best`` and the report print (``decay.decay_check`` on
    ``adamw_space``), or None when the study records no schedule; ``assumed`` then says which
    schedule the memories assume. Adam's coupled L2 does not shrink weights by (1 - lr * wd)
    per step, so other optimizers are left out and named in ``left_out``.
    """

    configs: tuple[nm.Config, ...]
    memory: tuple[float, ...]
    pruned: tuple[TrialPoint, ...]
    pruned_memory: tuple[float, ...]
    lr_bounds: tuple[float, float]
    wd_bounds: tuple[float, float]  # the AdamW space: its edges bound the memories drawn
    steps_per_epoch: int
    epochs: int | None  # of a full run; None when unknown
    assumed: str  # "" when the schedule comes from the study's spec
    check: DecayCheck | None
    left_out: tuple[str, ...]  # optimizers whose trials are not drawn
    value_range: tuple[float, float] | None


def effective_decay_info(snap: StudySnapshot) -> EffectiveDecayInfo:
    """AdamW's configurations placed at (lr, memory in epochs), with the decay-axis check."""
    points = trial_points(snap)
    st = setup(snap)
    space = adamw_space(snap, points)
    reached = max((p.epoch for p in points if p.epoch is not None), default=None)
    sched, assumed = st.schedule, ""
    if sched is None:
        sched = schedule(reached or 1, ASSUMED_BATCH, None)
        assumed = (
            f"schedule not recorded: memories assume {sched.steps_per_epoch:,} steps per epoch "
            f"({DEFAULT_TRAIN_SIZE:,} images, batch {ASSUMED_BATCH})"
        )
    spe = sched.steps_per_epoch
    configs = sorted(
        (
            c
            for c in noise_of(snap).configs
            if c.optimizer == "adamw" and c.lr is not None and c.weight_decay is not None
        ),
        key=lambda c: c.numbers[0],
    )
    pruned = tuple(p for p in points if p.optimizer == "adamw" and p.state == "pruned")
    values = [c.mean for c in configs]
    lr_b, wd_b = space or ((1e-4, 1e-3), (1e-4, 1e-2))  # sweeper's default space
    return EffectiveDecayInfo(
        configs=tuple(configs),
        memory=tuple(memory_epochs(c.lr, c.weight_decay, spe) for c in configs),  # type: ignore[arg-type]
        pruned=pruned,
        pruned_memory=tuple(memory_epochs(p.lr, p.weight_decay, spe) for p in pruned),
        lr_bounds=lr_b,
        wd_bounds=wd_b,
        steps_per_epoch=spe,
        epochs=st.schedule.epochs if st.schedule else reached,
        assumed=assumed,
        # The same judgement `sweeper best` and the report print, on the same box.
        check=decay_check(space[0], space[1], st.schedule) if space and st.schedule else None,
        left_out=tuple(n for n in optimizers(snap) if n != "adamw"),
        value_range=(min(values), max(values)) if values else None,
    )


# --------------------------------------------------------------------------- 5. curves


class Curve(NamedTuple):
    """One trial's validation accuracy per epoch."""

    number: int
    state: str  # "complete", "pruned", "running", "fail"
    optimizer: str
    epochs: tuple[int, ...]
    values: tuple[float, ...]
    lr: float | None
    weight_decay: float | None


class CurvesInfo(NamedTuple):
    """Curves of every trial that reported; ``n_silent`` trials reported nothing."""

    curves: tuple[Curve, ...]
    best_number: int | None
    n_silent: int


def curves_info(snap: StudySnapshot) -> CurvesInfo:
    """Learning curves of all trials that reported at least one epoch (any state)."""
    curves, silent = [], 0
    for t in snap.trials:
        if t.state == TrialState.WAITING:
            continue
        curve = curve_of(t)
        if not curve:
            silent += 1
            continue
        xy = _lr_wd(t)
        curves.append(
            Curve(
                number=t.number,
                state=t.state.name.lower(),
                optimizer=optimizer_of(t),
                epochs=tuple(e for e, _ in curve),
                values=tuple(v for _, v in curve),
                lr=xy[0] if xy else None,
                weight_decay=xy[1] if xy else None,
            )
        )
    best = best_trial(snap)
    return CurvesInfo(tuple(curves), best.number if best else None, silent)


# --------------------------------------------------------------------------- 6. history, timeline


class HistoryInfo(NamedTuple):
    """Final values by trial number and the best value so far after each completed trial."""

    numbers: tuple[int, ...]
    values: tuple[float, ...]
    states: tuple[str, ...]  # "complete" or "pruned" (last reported value)
    best_numbers: tuple[int, ...]
    best_so_far: tuple[float, ...]


def history_info(snap: StudySnapshot) -> HistoryInfo:
    """Values over trial numbers; the running best counts COMPLETE trials only."""
    rows = sorted(
        (t.number, final_value(t), t.state)
        for t in snap.trials
        if t.state in (TrialState.COMPLETE, TrialState.PRUNED)
    )
    rows_v = [(n, v, s) for n, v, s in rows if v is not None]
    best_numbers, best_so_far = [], []
    best: float | None = None
    for n, v, s in rows_v:
        if s == TrialState.COMPLETE and (best is None or _better(snap, v, best)):
            best = v
        if best is not None:
            best_numbers.append(n)
            best_so_far.append(best)
    return HistoryInfo(
        numbers=tuple(n for n, _, _ in rows_v),
        values=tuple(v for _, v, _ in rows_v),
        states=tuple(s.name.lower() for _, _, s in rows_v),
        best_numbers=tuple(best_numbers),
        best_so_far=tuple(best_so_far),
    )


class TimelineBar(NamedTuple):
    """One trial's run on one worker; ``end`` is the snapshot time for a running trial."""

    number: int
    worker: str
    start: dt.datetime
    end: dt.datetime
    state: str


class TimelineInfo(NamedTuple):
    bars: tuple[TimelineBar, ...]
    workers: tuple[str, ...]  # sorted; "unknown" for trials without a recorded worker


def timeline_info(snap: StudySnapshot) -> TimelineInfo:
    """Trials over wall time per worker (trials that never started are left out)."""
    bars = []
    for t in snap.trials:
        if t.datetime_start is None:
            continue
        end = t.datetime_complete or max(snap.taken_at, t.datetime_start)
        bars.append(
            TimelineBar(
                number=t.number,
                worker=str(t.user_attrs.get(attrs.WORKER, "unknown")),
                start=t.datetime_start,
                end=end,
                state=t.state.name.lower(),
            )
        )
    bars.sort(key=lambda b: (b.start, b.number))
    return TimelineInfo(tuple(bars), tuple(sorted({b.worker for b in bars})))


# --------------------------------------------------------------------------- summary


class BestTrial(NamedTuple):
    number: int
    value: float
    params: dict[str, Any]
    provenance: dict[str, str]  # PROVENANCE_KEYS present on the trial, as text
    start: dt.datetime | None
    complete: dt.datetime | None


class SummaryInfo(NamedTuple):
    """Counts per state, the best trial with provenance, failures with their reasons."""

    study: str
    metric: str
    direction: str
    n_trials: int
    counts: dict[str, int]  # complete, pruned, fail, running, waiting (always all five)
    best: BestTrial | None
    failures: tuple[tuple[int, str], ...]  # (number, reason), at most MAX_FAILURES_LISTED
    n_without_lr_wd: int  # finished trials that lack lr or weight_decay
    spec: Mapping[str, Any] | None
    answer: BestInfo | None = None  # the best configuration as the noise model allows


def summary_info(snap: StudySnapshot) -> SummaryInfo:
    """The summary table's content."""
    counts = {s: 0 for s in ("complete", "pruned", "fail", "running", "waiting")}
    for t in snap.trials:
        counts[t.state.name.lower()] = counts.get(t.state.name.lower(), 0) + 1
    best = best_trial(snap)
    best_row = None
    if best is not None:
        best_row = BestTrial(
            number=best.number,
            value=float(best.value),  # type: ignore[arg-type]
            params=dict(best.params),
            provenance={
                k: str(best.user_attrs[k]) for k in PROVENANCE_KEYS if k in best.user_attrs
            },
            start=best.datetime_start,
            complete=best.datetime_complete,
        )
    failed = [t for t in snap.trials if t.state == TrialState.FAIL]
    failures = tuple(
        (t.number, _one_line(str(t.user_attrs.get(attrs.FAIL_REASON, "no reason recorded"))))
        for t in failed[:MAX_FAILURES_LISTED]
    )
    finished = [t for t in snap.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    spec = snap.user_attrs.get(attrs.SPEC)
    return SummaryInfo(
        study=snap.name,
        metric=str(snap.user_attrs.get("metric", "value")),
        direction="maximize" if snap.maximize else "minimize",
        n_trials=len(snap.trials),
        counts=counts,
        best=best_row,
        failures=failures,
        n_without_lr_wd=sum(1 for t in finished if _lr_wd(t) is None),
        spec=spec if isinstance(spec, Mapping) else None,
        answer=best_of(snap),
    )


def _one_line(text: str, limit: int = 200) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"
