"""Reads for the reaper and ``sweeper status``: stale running trials and the fleet's rows.

Each query touches only one study's rows of Optuna's tables, through the indexes Optuna
creates; none writes.
"""

from __future__ import annotations

import datetime
import json
from typing import Any

import sqlalchemy

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
