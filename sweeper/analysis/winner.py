"""The best configuration's value, corrected for having been chosen as the best.

The configuration with the highest mean was picked *because* its mean came out high: among
many noisy configurations the top one's mean sits above its truth (the winner's curse), so
``mean ± t se`` misses from above (measured: the plain interval held the best's true mean in
24 of 32 studies). This module gives the selection-aware answer.

Method: the hybrid confidence interval and median-unbiased estimator of Andrews, Kitagawa and
McCloskey, "Inference on Winners" (Quarterly Journal of Economics 139(1), 2024), for
independent normal estimates (configurations' means, each with its standard error):

- Conditional on the others' means, the winner's mean X is normal and truncated to
  X >= L, L = the runner-up's mean; inverting that truncated law gives intervals with exact
  95% coverage whatever the selection did, but they explode when X barely beats L.
- The hybrid also conditions on the true mean lying in a level 1 - beta *projection* interval
  (simultaneous over all K configurations: Sidak's max-|Z| quantile), inverts the doubly
  truncated law at level (alpha - beta) / (1 - beta) and intersects with the projection
  interval: coverage >= 1 - alpha, and never wider than the projection interval. beta =
  alpha / 10, as the authors recommend.
- The estimate is the hybrid median-unbiased one (the mu at which X is the conditional median).
- A close race (the winner less than ``CLOSE`` standard errors ahead, ties included) gets the
  simultaneous (Sidak projection) interval at level 1 - alpha around the plain mean instead:
  there the conditional law degenerates, and it is valid whichever configuration won.

Noise estimated with few degrees of freedom is allowed for by inflating each standard error by
t975(df) / z975 (the ratio of Student's to the normal quantile at the 95% level).
``bench/calibration.py`` measures the coverage this gives on studies of known truth.

Pure, deterministic, standard library only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

from sweeper.analysis.noise import Z975, normal_cdf, t975

ALPHA = 0.05
BETA = ALPHA / 10
# A winner less than this many standard errors ahead of the runner-up is a close race.
CLOSE = 0.1


class Winner(NamedTuple):
    """The selection-corrected value of the best of ``k`` configurations."""

    estimate: float  # median-unbiased given the selection
    low: float  # 95% interval of the best configuration's true mean
    high: float
    raw: float  # its plain mean (what selection inflated)
    k: int  # configurations it was chosen from
    runner_up: float | None  # the second best mean (the truncation point)
    basis: str = "every run"  # which runs the estimate rests on


def _z(p: float) -> float:
    """The standard normal quantile of ``p`` (bisection on ``normal_cdf``)."""
    lo, hi = -40.0, 40.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if normal_cdf(mid) < p:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def projection_quantile(k: int, beta: float = BETA) -> float:
    """c with P(max of k independent |Z| <= c) = 1 - beta (Sidak)."""
    return _z(1.0 - (1.0 - (1.0 - beta) ** (1.0 / k)) / 2.0)


def _hybrid_cdf(x: float, mu: float, s: float, lower: float, c: float) -> float:
    """P(X <= x | X >= lower, |X - mu| <= c s) for X ~ N(mu, s^2)."""
    a = max(lower, mu - c * s)
    b = mu + c * s
    if x <= a:
        return 0.0
    if x >= b:
        return 1.0
    fa, fb = normal_cdf((a - mu) / s), normal_cdf((b - mu) / s)
    if fb - fa <= 0.0:
        return 0.5
    return (normal_cdf((x - mu) / s) - fa) / (fb - fa)


def _solve(x: float, s: float, lower: float, c: float, target: float) -> float:
    """The mu in [x - c s, x + c s] at which the hybrid cdf of x equals ``target`` (it falls
    as mu grows); the interval's end when none does."""
    lo, hi = x - c * s, x + c * s
    if _hybrid_cdf(x, lo, s, lower, c) <= target:
        return lo
    if _hybrid_cdf(x, hi, s, lower, c) >= target:
        return hi
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        if _hybrid_cdf(x, mid, s, lower, c) > target:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def simultaneous(
    means: Sequence[float], ses: Sequence[float], index: int, *, df: float, basis: str
) -> Winner:
    """The 95% interval of ``means[index]`` that holds jointly for all ``means`` (Sidak's
    max-|Z| quantile): valid however ``index`` was chosen; its estimate is the plain mean."""
    inflate = (t975(df) if df >= 1 else math.inf) / Z975
    half = projection_quantile(len(means), ALPHA) * ses[index] * inflate
    x = means[index]
    return Winner(x, x - half, x + half, x, len(means), None, basis)


def winner(
    means: Sequence[float], ses: Sequence[float], best: int, *, df: float, maximize: bool = True
) -> Winner:
    """The selection-corrected estimate and 95% interval of ``means[best]``, the winner of all
    ``means`` (each with its standard error ``ses``); ``df`` is the noise estimate's degrees
    of freedom."""
    k = len(means)
    sign = 1.0 if maximize else -1.0
    x = sign * means[best]
    inflate = (t975(df) if df >= 1 else math.inf) / Z975
    s = ses[best] * inflate
    others = [sign * m for i, m in enumerate(means) if i != best]
    runner = max(others) if others else None
    if k == 1 or not math.isfinite(s) or s <= 0:
        half = Z975 * s if math.isfinite(s) else math.inf
        return Winner(means[best], means[best] - half, means[best] + half, means[best], k, None)
    lower = runner if runner is not None else -math.inf
    if x - lower < CLOSE * s:
        # A close race: the truncated law pins the interval to its lower end, and accuracies
        # measured on n_val images tie outright (steps of 1 / n_val). The simultaneous
        # interval holds whichever configuration won.
        basis = "every run; a close race: simultaneous over all configurations"
        return simultaneous(list(means), list(ses), best, df=df, basis=basis)
    c = projection_quantile(k)
    gamma = (ALPHA - BETA) / (1.0 - BETA)
    lo = _solve(x, s, lower, c, 1.0 - gamma / 2.0)
    hi = _solve(x, s, lower, c, gamma / 2.0)
    mid = _solve(x, s, lower, c, 0.5)
    if sign < 0:
        lo, hi, mid = -hi, -lo, -mid
    runner_up = sign * runner if runner is not None else None
    return Winner(mid, lo, hi, means[best], k, runner_up)
