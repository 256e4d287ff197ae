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
   their exact distribution, not by refitting n simulated runs: see ``_fit``). The 2.5-97.5
   percentiles of each share are its 95% interval. A share's main effect counts as *shown*
   only when its variance exceeds the 95th percentile of what pure noise around a flat
   surface produces: a share of noise is not importance.
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
    shown: bool  # larger than noise alone produces (95th percentile of the null bootstrap)


class Decomposition(NamedTuple):
    """Shares of ``lr``, ``weight_decay`` and their interaction ``lr x weight_decay``, or
    with several optimizers also ``optimizer`` and ``optimizer x ...`` terms."""

    n: int
    shares: Mapping[str, Share] | None
    total_sd: float  # sd of the fitted surface over the box, value units
    noise_sd: float  # per-run noise the bootstrap used
    note: str


def _terms(du: int, dv: int) -> list[tuple[int, int]]:
    return [(i, j) for i in range(du + 1) for j in range(dv + 1) if i + j <= MAX_DEGREE]


def _design(
    u: NDArray[np.float64], v: NDArray[np.float64], terms: Sequence[tuple[int, int]]
) -> NDArray[np.float64]:
    # Centred coordinates keep the powers well conditioned.
    a, b = u - 0.5, v - 0.5
    return np.column_stack([a**i * b**j for i, j in terms])


def _lattice() -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    g = (np.arange(LATTICE) + 0.5) / LATTICE
    uu, vv = np.meshgrid(g, g)  # rows follow v, columns u
    return uu.ravel(), vv.ravel()


class _Fit(NamedTuple):
    surfaces: NDArray[np.float64]  # (1 + B + B, LATTICE, LATTICE): fit, bootstrap, null
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
    terms = _terms(du, dv)
    while len(terms) >= n and (du > 0 or dv > 0):  # keep at least one residual df
        du, dv = (du - 1, dv) if du >= dv else (du, dv - 1)
        terms = _terms(max(du, 0), max(dv, 0))
    x = _design(u, v, terms)
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
    lu, lv = _lattice()
    lat = _design(lu, lv, terms)
    flat = solve @ (left.T @ np.full(n, float(np.mean(y))))  # the fit of a flat surface
    star = beta[:, None] + solve @ rng.normal(0.0, sd, size=(len(sing), BOOTSTRAP))
    null = flat[:, None] + solve @ rng.normal(0.0, sd, size=(len(sing), BOOTSTRAP))
    coefs = np.column_stack([beta, star, null])  # (terms, 1 + 2B)
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
    """Shares with intervals; ``effects[k]`` stacks [fit, B bootstrap, B null] draws."""
    out = {}
    for name, e in effects.items():
        var = e.reshape(e.shape[0], -1).var(axis=1)
        share = np.divide(var, total, out=np.zeros_like(var), where=total > 0)
        boot = share[1 : 1 + b]
        null = var[1 + b :]
        flat = e[0].ravel()
        # Refits on noisier data spread variance over every term, so the bootstrap's
        # percentiles can miss the estimate itself: the interval is widened to contain it.
        out[name] = Share(
            share=float(share[0]),
            low=min(float(np.percentile(boot, 2.5)), float(share[0])),
            high=max(float(np.percentile(boot, 97.5)), float(share[0])),
            effect=float(flat.max() - flat.min()),
            shown=bool(var[0] > np.percentile(null, 95)),
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
    note = ""
    if not any(s.shown for s in shares.values()):
        note = (
            "the fitted surface varies no more than noise alone would: nothing is shown to matter"
        )
    return Decomposition(fit.n, shares, float(np.sqrt(total[0])), fit.noise_sd, note)


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
