"""The pruners sweeper adds to Optuna's: the learning-curve pruner and the one-epoch top-k.

Both are ``optuna.pruners.BasePruner``s acting on per-epoch validation accuracy (higher is
better; step = epoch, from 1), so they work wherever Optuna's do: in a single trial, inside
a packed trainer (members ask between epochs and leave when pruned), and beside seed
replicates (the worker never asks for those: replicates are never pruned).

``CurvePruner`` stops a trial when the chance that it ends above the best finished trial
(``within_noise = true``: within noise of it) is below ``threshold``, that is, when going on
would change the study's answer with less than that chance:

- the best: the highest final value among finished trials that ran all ``epochs`` epochs
  (none yet: nothing is stopped);
- within noise: at most ``within_noise_margin(sd)`` below it, the half-width of the 95%
  interval of two single runs' difference, with sd the noise model's prior per-run sd,
  never below the test-set floor at the best's accuracy (``sweeper.analysis.noise``). This
  keeps every trial that may tie the best, which ``bench/pruning_replay.py`` found costs
  more epochs than every other pruner but none, for no better answer: off by default;
- the chance: the trial's last epoch forecast from the epochs it has shown
  (``sweeper.analysis.curves``: the shipped corpus prior updated by the study's finished
  curves; the population is rebuilt only when another trial finishes).

It decides from the ``min_epochs``-th epoch up to the one before the last. When it stops a
trial it writes the forecast that decided (``attrs.FORECAST``: the epoch, every later
epoch's mean and 95% band, the best, the target and the chance) onto the trial, so the
views can draw what justified the stop.

``FirstEpochTopK`` is the one-epoch baseline of Egele et al. (2023): after its first epoch
a trial goes on only if its value is among the ``k`` best first-epoch values reported so far
(any trial, any state); later epochs are never judged.
"""

from __future__ import annotations

from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from sweeper import _optuna, attrs
from sweeper.analysis import curves
from sweeper.analysis.noise import DEFAULT_N_VAL, PRIOR_SD, floor_sd

# The default chance below which a trial is stopped, chosen by bench/pruning_replay.py's
# table (README): the fewest epochs (178 of the none pruner's 400, the median pruner's 197)
# at which the answer stayed in the indistinguishable set in at least 95% of 200 replays
# (100%) with a mean regret no worse than the median pruner's (0.50 vs 0.60 points).
DEFAULT_THRESHOLD = 0.2


def curve_of(trial: FrozenTrial) -> list[float] | None:
    """The trial's values at epochs 1..t, or None when an epoch in between is missing."""
    values = trial.intermediate_values
    curve = [values.get(step) for step in range(1, len(values) + 1)]
    if any(v is None for v in curve):
        return None
    return [float(v) for v in curve]  # type: ignore[arg-type]


class CurvePruner(optuna.pruners.BasePruner):
    """Stop a trial whose forecast gives it less than ``threshold`` chance of ending within
    noise of the best finished trial (module docstring)."""

    def __init__(
        self,
        epochs: int,
        *,
        threshold: float = DEFAULT_THRESHOLD,
        min_epochs: int = 1,
        within_noise: bool = False,
        n_val: int | None = None,
        prior: curves.CurvePrior | None = None,
        record: bool = True,
    ) -> None:
        """``epochs``: a trial's full length; ``within_noise``: the line to reach is the
        best less the within-noise margin, not the best; ``n_val``: the test-set size (the
        floor); ``prior``: default the shipped corpus prior; ``record``: write the deciding
        forecast onto a stopped trial."""
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"threshold must lie in (0, 1), got {threshold}")
        self.epochs = epochs
        self.threshold = threshold
        self.min_epochs = max(1, min_epochs)
        self.within_noise = within_noise
        self.n_val = n_val or DEFAULT_N_VAL
        self.prior = prior or curves.shipped_prior()
        self.record = record
        self._cached: tuple[int, curves.Population, float | None] | None = None

    def _population(self, study: optuna.Study) -> tuple[curves.Population, float | None]:
        """The population and the best final value, rebuilt only when the number of
        finished trials changed (a finished trial never changes again)."""
        finished = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if self._cached is None or self._cached[0] != len(finished):
            done = []
            for t in finished:
                curve = curve_of(t)
                if curve is not None and len(curve) == self.epochs and t.value is not None:
                    done.append(curve)
            best = max((c[-1] for c in done), default=None)
            pop = curves.population(self.prior, done, self.epochs)
            self._cached = (len(finished), pop, best)
        return self._cached[1], self._cached[2]

    def decide(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, Any] | None:
        """The forecast that stops ``trial`` now (as stored in ``attrs.FORECAST``), or None
        when it goes on."""
        curve = curve_of(trial)
        if curve is None or not self.min_epochs <= len(curve) < self.epochs:
            return None
        pop, best = self._population(study)
        if best is None:
            return None
        target = best
        if self.within_noise:
            target -= curves.within_noise_margin(max(PRIOR_SD, floor_sd(best, self.n_val)))
        seen = curves.forecast(pop, curve)
        chance = seen.chance_above(target)
        if chance >= self.threshold:
            return None
        low, high = seen.band()
        return {
            "epoch": seen.epoch,
            "epochs": list(seen.epochs),
            "mean": [round(m, 5) for m in seen.mean],
            "low": [round(v, 5) for v in low],
            "high": [round(v, 5) for v in high],
            "best": best,
            "target": round(target, 5),
            "chance": chance,
            "threshold": self.threshold,
        }

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        """Optuna's question: stop ``trial`` now?"""
        stop = self.decide(study, trial)
        if stop is None:
            return False
        if self.record:
            _optuna.set_running_user_attr(study, trial, attrs.FORECAST, stop)
        return True


class FirstEpochTopK(optuna.pruners.BasePruner):
    """After epoch 1, go on only among the ``k`` best first epochs so far (module docstring)."""

    def __init__(self, k: int = 3) -> None:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        self.k = k

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        """Optuna's question: stop ``trial`` now?"""
        if trial.last_step != 1:
            return False
        mine = trial.intermediate_values[1]
        better = 0
        for other in study.get_trials(deepcopy=False):
            value = other.intermediate_values.get(1)
            if other.number != trial.number and value is not None and value > mine:
                better += 1
        return better >= self.k
