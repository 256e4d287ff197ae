"""The best configuration, as strong a claim as the noise allows and no stronger.

Promises:

- ``best_info(model, ...)`` names the best configuration by its mean over seeds (the
  study's direction), with its 95% interval and the seeds behind it, and the
  *indistinguishable set*: every configuration not significantly worse than it (the 95%
  interval of the difference includes zero; ``noise.within_noise``). A best inside that set
  is only the top of the set, and the verdict says so.
- The verdict is one line. A hyperparameter "matters" only when both hold: the
  configurations within noise (of the best's optimizer) cover less than ``COVERAGE`` of the
  log range it was tried over, and the data isolate its effect: some configuration
  significantly worse than the best has its *other* hyperparameter inside the set's range
  of that one, so the loss cannot be blamed on the other. A narrow set alone is not enough:
  a sampler that concentrates on good lrs leaves the set narrow in wd too. Nor is a fitted
  main effect (``ParamVerdict.shown``, from ``effects.decompose``, reported beside it): when
  lr and wd were sampled together a fit splits one effect between them. Narrow but not
  isolated reads "not shown to matter (within noise: a..b)"; wide reads "does not" in the
  range tried. With several optimizers it says which are within noise of the best.
- Given the run's schedule and the AdamW space tried, the decay-axis warning of
  ``decay.decay_check`` rides along.
- Never raises on an empty study, one trial, equal values or unknown noise: the verdict then
  says what cannot be told.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

from sweeper.analysis.decay import DecayCheck, Schedule, decay_check
from sweeper.analysis.effects import decompose
from sweeper.analysis.noise import Config, NoiseModel, indistinguishable

# A hyperparameter "does not matter" when the configurations within noise of the best span at
# least this fraction of the log range tried (per optimizer). 1.0 would demand the exact
# extremes, which a random study never hits; 0.75 still separates "a band of values" from
# "anywhere".
COVERAGE = 0.75
PARAMS = (("lr", "lr"), ("weight_decay", "wd"))


class ParamVerdict(NamedTuple):
    name: str  # "lr" or "weight_decay"
    matters: bool | None  # None: tried at a single value, or nothing to compare
    tried: tuple[float, float] | None  # range over the best optimizer's configurations
    within: tuple[float, float] | None  # range over those within noise
    coverage: float | None  # log span within / log span tried
    # Its fitted main effect exceeds noise (None: too few runs to fit). Reported, not used
    # for "matters": a fit cannot separate lr from wd when they were sampled together.
    shown: bool | None = None


class BestInfo(NamedTuple):
    model: NoiseModel
    best: Config | None
    within: tuple[Config, ...]  # the indistinguishable set, best first (every optimizer)
    lr_range: tuple[float, float] | None  # of the set
    wd_range: tuple[float, float] | None
    params: tuple[ParamVerdict, ...]
    optimizers_within: tuple[str, ...]  # optimizers with a configuration in the set
    verdict: str
    decay: DecayCheck | None


def _span(values: Sequence[float | None]) -> tuple[float, float] | None:
    xs = [v for v in values if v is not None and v > 0]
    return (min(xs), max(xs)) if xs else None


def _log_width(r: tuple[float, float]) -> float:
    return math.log10(r[1]) - math.log10(r[0])


def _g(x: float) -> str:
    return f"{x:.2g}"


def _range_text(r: tuple[float, float]) -> str:
    return _g(r[0]) if math.isclose(r[0], r[1]) else f"{_g(r[0])}..{_g(r[1])}"


def best_info(
    model: NoiseModel,
    *,
    schedule: Schedule | None = None,
    adamw_space: tuple[tuple[float, float], tuple[float, float]] | None = None,
) -> BestInfo:
    """The best configuration of ``model``, its indistinguishable set and the verdict.

    ``adamw_space`` is ((lr low, lr high), (wd low, wd high)) of the AdamW trials, for the
    decay-axis warning (with ``schedule``).
    """
    decay = None
    if schedule is not None and adamw_space is not None:
        decay = decay_check(adamw_space[0], adamw_space[1], schedule)
    if not model.configs:
        return BestInfo(model, None, (), None, None, (), (), "no completed trial yet", decay)
    best = model.configs[0]
    within = indistinguishable(model)
    mine = [c for c in model.configs if c.optimizer == best.optimizer]
    mine_within = [c for c in within if c.optimizer == best.optimizer]
    verdicts = []
    shown = _shown(mine, model.sd_run)
    for name, _ in PARAMS:
        get = (lambda c: c.lr) if name == "lr" else (lambda c: c.weight_decay)
        tried = _span([get(c) for c in mine])
        inside = _span([get(c) for c in mine_within])
        if tried is None or inside is None or _log_width(tried) == 0:
            verdicts.append(ParamVerdict(name, None, tried, inside, None))
            continue
        coverage = _log_width(inside) / _log_width(tried)
        effect = shown.get(name)
        isolated = _isolated(name, mine, mine_within)
        matters = coverage < COVERAGE and isolated
        verdicts.append(ParamVerdict(name, matters, tried, inside, coverage, effect))
    optimizers = tuple(dict.fromkeys(c.optimizer for c in within))
    info = BestInfo(
        model=model,
        best=best,
        within=within,
        lr_range=_span([c.lr for c in within]),
        wd_range=_span([c.weight_decay for c in within]),
        params=tuple(verdicts),
        optimizers_within=optimizers,
        verdict="",
        decay=decay,
    )
    return info._replace(verdict=_verdict(info))


def _isolated(name: str, configs: Sequence[Config], within: Sequence[Config]) -> bool:
    """Some configuration outside the set (significantly worse) has the other
    hyperparameter inside the set's range of it: its loss is ``name``'s."""
    other = (lambda c: c.weight_decay) if name == "lr" else (lambda c: c.lr)
    span = _span([other(c) for c in within])
    if span is None:
        return False
    inside = {id(c) for c in within}
    return any(
        id(c) not in inside and (x := other(c)) is not None and span[0] <= x <= span[1]
        for c in configs
    )


def _shown(configs: Sequence[Config], sd_run: float | None) -> dict[str, bool]:
    """Whether lr's and wd's own main effects exceed noise over ``configs`` (one optimizer;
    each configuration's mean as one run, at the per-run noise: a conservative test, since
    a mean over seeds is less noisy than that). Empty when there are too few to fit."""
    points = [c for c in configs if c.lr and c.weight_decay and c.lr > 0 and c.weight_decay > 0]
    if sd_run is None or not points:
        return {}

    def unit(values: list[float]) -> list[float]:
        logs = [math.log10(x) for x in values]
        low, width = min(logs), max(logs) - min(logs)
        return [(x - low) / width if width > 0 else 0.5 for x in logs]

    u = unit([c.lr for c in points])  # type: ignore[misc]
    v = unit([c.weight_decay for c in points])  # type: ignore[misc]
    d = decompose(u, v, [c.mean for c in points], sd_run)
    if d.shares is None:
        return {}
    return {name: d.shares[name].shown for name, _ in PARAMS if name in d.shares}


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
    if n_within == len(model.configs):
        return (
            f"nothing is shown to matter: all {n_within} configurations are within noise "
            "of the best"
        )
    parts = []
    for v in info.params:
        short = "lr" if v.name == "lr" else "wd"
        if v.matters is None:
            if v.tried is not None:
                parts.append(f"{short} fixed at {_g(v.tried[0])}")
        elif v.matters:
            parts.append(f"{short} matters (best {_range_text(v.within)})")  # type: ignore[arg-type]
        elif v.coverage is not None and v.coverage < COVERAGE:
            parts.append(
                f"{short} not shown to matter (within noise: {_range_text(v.within)})"  # type: ignore[arg-type]
            )
        else:
            parts.append(f"{short} does not in [{_g(v.tried[0])}, {_g(v.tried[1])}]")  # type: ignore[index]
    others = sorted({c.optimizer for c in model.configs} - {best.optimizer})
    for name in others:
        if name in info.optimizers_within:
            parts.append(f"{name} is within noise too")
        else:
            theirs = [c for c in model.configs if c.optimizer == name]
            top = theirs[0] if theirs else None
            if top is not None:
                parts.append(f"{name} is worse (its best {top.mean:.4f} vs {best.mean:.4f})")
    text = "; ".join(parts) or "best found"
    tail = f"{n_within} configuration{'s' if n_within != 1 else ''} within noise"
    if n_within > 1 and best.n == 1:
        tail += " (the top one is a single run)"
    return f"{text}: {tail}"
