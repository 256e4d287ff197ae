"""Seed replicates: after the search, the top configurations run again with new seeds.

Contract:

- ``pending(study)`` says whether search trials (trials that are not replicates) are still
  running or queued: replicates are planned only once the search has finished, so the top
  configurations are final.
- ``enqueue(study, storage, top_k, seeds)`` makes sure each of the ``top_k`` best
  configurations among completed search trials (by value, one per distinct parameter set)
  has ``seeds`` replicates: WAITING trials with the same parameters and the user attribute
  ``replicate_of`` (the number of the configuration's best search trial). A replicate's seed
  is the training seed plus its own trial number, as any trial's: new, and kept across its
  retries. Under the study's advisory lock, so any number of workers (or ``sweeper
  confirm``) may call it at once and each replicate is queued exactly once. Replicates of
  one configuration are queued together, so a packed worker trains them as one pack.
  Replicates have their own budget (``top_k * seeds``): they never use up the search's.
- Returns how many replicates it queued now.
"""

from __future__ import annotations

import optuna
from optuna.trial import FrozenTrial, TrialState

from sweeper import attrs
from sweeper.study import advisory_lock


def is_replicate(trial: FrozenTrial) -> bool:
    return attrs.REPLICATE_OF in trial.user_attrs


def pending(study: optuna.Study) -> int:
    """Search trials still running or queued."""
    states = (TrialState.RUNNING, TrialState.WAITING)
    return sum(1 for t in study.get_trials(deepcopy=False, states=states) if not is_replicate(t))


def _key(trial: FrozenTrial) -> tuple[tuple[str, object], ...]:
    return tuple(sorted(trial.params.items()))


def top_configurations(study: optuna.Study, top_k: int) -> list[FrozenTrial]:
    """The best completed search trial of each of the ``top_k`` best configurations."""
    complete = [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if not is_replicate(t) and t.value is not None
    ]
    sign = -1.0 if study.direction == optuna.study.StudyDirection.MAXIMIZE else 1.0
    best: dict[tuple[tuple[str, object], ...], FrozenTrial] = {}
    for t in sorted(complete, key=lambda t: (sign * float(t.value), t.number)):  # type: ignore[arg-type]
        best.setdefault(_key(t), t)
    return list(best.values())[:top_k]


def _replicates_of(study: optuna.Study) -> dict[int, int]:
    """How many replicates each configuration has (queued, running or done; a failed
    replicate that was re-queued counts once, through its copy)."""
    counts: dict[int, int] = {}
    for t in study.get_trials(deepcopy=False):
        if not is_replicate(t):
            continue
        if t.state == TrialState.FAIL and attrs.REQUEUED_AS in t.user_attrs:
            continue
        of = int(t.user_attrs[attrs.REPLICATE_OF])
        counts[of] = counts.get(of, 0) + 1
    return counts


def enqueue(
    study: optuna.Study, storage: optuna.storages.RDBStorage, top_k: int, seeds: int
) -> int:
    """Queue the replicates still missing; how many it queued (see the module docstring)."""
    if top_k < 1 or seeds < 1:
        return 0
    queued = 0
    with advisory_lock(storage.engine, study.study_name):
        counts = _replicates_of(study)
        for trial in top_configurations(study, top_k):
            for _ in range(seeds - counts.get(trial.number, 0)):
                study.enqueue_trial(trial.params, user_attrs={attrs.REPLICATE_OF: trial.number})
                queued += 1
    return queued
