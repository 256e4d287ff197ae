"""How often sweeper's claims are right, measured on studies whose truth is known exactly.

Run:  .venv/bin/python bench/calibration.py [--studies 200] [--seed 0] [--families a,b] [--json F]

Each family is a known accuracy surface f(optimizer, lr, wd), a sampler, a noise level, a
pruning rule and (or not) `[confirm]` replicates. A study is drawn as workers would leave it
(one noisy run per trial, seed noise N(0, sd); pruned trials left without a final value;
replicates of the top configurations with new seeds), then handed to the exact code behind
`sweeper best`, `sweeper importance` and the views: ``noise_model`` -> ``best_info`` (the
selection-corrected best, the claims, the verdict) and ``effects.decompose`` (importance
shares with intervals). The truth is then compared with what was said:

- coverage: the best configuration's 95% interval holds its true mean (goal >= 93%);
- false absence: a "does not matter" claim whose hyperparameter truly moves the value by more
  than the claim's margin anywhere in the box (goal <= 5% of studies);
- false presence: "matters" or a share marked shown where the truth is flat in that
  hyperparameter (goal <= 5% of studies);
- importance-share coverage: each share's 95% interval holds the true share (goal >= 90%);
- slope coverage: the decoupling slope's 95% interval holds the true ridge slope (goal >= 90%);
- power: how often a real 4-point effect is called "matters" in studies with replicates;
- absence said: how often an effect smaller than half the margin is called "does not matter"
  (a calibrated tool that never says it is useless: this shows where it can).

Everything is seeded: the same arguments print the same table. Prints the machine, versions,
the number of studies and the time taken; ``--json`` also writes the raw counts.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import FrozenTrial, TrialState

from sweeper.analysis import polyfit
from sweeper.analysis.claims import ABSENT, INTERACTION, LATTICE, MATTERS, effect_range
from sweeper.analysis.effects import true_shares
from sweeper.analysis.importance import importance_info
from sweeper.analysis.ridge import ridge_slope, slope_of
from sweeper.analysis.study_model import best_of, noise_of
from sweeper.snapshot import StudySnapshot

BOX = ((1e-4, 1e-3), (1e-4, 1e-2))  # the default search space (DESIGN.md)
T0 = dt.datetime(2026, 1, 1)
GOALS = {
    "coverage": 0.93,
    "false_absence": 0.05,
    "false_presence": 0.05,
    "share_coverage": 0.90,
    "slope_coverage": 0.90,
}
# A truth's effect smaller than this counts as no effect (false presence is judged against it).
FLAT = 1e-9

Truth = Callable[[str, np.ndarray, np.ndarray], np.ndarray]  # (optimizer, u, v) -> value


@dataclass(frozen=True)
class Family:
    """A kind of study of known truth."""

    name: str
    truth: Truth
    optimizers: tuple[str, ...] = ("adamw",)
    trials: int = 48  # search trials (split over the optimizers)
    noise: float = 0.01  # seed sd of one run
    sampler: str = "random"  # "random", "concentrated" or "grid"
    prune: bool = False  # a median rule after the first 8 trials drops the laggards
    confirm: int = 0  # top configurations replicated with 2 new seeds each
    seeds: int = 1  # runs of each search configuration (each a search trial)
    effect: float = 0.0  # the effect size the family was built with (power is read by it)


def peak(u: np.ndarray, at: float = 0.6) -> np.ndarray:
    """A quadratic peak at ``at`` whose drop over [0, 1] is exactly 1."""
    return -(((u - at) / max(at, 1 - at)) ** 2)


def cliff(u: np.ndarray) -> np.ndarray:
    """A steep logistic fall below u = 0.25, 1 at its deepest: not a quadratic."""
    s = 1 / (1 + np.exp(-(0.25 - u) / 0.06))
    lo, hi = 1 / (1 + math.exp(0.25 / 0.06)), 1 / (1 + math.exp(-0.25 / 0.06))
    return -(s - lo) / (hi - lo)


def _families() -> list[Family]:
    fams: list[Family] = []
    base = 0.62
    for noise in (0.005, 0.01, 0.02):
        fams.append(Family(f"flat sd{100 * noise:g}", lambda o, u, v: base + 0 * u, noise=noise))
    for e in (0.02, 0.04, 0.06, 0.08):
        fams.append(
            Family(
                f"lr-only {100 * e:g}pt", lambda o, u, v, e=e: base + e * peak(u) + 0 * v, effect=e
            )
        )
        fams.append(
            Family(f"wd-only {100 * e:g}pt", lambda o, u, v, e=e: base - e * v**2 + 0 * u, effect=e)
        )
    fams.append(
        Family(
            "both 5+3pt +tilt",
            lambda o, u, v: base + 0.05 * peak(u) - 0.03 * v + 0.02 * (u - 0.5) * (v - 0.5),
            effect=0.05,
        )
    )
    fams.append(Family("lr cliff 6pt", lambda o, u, v: base + 0.06 * cliff(u) + 0 * v, effect=0.06))

    def adam(o: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        if o == "adamw":
            return base + 0.05 * peak(u) + 0 * v
        # Coupled L2: the best lr falls as wd grows, and wd costs more overall.
        return base - 0.04 + 0.05 * peak(u + 0.4 * (v - 0.5)) - 0.03 * v**2

    fams.append(Family("adam+adamw", adam, optimizers=("adamw", "adam"), trials=64, effect=0.05))
    fams.append(
        Family(
            "adam=adamw-10pt",
            lambda o, u, v: base - (0.10 if o == "adam" else 0.0) + 0.04 * peak(u) + 0 * v,
            optimizers=("adamw", "adam"),
            trials=64,
            effect=0.04,
        )
    )
    fams.append(
        Family(
            "concentrated lr 6pt",
            lambda o, u, v: base + 0.06 * peak(u) + 0 * v,
            sampler="concentrated",
            trials=40,
            effect=0.06,
        )
    )
    fams.append(
        Family(
            "pruned lr 6pt",
            lambda o, u, v: base + 0.06 * peak(u) - 0.02 * v,
            prune=True,
            trials=64,
            effect=0.06,
        )
    )
    fams.append(
        Family(
            "confirm lr 4pt", lambda o, u, v: base + 0.04 * peak(u) + 0 * v, confirm=4, effect=0.04
        )
    )
    fams.append(Family("confirm flat sd2", lambda o, u, v: base + 0 * u, noise=0.02, confirm=4))
    fams.append(
        Family(
            "grid lr 4pt",
            lambda o, u, v: base + 0.04 * peak(u) + 0 * v,
            sampler="grid",
            effect=0.04,
        )
    )
    fams.append(
        Family(
            "many trials wd 2pt sd0.5",
            lambda o, u, v: base - 0.02 * v + 0 * u,
            trials=160,
            noise=0.005,
            effect=0.02,
        )
    )
    fams.append(
        Family("many trials flat sd0.5", lambda o, u, v: base + 0 * u, trials=160, noise=0.005)
    )
    # Small studies whose runs are noisier than the prior says.
    for n in (7, 9):
        fams.append(
            Family(
                f"small flat sd2 ({n} trials)", lambda o, u, v: base + 0 * u, trials=n, noise=0.02
            )
        )
    fams.append(
        Family(
            "small lr 6pt sd2 (16 trials)",
            lambda o, u, v: base + 0.06 * peak(u) + 0 * v,
            trials=16,
            noise=0.02,
            effect=0.06,
        )
    )
    # Studies large enough to bound an effect inside the 1-point margin: 120 configurations x
    # 4 seeds at 0.3 points of noise. Absence is right for wd of 0 and 0.6 points, false for
    # 1.5 points (linear, or a cliff a quadratic fits badly).
    big = {"trials": 120, "seeds": 4, "noise": 0.003}
    for label, wd_effect in (
        ("wd 0pt", lambda v: 0 * v),
        ("wd 0.6pt", lambda v: -0.006 * v),
        ("wd 1.5pt", lambda v: -0.015 * v),
        ("wd cliff 1.5pt", lambda v: 0.015 * cliff(1 - v)),
    ):
        fams.append(
            Family(
                f"big {label} (120x4 seeds)",
                lambda o, u, v, w=wd_effect: base + 0.04 * peak(u) + w(v),
                effect=0.04,
                **big,  # type: ignore[arg-type]
            )
        )
    return fams


def _to_box(u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    (l0, l1), (w0, w1) = BOX
    lr = 10 ** (math.log10(l0) + u * (math.log10(l1) - math.log10(l0)))
    wd = 10 ** (math.log10(w0) + v * (math.log10(w1) - math.log10(w0)))
    return lr, wd


def _sample(fam: Family, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    if fam.sampler == "grid":
        side = max(2, round(math.sqrt(n)))
        g = np.linspace(0, 1, side)
        uu, vv = np.meshgrid(g, g)
        return uu.ravel(), vv.ravel()
    u, v = rng.uniform(0, 1, n), rng.uniform(0, 1, n)
    if fam.sampler == "concentrated":  # most trials near the good lrs, as TPE homes in
        near = rng.uniform(0, 1, n) < 0.8
        u[near] = np.clip(rng.normal(0.6, 0.12, near.sum()), 0, 1)
    return u, v


@dataclass
class Study:
    snap: StudySnapshot  # as sweeper's storage would hand it to `best`, the views, the notebook
    truth: dict[tuple[str, float, float], float]  # configuration -> true mean


def _spec(fam: Family) -> dict[str, Any]:
    """The spec a worker would have stored: the default space, the optimizers, 2 epochs."""
    from sweeper.spec import (
        DataSpec,
        FloatRange,
        SamplerSpec,
        SpaceSpec,
        StudySpec,
        TrainingSpec,
        spec_to_dict,
    )

    return spec_to_dict(
        StudySpec(
            name="calibration",
            space=SpaceSpec(FloatRange(*BOX[0]), FloatRange(*BOX[1]), fam.optimizers),
            sampler=SamplerSpec(kind="random", seed=0, params={}),
            training=TrainingSpec(epochs=2),
            data=DataSpec(train_size=10_000, val_size=10_000),
        )
    )


def _trial(
    number: int,
    opt: str,
    fam: Family,
    lr: float,
    wd: float,
    curve: dict[int, float],
    state: TrialState,
    replicate_of: int | None = None,
) -> FrozenTrial:
    params: dict[str, Any] = {"lr": lr, "weight_decay": wd}
    dists: dict[str, Any] = {
        "lr": FloatDistribution(*BOX[0], log=True),
        "weight_decay": FloatDistribution(*BOX[1], log=True),
    }
    if len(fam.optimizers) > 1:
        params["optimizer"] = opt
        dists["optimizer"] = CategoricalDistribution(fam.optimizers)
    attrs: dict[str, Any] = {"optimizer": opt, "seed": number}
    if replicate_of is not None:
        attrs["replicate_of"] = replicate_of
    start = T0 + dt.timedelta(minutes=number)
    return FrozenTrial(
        number=number,
        state=state,
        value=curve[max(curve)],
        values=None,
        datetime_start=start,
        datetime_complete=start + dt.timedelta(minutes=1),
        params=params,
        distributions=dists,
        user_attrs=attrs,
        system_attrs={},
        intermediate_values=curve,
        trial_id=number,
    )


def draw(fam: Family, rng: np.random.Generator) -> Study:
    """One study of ``fam`` as workers would leave it: a search (``seeds`` runs of each
    configuration), pruned trials stopped after epoch 1 by a median rule, then the top
    configurations' seed replicates."""
    trials: list[FrozenTrial] = []
    truth: dict[tuple[str, float, float], float] = {}
    per = fam.trials // len(fam.optimizers)
    seen: list[float] = []  # epoch-1 values so far, for the median rule

    def run(opt: str, lr: float, wd: float, mu: float, replicate_of: int | None = None) -> None:
        final = mu + fam.noise * rng.standard_normal()
        # Epoch 1: the final value minus a climb, plus its own noise.
        early = final - 0.05 + fam.noise * rng.standard_normal()
        state = TrialState.COMPLETE
        if fam.prune and replicate_of is None and len(seen) >= 8 and early < np.median(seen):
            state = TrialState.PRUNED
        seen.append(early)
        curve = {1: early} if state == TrialState.PRUNED else {1: early, 2: final}
        trials.append(_trial(len(trials), opt, fam, lr, wd, curve, state, replicate_of))

    for opt in fam.optimizers:
        u, v = _sample(fam, per, rng)
        lr, wd = _to_box(u, v)
        mu = fam.truth(opt, u, v)
        for i in range(len(u)):
            truth[(opt, float(lr[i]), float(wd[i]))] = float(mu[i])
            for _ in range(fam.seeds):
                run(opt, float(lr[i]), float(wd[i]), float(mu[i]))
    if fam.confirm:
        done = [t for t in trials if t.state == TrialState.COMPLETE]
        for t in sorted(done, key=lambda t: -float(t.value))[: fam.confirm]:  # type: ignore[arg-type]
            opt, lr, wd = t.user_attrs["optimizer"], t.params["lr"], t.params["weight_decay"]
            for _ in range(2):
                run(opt, lr, wd, truth[(opt, lr, wd)], replicate_of=t.number)
    snap = StudySnapshot("calibration", True, {"spec": _spec(fam)}, tuple(trials), T0)
    return Study(snap, truth)


def _lattice_truth(fam: Family, opt: str, size: int, centres: bool) -> np.ndarray:
    g = (np.arange(size) + 0.5) / size if centres else np.linspace(0, 1, size)
    uu, vv = np.meshgrid(g, g)  # rows follow v
    return fam.truth(opt, uu, vv)


def _true_slope(fam: Family, opt: str) -> float | None:
    """The ridge slope of the truth's least-squares quadratic over the box (what
    ``ridge.ridge_slope`` estimates), or None when that quadratic has no peak along lr."""
    g = np.linspace(0, 1, 41)
    uu, vv = np.meshgrid(g, g)
    y = fam.truth(opt, uu, vv).ravel()
    terms = polyfit.terms(2, 2, 2)
    x = polyfit.design(uu.ravel(), vv.ravel(), terms)
    beta = np.linalg.lstsq(x, y, rcond=None)[0]
    b_uu, b_uv = beta[terms.index((2, 0))], beta[terms.index((1, 1))]
    if b_uu > -1e-9:
        return None
    return slope_of(float(b_uv), float(b_uu), BOX)


@dataclass
class Tally:
    studies: int = 0
    covered: int = 0
    coverage_n: int = 0
    false_absent_studies: int = 0
    absent_claims: int = 0
    false_absent_claims: int = 0
    false_present_studies: int = 0
    flat_studies: int = 0
    present_claims_on_flat: int = 0
    flat_subjects: int = 0
    share_in: int = 0
    share_n: int = 0
    slope_in: int = 0  # decoupling slope intervals holding the true ridge slope
    slope_n: int = 0
    slope_unidentified: int = 0  # the truth has a ridge, the study could not pin it
    powered: int = 0  # "matters" on a subject whose true effect is >= 4 points
    power_n: int = 0
    absent_right: int = 0  # "does not matter" on a subject whose true effect is < margin / 2
    absent_n: int = 0
    kinds: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def judge(fam: Family, study: Study, tally: Tally) -> None:
    """Run the code behind `best`, `importance` and the decoupling view on ``study`` (the
    snapshot path every surface shares) and score what it said against the truth."""
    snap = study.snap
    info = best_of(snap)
    tally.studies += 1
    best, est = info.best, info.estimate
    if best is not None and est is not None:
        mu = study.truth[(best.optimizer, best.lr, best.weight_decay)]  # type: ignore[index]
        tally.coverage_n += 1
        tally.covered += est.low <= mu <= est.high
    false_absent = false_present = False
    flat_here = False
    for c in info.claims.claims:
        tally.kinds[c.kind] = tally.kinds.get(c.kind, 0) + 1
        if c.subject.startswith("optimizer x "):
            a, b = c.optimizer.split(" vs ")
            diff = _lattice_truth(fam, a, LATTICE, False) - _lattice_truth(fam, b, LATTICE, False)
            size = float(effect_range(diff.ravel()[None, :], c.subject.split(" x ")[1])[0])
        elif c.subject == "optimizer":
            a, b = c.optimizer.split(" vs ")
            true = float(
                _lattice_truth(fam, a, LATTICE, False).mean()
                - _lattice_truth(fam, b, LATTICE, False).mean()
            )
            size = abs(true)
        elif c.subject == INTERACTION:
            shares = true_shares(_lattice_truth(fam, c.optimizer, 24, True))
            size = shares[INTERACTION] if shares else 0.0
        else:
            surface = _lattice_truth(fam, c.optimizer, LATTICE, False)
            size = float(effect_range(surface.ravel()[None, :], c.subject)[0])
        if c.kind == ABSENT:
            tally.absent_claims += 1
            if size > c.margin:
                tally.false_absent_claims += 1
                false_absent = True
        if size < c.margin / 2 and c.subject in ("lr", "weight_decay"):
            tally.absent_n += 1
            tally.absent_right += c.kind == ABSENT
        if size < FLAT:
            flat_here = True
            tally.flat_subjects += 1
            if c.kind == MATTERS:
                tally.present_claims_on_flat += 1
                false_present = True
        elif size >= 0.035 and c.subject != "optimizer" and fam.confirm:
            tally.power_n += 1
            tally.powered += c.kind == MATTERS
    # The decoupling slope, per optimizer, against the same functional of the truth.
    for opt in fam.optimizers:
        truth_slope = _true_slope(fam, opt)
        if truth_slope is None:
            continue
        got = ridge_slope(noise_of(snap), info.claims.box or BOX, opt)
        if got.low is None or got.high is None:
            tally.slope_unidentified += 1
            continue
        tally.slope_n += 1
        tally.slope_in += got.low <= truth_slope <= got.high
    # Importance shares, per optimizer, as the importance view computes and marks them.
    for opt, d in importance_info(snap).by_optimizer:
        truth = true_shares(_lattice_truth(fam, opt, 24, True))
        if d.shares is None or truth is None:
            continue
        for name, share in d.shares.items():
            tally.share_n += 1
            tally.share_in += share.low - 1e-9 <= truth[name] <= share.high + 1e-9
            if truth[name] < FLAT and share.shown:
                false_present = True
    if flat_here:
        tally.flat_studies += 1
    tally.false_absent_studies += false_absent
    tally.false_present_studies += false_present


def run(families: Sequence[Family], studies: int, seed: int) -> dict[str, Tally]:
    out: dict[str, Tally] = {}
    for k, fam in enumerate(families):
        rng = np.random.default_rng([seed, k])
        tally = Tally()
        start = time.perf_counter()
        for _ in range(studies):
            judge(fam, draw(fam, rng), tally)
        tally.seconds = time.perf_counter() - start
        out[fam.name] = tally
    return out


def _rate(a: int, n: int) -> str:
    return f"{a / n:6.1%} ({a}/{n})" if n else "     -"


def table(results: dict[str, Tally]) -> str:
    head = (
        f"{'family':34s} {'best CI coverage':>18s} {'false absence':>16s} "
        f"{'false presence':>16s} {'share coverage':>19s} {'slope coverage':>17s} "
        f"{'power (>=4pt)':>16s} {'absence said':>15s}  kinds"
    )
    lines = [head]
    total = Tally()
    for name, t in results.items():
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(t.kinds.items()))
        lines.append(
            f"{name:34s} {_rate(t.covered, t.coverage_n):>18s} "
            f"{_rate(t.false_absent_studies, t.studies):>16s} "
            f"{_rate(t.false_present_studies, t.studies):>16s} "
            f"{_rate(t.share_in, t.share_n):>19s} {_rate(t.slope_in, t.slope_n):>17s} "
            f"{_rate(t.powered, t.power_n):>16s} {_rate(t.absent_right, t.absent_n):>15s}  {kinds}"
        )
        for field_name, value in vars(t).items():
            if isinstance(value, int):
                setattr(total, field_name, getattr(total, field_name) + value)
    lines.append(
        f"{'ALL':34s} {_rate(total.covered, total.coverage_n):>18s} "
        f"{_rate(total.false_absent_studies, total.studies):>16s} "
        f"{_rate(total.false_present_studies, total.studies):>16s} "
        f"{_rate(total.share_in, total.share_n):>19s} {_rate(total.slope_in, total.slope_n):>17s} "
        f"{_rate(total.powered, total.power_n):>16s} "
        f"{_rate(total.absent_right, total.absent_n):>15s}"
    )
    met = goals(total)
    lines.append(
        "goals: " + "; ".join(f"{k} {'met' if ok else 'NOT met'}" for k, ok in met.items())
    )
    return "\n".join(lines)


def goals(t: Tally) -> dict[str, bool]:
    """Which of ``GOALS`` the pooled tally meets."""
    return {
        "coverage >= 93%": t.coverage_n > 0 and t.covered / t.coverage_n >= GOALS["coverage"],
        "false absence <= 5%": t.false_absent_studies <= GOALS["false_absence"] * t.studies,
        "false presence <= 5%": t.false_present_studies <= GOALS["false_presence"] * t.studies,
        "share coverage >= 90%": t.share_n > 0
        and t.share_in / t.share_n >= GOALS["share_coverage"],
        "slope coverage >= 90%": t.slope_n > 0
        and t.slope_in / t.slope_n >= GOALS["slope_coverage"],
    }


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--studies", type=int, default=200, help="studies per family")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--families", help="comma-separated name prefixes (default: all)")
    ap.add_argument("--json", help="also write the raw counts to this file")
    args = ap.parse_args(argv)
    fams = _families()
    if args.families:
        keep = tuple(args.families.split(","))
        fams = [f for f in fams if f.name.startswith(keep)]
    start = time.perf_counter()
    results = run(fams, args.studies, args.seed)
    print(
        f"calibration: {args.studies} studies per family, {len(fams)} families, seed "
        f"{args.seed}; Python {platform.python_version()}, numpy {np.__version__}, "
        f"{platform.machine()}; {time.perf_counter() - start:.0f} s"
    )
    print(table(results))
    if args.json:
        Path(args.json).write_text(json.dumps({k: vars(v) for k, v in results.items()}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
