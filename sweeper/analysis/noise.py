"""The noise model: how far one run, and the mean of a configuration's runs, is from the truth.

Every "best", "matters" and "within noise" sweeper prints or draws takes its noise from here.

Promises:

- ``noise_model(observations, ...)`` groups completed runs into configurations (identical
  optimizer, lr and weight decay; a run carrying ``replicate_of`` joins the configuration of
  the trial it replicates) and returns each configuration's mean, standard error and 95%
  interval, plus the per-run standard deviation they rest on.
- The per-run sd is, in order of evidence:
  1. the pooled within-configuration sd of every replicated configuration (seed replicates),
     combined with the prior below as if the prior were ``PRIOR_DF`` more degrees of freedom
     (a scaled-inverse-chi-square update: two replicate pairs do not overrule a measured
     prior, twenty do);
  2. with no replicates, the prior ``PRIOR_SD`` alone;
  3. never less than the binomial test-set floor sqrt(p (1 - p) / n_val) at the
     configuration's own accuracy p: a test set of n_val images cannot measure finer;
  4. never less than what the runs themselves show: the scatter of single runs around a
     smooth quadratic surface in (log lr, log wd), per optimizer (``polyfit``), pooled with
     the replicates' scatter. Where runs are noisier than the prior says (a noisier task, a
     smaller data set) the intervals widen with them; lack of fit can only widen them, never
     narrow them. ``fit_df`` says how many degrees of freedom the runs had to check the prior.
  The floor and the prior apply when values are accuracies in [0, 1]; for other metrics the
  pooled replicate sd is used and, with no replicates, the spread of the values cannot be
  told from noise, so the sd is reported as unknown (None) and every interval is None.
- Intervals use Student's t with the model's degrees of freedom; two configurations differ
  "significantly" when the 95% interval of their difference excludes zero.
- Pure: plain numbers in, NamedTuples out; deterministic.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple

import numpy as np

from sweeper.analysis import polyfit

# One run of the tutorial CNN (10k training images, 4 epochs, 10k test images) differs from
# another seed's by about 1.4 points (sd), so one run carries about 1 point of noise
# (DESIGN.md, "Honesty"). In accuracy units.
PRIOR_SD = 0.01
# How much the prior weighs against measured replicates, in degrees of freedom: the prior is
# a measurement on this CNN, worth about ten seed pairs.
PRIOR_DF = 10
# Residual degrees of freedom a smooth fit needs before its scatter counts as evidence of noise.
# One is enough: the scatter only ever raises the sd (with its own few df, so wide t
# quantiles); waiting for 5 left 9-run studies at 2 points of noise on the 1-point prior, and
# their best's interval held its truth in 73% of them (bench/calibration.py).
MIN_FIT_DF = 1
# Test-set size assumed when the study does not record one: CIFAR-10's official test split.
DEFAULT_N_VAL = 10_000
# Two-sided 95% quantiles of Student's t (df 1-30, then 40, 60, 120): scipy.stats costs a
# second of import time in every CLI command, for a table of 33 numbers.
_T975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip
_T975_TAIL = ((40, 2.021), (60, 2.000), (120, 1.980))
Z975 = 1.959964


def t975(df: float) -> float:
    """The two-sided 95% quantile of Student's t with ``df`` degrees of freedom (>= 1)."""
    if df < 1:
        raise ValueError(f"t quantile needs df >= 1, got {df}")
    if df <= 30:
        lo = int(df)
        frac = df - lo
        hi_value = _T975[lo] if lo < 30 else _T975_TAIL[0][1]
        return _T975[lo - 1] + frac * (hi_value - _T975[lo - 1]) if frac else _T975[lo - 1]
    # Between table rows, t's quantile is close to linear in 1/df.
    points = [(30, _T975[29]), *_T975_TAIL, (math.inf, Z975)]
    for (d0, t0), (d1, t1) in itertools.pairwise(points):
        if df <= d1:
            w = (1 / d0 - 1 / df) / (1 / d0 - (0 if math.isinf(d1) else 1 / d1))
            return t0 + w * (t1 - t0)
    return Z975


def _betacf(a: float, b: float, x: float) -> float:
    """The continued fraction of the regularized incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 400):
        m2 = 2 * m
        for aa in (
            m * (b - m) * x / ((qam + m2) * (a + m2)),
            -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2)),
        ):
            d = 1.0 + aa * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + aa / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-14:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b) (a, b > 0, 0 <= x <= 1)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    lead = math.exp(
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    if x < (a + 1.0) / (a + b + 2.0):
        return lead * _betacf(a, b, x) / a
    return 1.0 - lead * _betacf(b, a, 1.0 - x) / b


def f_sf(x: float, d1: float, d2: float) -> float:
    """P(F > x) for Snedecor's F with (d1, d2) degrees of freedom (d2 = inf: chi-square / d1)."""
    if x <= 0:
        return 1.0
    if math.isinf(d2):  # chi-square with d1 df, through the F limit's beta form at large d2
        d2 = 1e9
    return betainc(d2 / 2.0, d1 / 2.0, d2 / (d2 + d1 * x))


@functools.lru_cache(maxsize=1024)
def t_quantile(level: float, df: float) -> float:
    """The two-sided ``level`` quantile of Student's t with ``df`` degrees of freedom
    (``t_quantile(0.95, df) == t975(df)`` to 1e-3), by bisection on ``f_sf`` (t^2 = F(1, df))."""
    lo, hi = 0.0, 1.0
    while f_sf(hi * hi, 1.0, df) > 1.0 - level:
        hi *= 2.0
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        if f_sf(mid * mid, 1.0, df) > 1.0 - level:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def normal_cdf(z: float) -> float:
    """Phi(z), accurate in both tails (erfc)."""
    return 0.5 * math.erfc(-z / math.sqrt(2.0))


class Observation(NamedTuple):
    """One completed run: what the noise model needs to know about a trial."""

    number: int
    optimizer: str
    lr: float | None
    weight_decay: float | None
    value: float
    seed: int | None = None
    replicate_of: int | None = None  # the trial number this run replicates, if any


class Config(NamedTuple):
    """One configuration and the runs behind it."""

    optimizer: str
    lr: float | None
    weight_decay: float | None
    n: int  # runs (seeds)
    mean: float
    sd_run: float | None  # per-run sd used for this configuration (floor applied)
    se: float | None  # sd_run / sqrt(n)
    low: float | None  # 95% interval of the mean
    high: float | None
    numbers: tuple[int, ...]  # trial numbers, lowest first
    seeds: tuple[int, ...]
    values: tuple[float, ...]
    # Of ``values``, how many (the last ones) are replicates queued after the search chose
    # this configuration: runs whose value played no part in choosing it.
    n_replicates: int = 0


class NoiseModel(NamedTuple):
    """Configurations (best first in the study's direction) and the noise they carry."""

    configs: tuple[Config, ...]
    maximize: bool
    sd_run: float | None  # per-run sd before the floor; None when unknown
    df: float  # degrees of freedom behind sd_run (PRIOR_DF with the prior alone)
    t: float  # the 95% quantile intervals use
    source: str  # one line: where sd_run comes from
    n_replicated: int  # configurations with two or more runs
    pooled_sd: float | None  # the replicates' own pooled sd, before the prior
    pooled_df: int
    n_val: int | None  # test-set size behind the floor (None: not an accuracy)
    n_val_assumed: bool  # n_val was not recorded: DEFAULT_N_VAL
    # Residual degrees of freedom of the per-optimizer smooth fits: with pooled_df, how much
    # the runs themselves can check the prior.
    fit_df: int = 0


def _key(o: Observation) -> tuple[str, str, str]:
    # Ten significant digits: the same float written back from JSON or the database is one
    # configuration; values that differ in the 11th digit are not sampled distinctly anyway.
    def r(x: float | None) -> str:
        return "-" if x is None else f"{x:.10g}"

    return (o.optimizer, r(o.lr), r(o.weight_decay))


def floor_sd(p: float, n_val: int) -> float:
    """The binomial test-set floor: sd of an accuracy ``p`` measured on ``n_val`` images."""
    p = min(max(p, 0.0), 1.0)
    return math.sqrt(p * (1.0 - p) / n_val)


def _fit_scatter(groups: Mapping[tuple[str, str, str], Sequence[Observation]]) -> tuple[float, int]:
    """The weighted residual sum of squares of configuration means around one quadratic
    surface per optimizer (``polyfit.fit``), and its degrees of freedom, summed over optimizers."""
    by_opt: dict[str, list[Sequence[Observation]]] = {}
    for runs in groups.values():
        head = runs[0]
        if head.lr and head.weight_decay and head.lr > 0 and head.weight_decay > 0:
            by_opt.setdefault(head.optimizer, []).append(runs)
    ss, df = 0.0, 0
    for configs in by_opt.values():
        lr = [c[0].lr for c in configs]
        wd = [c[0].weight_decay for c in configs]
        u = polyfit.unit(lr, (min(lr), max(lr)))  # type: ignore[type-var, arg-type]
        v = polyfit.unit(wd, (min(wd), max(wd)))  # type: ignore[type-var, arg-type]
        y = np.array([sum(r.value for r in c) / len(c) for c in configs])
        w = np.array([float(len(c)) for c in configs])
        f = polyfit.fit(u, v, y, w)
        if f is not None:
            ss += f.rss
            df += f.df
    return ss, df


def noise_model(
    observations: Iterable[Observation], *, maximize: bool = True, n_val: int | None = None
) -> NoiseModel:
    """Group ``observations`` into configurations and attach the noise each carries.

    ``n_val`` is the validation (test) set size the values were measured on; None means not
    recorded (``DEFAULT_N_VAL`` is assumed for accuracies).
    """
    obs = [o for o in observations if math.isfinite(o.value)]
    by_number = {o.number: o for o in obs}
    groups: dict[tuple[str, str, str], list[Observation]] = {}
    for o in sorted(obs, key=lambda o: o.number):
        origin = by_number.get(o.replicate_of) if o.replicate_of is not None else None
        groups.setdefault(_key(origin or o), []).append(o)
    accuracy = bool(obs) and all(0.0 <= o.value <= 1.0 for o in obs)

    ss, pooled_df, n_rep = 0.0, 0, 0
    for runs in groups.values():
        if len(runs) >= 2:
            m = sum(r.value for r in runs) / len(runs)
            ss += sum((r.value - m) ** 2 for r in runs)
            pooled_df += len(runs) - 1
            n_rep += 1
    pooled = math.sqrt(ss / pooled_df) if pooled_df else None
    fit_ss, fit_df = _fit_scatter(groups)
    shown_df = pooled_df + fit_df
    shown_sd = math.sqrt((ss + fit_ss) / shown_df) if fit_df and shown_df >= MIN_FIT_DF else None
    if accuracy:
        df: float = PRIOR_DF + pooled_df
        sd: float | None = math.sqrt((PRIOR_DF * PRIOR_SD**2 + ss) / df)
        if shown_sd is not None and sd is not None and shown_sd > sd:
            sd, df = shown_sd, float(shown_df)
            source = (
                f"the runs' scatter: {100 * shown_sd:.2f} points per run around a smooth "
                f"surface ({fit_df} df)"
                + (f" and across seed replicates ({pooled_df} df)" if pooled_df else "")
                + f", more than the prior {100 * PRIOR_SD:g} point"
            )
        elif pooled is not None:
            source = (
                f"seed replicates: pooled sd {100 * pooled:.2f} points over {n_rep} replicated "
                f"configurations ({pooled_df} df), combined with the prior "
                f"{100 * PRIOR_SD:g} point ({PRIOR_DF} df)"
            )
        else:
            source = (
                f"no seed replicates: prior sd {100 * PRIOR_SD:g} point per run "
                "(seed-to-seed noise measured on this CNN); run replicates to measure it"
            )
        assumed = n_val is None
        n_val = n_val or DEFAULT_N_VAL
    else:
        df = float(pooled_df)
        sd = pooled
        source = (
            f"seed replicates: pooled sd {pooled:.4g} ({pooled_df} df)"
            if pooled is not None
            else "no seed replicates and not an accuracy: noise unknown"
        )
        if shown_sd is not None and pooled is not None and shown_sd > pooled:
            sd, df = shown_sd, float(shown_df)
            source = (
                "the runs' scatter around a smooth surface and across seeds: "
                f"sd {shown_sd:.4g} ({shown_df} df)"
            )
        assumed, n_val = False, None
    t = t975(df) if df >= 1 else math.inf

    configs = []
    for runs in groups.values():
        values = tuple(r.value for r in runs)
        mean = sum(values) / len(values)
        sd_c = sd
        if sd_c is not None and n_val is not None:
            sd_c = max(sd_c, floor_sd(mean, n_val))
        se = sd_c / math.sqrt(len(values)) if sd_c is not None else None
        first = runs[0]
        origin = by_number.get(first.replicate_of) if first.replicate_of is not None else None
        head = origin or first
        configs.append(
            Config(
                optimizer=head.optimizer,
                lr=head.lr,
                weight_decay=head.weight_decay,
                n=len(values),
                mean=mean,
                sd_run=sd_c,
                se=se,
                low=mean - t * se if se is not None else None,
                high=mean + t * se if se is not None else None,
                numbers=tuple(r.number for r in runs),
                seeds=tuple(r.seed for r in runs if r.seed is not None),
                values=values,
                n_replicates=sum(1 for r in runs if r.replicate_of is not None),
            )
        )
    sign = -1.0 if maximize else 1.0
    # Best first; ties: more runs first (the better-measured one), then the earliest trial.
    configs.sort(key=lambda c: (sign * c.mean, -c.n, c.numbers[0]))
    return NoiseModel(
        configs=tuple(configs),
        maximize=maximize,
        sd_run=sd,
        df=df,
        t=t,
        source=source,
        n_replicated=n_rep,
        pooled_sd=pooled,
        pooled_df=pooled_df,
        n_val=n_val,
        n_val_assumed=assumed,
        fit_df=fit_df,
    )


def sd_at(model: NoiseModel, mean: float | None) -> float | None:
    """The per-run sd of a run scoring about ``mean``: the model's, never below the test-set
    floor there (no floor when ``mean`` is None or the values are not accuracies); None when
    the noise is unknown."""
    if model.sd_run is None:
        return None
    if model.n_val is None or mean is None:
        return model.sd_run
    return max(model.sd_run, floor_sd(mean, model.n_val))


def difference_halfwidth(model: NoiseModel, a: Config, b: Config) -> float | None:
    """Half-width of the 95% interval of ``a.mean - b.mean`` (None when noise is unknown)."""
    if a.se is None or b.se is None:
        return None
    return model.t * math.sqrt(a.se**2 + b.se**2)


def within_noise(model: NoiseModel, best: Config, other: Config) -> bool:
    """True when ``other`` is not significantly worse than ``best``.

    With unknown noise nothing can be told apart, so every configuration is within noise.
    """
    half = difference_halfwidth(model, best, other)
    if half is None:
        return True
    gap = (best.mean - other.mean) if model.maximize else (other.mean - best.mean)
    return gap <= half


def indistinguishable(
    model: NoiseModel, configs: Sequence[Config] | None = None
) -> tuple[Config, ...]:
    """The configurations (of ``configs``, default all) not significantly worse than their best."""
    pool = list(model.configs if configs is None else configs)
    if not pool:
        return ()
    sign = -1.0 if model.maximize else 1.0
    best = min(pool, key=lambda c: (sign * c.mean, -c.n, c.numbers[0]))
    return tuple(c for c in pool if c is best or within_noise(model, best, c))
