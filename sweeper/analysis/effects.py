"""Importance with its uncertainty: a functional ANOVA of a smooth fit, bootstrapped.

What it computes, for one optimizer's runs (u = log lr, v = log wd, both scaled to [0, 1]
over the search box, and a value y per run):

1. A least-squares polynomial of total degree <= 3 in (u, v) (fewer terms along an axis with
   fewer distinct values: a 4-value grid axis gets at most a cubic, a 2-value one a line).
   Accuracy over one or two decades of lr and wd is smooth; a cubic follows a peak, a ridge and
   a one-sided drop. The fit's lack of fit is not hidden: its residual sd feeds the noise below.
2. Its functional ANOVA on a 24 x 24 lattice of the box (uniform in log units, the space as
   searched): the variance of the u main effect, of the v main effect, and of the rest (the
   lr x wd interaction), each as a share of the total. This is fANOVA's decomposition,
   computed exactly on a smooth surface instead of on a random forest.
3. A parametric bootstrap: ``B`` refits of y* = fit + noise, the noise per run the larger of
   the noise model's sd and the fit's residual sd (each refit's coefficients are drawn from
   their exact distribution, not by refitting n simulated runs: see ``_fit``). A share's 95%
   interval is the *basic* bootstrap one, [2 s - q97.5, 2 s - q2.5] clipped to [0, 1]: noise
   spreads variance over every term, so refits sit further from the truth than the estimate
   does, in the same direction; reflecting the percentiles removes that bias (the percentile
   interval held a true share of 0 or 1 in 0% of the calibration studies).
   Whether a term is *shown* is not decided here: ``claims.mark_shares`` sets it from the one
   presence test behind every "matters" (and a share not shown reaches down to 0).
4. With several optimizers, the same on the stacked surfaces F[optimizer, v, u] with the
   optimizer as a uniform categorical factor: how much the optimizer x wd interaction
   explains, with its interval.

Pure numpy, deterministic (a fixed bootstrap seed). Zero variance, too few runs and ties give
a note, never an exception.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np
from numpy.typing import NDArray

from sweeper.analysis import polyfit

# Runs' coordinates or values: plain sequences or float arrays.
Values = Sequence[float] | NDArray[np.float64]

# Lattice points per axis on which the fitted surface is decomposed: the cubic's structure is
# resolved by far fewer; 24 keeps the bootstrap's (576 x terms) products small.
LATTICE = 24
# Bootstrap refits: the 2.5/97.5 percentiles of 200 draws move by ~0.01 between seeds.
BOOTSTRAP = 200
SEED = 0
MAX_DEGREE = 3
# Fewer runs than this and no importance is computed (a cubic in two variables has 10 terms).
MIN_RUNS = 8


class Share(NamedTuple):
    """One term's share of the fitted surface's variance, with its 95% bootstrap interval."""

    share: float
    low: float
    high: float
    effect: float  # range (max - min) of the term's effect over the box, in value units
    shown: bool  # the presence test behind "matters" rejects (set by ``claims.mark_shares``)


class Decomposition(NamedTuple):
    """Shares of ``lr``, ``weight_decay`` and their interaction ``lr x weight_decay``, or
    with several optimizers also ``optimizer`` and ``optimizer x ...`` terms."""

    n: int
    shares: Mapping[str, Share] | None
    total_sd: float  # sd of the fitted surface over the box, value units
    noise_sd: float  # per-run noise the bootstrap used
    note: str


class _Fit(NamedTuple):
    surfaces: NDArray[np.float64]  # (1 + B, LATTICE, LATTICE): fit, bootstrap
    n: int
    noise_sd: float


def _fit(
    u: NDArray[np.float64],
    v: NDArray[np.float64],
    y: NDArray[np.float64],
    noise_sd: float | None,
    rng: np.random.Generator,
) -> _Fit | str:
    n = len(y)
    if n < MIN_RUNS:
        return f"{n} run{'s' if n != 1 else ''}: importance needs at least {MIN_RUNS}"
    if float(np.ptp(y)) == 0.0:
        return f"all {n} runs scored the same ({y[0]:.4g}): nothing to attribute"
    du = min(MAX_DEGREE, len(np.unique(u)) - 1)
    dv = min(MAX_DEGREE, len(np.unique(v)) - 1)
    terms = polyfit.terms(du, dv, MAX_DEGREE)
    while len(terms) >= n and (du > 0 or dv > 0):  # keep at least one residual df
        du, dv = (du - 1, dv) if du >= dv else (du, dv - 1)
        terms = polyfit.terms(max(du, 0), max(dv, 0), MAX_DEGREE)
    x = polyfit.design(u, v, terms)
    # x = U S V^T. The least-squares fit of any y is V S^-1 U^T y; for a refit of
    # y* = fitted + e with e ~ N(0, sd^2 I_n), U^T e ~ N(0, sd^2 I_r) exactly (U's columns are
    # orthonormal). So each bootstrap refit's coefficients are drawn in r (<= 10) dimensions
    # instead of refitting n simulated runs: the same distribution, and the cost no longer
    # grows with n x B (at 10,000 runs, 2.9 s of 9 decompositions became a few ms).
    left, sing, vt = np.linalg.svd(x, full_matrices=False)
    keep = sing > sing[0] * max(x.shape) * np.finfo(np.float64).eps  # numpy pinv's cut-off
    left, sing, vt = left[:, keep], sing[keep], vt[keep]
    solve = vt.T / sing  # coefficients from U^T y
    beta = solve @ (left.T @ y)
    fitted = x @ beta
    resid = y - fitted
    resid_sd = float(np.sqrt(resid @ resid / max(n - len(terms), 1)))
    sd = max(noise_sd or 0.0, resid_sd)
    lu, lv = polyfit.lattice(LATTICE)
    lat = polyfit.design(lu, lv, terms)
    star = beta[:, None] + solve @ rng.normal(0.0, sd, size=(len(sing), BOOTSTRAP))
    coefs = np.column_stack([beta, star])  # (terms, 1 + B)
    surfaces = (lat @ coefs).T.reshape(-1, LATTICE, LATTICE)
    return _Fit(surfaces, n, sd)


def _main_effects(f: NDArray[np.float64]) -> dict[str, NDArray[np.float64]]:
    """Effects of a stack of surfaces f[k, v, u] (each row of the stack decomposed alone)."""
    m = f.mean(axis=(1, 2), keepdims=True)
    fu = f.mean(axis=1, keepdims=True) - m
    fv = f.mean(axis=2, keepdims=True) - m
    return {"lr": fu, "weight_decay": fv, "lr x weight_decay": f - m - fu - fv}


def _shares(
    effects: Mapping[str, NDArray[np.float64]], total: NDArray[np.float64], b: int
) -> dict[str, Share]:
    """Shares with basic-bootstrap intervals; ``effects[k]`` stacks [fit, B bootstrap] draws."""
    out = {}
    for name, e in effects.items():
        var = e.reshape(e.shape[0], -1).var(axis=1)
        share = np.divide(var, total, out=np.zeros_like(var), where=total > 0)
        s = float(share[0])
        q_lo, q_hi = (float(x) for x in np.percentile(share[1 : 1 + b], [2.5, 97.5]))
        flat = e[0].ravel()
        out[name] = Share(
            share=s,
            low=min(max(2 * s - q_hi, 0.0), s),
            high=max(min(2 * s - q_lo, 1.0), s),
            effect=float(flat.max() - flat.min()),
            shown=False,
        )
    return out


def decompose(u: Values, v: Values, y: Values, noise_sd: float | None) -> Decomposition:
    """The lr / wd / interaction shares of one optimizer's runs (see the module docstring).

    ``u`` and ``v`` are log lr and log wd scaled to [0, 1] over the search box.
    """
    rng = np.random.default_rng(SEED)
    fit = _fit(np.asarray(u, float), np.asarray(v, float), np.asarray(y, float), noise_sd, rng)
    if isinstance(fit, str):
        return Decomposition(len(y), None, 0.0, noise_sd or 0.0, fit)
    f = fit.surfaces
    total = f.reshape(f.shape[0], -1).var(axis=1)
    shares = _shares(_main_effects(f), total, BOOTSTRAP)
    return Decomposition(fit.n, shares, float(np.sqrt(total[0])), fit.noise_sd, "")


def decompose_optimizers(
    runs: Mapping[str, tuple[Values, Values, Values]],
    noise_sd: float | None,
) -> Decomposition:
    """The three-factor decomposition over several optimizers' surfaces (equal weights).

    Terms: ``optimizer``, ``lr``, ``weight_decay``, ``optimizer x lr``,
    ``optimizer x weight_decay`` and the rest (``lr x weight_decay`` and the three-way term).
    """
    rng = np.random.default_rng(SEED)
    fits = []
    for name, (u, v, y) in runs.items():
        fit = _fit(np.asarray(u, float), np.asarray(v, float), np.asarray(y, float), noise_sd, rng)
        if isinstance(fit, str):
            return Decomposition(0, None, 0.0, noise_sd or 0.0, f"{name}: {fit}")
        fits.append(fit)
    a = np.stack([fit.surfaces for fit in fits], axis=1)  # (draws, optimizer, v, u)
    m = a.mean(axis=(1, 2, 3), keepdims=True)
    o = a.mean(axis=(2, 3), keepdims=True) - m
    vv = a.mean(axis=(1, 3), keepdims=True) - m
    uu = a.mean(axis=(1, 2), keepdims=True) - m
    ov = a.mean(axis=3, keepdims=True) - m - o - vv
    ou = a.mean(axis=2, keepdims=True) - m - o - uu
    rest = a - m - o - vv - uu - ov - ou
    effects = {
        "optimizer": np.broadcast_to(o, a.shape),
        "lr": np.broadcast_to(uu, a.shape),
        "weight_decay": np.broadcast_to(vv, a.shape),
        "optimizer x lr": np.broadcast_to(ou, a.shape),
        "optimizer x weight_decay": np.broadcast_to(ov, a.shape),
        "lr x weight_decay and higher": rest,
    }
    total = a.reshape(a.shape[0], -1).var(axis=1)
    shares = _shares(effects, total, BOOTSTRAP)
    n = sum(fit.n for fit in fits)
    return Decomposition(n, shares, float(np.sqrt(total[0])), max(f.noise_sd for f in fits), "")


def true_shares(surface: NDArray[np.float64]) -> dict[str, float] | None:
    """The shares ``decompose`` estimates, of a known surface f[v, u] on the LATTICE x LATTICE
    cell centres (the calibration harness's truth); None for a flat surface."""
    f = np.asarray(surface, dtype=float)[None, :, :]
    total = float(f.var())
    if total <= 0:
        return None
    return {name: float(e.var()) / total for name, e in _main_effects(f).items()}
