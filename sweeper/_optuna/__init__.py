"""The one door to Optuna's internals: every reach into a private name of Optuna is here.

Everything else in sweeper uses Optuna's public API. Each reach says why there is no public
route; when Optuna changes one of these, only this module breaks (and its tests say so).
"""

from __future__ import annotations

import datetime
import json
from typing import Any

import optuna
import sqlalchemy
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


def rdb_models() -> Any:
    """Optuna's SQLAlchemy table models, for one-query reads of a whole study.

    Why: the ORM path (``get_trials``) issues several queries per call and builds every
    ``FrozenTrial``; the dashboard reads tens of thousands of trials at once
    (``sweeper._optuna.read``). The schema is versioned by Optuna
    (``version_info``); a new release that changes it fails that module's equality test.
    """
    from optuna.storages._rdb import models

    return models


# Running trials whose worker went silent, by Optuna's tables (optuna/storages/_rdb/models.py:
# trials, trial_heartbeats). Optuna's own ``fail_stale_trials`` (RDBStorage
# ``_get_stale_trial_ids``) skips a running trial that has no heartbeat row at all, by design
# (its tests assert it: optuna/optuna#4026, #4055): a worker
# that lost the database between ``ask()`` committing the trial and its first heartbeat
# leaves such an orphan, RUNNING forever, holding a unit of the budget. This query also
# returns those, once they are older than the grace period. Optuna 5 stores ``datetime_start``
# as naive UTC (its TrialModel converts), the heartbeat as the server's local timestamp
# (``now()`` in a timestamp column): each is compared with a clock of its own kind.
_STALE_SQL = sqlalchemy.text(
    """
    SELECT t.trial_id, t.number, h.heartbeat
    FROM trials t LEFT JOIN trial_heartbeats h ON h.trial_id = t.trial_id
    WHERE t.study_id = :study_id AND t.state = 'RUNNING'
      AND ((h.heartbeat IS NOT NULL
            AND h.heartbeat < LOCALTIMESTAMP - make_interval(secs => :grace))
           OR (h.heartbeat IS NULL AND t.datetime_start < :started_before))
    ORDER BY t.number
    """
)


def stale_trials(
    engine: sqlalchemy.Engine, study_id: int, grace_seconds: float
) -> list[tuple[int, int, datetime.datetime | None]]:
    """``(trial_id, number, last heartbeat or None)`` of running trials silent too long."""
    now_utc = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
    started_before = now_utc - datetime.timedelta(seconds=grace_seconds)
    with engine.connect() as conn:
        rows = conn.execute(
            _STALE_SQL,
            {"study_id": study_id, "grace": grace_seconds, "started_before": started_before},
        ).all()
    return [(int(r[0]), int(r[1]), r[2]) for r in rows]


# Optuna refuses to change a finished trial (UpdateFinishedTrialError; optuna/optuna#3198, and
# #5860 where maintainers point stale-trial bookkeeping at study attributes), but a trial must be
# failed first, atomically (``set_trial_state_values``), before anyone may re-queue it:
# otherwise two reapers could both queue a copy. Only after that is the copy's number known,
# and the failed trial should say it. So the note goes into Optuna's table directly
# (trial_user_attributes, unique on (trial_id, key); values are JSON, as
# ``RDBStorage.set_trial_user_attr`` writes them).
_ANNOTATE_SQL = sqlalchemy.text(
    """
    INSERT INTO trial_user_attributes (trial_id, key, value_json)
    VALUES (:trial_id, :key, :value)
    ON CONFLICT (trial_id, key) DO UPDATE SET value_json = EXCLUDED.value_json
    """
)


def annotate_finished(engine: sqlalchemy.Engine, trial_id: int, values: dict[str, Any]) -> None:
    """Set user attributes on a trial that has already finished (one transaction)."""
    with engine.begin() as conn:
        for key, value in values.items():
            conn.execute(
                _ANNOTATE_SQL, {"trial_id": trial_id, "key": key, "value": json.dumps(value)}
            )


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


# The fleet's state for `sweeper status` (sweeper.cluster.status), read straight from Optuna's
# tables (trials, trial_heartbeats, trial_user_attributes, trial_system_attributes,
# trial_intermediate_values): Optuna's public API has no way to count trials by state, read a
# heartbeat, or find the trials finished in a time window without building every FrozenTrial,
# and a study may hold 100,000 of them. Each query touches only the study's rows through the
# indexes Optuna creates (trials.study_id; unique (trial_id, key) and (trial_id, step)).
# Clocks, as in _STALE_SQL: heartbeats are the server's local timestamps (compared with
# LOCALTIMESTAMP); datetime_start/complete are naive UTC (compared with the server's UTC).
_FLEET_SQL = {
    "now": "SELECT now() AT TIME ZONE 'UTC'",
    "states": "SELECT state, count(*) FROM trials WHERE study_id = :study_id GROUP BY state",
    "running": """
        SELECT t.number,
               (SELECT u.value_json FROM trial_user_attributes u
                WHERE u.trial_id = t.trial_id AND u.key = :worker_key),
               (SELECT u.value_json FROM trial_user_attributes u
                WHERE u.trial_id = t.trial_id AND u.key = :task_key),
               (SELECT max(v.step) FROM trial_intermediate_values v
                WHERE v.trial_id = t.trial_id),
               EXTRACT(EPOCH FROM LOCALTIMESTAMP - h.heartbeat),
               EXTRACT(EPOCH FROM (now() AT TIME ZONE 'UTC') - t.datetime_start)
        FROM trials t LEFT JOIN trial_heartbeats h ON h.trial_id = t.trial_id
        WHERE t.study_id = :study_id AND t.state = 'RUNNING'
        ORDER BY t.number""",
    "waiting": """
        SELECT t.number,
               (SELECT s.value_json FROM trial_system_attributes s
                WHERE s.trial_id = t.trial_id AND s.key = :retry_key),
               (SELECT s.value_json FROM trial_system_attributes s
                WHERE s.trial_id = t.trial_id AND s.key = :history_key),
               (SELECT u.value_json FROM trial_user_attributes u
                WHERE u.trial_id = t.trial_id AND u.key = :replicate_key)
        FROM trials t
        WHERE t.study_id = :study_id AND t.state = 'WAITING'
        ORDER BY t.number LIMIT :limit""",
    # Trials that finished for good in the window (a failure re-queued as a copy did not: its
    # copy is still to run), and how long ago the study's first trial started.
    "finished": """
        SELECT count(*) FILTER (
                 WHERE t.state IN ('COMPLETE', 'PRUNED', 'FAIL')
                   AND t.datetime_complete
                       >= (now() AT TIME ZONE 'UTC') - make_interval(secs => :window)
                   AND NOT EXISTS (SELECT 1 FROM trial_user_attributes a
                                   WHERE a.trial_id = t.trial_id AND a.key = :requeued_key)),
               EXTRACT(EPOCH FROM (now() AT TIME ZONE 'UTC') - min(t.datetime_start))
        FROM trials t WHERE t.study_id = :study_id""",
}


def fleet_rows(
    engine: sqlalchemy.Engine,
    study_id: int,
    *,
    keys: dict[str, str],
    window_seconds: float,
    waiting_limit: int,
) -> dict[str, Any]:
    """The raw rows behind ``sweeper status``, read in one REPEATABLE READ transaction.

    ``keys`` names the attributes read: ``worker`` and ``task`` (user), ``retry`` (system,
    the first trial of a retry series), ``history`` (system, the series' trials so far),
    ``replicate`` and ``requeued`` (user). Returns ``now`` (the server's naive UTC time),
    ``states`` ({state name: count}), ``running`` (number, worker or None, task or None, last
    reported step or None, heartbeat age in s or None, running for s or None), ``waiting``
    (number, retry-of, retry history, replicate-of, by number; at most ``waiting_limit``),
    ``finished`` (count in the last ``window_seconds``) and ``study_age`` (s since the first
    trial started, or None).
    """
    params = {
        "study_id": study_id,
        "worker_key": keys["worker"],
        "task_key": keys["task"],
        "history_key": keys["history"],
        "retry_key": keys["retry"],
        "replicate_key": keys["replicate"],
        "requeued_key": keys["requeued"],
        "window": window_seconds,
        "limit": waiting_limit,
    }
    with engine.connect() as conn:
        conn = conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():

            def run(name: str) -> list[Any]:
                statement = sqlalchemy.text(_FLEET_SQL[name])
                used = {k: v for k, v in params.items() if f":{k}" in _FLEET_SQL[name]}
                return list(conn.execute(statement, used).all())

            now = run("now")[0][0]
            states = {str(state): int(n) for state, n in run("states")}
            running = [
                (
                    int(r[0]),
                    _json(r[1]),
                    _json(r[2]),
                    None if r[3] is None else int(r[3]),
                    None if r[4] is None else float(r[4]),
                    None if r[5] is None else float(r[5]),
                )
                for r in run("running")
            ]
            waiting = [(int(r[0]), _json(r[1]), _json(r[2]), _json(r[3])) for r in run("waiting")]
            finished, age = run("finished")[0]
    return {
        "now": now,
        "states": states,
        "running": running,
        "waiting": waiting,
        "finished": int(finished),
        "study_age": None if age is None else float(age),
    }


def _json(text: str | None) -> Any:
    """An attribute's stored value (Optuna keeps them as JSON text), or None."""
    return None if text is None else json.loads(text)


# Recording a pack's epoch in one round trip. ``Trial.set_user_attr`` and ``Trial.report``
# are one storage transaction each (three or four statements: the trial's row FOR UPDATE, a
# state check, a look-up, the write), so a trial's start (five attributes) and each epoch
# (a report and a count) cost dozens of round trips, times K in a pack. Here one statement
# locks the trials' rows and checks them RUNNING as Optuna does, and writes every attribute
# and intermediate value of every trial (tables and value encodings as Optuna's RDBStorage
# writes them: trial_user_attributes (trial_id, key) unique, JSON values;
# trial_intermediate_values (trial_id, step) unique, value and type through
# ``TrialIntermediateValueModel.intermediate_value_to_stored_repr``). The live trials'
# cached records (``Trial._cached_frozen_trial``, which ``should_prune`` and
# ``user_attrs`` read) are updated as ``Trial.report`` and ``set_user_attr`` update them.
_RECORD_SQL = sqlalchemy.text(
    """
    WITH live AS (
        SELECT trial_id FROM trials
        WHERE trial_id = ANY(CAST(:trial_ids AS integer[])) AND state = 'RUNNING'
        FOR UPDATE),
    attrs AS (
        INSERT INTO trial_user_attributes (trial_id, key, value_json)
        SELECT a.trial_id, a.key, a.value_json
        FROM unnest(CAST(:a_ids AS integer[]), CAST(:a_keys AS varchar[]),
                    CAST(:a_values AS text[])) AS a(trial_id, key, value_json)
        WHERE a.trial_id IN (SELECT trial_id FROM live)
        ON CONFLICT (trial_id, key) DO UPDATE SET value_json = EXCLUDED.value_json
        RETURNING 1),
    reports AS (
        INSERT INTO trial_intermediate_values
            (trial_id, step, intermediate_value, intermediate_value_type)
        SELECT r.trial_id, r.step, r.value, CAST(r.kind AS trialintermediatevaluetype)
        FROM unnest(CAST(:r_ids AS integer[]), CAST(:r_steps AS integer[]),
                    CAST(:r_values AS double precision[]), CAST(:r_kinds AS text[]))
             AS r(trial_id, step, value, kind)
        WHERE r.trial_id IN (SELECT trial_id FROM live)
        ON CONFLICT (trial_id, step) DO UPDATE
            SET intermediate_value = EXCLUDED.intermediate_value,
                intermediate_value_type = EXCLUDED.intermediate_value_type
        RETURNING 1)
    SELECT trial_id, (SELECT count(*) FROM attrs), (SELECT count(*) FROM reports) FROM live
    """
)


def record(
    engine: sqlalchemy.Engine,
    entries: list[tuple[optuna.Trial, dict[str, Any], dict[int, float]]],
) -> None:
    """Set user attributes and report intermediate values of running trials, in one round
    trip (and a commit): ``entries`` holds ``(trial, {key: value}, {step: value})``.

    As ``Trial.set_user_attr`` and ``Trial.report`` do: a step a trial has already reported
    is left as it was, and a trial that is no longer running is not changed and raises
    ``UpdateFinishedTrialError`` (after the others are written).
    """
    from optuna.storages._rdb.models import TrialIntermediateValueModel

    stored = TrialIntermediateValueModel.intermediate_value_to_stored_repr
    columns: dict[str, list[Any]] = {
        k: [] for k in ("a_ids", "a_keys", "a_values", "r_ids", "r_steps", "r_values", "r_kinds")
    }
    fresh: list[tuple[optuna.Trial, dict[str, Any], dict[int, float]]] = []
    for trial, user_attrs, reports in entries:
        cached = trial._cached_frozen_trial
        new_reports = {int(s): float(v) for s, v in reports.items()}
        new_reports = {s: v for s, v in new_reports.items() if s not in cached.intermediate_values}
        fresh.append((trial, user_attrs, new_reports))
        for key, value in user_attrs.items():
            columns["a_ids"].append(trial_id(trial))
            columns["a_keys"].append(key)
            columns["a_values"].append(json.dumps(value))
        for step, value in new_reports.items():
            number, kind = stored(value)
            columns["r_ids"].append(trial_id(trial))
            columns["r_steps"].append(step)
            columns["r_values"].append(number)
            columns["r_kinds"].append(kind.name)
    ids = [trial_id(trial) for trial, _, _ in entries]
    with engine.begin() as conn:
        live = {int(row[0]) for row in conn.execute(_RECORD_SQL, {"trial_ids": ids, **columns})}
    finished = None
    for trial, user_attrs, new_reports in fresh:
        if trial_id(trial) not in live:
            finished = finished or trial
            continue
        trial._cached_frozen_trial.user_attrs.update(user_attrs)
        trial._cached_frozen_trial.intermediate_values.update(new_reports)
    if finished is not None:
        raise optuna.exceptions.UpdateFinishedTrialError(
            f"trial {finished.number} has already finished and cannot be updated"
        )
