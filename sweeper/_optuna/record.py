"""Writes to Optuna's tables for trials already claimed: a pack's epoch in one round trip
(``record``), and notes on a finished trial (``annotate_finished``).

``tests/test_optuna_door.py`` checks each against the same operation through Optuna's public
API: the rows Optuna reads back, its pruners' decisions and the ``optuna`` CLI's output.
"""

from __future__ import annotations

import json
from typing import Any

import optuna
import sqlalchemy

from sweeper._optuna.trial import trial_id

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
