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
- power: how often a real effect is called "matters".

Everything is seeded: the same arguments print the same table. Prints the machine, versions,
the number of studies and the time taken; ``--json`` also writes the raw counts.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sweeper.analysis import noise as nm
from sweeper.analysis import polyfit
from sweeper.analysis.best import best_info
from sweeper.analysis.claims import ABSENT, INTERACTION, LATTICE, MATTERS, effect_range, mark_shares
from sweeper.analysis.effects import decompose, true_shares
from sweeper.analysis.ridge import ridge_slope, slope_of

BOX = ((1e-4, 1e-3), (1e-4, 1e-2))  # the default search space (DESIGN.md)
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
    observations: list[nm.Observation]
    n_pruned: int
    truth: dict[tuple[str, float, float], float]  # configuration -> true mean


def draw(fam: Family, rng: np.random.Generator) -> Study:
    """One study of ``fam`` as workers would leave it."""
    obs: list[nm.Observation] = []
    truth: dict[tuple[str, float, float], float] = {}
    n_pruned, number = 0, 0
    per = fam.trials // len(fam.optimizers)
    seen: list[float] = []  # epoch-1 values so far, for the median rule
    for opt in fam.optimizers:
        u, v = _sample(fam, per, rng)
        lr, wd = _to_box(u, v)
        mu = fam.truth(opt, u, v)
        for i in range(len(u)):
            value = float(mu[i] + fam.noise * rng.standard_normal())
            truth[(opt, float(lr[i]), float(wd[i]))] = float(mu[i])
            if fam.prune:
                # Epoch 1: the final value minus a climb, plus its own noise.
                early = value - 0.05 + fam.noise * rng.standard_normal()
                if len(seen) >= 8 and early < float(np.median(seen)):
                    seen.append(early)
                    n_pruned += 1
                    number += 1
                    continue
                seen.append(early)
            obs.append(nm.Observation(number, opt, float(lr[i]), float(wd[i]), value, number))
            number += 1
    if fam.confirm:
        top = sorted(obs, key=lambda o: -o.value)[: fam.confirm]
        for o in top:
            for _ in range(2):
                value = truth[(o.optimizer, o.lr, o.weight_decay)]  # type: ignore[index]
                obs.append(
                    nm.Observation(
                        number,
                        o.optimizer,
                        o.lr,
                        o.weight_decay,
                        value + fam.noise * rng.standard_normal(),
                        number,
                        o.number,
                    )
                )
                number += 1
    return Study(obs, n_pruned, truth)


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
    kinds: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def judge(fam: Family, study: Study, tally: Tally) -> None:
    """Run the code behind `best` and `importance` on ``study`` and score what it said."""
    model = nm.noise_model(study.observations)
    info = best_info(model, box=BOX, n_pruned=study.n_pruned)
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
        got = ridge_slope(model, BOX, opt)
        if got.low is None or got.high is None:
            tally.slope_unidentified += 1
            continue
        tally.slope_n += 1
        tally.slope_in += got.low <= truth_slope <= got.high
    # Importance shares, per optimizer, on the same runs the importance view uses.
    for opt in fam.optimizers:
        runs = [o for o in study.observations if o.optimizer == opt]
        if not runs:
            continue
        (l0, l1), (w0, w1) = BOX
        u = [(math.log10(o.lr) - math.log10(l0)) / (math.log10(l1) - math.log10(l0)) for o in runs]  # type: ignore[arg-type]
        v = [
            (math.log10(o.weight_decay) - math.log10(w0)) / (math.log10(w1) - math.log10(w0))
            for o in runs
        ]  # type: ignore[arg-type]
        d = mark_shares(decompose(u, v, [o.value for o in runs], model.sd_run), info.claims, opt)
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
        f"{'family':26s} {'best CI coverage':>18s} {'false absence':>16s} "
        f"{'false presence':>16s} {'share coverage':>19s} {'slope coverage':>17s} "
        f"{'power (>=4pt)':>16s}  kinds"
    )
    lines = [head]
    total = Tally()
    for name, t in results.items():
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(t.kinds.items()))
        lines.append(
            f"{name:26s} {_rate(t.covered, t.coverage_n):>18s} "
            f"{_rate(t.false_absent_studies, t.studies):>16s} "
            f"{_rate(t.false_present_studies, t.studies):>16s} "
            f"{_rate(t.share_in, t.share_n):>19s} {_rate(t.slope_in, t.slope_n):>17s} "
            f"{_rate(t.powered, t.power_n):>16s}  {kinds}"
        )
        for field_name, value in vars(t).items():
            if isinstance(value, int):
                setattr(total, field_name, getattr(total, field_name) + value)
    lines.append(
        f"{'ALL':26s} {_rate(total.covered, total.coverage_n):>18s} "
        f"{_rate(total.false_absent_studies, total.studies):>16s} "
        f"{_rate(total.false_present_studies, total.studies):>16s} "
        f"{_rate(total.share_in, total.share_n):>19s} {_rate(total.slope_in, total.slope_n):>17s} "
        f"{_rate(total.powered, total.power_n):>16s}"
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
