"""Weighted least-squares polynomials in (log lr, log wd): the smooth surface claims rest on.

Promises:

- Coordinates are ``u`` = log lr and ``v`` = log wd scaled to [0, 1] over a box (``unit``);
  a polynomial of total degree <= ``degree`` (fewer powers along an axis with fewer distinct
  values: a 2-value axis gets a line) is fitted to configuration means, each weighted by its
  number of runs (a mean of n runs has variance sd^2 / n).
- ``fit`` returns the coefficients, their unscaled covariance (multiply by the per-run
  variance) and the weighted residual sum of squares with its degrees of freedom, which the
  noise model pools as evidence of run-to-run noise (lack of fit only ever inflates it).
- Pure numpy, deterministic; never raises on degenerate input (``None`` instead).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from numpy.typing import NDArray

Terms = tuple[tuple[int, int], ...]


def terms(du: int, dv: int, degree: int) -> Terms:
    """Monomials u^i v^j with i <= du, j <= dv and i + j <= degree."""
    return tuple((i, j) for i in range(du + 1) for j in range(dv + 1) if i + j <= degree)


def design(
    u: NDArray[np.float64], v: NDArray[np.float64], ts: Sequence[tuple[int, int]]
) -> NDArray[np.float64]:
    """The design matrix of ``ts`` at (u, v); centred coordinates keep powers well conditioned."""
    a, b = u - 0.5, v - 0.5
    return np.column_stack([a**i * b**j for i, j in ts])


def unit(values: Sequence[float], box: tuple[float, float]) -> NDArray[np.float64]:
    """log10 ``values`` scaled to [0, 1] over ``box`` (a one-value box maps to 0.5)."""
    lo, hi = math.log10(box[0]), math.log10(box[1])
    logs = np.log10(np.asarray(values, dtype=float))
    return (logs - lo) / (hi - lo) if hi > lo else np.full(len(logs), 0.5)


class Fit(NamedTuple):
    """A weighted polynomial fit of configuration means."""

    terms: Terms
    beta: NDArray[np.float64]
    cov: NDArray[np.float64]  # (X' W X)^-1: the coefficients' covariance per unit run variance
    rss: float  # sum of n_j (mean_j - fitted_j)^2
    df: int  # configurations - terms
    n_configs: int


def fit(
    u: NDArray[np.float64],
    v: NDArray[np.float64],
    y: NDArray[np.float64],
    weights: NDArray[np.float64],
    degree: int = 2,
) -> Fit | None:
    """The weighted fit of ``y`` on (u, v), or None with no residual degree of freedom left.

    The degree drops along an axis with few distinct values, then overall, until at least
    one residual degree of freedom remains.
    """
    n = len(y)
    du = min(degree, len(np.unique(u)) - 1)
    dv = min(degree, len(np.unique(v)) - 1)
    ts = terms(du, dv, degree)
    while len(ts) >= n and (du > 0 or dv > 0):
        du, dv = (du - 1, dv) if du >= dv else (du, dv - 1)
        ts = terms(max(du, 0), max(dv, 0), degree)
    if len(ts) >= n:
        return None
    x = design(u, v, ts)
    sw = np.sqrt(weights)
    xw, yw = x * sw[:, None], y * sw
    gram = xw.T @ xw
    try:
        cov = np.asarray(np.linalg.inv(gram), dtype=np.float64)
    except np.linalg.LinAlgError:
        return None
    if not np.all(np.isfinite(cov)) or np.linalg.cond(gram) > 1e12:
        return None
    beta = cov @ (xw.T @ yw)
    resid = yw - xw @ beta
    return Fit(ts, np.asarray(beta, dtype=np.float64), cov, float(resid @ resid), n - len(ts), n)


def lattice(size: int) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """A size x size lattice of cell centres on [0, 1]^2, raveled (rows follow v, columns u)."""
    g = (np.arange(size) + 0.5) / size
    uu, vv = np.meshgrid(g, g)
    return uu.ravel(), vv.ravel()
