"""Build Optuna studies shaped like the ones sweeper's workers write, directly and fast.

These studies are synthetic: their accuracies come from a closed-form landscape, not from
training. They exist so the views can be tested (and timed) on studies whose structure is
exactly that of a real sweep: the same params, distributions, user attributes, intermediate
values per epoch, pruned and failed trials, several workers with wall-clock times.

The landscape follows the AdamW paper's observation: with AdamW (decoupled) the best lr does
not depend on wd (an axis-aligned optimum); with Adam (coupled L2) the good region is a
diagonal along which lr x wd is constant.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import FrozenTrial, TrialState

from sweeper.spec import load_spec, spec_to_dict

LR_RANGE = (1e-4, 1e-3)
WD_RANGE = (1e-4, 1e-2)
WORKERS = ("gpu-a:4101", "gpu-a:4102", "gpu-b:5201", "gpu-b:5202")
T0 = dt.datetime(2026, 3, 1, 9, 0, 0)
# studies/adam_vs_adamw.toml's grid: 4 x 4 per optimizer.
ADAM_VS_ADAMW_GRID = ((1e-4, 2.2e-4, 4.6e-4, 1e-3), (1e-4, 1e-3, 1e-2, 1e-1))


def distributions(optimizers: Sequence[str]) -> dict[str, optuna.distributions.BaseDistribution]:
    """The search space sweeper uses: log lr, log wd, and optimizer when there are several."""
    dists: dict[str, optuna.distributions.BaseDistribution] = {
        "lr": FloatDistribution(*LR_RANGE, log=True),
        "weight_decay": FloatDistribution(*WD_RANGE, log=True),
    }
    if len(optimizers) > 1:
        dists["optimizer"] = CategoricalDistribution(tuple(optimizers))
    return dists


def final_accuracy(lr: float, wd: float, optimizer: str) -> float:
    """The noiseless final accuracy of the synthetic landscape at (lr, wd)."""
    u = math.log10(lr) - math.log10(4e-4)  # best lr 4e-4
    if optimizer == "adamw":
        v = math.log10(wd) - math.log10(1e-3)  # best wd 1e-3, independent of lr
        return 0.72 - 0.18 * u * u - 0.05 * v * v
    # Adam with L2: the penalty acts through lr x wd, so the ridge is a diagonal.
    w = math.log10(lr * wd) - math.log10(4e-7)
    return 0.68 - 0.10 * u * u - 0.09 * w * w


def provenance(seed: int, optimizer: str, worker: str, epochs_run: int) -> dict[str, object]:
    """The user attributes a sweeper worker records on every trial."""
    return {
        "seed": seed,
        "epochs_run": epochs_run,
        "optimizer": optimizer,
        "worker": worker,
        "device": "cuda:0",
        "torch_version": "2.14.1",
        "sweeper_version": "0.1.0",
        "git_rev": "0123abc",
        "optimizer_impl": "FusedAdamW" if optimizer == "adamw" else "FusedAdamW(mode=adam)",
    }


def make_trial(
    number: int,
    *,
    lr: float,
    wd: float,
    optimizer: str = "adamw",
    optimizers: Sequence[str] = ("adamw",),
    state: TrialState = TrialState.COMPLETE,
    curve: dict[int, float] | None = None,
    value: float | None = None,
    worker: str = WORKERS[0],
    start: dt.datetime | None = None,
    seconds: float = 60.0,
    fail_reason: str | None = None,
) -> FrozenTrial:
    """One trial as a worker would leave it; ``curve`` maps epoch -> val accuracy."""
    curve = dict(curve or {})
    params: dict[str, object] = {"lr": lr, "weight_decay": wd}
    if len(optimizers) > 1:
        params["optimizer"] = optimizer
    attrs = provenance(1000 + number, optimizer, worker, max(curve, default=0))
    if fail_reason is not None:
        attrs["fail_reason"] = fail_reason
    if state == TrialState.COMPLETE and value is None:
        value = curve[max(curve)]
    if state == TrialState.PRUNED and value is None and curve:
        value = curve[max(curve)]  # what Optuna's tell() records for a pruned trial
    begin = start or T0 + dt.timedelta(minutes=number)
    end = None if state == TrialState.RUNNING else begin + dt.timedelta(seconds=seconds)
    return FrozenTrial(
        number=number,
        state=state,
        value=value,
        datetime_start=begin,
        datetime_complete=end,
        params=params,
        distributions=distributions(optimizers),
        user_attrs=attrs,
        system_attrs={},
        intermediate_values=curve,
        trial_id=number,
    )


def learning_curve(
    final: float, epochs: int, lr: float = 4e-4, rng: np.random.Generator | None = None
) -> dict[int, float]:
    """Val accuracy per epoch rising towards ``final``; a larger lr gets there sooner.

    With ``rng``, each epoch's value carries its own noise (sd 0.004), as a real validation
    accuracy does; the last epoch is exactly ``final``.
    """
    tau = 1.6 * math.sqrt(4e-4 / lr)

    def rise(e: int) -> float:
        return 1.0 - 0.45 * math.exp(-(e - 1) / tau)

    curve = {e: final * rise(e) / rise(epochs) for e in range(1, epochs + 1)}
    if rng is not None:
        curve = {
            e: v + (float(rng.normal(0.0, 0.004)) if e < epochs else 0.0) for e, v in curve.items()
        }
    return curve


def synthetic_trials(
    n_trials: int,
    *,
    optimizers: Sequence[str] = ("adamw",),
    grid: tuple[Sequence[float], Sequence[float]] | None = None,
    epochs: int = 6,
    prune: bool = True,
    n_failed: int = 0,
    seed: int = 0,
) -> list[FrozenTrial]:
    """Trials of a sweep: random log-uniform, or every (lr, wd) of ``grid`` per optimizer.

    A median-like pruner stops roughly the worst 40% of trials early (at a random epoch);
    ``n_failed`` trials end as FAIL with a reason. Four workers run trials side by side.
    """
    rng = np.random.default_rng(seed)
    points: list[tuple[float, float, str]] = []
    if grid is not None:
        lrs, wds = grid
        points = [(float(a), float(b), o) for o in optimizers for b in wds for a in lrs]
        n_trials = len(points)
    else:
        for i in range(n_trials):
            lr = float(10 ** rng.uniform(*np.log10(LR_RANGE)))
            wd = float(10 ** rng.uniform(*np.log10(WD_RANGE)))
            points.append((lr, wd, optimizers[i % len(optimizers)]))
    finals = [final_accuracy(a, b, o) + rng.normal(0.0, 0.006) for a, b, o in points]
    cut = float(np.quantile(finals, 0.4)) if prune else -math.inf
    worker_free = {w: T0 for w in WORKERS}
    trials = []
    for number, ((lr, wd, opt), final) in enumerate(zip(points, finals, strict=True)):
        worker = min(worker_free, key=lambda w: worker_free[w])
        start = worker_free[worker] + dt.timedelta(seconds=float(rng.uniform(0.5, 3.0)))
        if number >= n_trials - n_failed:
            state, reached, reason = (
                TrialState.FAIL,
                int(rng.integers(0, 3)),
                "CUDA error: out of memory",
            )
        elif final < cut:
            state, reached, reason = TrialState.PRUNED, int(rng.integers(1, epochs)), None
        else:
            state, reached, reason = TrialState.COMPLETE, epochs, None
        curve = learning_curve(final, epochs, lr, rng)
        curve = {e: v for e, v in curve.items() if e <= reached}
        seconds = 20.0 * max(reached, 1) * float(rng.uniform(0.9, 1.1))
        trials.append(
            make_trial(
                number,
                lr=lr,
                wd=wd,
                optimizer=opt,
                optimizers=optimizers,
                state=state,
                curve=curve,
                worker=worker,
                start=start,
                seconds=seconds,
                fail_reason=reason,
            )
        )
        worker_free[worker] = start + dt.timedelta(seconds=seconds)
    return trials


def create_study(
    url: str, name: str, trials: Sequence[FrozenTrial], *, spec: dict[str, object] | None = None
) -> optuna.Study:
    """A maximize study named ``name`` in the PostgreSQL at ``url`` holding ``trials``."""
    study = optuna.create_study(
        storage=optuna.storages.RDBStorage(url), study_name=name, direction="maximize"
    )
    study.set_user_attr("metric", "val_accuracy")
    if spec is not None:
        study.set_user_attr("spec", spec)
    study.add_trials(trials)
    return study


# The studies most dashboard tests read (see conftest.py).
SWEEP = "cifar10-adamw"
GRID = "adam-vs-adamw"
STUDIES = Path(__file__).resolve().parents[2] / "studies"


def add_sweep(url: str, name: str = SWEEP, n_trials: int = 120) -> None:
    """A random-search study like a CIFAR-10 sweep: pruned trials and 3 failed ones."""
    create_study(url, name, synthetic_trials(n_trials, epochs=6, n_failed=3, seed=1))


def add_grid(url: str) -> None:
    """studies/adam_vs_adamw.toml's grid for both optimizers, with the spec stored as sweeper
    stores it (so sweeper.study.load_study rebuilds its grid sampler)."""
    spec = spec_to_dict(
        load_spec(Path(__file__).resolve().parents[2] / "studies" / "adam_vs_adamw.toml")
    )
    trials = synthetic_trials(
        0, grid=ADAM_VS_ADAMW_GRID, optimizers=("adamw", "adam"), epochs=5, prune=False
    )
    for t in trials:  # the spec's wd range reaches 1e-1
        t.distributions["weight_decay"] = FloatDistribution(1e-4, 1e-1, log=True)
    create_study(url, GRID, trials, spec=spec)
