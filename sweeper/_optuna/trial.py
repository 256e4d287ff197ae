"""A live trial's id and stored record: what Optuna's public ``Trial`` does not expose."""

from __future__ import annotations

import optuna
from optuna.trial import FrozenTrial


def trial_id(trial: optuna.Trial) -> int:
    """The storage id of a live trial.

    Why: the storage's public methods (``record_heartbeat``, ``get_trial``,
    ``set_trial_state_values``) take a trial id, and ``optuna.Trial`` exposes only its
    number; Optuna's own optimize loop reads the same attribute (optuna/study/_optimize.py,
    ``_run_trial``). Upstream: ``Trial.trial_id`` was deprecated for ``number``
    (optuna/optuna#344) and asks for a lookup by number were closed without one
    (optuna/optuna#5647, #6365).
    """
    return int(trial._trial_id)


def frozen(storage: optuna.storages.BaseStorage, trial: optuna.Trial) -> FrozenTrial:
    """The stored record of a live trial, system attributes included (one query).

    Why: ``optuna.Trial`` has no public ``system_attrs`` (deprecated in Optuna 3), and a
    re-queued trial's series (``failed_trial``) lives there, where Optuna's own
    ``RetryHeartbeatStaleTrialCallback`` writes it.
    """
    return storage.get_trial(trial_id(trial))
