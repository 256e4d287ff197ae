"""What the runs say about each hyperparameter: it matters, it does not, or they cannot tell.

Three kinds of statement, each with its own test, and nothing in between:

- **matters**: the hyperparameter's effect is shown. Per optimizer, configuration means are
  fitted with a weighted quadratic surface in (log lr, log wd) (``polyfit``); the Wald F-test
  that every term involving the hyperparameter is zero rejects at level ``ALPHA / m``
  (Bonferroni over the study's ``m`` presence tests, so a study says "matters" of a flat truth
  in at most 5% of studies, not 5% per claim).
- **does not matter**: an equivalence test. The hyperparameter's *whole effect over the range
  tried* is the largest change in the value it makes anywhere in the box (over the other
  hyperparameter: max - min along this one); "does not matter" only when its upper
  ``1 - ALPHA / m`` bound lies inside the margin (default 1 point, ``MARGIN``). The bound comes
  from coefficient draws of the fit (normal, with the per-run sd drawn from its scaled
  inverse chi-square: the noise estimate's own uncertainty counts). Unexplored corners of the
  box are extrapolations with wide draws, so a study that never looked there cannot claim
  the effect is small there. The sentence states the margin and the range.
- **inconclusive**: neither, with what would settle it (about how many runs, where).
- **untestable**: the runs cannot support any claim (one value tried, too few configurations
  to fit, unknown noise, or fewer than ``MIN_CHECK_DF`` degrees of freedom to check the noise
  the tests rest on), with why.

The lr x wd interaction gets a presence test of its own (the u·v term). With several
optimizers, the optimizer's main effect (the difference of their surfaces averaged over the
box) is tested the same way, a t interval at level ``1 - ALPHA / m``: shown when it excludes
zero, absent when it lies inside the margin; and optimizer x lr / wd ask whether the
hyperparameter acts differently under each optimizer (the Wald test that their coefficients
are equal).

The per-run noise is the noise model's (replicates, the prior, the test-set floor, and the
runs' own scatter around a smooth surface). Pruned trials never finished, so their final
value is unknown: they are left out of every claim, and ``Claims.note`` says how many.

``bench/calibration.py`` measures how often each kind of claim is right on studies of known
truth. Pure numpy, deterministic (fixed seed).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from numpy.typing import NDArray

from sweeper.analysis import polyfit
from sweeper.analysis.effects import Decomposition
from sweeper.analysis.noise import Config, NoiseModel, f_sf, sd_at, t_quantile

# Family-wise error rate of each kind of claim within one study.
ALPHA = 0.05
# "Does not matter" means: moves the value by less than this anywhere in the box tried. One
# point of accuracy is one run's seed noise on the tutorial CNN (DESIGN.md): a smaller effect
# cannot be seen without many replicates, a larger one is worth tuning.
MARGIN = 0.01
# The quadratic follows a peak, a slope and a tilt (lr x wd); a cubic's 10 terms cost the
# presence test 9 numerator df for lr instead of 3, and with it most of its power.
DEGREE = 2
# Lattice points per axis (box ends included) on which an effect's range is measured.
LATTICE = 25
# Degrees of freedom the runs must offer to check the noise (replicates' plus the smooth fit's
# residuals) before any claim: with fewer, a task noisier than the 1-point prior goes unseen
# (7 runs at 2 points of noise: "matters" in 15% of flat studies; 12 runs: 3%).
MIN_CHECK_DF = 5
# Coefficient draws for the equivalence bound: its 98.3% point (1 - 0.05/3) moved by 1.5% of
# its value (sd over 10 seeds) with 4,000 draws, 2.8% with 1,000 (a 480-run study).
DRAWS = 4000
SEED = 0
PARAMS = ("lr", "weight_decay")
INTERACTION = "lr x weight_decay"
SHORT = {"lr": "lr", "weight_decay": "wd", "optimizer": "optimizer", INTERACTION: "lr x wd"}
MATTERS, ABSENT, INCONCLUSIVE, UNTESTABLE = (
    "matters",
    "does not matter",
    "inconclusive",
    "untestable",
)


class Claim(NamedTuple):
    """One statement about one hyperparameter (``subject``) of one optimizer's runs."""

    subject: str  # "lr", "weight_decay" or "optimizer"
    optimizer: str  # whose runs ("adam vs adamw" style for the optimizer effect)
    kind: str  # MATTERS, ABSENT, INCONCLUSIVE or UNTESTABLE
    effect: float | None  # estimated whole effect (value units; signed for the optimizer)
    low: float | None  # its 95% interval
    high: float | None
    bound: float | None  # the equivalence test's upper bound on |effect|
    p: float | None  # the presence test's p-value (unadjusted)
    level: float  # the adjusted level both tests used (ALPHA / m)
    margin: float
    span: tuple[float, float] | None  # the range tried
    sentence: str
    settle: str  # what would settle an inconclusive claim, else ""


class Claims(NamedTuple):
    claims: tuple[Claim, ...]
    margin: float
    note: str  # what was left out, and why
    accuracy: bool = True  # values are accuracies: sizes read in points
    box: tuple[tuple[float, float], tuple[float, float]] | None = None  # the space spoken of
    n_pruned: int = 0  # pruned trials, left out of every claim (and of the within-noise set)

    def get(self, subject: str, optimizer: str | None = None) -> Claim | None:
        """The claim about ``subject`` (for ``optimizer``, default: the first one)."""
        for c in self.claims:
            if c.subject == subject and (optimizer is None or c.optimizer == optimizer):
                return c
        return None


def points(value: float, accuracy: bool) -> str:
    """A size in the value's units: points of accuracy, or the raw number."""
    return f"{100 * value:.1f} points" if accuracy else f"{value:.3g}"


def _range(span: tuple[float, float]) -> str:
    return f"[{span[0]:.2g}, {span[1]:.2g}]"


class SurfaceFit(NamedTuple):
    """One optimizer's configuration means (search runs only) fitted over the box."""

    optimizer: str
    fit: polyfit.Fit
    n_runs: int
    distinct: dict[str, int]


def _search_runs(c: Config) -> tuple[float, ...]:
    """The configuration's search runs (before its seed replicates); all its runs when its
    original is not among them (a replicate whose original did not complete)."""
    return c.values[: c.n - c.n_replicates] or c.values


def _untestable(
    subject: str,
    optimizer: str,
    why: str,
    margin: float,
    level: float = ALPHA,
    span: tuple[float, float] | None = None,
) -> Claim:
    """A claim that cannot be tested, with why in its sentence."""
    return Claim(
        subject,
        optimizer,
        UNTESTABLE,
        None,
        None,
        None,
        None,
        None,
        level,
        margin,
        span,
        f"{SHORT[subject]} ({optimizer}): {why}",
        "",
    )


def run_sd(model: NoiseModel) -> float:
    """The per-run sd the claims use: ``noise.sd_at`` the study's mean value (requires a
    known sd)."""
    sd = sd_at(model, float(np.mean([c.mean for c in model.configs])) if model.configs else None)
    assert sd is not None
    return sd


def surface_fit(
    configs: Sequence[Config], box: tuple[tuple[float, float], tuple[float, float]]
) -> tuple[SurfaceFit | None, str]:
    """One optimizer's ``configs`` fitted over ``box`` (``polyfit``, degree ``DEGREE``), or
    None and why."""
    pts = [c for c in configs if c.lr and c.weight_decay and c.lr > 0 and c.weight_decay > 0]
    if not pts:
        return None, "no configuration with lr and wd"
    u = polyfit.unit([c.lr for c in pts], box[0])  # type: ignore[misc]
    v = polyfit.unit([c.weight_decay for c in pts], box[1])  # type: ignore[misc]
    # The search runs only: seed replicates were queued where the search runs came out best,
    # so a mean that includes them (weighted by its runs) leans on noise that selection
    # favoured; the sampler, not the noise, chose where the search runs lie.
    runs = [_search_runs(c) for c in pts]
    y = np.array([sum(r) / len(r) for r in runs])
    w = np.array([float(len(r)) for r in runs])
    fit = polyfit.fit(u, v, y, w, DEGREE)
    if fit is None:
        return None, f"{len(pts)} configurations: too few to fit a surface"
    distinct = {"lr": len(set(u.round(9))), "weight_decay": len(set(v.round(9)))}
    return SurfaceFit(pts[0].optimizer, fit, int(w.sum()), distinct), ""


def _tested(p: SurfaceFit) -> list[tuple[str, list[int]]]:
    """The presence tests one optimizer's fit makes: (subject, the coefficients involved)."""
    out = []
    for k, subject in enumerate(PARAMS):
        index = [i for i, t in enumerate(p.fit.terms) if t[k] > 0]
        if p.distinct[subject] > 1 and index:
            out.append((subject, index))
    both = [i for i, t in enumerate(p.fit.terms) if t[0] > 0 and t[1] > 0]
    if both:
        out.append((INTERACTION, both))
    return out


def _lattice_design(ts: polyfit.Terms) -> NDArray[np.float64]:
    g = np.linspace(0.0, 1.0, LATTICE)
    uu, vv = np.meshgrid(g, g)  # rows follow v, columns u
    return polyfit.design(uu.ravel(), vv.ravel(), ts)


def effect_range(surfaces: NDArray[np.float64], subject: str) -> NDArray[np.float64]:
    """The whole effect of ``subject`` on each surface of a stack (k, LATTICE * LATTICE):
    the largest max - min along its axis, over the other axis."""
    f = surfaces.reshape(-1, LATTICE, LATTICE)  # (k, v, u)
    axis = 2 if subject == "lr" else 1
    return (f.max(axis=axis) - f.min(axis=axis)).max(axis=1)


def coefficient_draws(
    fit: polyfit.Fit, sd: float, df: float, rng: np.random.Generator
) -> NDArray[np.float64]:
    """DRAWS coefficient vectors: beta + N(0, s^2 cov), s = sd sqrt(df / chi2_df) per draw."""
    chol = np.linalg.cholesky(fit.cov + 1e-15 * np.eye(len(fit.beta)))
    z = rng.standard_normal((len(fit.beta), DRAWS))
    scale = sd * np.sqrt(df / rng.chisquare(df, DRAWS)) if math.isfinite(df) else sd
    return fit.beta[:, None] + (chol @ z) * scale


def _f_stat(fit: polyfit.Fit, index: Sequence[int], sd: float) -> float:
    """The Wald statistic that the coefficients ``index`` are all zero, over their count."""
    b = fit.beta[list(index)]
    c = fit.cov[np.ix_(list(index), list(index))]
    return float(b @ np.linalg.solve(c, b)) / (sd * sd) / len(index)


def _absent_runs(effect: float, bound: float, margin: float, n_runs: int) -> float | None:
    """Runs in all at which the equivalence bound would fall inside the margin, if the
    effect is as estimated (None when the estimate itself is not inside)."""
    if effect >= 0.9 * margin:
        return None
    return n_runs * ((bound - effect) / (margin - effect)) ** 2


def _f_crit(level: float, q: float, df: float) -> float:
    """The F(q, df) value exceeded with probability ``level``."""
    lo, hi = 0.0, 1.0
    while f_sf(hi, q, df) > level:
        hi *= 2.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if f_sf(mid, q, df) > level else (lo, mid)
    return hi


def _settle(
    subject: str,
    absent_runs: float | None,
    present_runs: float | None,
    n_runs: int,
) -> str:
    """What would likely settle an inconclusive claim if the effect is as estimated: the runs
    in all that would bring the equivalence bound inside the margin (its excess over the
    estimate shrinks as 1 / sqrt(runs)), or the presence test's statistic (which grows with
    the runs) past its critical value. Runs must cover the range, ends included: the bound
    is widest where nothing was tried."""
    name = SHORT[subject]
    options = []
    if absent_runs is not None and math.isfinite(absent_runs):
        need = max(math.ceil(absent_runs), n_runs + 1)
        options.append(f"about {need} runs in all to bound {name}'s effect inside the margin")
    if present_runs is not None and math.isfinite(present_runs):
        need = max(math.ceil(present_runs), n_runs + 1)
        options.append(f"about {need} to show that {name} matters")
    if not options:
        return f"only many more runs over the whole {name} range, or another --margin, can tell"
    where = (
        "more seeds of each optimizer's configurations (`sweeper confirm`)"
        if subject == "optimizer"
        else f"runs spread over the {name} range with its ends included"
    )
    return f"if its effect is as estimated, {' or '.join(options)} (now {n_runs}); {where}"


def claims(
    model: NoiseModel,
    box: tuple[tuple[float, float], tuple[float, float]],
    *,
    margin: float = MARGIN,
    n_pruned: int = 0,
) -> Claims:
    """Every claim the runs support about lr, wd and (with several optimizers) the optimizer,
    over ``box`` = ((lr low, high), (wd low, high)), the space tried."""
    note = (
        f"{n_pruned} pruned trial{'s' if n_pruned != 1 else ''} left out (their final value "
        "is unknown)"
        if n_pruned
        else ""
    )
    accuracy = model.n_val is not None
    by_opt: dict[str, list[Config]] = {}
    for c in model.configs:
        by_opt.setdefault(c.optimizer, []).append(c)
    checked = model.pooled_df + model.fit_df
    if model.sd_run is not None and model.n_val is not None and checked < MIN_CHECK_DF:
        why = (
            f"{len(model.configs)} configurations leave {checked} degrees of freedom to check "
            f"the noise the claims rest on (need {MIN_CHECK_DF}: about "
            f"{len(model.configs) + MIN_CHECK_DF - checked} runs, or seed replicates)"
        )
        few = tuple(_untestable(s, o, why, margin) for o in by_opt for s in PARAMS)
        return Claims(few, margin, note, accuracy, box, n_pruned)
    if model.sd_run is None:
        why = "noise unknown: run seed replicates before claiming anything"
        unknown = tuple(_untestable(s, o, why, margin) for o in by_opt for s in PARAMS)
        return Claims(unknown, margin, note, accuracy, box, n_pruned)
    prepared: dict[str, SurfaceFit] = {}
    reasons: dict[str, str] = {}
    for name, configs in by_opt.items():
        p, why = surface_fit(configs, box)
        if p is None:
            reasons[name] = why
        else:
            prepared[name] = p
    # The presence tests this study makes: each varied hyperparameter of each fitted
    # optimizer, and the optimizer effect against the first.
    names = list(prepared)
    pairs = [
        (prepared[names[0]], prepared[other], k)
        for other in names[1:]
        for k in range(len(PARAMS))
        if prepared[names[0]].fit.terms == prepared[other].fit.terms
    ]
    tests = sum(len(_tested(p)) for p in prepared.values()) + max(len(names) - 1, 0) + len(pairs)
    level = ALPHA / max(tests, 1)
    rng = np.random.default_rng(SEED)
    sd = run_sd(model)
    out: list[Claim] = []
    for name in by_opt:
        if name not in prepared:
            out += [_untestable(s, name, reasons[name], margin, level) for s in PARAMS]
            continue
        out += _param_claims(prepared[name], sd, model.df, level, margin, box, accuracy, rng)
    for name in names[1:]:
        out.append(
            _optimizer_claim(
                prepared[names[0]], prepared[name], sd, model.df, level, margin, accuracy
            )
        )
    for ref, against, k in pairs:
        out.append(_optimizer_interaction(ref, against, k, sd, model.df, level, margin))
    return Claims(tuple(out), margin, note, accuracy, box, n_pruned)


def _optimizer_interaction(
    ref: SurfaceFit, other: SurfaceFit, k: int, sd: float, df: float, level: float, margin: float
) -> Claim:
    """Does the optimizer change how ``PARAMS[k]`` acts? The Wald test that every coefficient
    involving it is the same in both optimizers' fits (independent runs: covariances add)."""
    subject = f"optimizer x {PARAMS[k]}"
    index = [i for i, t in enumerate(ref.fit.terms) if t[k] > 0]
    d = other.fit.beta[index] - ref.fit.beta[index]
    c = ref.fit.cov[np.ix_(index, index)] + other.fit.cov[np.ix_(index, index)]
    stat = float(d @ np.linalg.solve(c, d)) / (sd * sd) / len(index)
    pval = f_sf(stat, len(index), df)
    name = SHORT[PARAMS[k]]
    pair = f"{other.optimizer} vs {ref.optimizer}"
    if pval < level:
        kind = MATTERS
        sentence = (
            f"{name} acts differently with {other.optimizer} than with {ref.optimizer} "
            f"(p = {pval:.2g})"
        )
    else:
        kind = INCONCLUSIVE
        sentence = f"no difference shown in how {name} acts between {pair} (p = {pval:.2g})"
    return Claim(
        subject, pair, kind, None, None, None, None, pval, level, margin, None, sentence, ""
    )


def _param_claims(
    p: SurfaceFit,
    sd: float,
    df: float,
    level: float,
    margin: float,
    box: tuple[tuple[float, float], tuple[float, float]],
    accuracy: bool,
    rng: np.random.Generator,
) -> list[Claim]:
    lat = _lattice_design(p.fit.terms)
    draws = lat @ coefficient_draws(p.fit, sd, df, rng)  # (lattice, DRAWS)
    fitted = lat @ p.fit.beta
    out = []
    for k, subject in enumerate(PARAMS):
        span = box[k]
        name = SHORT[subject]
        index = dict(_tested(p)).get(subject)
        if index is None:
            why = (
                "tried at one value only"
                if p.distinct[subject] < 2
                else f"{p.fit.n_configs} configurations: too few to fit its effect"
            )
            out.append(_untestable(subject, p.optimizer, why, margin, level, span))
            continue
        pval = f_sf(_f_stat(p.fit, index, sd), len(index), df)
        effects = effect_range(draws.T, subject)
        effect = float(effect_range(fitted[None, :], subject)[0])
        low, high = (float(x) for x in np.percentile(effects, [2.5, 97.5]))
        low, high = min(low, effect), max(high, effect)  # draws scatter around the fit
        bound = float(np.quantile(effects, 1.0 - level))
        lo_text = points(low, accuracy).split()[0]
        size = f"{points(effect, accuracy)} [{lo_text}, {points(high, accuracy)}]"
        where = f"{name} in {_range(span)}"
        settle = ""
        if pval < level:
            kind = MATTERS
            sentence = (
                f"{name} matters ({p.optimizer}): it moves the value by up to {size} over "
                f"{where} (p = {pval:.2g})"
            )
            if bound < margin:
                sentence += f", though by less than {points(margin, accuracy)}"
        elif bound < margin:
            kind = ABSENT
            sentence = (
                f"{name} does not matter ({p.optimizer}): it moves the value by less than "
                f"±{points(margin, accuracy)} over {where} "
                f"(upper bound {points(bound, accuracy)})"
            )
        else:
            kind = INCONCLUSIVE
            stat = _f_stat(p.fit, index, sd)
            settle = _settle(
                subject,
                _absent_runs(effect, bound, margin, p.n_runs),
                p.n_runs * _f_crit(level, len(index), df) / stat if stat > 0 else None,
                p.n_runs,
            )
            sentence = (
                f"{name} inconclusive ({p.optimizer}): up to {size} over {where}; neither shown "
                f"nor within ±{points(margin, accuracy)}"
            )
        out.append(
            Claim(
                subject,
                p.optimizer,
                kind,
                effect,
                low,
                high,
                bound,
                pval,
                level,
                margin,
                span,
                sentence,
                settle,
            )
        )
    for subject, index in _tested(p):
        if subject != INTERACTION:
            continue
        pval = f_sf(_f_stat(p.fit, index, sd), len(index), df)
        shown = pval < level
        sentence = (
            f"lr and wd interact ({p.optimizer}): the best lr moves with wd (p = {pval:.2g})"
            if shown
            else f"no lr x wd interaction shown ({p.optimizer}, p = {pval:.2g})"
        )
        out.append(
            Claim(
                subject,
                p.optimizer,
                MATTERS if shown else INCONCLUSIVE,
                None,
                None,
                None,
                None,
                pval,
                level,
                margin,
                None,
                sentence,
                "",
            )
        )
    return out


def _box_mean(p: SurfaceFit) -> tuple[float, float]:
    """The fitted surface's mean over the box and its variance per unit run variance."""
    a = _lattice_design(p.fit.terms).mean(axis=0)
    return float(a @ p.fit.beta), float(a @ p.fit.cov @ a)


def _optimizer_claim(
    ref: SurfaceFit,
    other: SurfaceFit,
    sd: float,
    df: float,
    level: float,
    margin: float,
    accuracy: bool,
) -> Claim:
    m0, v0 = _box_mean(ref)
    m1, v1 = _box_mean(other)
    diff = m1 - m0
    se = sd * math.sqrt(v0 + v1)
    pval = f_sf((diff / se) ** 2, 1.0, df) if se > 0 else 1.0
    half95 = t_quantile(0.95, df) * se
    half_eq = t_quantile(1.0 - 2.0 * level, df) * se  # TOST at level `level`
    bound = abs(diff) + half_eq
    pair = f"{other.optimizer} vs {ref.optimizer}"
    word = "above" if diff > 0 else "below"
    size = (
        f"{points(abs(diff), accuracy)} {word} {ref.optimizer}, averaged over the box "
        f"[{100 * (diff - half95) if accuracy else diff - half95:+.1f}, "
        f"{100 * (diff + half95) if accuracy else diff + half95:+.1f}]"
    )
    settle = ""
    if pval < level:
        kind, sentence = (
            MATTERS,
            f"the optimizer matters: {other.optimizer} is {size} (p = {pval:.2g})",
        )
    elif bound < margin:
        kind = ABSENT
        sentence = (
            f"the optimizer does not matter on average: {other.optimizer} and {ref.optimizer} "
            f"differ by less than ±{points(margin, accuracy)} over the box"
        )
    else:
        kind = INCONCLUSIVE
        sentence = f"the optimizer: inconclusive: {other.optimizer} is {size}"
        n = ref.n_runs + other.n_runs
        z = t_quantile(1.0 - level, df)
        settle = _settle(
            "optimizer",
            _absent_runs(abs(diff), bound, margin, n),
            n * (z * se / abs(diff)) ** 2 if diff else None,
            n,
        )
    return Claim(
        "optimizer",
        pair,
        kind,
        diff,
        diff - half95,
        diff + half95,
        bound,
        pval,
        level,
        margin,
        None,
        sentence,
        settle,
    )


def mark_shares(d: Decomposition, said: Claims, optimizer: str | None) -> Decomposition:
    """``d``'s shares with ``shown`` set by the claims (the one rule behind "matters"): a term
    is shown when its claim says it matters. A share not shown reaches down to 0, and a
    share's upper end up to 1 minus the others' lower ends (the shares sum to 1).
    ``optimizer`` names whose runs ``d`` decomposes; None for the across-optimizer one, whose
    ``optimizer`` term follows the optimizer claim and whose other terms carry no claim."""
    if d.shares is None:
        return d
    shown = {}
    for name in d.shares:
        if optimizer is None:
            claim = said.get(name) if name.startswith("optimizer") else None
        else:
            claim = said.get(name, optimizer)
        shown[name] = claim is not None and claim.kind == MATTERS
    lows = {k: (s.low if shown[k] else 0.0) for k, s in d.shares.items()}
    total_low = sum(lows.values())
    shares = {
        k: s._replace(
            shown=shown[k], low=lows[k], high=max(s.high, min(1.0, 1.0 - (total_low - lows[k])))
        )
        for k, s in d.shares.items()
    }
    note = d.note
    if not any(shown.values()):
        note = "no claim shows any term to matter: the shares may all be noise"
    return d._replace(shares=shares, note=note)
