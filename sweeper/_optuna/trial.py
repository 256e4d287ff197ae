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


def set_running_user_attr(study: optuna.Study, trial: FrozenTrial, key: str, value: object) -> None:
    """Set a user attribute of a running trial known only as the ``FrozenTrial`` a pruner
    is handed.

    Why: ``BasePruner.prune`` receives the study and a ``FrozenTrial``, not the live
    ``Trial``; the storage's public ``set_trial_user_attr`` takes the trial's id, which only
    the study's private ``_storage`` and the record's private ``_trial_id`` hold (Optuna's
    own ``Trial.set_user_attr`` makes this same call).
    """
    study._storage.set_trial_user_attr(trial._trial_id, key, value)
