"""A Gaussian-process surface over (log lr, log wd), with its uncertainty.

Promises:

- ``fit_surface(x, y)`` takes points in the unit square (log lr and log wd scaled by the
  search space's bounds) and their accuracies, and returns the posterior mean and standard
  deviation of a GP on a regular grid over the whole square. Far from the data the mean falls
  back to the average accuracy and the standard deviation rises to the prior's: the caller
  shows that, so a user sees where the data support the surface and where they do not.
- Deterministic: the same input gives the same output (subsampling uses a fixed seed).
- Pure numpy; no scipy (``scipy.linalg``'s import costs ~0.2 s of every report's start-up,
  for a Cholesky factor and two triangular solves numpy does as well at these sizes), no
  Plotly, no Optuna.

Why a GP and not Optuna's contour: the contour interpolates linearly between scattered
trials, so it draws confident colour across regions no trial visited. A GP with a fitted
noise term also smooths over seed-to-seed noise instead of passing through every point.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numpy.typing import NDArray
from threadpoolctl import threadpool_limits

# Candidate hyperparameters, chosen by maximum marginal likelihood. Length scales are in units
# of the (log) search range: 0.08 resolves an optimum a tenth of the range wide, 1.0 is nearly
# a plane. Noise is a fraction of the accuracies' variance: seed noise on CIFAR-10 is ~0.3-1
# point of accuracy, a few percent of a typical sweep's spread, but a sweep of near-equal
# trials is mostly noise.
LENGTH_SCALES = (0.08, 0.15, 0.25, 0.4, 0.7, 1.0)
NOISE_FRACTIONS = (0.005, 0.02, 0.08, 0.25, 0.6)
# Hyperparameters are selected on at most this many points (each candidate costs a Cholesky
# of that size); the final fit uses at most MAX_FIT points. 700 points pin down a smooth 2-D
# surface; past that the O(n^2) prediction costs time for no visible change.
MAX_SELECT = 300
MAX_FIT = 700
# The grid the surface is evaluated on, per axis: finer than a screen's contour needs.
GRID = 36
# Fewer points than this cannot fix a length scale: the "surface" would be the prior.
MIN_POINTS = 5


class SurfaceFit(NamedTuple):
    """A GP posterior on a ``GRID x GRID`` lattice of the unit square.

    ``mean[i, j]`` and ``std[i, j]`` are at ``(u[j], v[i])``: rows follow the second input
    coordinate (wd), columns the first (lr), the layout Plotly's heatmap and contour expect.
    ``std`` is the latent function's posterior standard deviation (noise excluded), in the
    units of ``y``; ``prior_std`` is its value far from every point.
    """

    u: NDArray[np.float64]
    v: NDArray[np.float64]
    mean: NDArray[np.float64]
    std: NDArray[np.float64]
    prior_std: float
    length_scale: float
    noise_std: float
    n_fit: int


def _kernel(a: NDArray[np.float64], b: NDArray[np.float64], length: float) -> NDArray[np.float64]:
    """Squared-exponential kernel with unit variance between the rows of ``a`` and ``b``."""
    sq = np.sum(a * a, axis=1)[:, None] + np.sum(b * b, axis=1)[None, :] - 2.0 * (a @ b.T)
    return np.exp(-0.5 * np.maximum(sq, 0.0) / (length * length))


def _cholesky(k: NDArray[np.float64]) -> NDArray[np.float64] | None:
    """The lower Cholesky factor of ``k``, or None when ``k`` is not positive definite."""
    try:
        return np.asarray(np.linalg.cholesky(k), dtype=np.float64)
    except np.linalg.LinAlgError:
        return None


def _log_marginal(
    x: NDArray[np.float64], y: NDArray[np.float64], length: float, noise: float
) -> float:
    """Log marginal likelihood of standardized ``y`` under a unit-variance GP plus noise."""
    chol = _cholesky(_kernel(x, x, length) + noise * np.eye(len(x)))
    if chol is None:
        return -np.inf
    z = np.linalg.solve(chol, y)  # y^T K^-1 y = |L^-1 y|^2
    return float(-0.5 * z @ z - np.sum(np.log(np.diag(chol))))


def _noise_fractions(min_ratio: float) -> tuple[float, ...]:
    """Candidate noise variances (fractions of var(y)) no smaller than ``min_ratio``**2."""
    floor = min_ratio * min_ratio
    kept = tuple(f for f in NOISE_FRACTIONS if f >= floor)
    return kept if floor == 0 else (floor, *kept)


def _subsample(n: int, k: int) -> NDArray[np.int64]:
    """``k`` of ``n`` indices, the same every call (a fixed seed, so reports are stable)."""
    if n <= k:
        return np.arange(n)
    return np.sort(np.random.default_rng(0).choice(n, size=k, replace=False))


def fit_surface(
    x: NDArray[np.float64],
    y: NDArray[np.float64],
    grid: int = GRID,
    min_noise_sd: float = 0.0,
) -> SurfaceFit:
    """Fit a GP to ``y`` at points ``x`` (shape (n, 2), in [0, 1]) and predict on a grid.

    Raises ``ValueError`` when fewer than ``MIN_POINTS`` finite points are given.
    ``min_noise_sd`` (the noise model's per-run sd) bounds the fitted noise from below: the
    surface may not pass through differences smaller than one run's noise.
    """
    # One BLAS thread: these matrices are small (<= 700 x 700), and on a busy 2-core machine
    # OpenBLAS's threads spin against each other. Measured on a 1,000-trial study with the
    # machine's load at ~8: 0.7-2.8 s with OpenBLAS's 2 threads, 0.15 s with one.
    with threadpool_limits(limits=1):
        return _fit_surface(x, y, grid, min_noise_sd)


def _fit_surface(
    x: NDArray[np.float64], y: NDArray[np.float64], grid: int, min_noise_sd: float
) -> SurfaceFit:
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    keep = np.isfinite(y) & np.all(np.isfinite(x), axis=1)
    x, y = x[keep], y[keep]
    if len(y) < MIN_POINTS:
        raise ValueError(f"a surface needs at least {MIN_POINTS} points, got {len(y)}")
    offset = float(np.mean(y))
    # A sweep where every trial scored the same has no spread to scale by; any positive scale
    # then gives a flat surface with the prior's uncertainty.
    scale = float(np.std(y)) or 1.0
    ys = (y - offset) / scale

    pick = _subsample(len(y), MAX_SELECT)
    scores = {
        (length, noise): _log_marginal(x[pick], ys[pick], length, noise)
        for length in LENGTH_SCALES
        for noise in _noise_fractions(min_noise_sd / scale)
    }
    length, noise = max(scores, key=lambda key: scores[key])

    fit = _subsample(len(y), MAX_FIT)
    xf, yf = x[fit], ys[fit]
    chol = np.linalg.cholesky(_kernel(xf, xf, length) + noise * np.eye(len(xf)))
    # L^-1 once (a triangular 700 x 700 at most): the mean needs K^-1 y = L^-T L^-1 y and the
    # variance L^-1 k*, so one inverse serves both.
    chol_inv = np.linalg.inv(chol)
    alpha = chol_inv.T @ (chol_inv @ yf)

    u = np.linspace(0.0, 1.0, grid)
    v = np.linspace(0.0, 1.0, grid)
    uu, vv = np.meshgrid(u, v)  # rows follow v, columns follow u
    xs = np.column_stack([uu.ravel(), vv.ravel()])
    k_star = _kernel(xs, xf, length)
    mean = k_star @ alpha
    w = chol_inv @ k_star.T
    var = np.maximum(1.0 - np.sum(w * w, axis=0), 0.0)
    return SurfaceFit(
        u=u,
        v=v,
        mean=(offset + scale * mean).reshape(grid, grid),
        std=(scale * np.sqrt(var)).reshape(grid, grid),
        prior_std=scale,
        length_scale=length,
        noise_std=scale * float(np.sqrt(noise)),
        n_fit=len(yf),
    )
