"""Studies whose truth is known, for the noise model, the best answer, importance and views.

Each builder returns ``(trials, spec)``: trials as sweeper's workers leave them
(``factory.make_trial``) and the spec dict sweeper stores in the study's user attributes, so
the same study can be handed to the pure functions (``data.from_trials`` + spec) or written
to PostgreSQL (``factory.create_study``). Noise is drawn with fixed seeds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from dashboard.factory import distributions, make_trial
from optuna.distributions import FloatDistribution
from optuna.trial import FrozenTrial

from sweeper.spec import StudySpec, spec_to_dict

LRS = (1e-4, 2.2e-4, 4.6e-4, 1e-3)
WDS_WIDE = (1e-4, 1e-3, 1e-2, 1e-1)


def spec(
    name: str,
    *,
    optimizers: Sequence[str] = ("adamw",),
    grid: tuple[Sequence[float], Sequence[float]] | None = None,
    sampler: str = "tpe",
    wd: tuple[float, float] = (1e-4, 1e-2),
    epochs: int = 4,
    train_size: int = 10_000,
    val_size: int = 10_000,
) -> dict[str, Any]:
    """A stored spec as ``spec_to_dict`` writes it."""
    from sweeper.spec import DataSpec, FloatRange, SamplerSpec, SpaceSpec, TrainingSpec

    params: dict[str, Any] = {}
    if grid is not None:
        sampler = "grid"
        params["points"] = {"lr": list(grid[0]), "weight_decay": list(grid[1])}
    s = StudySpec(
        name=name,
        space=SpaceSpec(FloatRange(1e-4, 1e-3), FloatRange(*wd), tuple(optimizers)),
        sampler=SamplerSpec(kind=sampler, seed=0, params=params),
        training=TrainingSpec(epochs=epochs),
        data=DataSpec(train_size=train_size, val_size=val_size),
    )
    return spec_to_dict(s)


def _trial(
    n: int,
    lr: float,
    wd: float,
    value: float,
    opt: str,
    opts: Sequence[str],
    wd_high: float = 1e-2,
    **kw: Any,
) -> FrozenTrial:
    t = make_trial(
        n, lr=lr, wd=wd, optimizer=opt, optimizers=opts, curve={1: value - 0.1, 2: value}
    )
    t.distributions = _dists(opts, wd_high)
    for key, v in kw.items():
        t.user_attrs[key] = v
    return t


def _dists(opts: Sequence[str], wd_high: float) -> dict[str, Any]:
    dists = distributions(opts)
    dists["weight_decay"] = FloatDistribution(1e-4, wd_high, log=True)
    return dists


def split_truth(lr: float, wd: float, optimizer: str) -> float:
    """AdamW: lr matters, wd does nothing. Adam (coupled L2): wd wrecks it as it grows."""
    u = math.log10(lr / 4.6e-4)
    if optimizer == "adamw":
        return 0.70 - 0.12 * u * u
    return 0.70 - 0.12 * u * u - 0.06 * (math.log10(wd) + 4.0) ** 2


def split_grid(noise_sd: float = 0.003) -> tuple[list[FrozenTrial], dict[str, Any]]:
    """4 lr x 4 wd (1e-4..1e-1) for AdamW and Adam; AdamW's wd is inert, Adam's is not."""
    rng = np.random.default_rng(11)
    opts = ("adamw", "adam")
    trials, n = [], 0
    for opt in opts:
        for wd in WDS_WIDE:
            for lr in LRS:
                v = split_truth(lr, wd, opt) + float(rng.normal(0, noise_sd))
                trials.append(_trial(n, lr, wd, v, opt, opts, wd_high=0.1))
                n += 1
    return trials, spec("split", optimizers=opts, grid=(LRS, WDS_WIDE), wd=(1e-4, 1e-1))


def flat_grid() -> tuple[list[FrozenTrial], dict[str, Any]]:
    """4 x 4 AdamW grid whose every cell is 0.60 plus seed noise (sd 0.4 point): no effect."""
    rng = np.random.default_rng(5)
    wds = (1e-4, 4.6e-4, 2.2e-3, 1e-2)
    trials = [
        _trial(i, lr, wd, 0.60 + float(rng.normal(0, 0.004)), "adamw", ("adamw",))
        for i, (wd, lr) in enumerate((w, a) for w in wds for a in LRS)
    ]
    return trials, spec("flat", grid=(LRS, wds))


def uniform(n: int = 12) -> tuple[list[FrozenTrial], dict[str, Any]]:
    """``n`` random trials that all scored exactly 0.5 (fANOVA's "zero total variance")."""
    rng = np.random.default_rng(2)
    trials = [
        _trial(
            i,
            float(10 ** rng.uniform(-4, -3)),
            float(10 ** rng.uniform(-4, -2)),
            0.5,
            "adamw",
            ("adamw",),
        )
        for i in range(n)
    ]
    return trials, spec("uniform", sampler="random")


def random_study(n: int = 10) -> tuple[list[FrozenTrial], dict[str, Any]]:
    """``n`` random-search trials where lr matters (peak 4.6e-4) and wd does not."""
    rng = np.random.default_rng(3)
    trials = []
    for i in range(n):
        lr, wd = float(10 ** rng.uniform(-4, -3)), float(10 ** rng.uniform(-4, -2))
        trials.append(
            _trial(
                i,
                lr,
                wd,
                split_truth(lr, wd, "adamw") + float(rng.normal(0, 0.003)),
                "adamw",
                ("adamw",),
            )
        )
    return trials, spec("random", sampler="random")


def grid_plus_probe() -> tuple[list[FrozenTrial], dict[str, Any]]:
    """The split grid's AdamW half plus one off-grid probe (lr 3e-4, wd 5e-3) that scores best."""
    trials, _ = split_grid()
    mine = [t for t in trials if t.user_attrs["optimizer"] == "adamw"]
    probe = _trial(len(trials), 3e-4, 5e-3, 0.74, "adamw", ("adamw",), wd_high=0.1)
    for t in mine:  # one optimizer: no optimizer param
        t.params.pop("optimizer", None)
        t.distributions = _dists(("adamw",), 0.1)
    return [*mine, probe], spec("probe", grid=(LRS, WDS_WIDE), wd=(1e-4, 1e-1))


# Replicated configurations: three seeds each, then three single runs.
REPLICATED = {
    (4.6e-4, 1e-3): (0.70, 0.72, 0.71),
    (2.2e-4, 1e-3): (0.65, 0.66, 0.64),
    (1e-4, 1e-3): (0.60, 0.60, 0.63),
}
SINGLES = {(1e-3, 1e-3): 0.705, (4.6e-4, 1e-2): 0.69, (1e-3, 1e-4): 0.55}


def replicated() -> tuple[list[FrozenTrial], dict[str, Any]]:
    """Configurations run with three seeds (replicates carry ``replicate_of``), and singles."""
    trials, n = [], 0
    for (lr, wd), values in REPLICATED.items():
        first = n
        for k, v in enumerate(values):
            extra = {"replicate_of": first} if k else {}
            trials.append(_trial(n, lr, wd, v, "adamw", ("adamw",), **extra))
            n += 1
    for (lr, wd), v in SINGLES.items():
        trials.append(_trial(n, lr, wd, v, "adamw", ("adamw",)))
        n += 1
    return trials, spec("replicated", val_size=5000)
