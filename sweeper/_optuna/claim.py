"""Claiming trials without ``Study.ask``: the study's row lock, the budget's count, and queued
trials popped or new ones created, all in one transaction on one connection.

``tests/test_optuna_door.py`` checks the trials started here against ``Study.ask`` on the
same study: numbers, states, start times, queued parameters, samplers and pruners.
"""

from __future__ import annotations

import datetime

import optuna
import sqlalchemy

# Starting trials without Optuna's ``ask``. ``Study.ask`` pops a queued trial or creates one,
# one storage transaction each, and cannot be told "only if the budget allows": a budget
# check around it must hold a lock across connections (one for the check, Optuna's for the
# trial), which behind PgBouncer in transaction mode deadlocks once lock waiters hold every
# server connection. Here one transaction on one connection takes the row lock Optuna's own
# ``RDBStorage._create_new_trial`` takes (the study's row, FOR UPDATE, so trial numbers are
# counted as Optuna counts them, in step with its own creators), lets the caller count the
# budget, then pops queued (WAITING) trials and inserts new RUNNING ones in one statement.
# Columns and values as Optuna writes them (optuna/storages/_rdb/models.py TrialModel:
# state by enum name, datetime_start naive UTC; a popped trial gets its start time as
# ``set_trial_state_values`` gives it).
_LOCK_STUDY_SQL = sqlalchemy.text(
    "SELECT study_id FROM studies WHERE study_id = :study_id FOR UPDATE"
)


_START_SQL = sqlalchemy.text(
    """
    WITH popped AS (
        UPDATE trials SET state = 'RUNNING', datetime_start = :now
        WHERE trial_id IN (SELECT trial_id FROM trials
                           WHERE study_id = :study_id AND state = 'WAITING'
                           ORDER BY number LIMIT :wanted FOR UPDATE SKIP LOCKED)
        RETURNING trial_id, number),
    fresh AS (
        INSERT INTO trials (number, study_id, state, datetime_start)
        SELECT existing.n + g, :study_id, 'RUNNING', :now
        FROM (SELECT count(*) AS n FROM trials WHERE study_id = :study_id) existing,
             generate_series(0, LEAST(:wanted - (SELECT count(*) FROM popped), :room) - 1) g
        RETURNING trial_id, number)
    SELECT trial_id FROM popped UNION ALL SELECT trial_id FROM fresh
    """
)


def lock_trial_creation(conn: sqlalchemy.Connection, study_id: int) -> None:
    """Block other creators of trials in the study until ``conn``'s transaction ends."""
    conn.execute(_LOCK_STUDY_SQL, {"study_id": study_id})


def start_trials(
    conn: sqlalchemy.Connection, study_id: int, wanted: int, room: int | None
) -> list[int]:
    """Inside ``conn``'s transaction, after ``lock_trial_creation``: move up to ``wanted``
    queued trials to RUNNING (oldest first), then create new RUNNING trials for the rest, at
    most ``room`` of them (None: no limit); the trial ids, queued ones first."""
    now_utc = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
    params = {
        "study_id": study_id,
        "wanted": wanted,
        "room": wanted if room is None else max(0, room),
        "now": now_utc,
    }
    return [int(row[0]) for row in conn.execute(_START_SQL, params)]


def live_trials(study: optuna.Study, trial_ids: list[int]) -> list[optuna.Trial]:
    """The ``optuna.Trial`` objects of trials started by ``start_trials``, built as
    ``Study.ask`` builds one, with one read of the study for all of them.

    Why: the study's storage (Optuna's ``_CachedStorage``) knows only trials it has read or
    created, and refuses to set a parameter of any other; ``get_trials`` (public) reads the
    new ones in. ``ask`` then clears the study's per-thread copy of its trials
    (``_thread_local.cached_all_trials``) so that the sampler and the pruner see the study
    as it is now; here that copy is set to the list just read, which is the same study,
    instead of being read again by the sampler. Each trial comes from the public
    constructor, which runs the sampler's ``before_trial``.
    """
    if not trial_ids:
        return []
    study._thread_local.cached_all_trials = study.get_trials(deepcopy=False)
    return [optuna.Trial(study, trial_id) for trial_id in trial_ids]


# A trial uses up the budget when it ran or will run: finished, running, queued, or failed for
# good (the worker recorded a reason). A trial failed through no fault of its own (its worker
# died, was stopped, or lost the database) does not: it names the copy that runs in its place.
# Seed replicates (sweeper.work.confirm) have a budget of their own. One count over Optuna's
# trials and trial_user_attributes (unique on (trial_id, key)): the claim holds the study's
# row lock while it counts, so the count cannot go stale before the new trials exist.
_BUDGET_SQL = sqlalchemy.text(
    """
    SELECT count(*) FROM trials t
    WHERE t.study_id = :study_id
      AND NOT EXISTS (SELECT 1 FROM trial_user_attributes r
                      WHERE r.trial_id = t.trial_id AND r.key = :replicate)
      AND (t.state IN ('COMPLETE', 'PRUNED', 'RUNNING', 'WAITING')
           OR (t.state = 'FAIL'
               AND EXISTS (SELECT 1 FROM trial_user_attributes a
                           WHERE a.trial_id = t.trial_id AND a.key = :reason)
               AND NOT EXISTS (SELECT 1 FROM trial_user_attributes a
                               WHERE a.trial_id = t.trial_id AND a.key = :requeued)))
    """
)


def budget_used(conn: sqlalchemy.Connection, study_id: int, keys: dict[str, str]) -> int:
    """Trials of the study that use up its budget (see ``_BUDGET_SQL``). ``keys`` names the
    user attributes read: ``reason`` (why it failed), ``requeued`` (its copy's number) and
    ``replicate`` (a seed replicate, outside the budget)."""
    params = {"study_id": study_id, **{k: keys[k] for k in ("reason", "requeued", "replicate")}}
    return int(conn.execute(_BUDGET_SQL, params).scalar_one())
