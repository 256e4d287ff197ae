"""Does the best lr move with weight decay? The slope of the fitted surface's ridge.

AdamW's claim (Loshchilov & Hutter) is that with decoupled decay the best learning rate no
longer depends on the weight decay; with Adam's coupled L2 the two trade off along lr x wd.

Method: one optimizer's configuration means are fitted with the claims' weighted quadratic
in u = log lr and v = log wd, both scaled to [0, 1] over the box (``claims.surface_fit``).
Along lr the quadratic peaks where d/du = 0: u*(v) = -(b_u + b_uv (v - 1/2)) / (2 b_uu) in
centred coordinates, a straight line in (log wd, log lr) whose slope is

    s = -(decades of lr / decades of wd) * b_uv / (2 b_uu)

0: decoupled; -1: only the product lr x wd matters. Its 95% interval is the 2.5-97.5
percentiles of s over the claims' coefficient draws (the noise sd drawn with them), so the
runs are resampled as the noise model says they vary, wherever they lie (not band by band:
a band flat within noise fixes its "best lr" from noise alone). The slope is *not
identifiable* when the surface is not shown to peak along lr: b_uu < 0 in fewer than 97.5% of
the draws (a flat or one-sided lr effect has no best lr to follow).

``bench/calibration.py`` measures the interval's coverage of the same functional of the true
surface (its least-squares quadratic over the box). Pure numpy, deterministic.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from sweeper.analysis.claims import SEED, coefficient_draws, run_sd, surface_fit
from sweeper.analysis.noise import NoiseModel

Box = tuple[tuple[float, float], tuple[float, float]]


class Slope(NamedTuple):
    """The slope of log best-lr against log wd, or why there is none."""

    optimizer: str
    slope: float | None
    low: float | None  # 95% interval
    high: float | None
    note: str  # "" when identified; else "not identifiable: ..." or why it was not fitted


def slope_of(b_u_v: float, b_u_u: float, box: Box) -> float:
    """The ridge slope in log-log units from the quadratic's uv and uu coefficients."""
    decades = math.log10(box[0][1] / box[0][0]) / math.log10(box[1][1] / box[1][0])
    return -decades * b_u_v / (2.0 * b_u_u)


def ridge_slope(model: NoiseModel, box: Box, optimizer: str, maximize: bool = True) -> Slope:
    """The ridge slope of ``optimizer``'s configurations over ``box`` (see the module)."""
    if model.sd_run is None:
        return Slope(optimizer, None, None, None, "noise unknown")
    mine = [c for c in model.configs if c.optimizer == optimizer]
    fit, why = surface_fit(mine, box)
    if fit is None:
        return Slope(optimizer, None, None, None, why)
    terms = fit.fit.terms
    if (2, 0) not in terms or (1, 1) not in terms:
        return Slope(optimizer, None, None, None, "too few distinct lr and wd values for a ridge")
    iu, iuv = terms.index((2, 0)), terms.index((1, 1))
    rng = np.random.default_rng(SEED)
    draws = coefficient_draws(fit.fit, run_sd(model), model.df, rng)
    sign = 1.0 if maximize else -1.0
    curv = sign * draws[iu]
    if np.mean(curv < 0) < 0.975:
        return Slope(
            optimizer,
            None,
            None,
            None,
            "not identifiable: the surface is not shown to peak along lr (no best lr to follow)",
        )
    b = fit.fit.beta
    point = slope_of(float(b[iuv]), float(b[iu]), box) if sign * b[iu] < 0 else None
    s = slope_of(1.0, 1.0, box) * draws[iuv] / draws[iu]  # the same formula, per draw
    low, high = (float(x) for x in np.percentile(s, [2.5, 97.5]))
    if point is None:
        point = float(np.median(s))
    return Slope(optimizer, point, min(low, point), max(high, point), "")
