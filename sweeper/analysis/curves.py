"""Learning-curve forecasts: where a partly trained run will end, and how sure that is.

The model. A run's curve ``y = (y_1, ..., y_T)`` (validation accuracy after each of its T
epochs) is one draw from a population of curves: multivariate normal with unknown mean
``mu`` and covariance ``Sigma`` (T x T: each epoch's level, and how the epochs move together,
so the shapes the population shows: runs that rise steeply early rise further, runs that
stall stay flat, runs that overfit turn down). The unknowns get a normal-inverse-Wishart
prior centred on the project's recorded corpus of real curves (``CurvePrior``, fitted by
``fit_prior`` from ``bench/record_curves.py``'s output; shipped as ``curve_prior.json``),
moved onto the study's T epochs by linear interpolation in e / T, and worth
``PRIOR_CURVES`` curves for the covariance and ``PRIOR_MEAN_CURVES`` for the mean (a study's
level depends on its data and budget; its shapes much less). The study's own finished
full-length curves update it (``population``).

The forecast. Given a run's first t epochs, each later epoch (the last one included) is
Student t: the population's posterior predictive (multivariate t) conditioned on what the
run has shown (``forecast``). Its centre is the population's regression of the later epochs
on the first t; its scale grows with the Mahalanobis distance of the run's curve from the
population, so a shape the population has not seen gets a wide forecast, not a confident
one. Before any epoch (t = 0) it is the population's marginal.

What it promises, and where that is measured: the forecast is as right as the population is
like the study's curves. ``bench/pruning_replay.py`` measures it on the recorded corpus
(forecasts on curves held out from the prior: how often the 95% interval holds the final
epoch, and how often a run the pruner stopped would have ended within noise of the best).

Pure numpy. A forecast costs one t x t solve (t <= T); ``population`` costs O(n T^2) for n
finished curves, and its result can be reused until another curve finishes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from functools import cache
from importlib import resources
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray

from sweeper.analysis.noise import f_sf, t_quantile

# The corpus' covariance counts as this many curves against the study's own (a study's
# first few finished curves move the shapes a little, thirty move them about half-way).
PRIOR_CURVES = 30
# The corpus' mean epoch by epoch counts as this many curves: a study on other data or
# another subset sits at another level, which its first finished curves should set.
PRIOR_MEAN_CURVES = 2
# Added to the covariance's diagonal (accuracy^2): (0.3 points)^2 of measurement jitter,
# so an interpolated or nearly flat population stays invertible.
JITTER = 0.003**2


class CurvePrior(NamedTuple):
    """Mean and covariance of a corpus of full-length curves, on the corpus' own epochs."""

    mean: NDArray[np.float64]  # (E,)
    cov: NDArray[np.float64]  # (E, E)
    n_curves: int
    source: str  # one line: which corpus (settings, device)

    @property
    def epochs(self) -> int:
        """The corpus' number of epochs E."""
        return len(self.mean)

    def to_json(self) -> dict[str, Any]:
        """The prior as JSON-ready numbers (``from_json`` reads it back exactly)."""
        return {
            "mean": self.mean.tolist(),
            "cov": self.cov.tolist(),
            "n_curves": self.n_curves,
            "source": self.source,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CurvePrior:
        """The prior ``to_json`` wrote."""
        return cls(
            np.asarray(data["mean"], dtype=float),
            np.asarray(data["cov"], dtype=float),
            int(data["n_curves"]),
            str(data["source"]),
        )


class Population(NamedTuple):
    """The posterior predictive of a new curve of T epochs: multivariate t."""

    mean: NDArray[np.float64]  # (T,)
    scale: NDArray[np.float64]  # (T, T) scale matrix
    df: float
    n_study: int  # the study's own curves behind it


class Forecast(NamedTuple):
    """A run's later epochs, each Student t given its first ``epoch`` epochs."""

    epoch: int  # epochs seen
    epochs: tuple[int, ...]  # the forecast epochs, epoch + 1 .. T
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    df: float

    @property
    def final_mean(self) -> float:
        """The forecast of the last epoch."""
        return self.mean[-1]

    def chance_above(self, value: float) -> float:
        """P(last epoch >= ``value``)."""
        z = (value - self.mean[-1]) / self.scale[-1]
        tail = 0.5 * f_sf(z * z, 1.0, self.df)  # P(T > |z|): t^2 is F(1, df)
        return tail if z >= 0 else 1.0 - tail

    def band(self, level: float = 0.95) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """The two-sided ``level`` interval of every forecast epoch: (lows, highs)."""
        q = t_quantile(level, self.df)
        lows = tuple(m - q * s for m, s in zip(self.mean, self.scale, strict=True))
        highs = tuple(m + q * s for m, s in zip(self.mean, self.scale, strict=True))
        return lows, highs


def fit_prior(curves: Sequence[Sequence[float]], source: str) -> CurvePrior:
    """The prior of equal-length ``curves`` (at least two): their mean and covariance."""
    y = np.asarray(curves, dtype=float)
    if y.ndim != 2 or len(y) < 2:
        raise ValueError("a prior needs two or more curves of equal length")
    return CurvePrior(y.mean(axis=0), np.cov(y, rowvar=False), len(y), source)


@cache
def shipped_prior() -> CurvePrior:
    """The prior fitted on the project's recorded corpus (``curve_prior.json``)."""
    text = resources.files("sweeper.analysis").joinpath("curve_prior.json").read_text()
    return CurvePrior.from_json(json.loads(text))


def _resampling(source: int, target: int) -> NDArray[np.float64]:
    """(target, source) weights: epoch j of ``target`` read off ``source`` epochs by linear
    interpolation in e / T (held at the ends)."""
    xs = np.arange(1, source + 1) / source
    weights = np.zeros((target, source))
    for j in range(target):
        x = min(max((j + 1) / target, xs[0]), xs[-1])
        k = min(int(np.searchsorted(xs, x)), source - 1)
        if xs[k] == x or k == 0:
            weights[j, k] = 1.0
        else:
            f = (x - xs[k - 1]) / (xs[k] - xs[k - 1])
            weights[j, k - 1], weights[j, k] = 1.0 - f, f
    return weights


def population(prior: CurvePrior, curves: Sequence[Sequence[float]], epochs: int) -> Population:
    """The population of ``epochs``-epoch curves: ``prior`` moved onto that many epochs and
    updated by the study's finished ``curves`` (each ``epochs`` long; others are ignored).

    Normal-inverse-Wishart: the prior's covariance is the expectation of ``Sigma`` with
    ``PRIOR_CURVES`` curves' weight, its mean ``PRIOR_MEAN_CURVES`` curves' weight.
    """
    w = _resampling(prior.epochs, epochs)
    mu0 = w @ prior.mean
    sigma0 = w @ prior.cov @ w.T + JITTER * np.eye(epochs)
    kappa0, nu0 = float(PRIOR_MEAN_CURVES), float(epochs + 1 + PRIOR_CURVES)
    psi = sigma0 * (nu0 - epochs - 1)
    ys = np.asarray([c for c in curves if len(c) == epochs], dtype=float).reshape(-1, epochs)
    n = len(ys)
    mu = mu0
    if n:
        ybar = ys.mean(axis=0)
        centred = ys - ybar
        gap = (ybar - mu0)[:, None]
        psi = psi + centred.T @ centred + (kappa0 * n / (kappa0 + n)) * (gap @ gap.T)
        mu = (kappa0 * mu0 + n * ybar) / (kappa0 + n)
    kappa, nu = kappa0 + n, nu0 + n
    df = nu - epochs + 1
    scale = psi * (kappa + 1) / (kappa * df)
    return Population(mu, scale, df, n)


def forecast(pop: Population, observed: Sequence[float]) -> Forecast:
    """The later epochs of a run that has shown ``observed`` (its first t < T epochs)."""
    total = len(pop.mean)
    t = len(observed)
    if t >= total:
        raise ValueError(f"a forecast needs fewer than {total} observed epochs, got {t}")
    later = np.arange(t, total)
    mean = pop.mean[later]
    cov = pop.scale[np.ix_(later, later)]
    df = pop.df
    if t:
        gap = np.asarray(observed, dtype=float) - pop.mean[:t]
        s11 = pop.scale[:t, :t]
        s21 = pop.scale[np.ix_(later, np.arange(t))]
        solved = np.linalg.solve(s11, np.column_stack([gap, s21.T]))
        mean = mean + s21 @ solved[:, 0]
        cov = cov - s21 @ solved[:, 1:]
        distance = float(gap @ solved[:, 0])
        cov = cov * (df + distance) / (df + t)
        df = df + t
    scale = np.sqrt(np.maximum(np.diag(cov), 0.0) + 1e-12)
    return Forecast(
        t,
        tuple(int(e) + 1 for e in later),
        tuple(float(m) for m in mean),
        tuple(float(s) for s in scale),
        float(df),
    )


def within_noise_margin(sd_run: float) -> float:
    """How far below the best a single run may end and still be within noise of it: the
    half-width of the 95% interval of two single runs' difference (normal)."""
    return 1.959964 * math.sqrt(2.0) * sd_run
