"""The one door to Optuna's internals: every reach into a private name of Optuna, and every
SQL statement against Optuna's tables, is in this package.

Everything else in sweeper uses Optuna's public API. Each reach says why there is no public
route; when Optuna changes one of these, only this package breaks, and
``tests/test_optuna_door.py`` (run on the lowest and the newest Optuna the project allows:
``make door-compat``) says so. ``tests/test_layout.py`` keeps every other module off
Optuna's private modules and tables.

- ``trial``: a live trial's id and stored record; a note on a trial a pruner stops.
- ``claim``: the study's row lock, the budget's count, trials started without ``ask``.
- ``record``: a pack's epoch in one round trip; notes on finished trials.
- ``fleet``: stale running trials; the fleet's rows for ``sweeper status``.
- ``read``: a study's trials in one consistent pass; its fingerprint; rows for ``best``.
- ``reader``: a storage for commands that only read, without Optuna's set-up work.
"""

from __future__ import annotations

from sweeper._optuna.claim import budget_used, live_trials, lock_trial_creation, start_trials
from sweeper._optuna.fleet import fleet_rows, stale_trials
from sweeper._optuna.read import rdb_models
from sweeper._optuna.record import annotate_finished, record
from sweeper._optuna.trial import frozen, set_running_user_attr, trial_id

__all__ = [
    "annotate_finished",
    "budget_used",
    "fleet_rows",
    "frozen",
    "live_trials",
    "lock_trial_creation",
    "rdb_models",
    "record",
    "set_running_user_attr",
    "stale_trials",
    "start_trials",
    "trial_id",
]
