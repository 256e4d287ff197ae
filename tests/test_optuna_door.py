"""The door (``sweeper._optuna``) against Optuna's public API on a real PostgreSQL.

Each statement the door writes by hand is run beside the same operation through Optuna's
public API, on twin studies in one database (same sampler seed, same pruner, same history):
what Optuna reads back (``get_all_trials``, field by field), ``study.best_trial``, a
pruner's decisions and the ``optuna`` CLI's output must be the same. What the door reads must
equal what Optuna reads. ``make door-compat`` runs this file on the lowest Optuna the
project allows as well as the installed one.
"""

from __future__ import annotations

import collections
import json
import math
import os
import subprocess
import sys
from typing import Any, NamedTuple

import optuna
import pytest
from dashboard.factory import (
    synthetic_trials,
)
from optuna.trial import TrialState

from sweeper import _optuna, attrs
from sweeper._optuna.read import read_trials
from sweeper.errors import UsageError
from sweeper.storage import open_storage


def test_fast_reader_matches_optuna_field_by_field(storage_url: str) -> None:
    """Every kind of value Optuna stores, read back identically (order included)."""
    storage = open_storage(storage_url)
    study = optuna.create_study(storage=storage, study_name="odd", direction="maximize")
    study.add_trials(synthetic_trials(6, optimizers=("adamw", "adam"), n_failed=1, epochs=3))
    trial = study.ask()
    trial.report(float("nan"), 1)
    trial.report(float("inf"), 2)
    trial.set_user_attr("nested", {"a": [1, 2.5, None]})
    trial.storage.set_trial_system_attr(trial._trial_id, "sys", "x")
    study.tell(trial, float("-inf"))
    study.ask()  # left RUNNING, no params
    ref = optuna.load_study(study_name="odd", storage=storage).get_trials(deepcopy=False)
    got = read_trials(storage, "odd")
    assert len(got) == len(ref) == 8
    for a, b in zip(got, ref, strict=True):
        assert (a.number, a.state, a.values, a.params, a.distributions) == (
            b.number,
            b.state,
            b.values,
            b.params,
            b.distributions,
        )
        assert (a.user_attrs, a.system_attrs, a.datetime_start, a.datetime_complete) == (
            b.user_attrs,
            b.system_attrs,
            b.datetime_start,
            b.datetime_complete,
        )
        assert a.intermediate_values.keys() == b.intermediate_values.keys()
        for k, v in a.intermediate_values.items():
            assert v == b.intermediate_values[k] or (
                math.isnan(v) and math.isnan(b.intermediate_values[k])
            )
    with pytest.raises(UsageError, match="no study named 'absent'"):
        read_trials(storage, "absent")
    # Reading less: only some states, no curves, no system attributes, chosen user keys.
    lean = read_trials(
        storage,
        "odd",
        states=(TrialState.COMPLETE,),
        intermediate_values=False,
        system_attrs=False,
        user_keys=("optimizer",),
    )
    full = [t for t in ref if t.state == TrialState.COMPLETE]
    assert [t.number for t in lean] == [t.number for t in full] and len(lean) == 5
    for a, b in zip(lean, full, strict=True):
        assert (a.values, a.params) == (b.values, b.params)
        assert a.intermediate_values == {} and a.system_attrs == {}
        assert a.user_attrs == {k: v for k, v in b.user_attrs.items() if k == "optimizer"}


# --------------------------------------------------------------------------- twin studies

SPACE = {
    "lr": optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True),
    "weight_decay": optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True),
}
# One finished trial in each twin: the median pruner's reference (epochs 1 and 2).
HISTORY = optuna.trial.create_trial(
    params={"lr": 1e-3, "weight_decay": 1e-3},
    distributions=SPACE,
    value=0.6,
    intermediate_values={1: 0.5, 2: 0.6},
)


class Twins(NamedTuple):
    """Two studies alike in every way in one database: ``door`` is driven through
    sweeper._optuna, ``api`` through Optuna's public API. ``engine`` is what the door takes
    (the RDBStorage's, as ``Budget`` and the worker pass it)."""

    door: optuna.Study
    api: optuna.Study
    engine: Any
    url: str


def _twins(url: str) -> Twins:
    """Each twin holds one finished trial, then two queued ones (the second with a user
    attribute), a seeded random sampler and a median pruner."""
    storage = optuna.storages.RDBStorage(url)
    studies = []
    for name in ("door", "api"):
        study = optuna.create_study(
            storage=storage,
            study_name=name,
            direction="maximize",
            sampler=optuna.samplers.RandomSampler(seed=7),
            pruner=optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0),
        )
        study.add_trial(HISTORY)
        study.enqueue_trial({"lr": 3e-4, "weight_decay": 1e-2})
        study.enqueue_trial({"lr": 2e-3, "weight_decay": 1e-4}, user_attrs={"queued": True})
        studies.append(study)
    return Twins(studies[0], studies[1], storage.engine, url)


def _claim(twins: Twins, wanted: int, room: int | None = None) -> list[optuna.Trial]:
    """Trials started as ``Budget.claim`` starts them (the count left to the caller)."""
    study_id = twins.door._storage.get_study_id_from_name("door")
    with twins.engine.connect() as conn, conn.begin():
        _optuna.lock_trial_creation(conn, study_id)
        started = _optuna.start_trials(conn, study_id, wanted, room)
    return _optuna.live_trials(twins.door, started)


def _suggest(trial: optuna.Trial) -> None:
    for name, dist in SPACE.items():
        trial.suggest_float(name, dist.low, dist.high, log=True)


def _stored(url: str, name: str) -> list[dict[str, Any]]:
    """The study's trials as a fresh reader through Optuna sees them, less what differs by
    construction between twins (trial ids, wall-clock times)."""
    storage = optuna.storages.RDBStorage(url)  # a fresh reader: nothing cached
    trials = storage.get_all_trials(storage.get_study_id_from_name(name), deepcopy=False)
    return [
        {
            "number": t.number,
            "state": t.state.name,
            "values": repr(t.values),
            "params": t.params,
            "distributions": {k: repr(v) for k, v in t.distributions.items()},
            "user_attrs": t.user_attrs,
            "system_attrs": t.system_attrs,
            # As text: NaN equals NaN only there.
            "intermediate_values": repr(sorted(t.intermediate_values.items())),
            "started": t.datetime_start is not None,
            "completed": t.datetime_complete is not None,
        }
        for t in trials
    ]


def _optuna_cli(url: str, *args: str) -> Any:
    """The ``optuna`` command line's JSON output (the Optuna this interpreter imports)."""
    code = "import sys; from optuna.cli import main; sys.exit(main())"
    result = subprocess.run(
        [sys.executable, "-c", code, *args, "--storage", url, "--format", "json"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _without_times(rows: Any) -> Any:
    if isinstance(rows, list):
        return [_without_times(r) for r in rows]
    return {
        k: v
        for k, v in rows.items()
        if k not in ("datetime_start", "datetime_complete", "duration")
    }


# --------------------------------------------------------------------------- conformance


def test_claimed_trials_are_the_trials_ask_would_start(storage_url: str) -> None:
    """``start_trials`` + ``live_trials`` against ``Study.ask``: queued trials first, in
    queue order, with their fixed parameters and user attributes; then a new trial whose
    parameters the same seeded sampler draws; all RUNNING with a start time."""
    twins = _twins(storage_url)
    claimed = _claim(twins, 1) + _claim(twins, 2)  # one queued trial, then the other and a new one
    asked = [twins.api.ask() for _ in range(3)]
    assert [t.number for t in claimed] == [t.number for t in asked] == [1, 2, 3]
    for trial in (*claimed, *asked):
        _suggest(trial)
    assert [t.params for t in claimed] == [t.params for t in asked]
    assert claimed[0].params == {"lr": 3e-4, "weight_decay": 1e-2}
    assert claimed[2].params not in (claimed[0].params, claimed[1].params)  # drawn
    rows = _stored(storage_url, "door")
    assert rows == _stored(storage_url, "api")
    assert [r["state"] for r in rows] == ["COMPLETE", "RUNNING", "RUNNING", "RUNNING"]
    assert all(r["started"] and not r["completed"] for r in rows[1:])
    assert rows[2]["user_attrs"] == {"queued": True}


def test_a_claim_respects_its_room_and_pops_before_it_creates(storage_url: str) -> None:
    twins = _twins(storage_url)
    assert [t.number for t in _claim(twins, 3, room=0)] == [1, 2]  # queued: always served
    assert _claim(twins, 2, room=0) == []
    assert [t.number for t in _claim(twins, 5, room=2)] == [3, 4]
    states = collections.Counter(t.state for t in twins.door.get_trials(deepcopy=False))
    assert states == {TrialState.COMPLETE: 1, TrialState.RUNNING: 4}


def test_record_writes_what_report_and_set_user_attr_write(storage_url: str) -> None:
    """One ``record`` round trip against ``Trial.report`` and ``Trial.set_user_attr``, with
    every kind of value Optuna encodes (finite, inf, -inf, NaN; JSON attributes); then the
    median pruner decides alike, a reported step keeps its first value, the best trial and
    the ``optuna`` CLI's view of both studies are the same."""
    twins = _twins(storage_url)
    claimed, asked = _claim(twins, 2), [twins.api.ask() for _ in range(2)]
    user = [
        {attrs.SEED: 11, attrs.WORKER: "gpu-a:4101", "nested": {"a": [1, 2.5, None]}},
        {attrs.SEED: 12, attrs.EPOCHS_RUN: 2, "text": "line\nbreak"},
    ]
    # Epoch 1, then the values Optuna encodes apart (inf, -inf, NaN), then a repeated step.
    epochs = [
        ([{1: 0.4}, {1: 0.9}], user),
        ([{2: float("inf"), 3: float("-inf")}, {2: float("nan")}], [{}, {}]),
        ([{1: 0.99}, {}], [{}, {}]),
    ]
    decisions = []
    for reports, user_attrs in epochs:
        _optuna.record(twins.engine, list(zip(claimed, user_attrs, reports, strict=True)))
        for trial, values, steps in zip(asked, user_attrs, reports, strict=True):
            for key, value in values.items():
                trial.set_user_attr(key, value)
            for step, value in steps.items():
                trial.report(value, step)
        assert _stored(storage_url, "door") == _stored(storage_url, "api")
        # The pruner reads the live trial's cached record, which ``record`` keeps as
        # ``report`` does.
        decisions.append([bool(t.should_prune()) for t in claimed])
        assert decisions[-1] == [bool(t.should_prune()) for t in asked]
    assert decisions[0] == [True, False]  # 0.4 below the history's 0.5 at epoch 1; 0.9 above
    for trial, value in zip((*claimed, *asked), (0.4, 0.9, 0.4, 0.9), strict=True):
        trial.study.tell(trial, value)
    assert twins.door.best_trial.number == twins.api.best_trial.number == 2
    assert twins.door.best_trial.user_attrs == twins.api.best_trial.user_attrs
    assert _stored(storage_url, "door") == _stored(storage_url, "api")
    listed = {n: _optuna_cli(storage_url, "trials", "--study-name", n) for n in ("door", "api")}
    assert _without_times(listed["door"]) == _without_times(listed["api"])
    assert len(listed["door"]) == 3
    best = {n: _optuna_cli(storage_url, "best-trial", "--study-name", n) for n in ("door", "api")}
    assert _without_times(best["door"]) == _without_times(best["api"])


def test_record_refuses_a_finished_trial_as_report_does(storage_url: str) -> None:
    twins = _twins(storage_url)
    (mine,), theirs = _claim(twins, 1), twins.api.ask()
    twins.door.tell(mine, 0.5)
    twins.api.tell(theirs, 0.5)
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        theirs.report(0.7, 1)
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        _optuna.record(twins.engine, [(mine, {"late": 1}, {1: 0.7})])
    assert _stored(storage_url, "door") == _stored(storage_url, "api")


def test_a_note_on_a_finished_trial_reads_back_as_an_attribute_set_before(
    storage_url: str,
) -> None:
    """``annotate_finished`` writes where Optuna's public API cannot (a finished trial):
    Optuna and its CLI read the notes back exactly as attributes set while the trial ran,
    the last write of a key winning."""
    twins = _twins(storage_url)
    (mine,), theirs = _claim(twins, 1), twins.api.ask()
    note = {attrs.FAIL_REASON: "stopped by SIGTERM; re-queued as trial 7", attrs.REQUEUED_AS: 7}
    writes = [{attrs.SEED: 1}, note, {attrs.SEED: 2}]
    for values in writes:
        for key, value in values.items():
            theirs.set_user_attr(key, value)
    twins.door.tell(mine, state=TrialState.FAIL)
    twins.api.tell(theirs, state=TrialState.FAIL)
    for values in writes:
        _optuna.annotate_finished(twins.engine, _optuna.trial_id(mine), values)
    rows = _stored(storage_url, "door")
    assert rows == _stored(storage_url, "api")
    assert rows[1]["user_attrs"] == {**note, attrs.SEED: 2}
    listed = {n: _optuna_cli(storage_url, "trials", "--study-name", n) for n in ("door", "api")}
    assert _without_times(listed["door"]) == _without_times(listed["api"])


def test_a_pruner_s_note_reads_back_as_set_user_attr_writes_it(storage_url: str) -> None:
    """``set_running_user_attr`` (what a pruner holding only a ``FrozenTrial`` writes) against
    ``Trial.set_user_attr`` on the live trial: the same rows, the same CLI listing."""
    twins = _twins(storage_url)
    (mine,), theirs = _claim(twins, 1), twins.api.ask()
    note = {"epoch": 2, "mean": [0.2, 0.21], "chance": 1e-4}
    for trial in (mine, theirs):
        trial.report(0.2, 1)
    frozen = next(t for t in twins.door.get_trials(deepcopy=False) if t.number == mine.number)
    _optuna.set_running_user_attr(twins.door, frozen, attrs.FORECAST, note)
    theirs.set_user_attr(attrs.FORECAST, note)
    twins.door.tell(mine, state=TrialState.PRUNED)
    twins.api.tell(theirs, state=TrialState.PRUNED)
    assert _stored(storage_url, "door") == _stored(storage_url, "api")
    listed = {n: _optuna_cli(storage_url, "trials", "--study-name", n) for n in ("door", "api")}
    assert _without_times(listed["door"]) == _without_times(listed["api"])


def test_the_budget_counts_what_its_definition_says(storage_url: str) -> None:
    """``budget_used`` against its definition applied to ``get_trials``: finished, running
    and queued trials count, a failure counts once it has a reason unless it was re-queued,
    and seed replicates never count."""
    storage = optuna.storages.RDBStorage(storage_url)
    study = optuna.create_study(storage=storage, study_name="budget")
    kinds = [
        (TrialState.COMPLETE, {}),
        (TrialState.PRUNED, {}),
        (TrialState.FAIL, {attrs.FAIL_REASON: "NaN loss"}),
        (TrialState.FAIL, {attrs.FAIL_REASON: "stopped", attrs.REQUEUED_AS: 9}),
        (TrialState.FAIL, {}),
        (TrialState.COMPLETE, {attrs.REPLICATE_OF: 0}),
    ]
    for state, user_attrs in kinds:
        value = 0.5 if state == TrialState.COMPLETE else None
        study.add_trial(optuna.trial.create_trial(state=state, value=value, user_attrs=user_attrs))
    study.ask()  # running
    study.enqueue_trial({})  # waiting
    keys = {
        "reason": attrs.FAIL_REASON,
        "requeued": attrs.REQUEUED_AS,
        "replicate": attrs.REPLICATE_OF,
    }
    with storage.engine.connect() as conn:
        used = _optuna.budget_used(conn, storage.get_study_id_from_name("budget"), keys)

    def counts(t: optuna.trial.FrozenTrial) -> bool:
        if attrs.REPLICATE_OF in t.user_attrs:
            return False
        if t.state == TrialState.FAIL:
            return attrs.FAIL_REASON in t.user_attrs and attrs.REQUEUED_AS not in t.user_attrs
        return True

    assert used == sum(counts(t) for t in study.get_trials(deepcopy=False)) == 5


def test_the_fleet_and_stale_reads_agree_with_optuna(storage_url: str) -> None:
    storage = optuna.storages.RDBStorage(storage_url)
    study = optuna.create_study(storage=storage, study_name="fleet")
    study.add_trials(synthetic_trials(12, n_failed=2, epochs=3))
    running = study.ask()
    running.report(0.5, 1)
    study.enqueue_trial({})
    study_id = storage.get_study_id_from_name("fleet")
    running.set_user_attr(attrs.CLUSTER_TASK, "slurm 7_1")
    keys = {
        "worker": attrs.WORKER,
        "task": attrs.CLUSTER_TASK,
        "retry": "failed_trial",
        "history": "retry_history",
        "replicate": attrs.REPLICATE_OF,
        "requeued": attrs.REQUEUED_AS,
    }
    rows = _optuna.fleet_rows(
        storage.engine, study_id, keys=keys, window_seconds=1e9, waiting_limit=10
    )
    states = collections.Counter(t.state.name for t in study.get_trials(deepcopy=False))
    assert rows["states"] == dict(states)
    assert [(r[0], r[2], r[3]) for r in rows["running"]] == [(running.number, "slurm 7_1", 1)]
    assert [r[0] for r in rows["waiting"]] == [running.number + 1]
    # A trial that never sent a heartbeat is stale only once older than the grace period.
    assert _optuna.stale_trials(storage.engine, study_id, 3600.0) == []
    stale = _optuna.stale_trials(storage.engine, study_id, -1.0)
    assert [(n, beat) for _, n, beat in stale] == [(running.number, None)]


def test_the_reader_opens_only_the_schema_this_optuna_writes(storage_url: str) -> None:
    """``open_reader``: None on an empty database, an unreachable server or an older
    schema (the usual opener then creates, upgrades or explains); on this Optuna's schema a
    storage whose reads equal ``RDBStorage``'s, found without alembic."""
    from sweeper._optuna.reader import head_revision, open_reader

    assert open_reader(storage_url) is None  # no tables yet
    assert open_reader("postgresql+psycopg2://nobody@127.0.0.1:1/none") is None
    storage = optuna.storages.RDBStorage(storage_url)
    assert head_revision() == storage.get_head_version() == storage.get_current_version()
    study = optuna.create_study(storage=storage, study_name="read", direction="maximize")
    study.set_user_attr("spec", {"name": "read"})
    study.add_trials(synthetic_trials(8, optimizers=("adamw", "adam"), n_failed=1, epochs=3))
    reader = open_reader(storage_url)
    assert reader is not None
    through = optuna.load_study(study_name="read", storage=reader)
    assert through.user_attrs == study.user_attrs
    assert through.best_trial.number == study.best_trial.number
    assert read_trials(reader, "read") == read_trials(storage, "read")
    assert through.get_trials(deepcopy=False) == study.get_trials(deepcopy=False)
    with storage.engine.begin() as conn:  # a schema an older Optuna left
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = 'v3.0.0.d'")
    assert open_reader(storage_url) is None
