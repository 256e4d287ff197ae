"""A study's snapshot as the analysis reads it: its setup, observations, noise model, best.

Pure: it takes a ``sweeper.snapshot.StudySnapshot`` (or its ``Run`` rows) and returns the
noise model and best of ``sweeper.analysis``; the one place the stored spec's measurement
settings (validation size, schedule, sampler, space) are read for them. ``sweeper best``
(from stored rows) and every view (from a snapshot) build their model here, the same way.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from optuna.trial import FrozenTrial, TrialState

from sweeper import attrs
from sweeper.analysis import noise
from sweeper.analysis.best import BestInfo, best_info
from sweeper.analysis.claims import MARGIN
from sweeper.analysis.decay import Schedule, schedule
from sweeper.analysis.pruning import epochs_saved
from sweeper.snapshot import LR, WD, Run, StudySnapshot, TrialPoint, runs, trial_points


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
    pruner: str | None = None  # e.g. "median", "curve (threshold 0.05)"


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
        return Setup(None, None, None, None, None, None, None)
    data = _get(spec, "data") or {}
    # A spec without val_size/train_size uses the whole CIFAR-10 split (spec.DataSpec).
    n_val = _positive_int(_get(data, "val_size")) or noise.DEFAULT_N_VAL
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
        pruner=_pruner(spec),
    )


def _pruner(spec: Any) -> str | None:
    """The stored spec's pruner in words: its kind and the parameters it sets."""
    table = _get(spec, "pruner")
    if not isinstance(table, Mapping) or not isinstance(table.get("kind"), str):
        return None
    stored = table.get("params")  # spec_to_dict keeps them apart; a hand-made spec may not
    pairs = stored.items() if isinstance(stored, Mapping) else table.items()
    params = ", ".join(f"{k} {v}" for k, v in pairs if k not in ("kind", "params"))
    return f"{table['kind']}{f' ({params})' if params else ''}"


def observations(rows: Iterable[Run]) -> list[noise.Observation]:
    """COMPLETE runs with a finite value, as the noise model's observations."""
    return [
        noise.Observation(
            number=r.number,
            optimizer=r.optimizer,
            lr=r.lr,
            weight_decay=r.weight_decay,
            value=r.value,
            seed=r.seed,
            replicate_of=r.replicate_of,
        )
        for r in rows
        if r.value is not None
    ]


# The last snapshot's noise model. A report asks for it from six views; at 10,000 trials
# each computation costs ~50 ms. Keyed by the identity of the snapshot's trials and attrs
# (both kept alive here, so an id is never reused while it is cached).
_NOISE_MEMO: list[tuple[tuple[FrozenTrial, ...], Mapping[str, Any], bool, noise.NoiseModel]] = []


def noise_of(snap: StudySnapshot) -> noise.NoiseModel:
    """The study's noise model (``sweeper.analysis.noise``) over its completed trials.

    Computed once per snapshot: every view of one report shares one model.
    """
    for trials, user_attrs, maximize, model in _NOISE_MEMO:
        if trials is snap.trials and user_attrs is snap.user_attrs and maximize == snap.maximize:
            return model
    model = noise.noise_model(
        observations(runs(snap)), maximize=snap.maximize, n_val=setup(snap).n_val
    )
    _NOISE_MEMO[:] = [(snap.trials, snap.user_attrs, snap.maximize, model)]
    return model


def _searched(
    st: Setup, lrs: Sequence[float], wds: Sequence[float]
) -> tuple[tuple[float, float], tuple[float, float]] | None:
    if not lrs:
        return None
    return st.lr_space or (min(lrs), max(lrs)), st.wd_space or (min(wds), max(wds))


def adamw_space(
    snap: StudySnapshot, points: Sequence[TrialPoint] | None = None
) -> tuple[tuple[float, float], tuple[float, float]] | None:
    """((lr low, high), (wd low, high)) searched with AdamW: the spec's space when it says,
    else what the AdamW trials tried; None without an AdamW trial. The decay axis is judged
    on this box (``decay.decay_check``) by ``best``, the report and the effective-decay view.
    """
    adamw = [
        p for p in (trial_points(snap) if points is None else points) if p.optimizer == "adamw"
    ]
    return _searched(setup(snap), [p.lr for p in adamw], [p.weight_decay for p in adamw])


def _claims_box(st: Setup) -> tuple[tuple[float, float], tuple[float, float]] | None:
    """The space the claims speak of: the spec's, when it gives both ranges."""
    return (st.lr_space, st.wd_space) if st.lr_space and st.wd_space else None


def _best(
    st: Setup,
    model: noise.NoiseModel,
    rows: Sequence[Run],
    margin: float,
) -> BestInfo:
    adamw = [r for r in rows if r.optimizer == "adamw" and r.lr is not None]
    space = _searched(
        st,
        [r.lr for r in adamw],  # type: ignore[misc]
        [r.weight_decay for r in adamw],  # type: ignore[misc]
    )
    return best_info(
        model,
        schedule=st.schedule,
        adamw_space=space,
        box=_claims_box(st),
        margin=margin,
        n_pruned=sum(1 for r in rows if r.state == TrialState.PRUNED),
        pruning=epochs_saved(rows, st.schedule.epochs if st.schedule else None, st.pruner),
    )


# The last snapshot's answer, shared by every view of one report (the summary, the
# comparison, importance's marks), as the noise model is.
_BEST_MEMO: list[tuple[tuple[FrozenTrial, ...], Mapping[str, Any], float, BestInfo]] = []


def best_of(
    snap: StudySnapshot, model: noise.NoiseModel | None = None, margin: float = MARGIN
) -> BestInfo:
    """The best configuration (corrected for selection), its indistinguishable set, the
    claims over the spec's space (``analysis.claims``; pruned trials counted as left out), the
    verdict and the decay warning. Computed once per snapshot and margin."""
    if model is None:
        for trials, user_attrs, m, info in _BEST_MEMO:
            if trials is snap.trials and user_attrs is snap.user_attrs and m == margin:
                return info
    info = _best(setup(snap), model or noise_of(snap), runs(snap), margin)
    if model is None:
        _BEST_MEMO[:] = [(snap.trials, snap.user_attrs, margin, info)]
    return info


def best_of_runs(head: StudySnapshot, rows: Sequence[Run], margin: float = MARGIN) -> BestInfo:
    """``best_of`` on a study's ``Run`` rows (``snapshot.runs_from_storage``) and its
    attributes (``head``; its trials are not read): the same answer without a ``FrozenTrial``.
    """
    st = setup(head)
    model = noise.noise_model(observations(rows), maximize=head.maximize, n_val=st.n_val)
    return _best(st, model, rows, margin)
