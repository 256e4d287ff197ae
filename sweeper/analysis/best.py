"""The best configuration, as strong a claim as the noise allows and no stronger.

Promises:

- ``best_info(model, ...)`` names the best configuration by its mean over seeds (the
  study's direction) and gives its value *corrected for having been chosen*
  (``winner.winner``: a median-unbiased estimate and a 95% interval that hold their coverage
  whether the best is one run or many), and the *indistinguishable set*: every configuration
  not significantly worse than it (``noise.within_noise``), described, not claimed about.
- What matters is said only by ``claims.claims``: "matters" (shown), "does not matter" (an
  equivalence test within a stated margin) or "inconclusive" (with what would settle it), per
  optimizer and hyperparameter, and the optimizer's own effect. The one-line verdict is those
  claims; the same claims serve ``best``, the views and the notebook.
- A best that is a single run says how optimistic its raw value is and what to run.
- Given the run's schedule and the AdamW space tried, the decay-axis warning of
  ``decay.decay_check`` rides along.
- Never raises on an empty study, one trial, equal values or unknown noise: the verdict then
  says what cannot be told.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

from sweeper.analysis.claims import (
    ABSENT,
    INTERACTION,
    MARGIN,
    MATTERS,
    SHORT,
    Claims,
    claims,
    points,
)
from sweeper.analysis.decay import DecayCheck, Schedule, decay_check
from sweeper.analysis.noise import Config, NoiseModel, indistinguishable
from sweeper.analysis.pruning import EpochsSaved
from sweeper.analysis.winner import Winner, simultaneous, winner

Box = tuple[tuple[float, float], tuple[float, float]]


class BestInfo(NamedTuple):
    model: NoiseModel
    best: Config | None
    within: tuple[Config, ...]  # the indistinguishable set, best first (every optimizer)
    lr_range: tuple[float, float] | None  # of the set
    wd_range: tuple[float, float] | None
    claims: Claims
    optimizers_within: tuple[str, ...]  # optimizers with a configuration in the set
    verdict: str
    decay: DecayCheck | None
    estimate: Winner | None = None  # the best configuration's selection-corrected value
    pruning: EpochsSaved | None = None  # what pruning saved (None: not recorded)


def _span(values: Sequence[float | None]) -> tuple[float, float] | None:
    xs = [v for v in values if v is not None and v > 0]
    return (min(xs), max(xs)) if xs else None


def tried_box(model: NoiseModel) -> Box | None:
    """((lr low, high), (wd low, high)) over every configuration, or None without lr and wd."""
    lr = _span([c.lr for c in model.configs])
    wd = _span([c.weight_decay for c in model.configs])
    return (lr, wd) if lr is not None and wd is not None else None


def best_info(
    model: NoiseModel,
    *,
    schedule: Schedule | None = None,
    adamw_space: Box | None = None,
    box: Box | None = None,
    margin: float = MARGIN,
    n_pruned: int = 0,
    pruning: EpochsSaved | None = None,
) -> BestInfo:
    """The best configuration of ``model``, its corrected value, the claims and the verdict.

    ``box`` is the space searched (the spec's; default: the range the configurations tried),
    over which claims are made; ``adamw_space`` is the AdamW trials' box, for the decay-axis
    warning (with ``schedule``); ``n_pruned`` trials were left out of the claims;
    ``pruning`` is carried through for ``sweeper best``.
    """
    decay = None
    if schedule is not None and adamw_space is not None:
        decay = decay_check(adamw_space[0], adamw_space[1], schedule)
    tried = tried_box(model)
    if box is not None and tried is not None:  # a spec changed mid-study: cover what ran
        box = tuple(  # type: ignore[assignment]
            (min(b[0], t[0]), max(b[1], t[1])) for b, t in zip(box, tried, strict=True)
        )
    box = box or tried
    said = (
        claims(model, box, margin=margin, n_pruned=n_pruned)
        if box is not None and model.configs
        else Claims((), margin, "", n_pruned=n_pruned)
    )
    if not model.configs:
        return BestInfo(
            model, None, (), None, None, said, (), "no completed trial yet", decay, None, pruning
        )
    best = model.configs[0]
    within = indistinguishable(model)
    estimate = _estimate(model, best) if best.se is not None else None
    info = BestInfo(
        model=model,
        best=best,
        within=within,
        lr_range=_span([c.lr for c in within]),
        wd_range=_span([c.weight_decay for c in within]),
        claims=said,
        optimizers_within=tuple(dict.fromkeys(c.optimizer for c in within)),
        verdict="",
        decay=decay,
        estimate=estimate,
        pruning=pruning,
    )
    return info._replace(verdict=_verdict(info))


def _estimate(model: NoiseModel, best: Config) -> Winner:
    """The best configuration's value corrected for its selection (``winner``).

    A configuration with seed replicates was chosen for them by its search run; its
    replicates played no part in that choice, so its estimate rests on them alone, corrected
    for the final choice among the replicated configurations (the hybrid interval when it is
    also their best by replicates, else the simultaneous one). Otherwise the winner's curse
    is corrected over every configuration's mean.
    """
    reps = [c for c in model.configs if c.n_replicates > 0]
    if best.n_replicates > 0 and model.sd_run is not None:
        means = [sum(c.values[-c.n_replicates :]) / c.n_replicates for c in reps]
        ses = [(c.sd_run or model.sd_run) / math.sqrt(c.n_replicates) for c in reps]
        i = reps.index(best)
        sign = 1.0 if model.maximize else -1.0
        basis = f"its {best.n_replicates} seed replicates"
        if max(range(len(means)), key=lambda j: sign * means[j]) == i:
            return winner(means, ses, i, df=model.df, maximize=model.maximize)._replace(basis=basis)
        return simultaneous(means, ses, i, df=model.df, basis=basis)
    return winner(
        [c.mean for c in model.configs],
        [c.se or 0.0 for c in model.configs],
        0,
        df=model.df,
        maximize=model.maximize,
    )


def optimism(info: BestInfo) -> str:
    """For a best chosen from several configurations, how far selection lifted its raw mean
    and what would measure it; "" when that is nothing worth saying."""
    best, est = info.best, info.estimate
    if best is None or est is None or est.k < 2:
        return ""
    lift = best.mean - est.estimate if info.model.maximize else est.estimate - best.mean
    runs = "a single run" if best.n == 1 else f"the mean of {best.n} runs"
    if lift > 0.0:
        size = points(lift, info.claims.accuracy)
        text = (
            f"the best configuration's raw value ({runs}, {best.mean:.4f}) is the top of "
            f"{est.k} noisy configurations: optimistic by about {size}"
        )
    elif best.n == 1:
        text = (
            f"the best configuration is a single run in a close race among {est.k}: its "
            "interval holds whichever of them won"
        )
    else:
        return ""
    if best.n == 1:
        text += "; new seeds of the top configurations (`sweeper confirm`) measure it"
    return text


def short_claims(said: Claims) -> str:
    """The claims in a few words each, per optimizer ("lr matters (5.3 points), wd
    inconclusive"); an interaction only when shown. The sentences say the rest."""
    groups: dict[str, list[str]] = {}
    tail: list[str] = []
    for c in said.claims:
        if c.subject.startswith("optimizer x "):
            if c.kind == MATTERS:
                param = SHORT[c.subject.removeprefix("optimizer x ")]
                tail.append(f"{param} acts differently per optimizer")
            continue
        name = SHORT[c.subject]
        if c.subject == "optimizer":
            if c.kind == MATTERS and c.effect is not None:
                other, ref = c.optimizer.split(" vs ")
                word = "above" if c.effect > 0 else "below"
                size = points(abs(c.effect), said.accuracy)
                tail.append(f"the optimizer matters ({other} {size} {word} {ref})")
            else:
                tail.append(f"the optimizer {c.kind}")
            continue
        if c.subject == INTERACTION:
            if c.kind == MATTERS:
                groups.setdefault(c.optimizer, []).append("lr x wd interact")
            continue
        if c.kind == MATTERS and c.effect is not None:
            word = f"{name} matters ({points(c.effect, said.accuracy)})"
        elif c.kind == ABSENT:
            word = f"{name} does not matter (±{points(c.margin, said.accuracy)})"
        else:
            word = f"{name} {c.kind}"
        groups.setdefault(c.optimizer, []).append(word)
    if len(groups) == 1:
        parts = [", ".join(next(iter(groups.values())))]
    else:
        parts = [f"{opt}: {', '.join(words)}" for opt, words in groups.items()]
    return "; ".join(parts + tail)


def _verdict(info: BestInfo) -> str:
    model, best = info.model, info.best
    assert best is not None
    n_within = len(info.within)
    if best.se is None:
        return (
            f"noise unknown ({model.source}): {len(model.configs)} configurations cannot be "
            "told apart; run seed replicates before naming a best"
        )
    if len(model.configs) == 1:
        return f"one configuration ({best.n} run{'s' if best.n != 1 else ''}): nothing to compare"
    text = short_claims(info.claims) or "no claim can be made"
    tail = f"{n_within} configuration{'s' if n_within != 1 else ''} within noise of the best"
    if n_within > 1 and best.n == 1:
        tail += " (the top one is a single run)"
    return f"{text}: {tail}"
