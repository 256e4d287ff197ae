"""``sweeper status``: the fleet's numbers, read from a real study in a real PostgreSQL.

The study is built with Optuna's own ask/tell, sweeper's fail and re-queue paths and real
heartbeats; the test then moves clocks it must know exactly (a heartbeat an hour old, when
trials finished) with plain SQL on the same tables, and runs the real console script.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import time
from dataclasses import dataclass
from typing import Any

import optuna
import pytest
import sqlalchemy as sa
from clirun import SCRIPT, finish, one_line_error, start_and_wait_for, sweeper
from optuna.trial import TrialState
from sqlalchemy.engine import make_url

from sweeper import _optuna, attrs
from sweeper.cluster.status import read_status
from sweeper.spec import StudySpec, parse_spec
from sweeper.storage import open_storage
from sweeper.study import create_or_load
from sweeper.work import requeue

GRACE = 60  # the study's grace period (s)


def _spec(name: str, n_trials: int | None) -> StudySpec:
    study: dict[str, Any] = {"name": name}
    if n_trials is not None:
        study["n_trials"] = n_trials
    return parse_spec(
        {
            "study": study,
            "training": {"epochs": 4},
            "storage": {"heartbeat_interval": 10, "grace_period": GRACE},
        },
        "inline",
    )


@dataclass
class Fleet:
    """The study ``fleet`` and the numbers of its trials."""

    url: str
    waiting_copy: int
    interrupted: int
    running: dict[str, int]  # fresh, stale, slow (heartbeat 30 s old), silent (no heartbeat)


def _sql(engine: sa.Engine, statement: str, **params: Any) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text(statement), params)


def _finished_ago(engine: sa.Engine, trial: optuna.Trial | int, seconds: float) -> None:
    """Say the trial finished ``seconds`` ago by the database's UTC clock."""
    number = trial if isinstance(trial, int) else trial.number
    _sql(
        engine,
        "UPDATE trials SET datetime_complete = (now() AT TIME ZONE 'UTC') - "
        "make_interval(secs => :s) WHERE number = :n",
        s=seconds,
        n=number,
    )


@pytest.fixture
def fleet(storage_url: str) -> Fleet:
    """The study ``fleet`` in a fresh database (``build_fleet``)."""
    return build_fleet(storage_url)


def build_fleet(storage_url: str) -> Fleet:
    """Budget 20; 9 complete, 1 pruned, 1 failed (its own fault), 1 interrupted and
    re-queued (its copy waits), 4 running on alpha (2 workers), beta and an unrecorded one."""
    spec = _spec("fleet", 20)
    storage = open_storage(storage_url, spec.storage)
    study = create_or_load(storage, spec)
    engine = storage.engine
    done = []
    for i in range(9):
        trial = study.ask()
        trial.report(0.5, 1)
        study.tell(trial, 0.5 + i / 100)
        done.append(trial)
    pruned = study.ask()
    pruned.report(0.1, 1)
    study.tell(pruned, state=TrialState.PRUNED)
    failed = study.ask()
    requeue.fail(study, failed, "training loss is nan at epoch 1")
    running: dict[str, int] = {}
    for name, worker, epochs in (
        ("fresh", "alpha:101", 2),
        ("stale", "alpha:102", 1),
        ("slow", "beta:7", 3),
        ("silent", None, 0),
    ):
        trial = study.ask()
        for epoch in range(1, epochs + 1):
            trial.report(0.3 + epoch / 10, epoch)
        if worker is not None:
            trial.set_user_attr(attrs.WORKER, worker)
            storage.record_heartbeat(_optuna.trial_id(trial))
        running[name] = trial.number
    # Last: ask() would hand the waiting copy to the next caller.
    interrupted = study.ask()
    copy = requeue.interrupt(study, storage, interrupted, "stopped by SIGTERM", max_retry=3)
    assert copy is not None

    # Clocks: every trial started two hours ago, so the 10-minute window is the whole window.
    _sql(engine, "UPDATE trials SET datetime_start = (now() AT TIME ZONE 'UTC') - interval '2 h'")
    for k, trial in enumerate(done):  # 6 within the last 10 minutes (1..6 min ago), 3 before
        _finished_ago(engine, trial, 60 * (k + 1) if k < 6 else 1800)
    _finished_ago(engine, pruned, 120)
    _finished_ago(engine, failed, 180)
    _finished_ago(engine, interrupted, 60)  # re-queued: its copy is still to run
    for name, age in (("stale", 3600), ("slow", 30)):
        _sql(
            engine,
            "UPDATE trial_heartbeats SET heartbeat = LOCALTIMESTAMP - make_interval(secs => :a) "
            "WHERE trial_id = (SELECT trial_id FROM trials WHERE number = :n)",
            a=age,
            n=running[name],
        )
    return Fleet(storage_url, copy, interrupted.number, running)


def _status(url: str, *args: str) -> dict[str, Any]:
    result = sweeper("status", "--study", "fleet", "--storage", url, "--format", "json", *args)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return json.loads(result.stdout)


def test_the_numbers_are_exact(fleet: Fleet) -> None:
    s = _status(fleet.url)
    # Budget: 9 complete + 1 pruned + 1 failed for good + 1 waiting + 4 running; the
    # interrupted trial's failure does not count (its copy does).
    assert (s["budget_limit"], s["budget_used"], s["budget_left"]) == (20, 16, 4)
    assert s["states"] == {
        "running": 4,
        "complete": 9,
        "pruned": 1,
        "fail": 2,
        "waiting": 1,
    }
    assert s["epochs"] == 4 and s["grace_period_s"] == GRACE
    by_number = {t["number"]: t for t in s["running"]}
    assert sorted(by_number) == sorted(fleet.running.values())
    fresh, stale, slow, silent = (by_number[fleet.running[k]] for k in fleet.running)
    assert (fresh["worker"], fresh["host"], fresh["epoch"], fresh["stale"]) == (
        "alpha:101",
        "alpha",
        2,
        False,
    )
    assert (stale["worker"], stale["host"], stale["epoch"], stale["stale"]) == (
        "alpha:102",
        "alpha",
        1,
        True,
    )
    assert (slow["worker"], slow["host"], slow["epoch"], slow["stale"]) == (
        "beta:7",
        "beta",
        3,
        False,
    )
    assert (silent["worker"], silent["epoch"], silent["heartbeat_age_s"], silent["stale"]) == (
        None,
        None,
        None,
        True,
    )
    # Ages by the database's clock; the CLI ran within seconds of the setup.
    assert 0 <= fresh["heartbeat_age_s"] < 30
    assert 30 <= slow["heartbeat_age_s"] < 30 + 30
    assert 3600 <= stale["heartbeat_age_s"] < 3600 + 30
    assert 7200 <= silent["running_s"] < 7200 + 30
    assert s["stale"] == sorted([fleet.running["stale"], fleet.running["silent"]])
    assert s["waiting"] == [
        {
            "number": fleet.waiting_copy,
            "retry_of": fleet.interrupted,
            "copy_of": fleet.interrupted,
            "replicate_of": None,
        }
    ]
    # Rate: 6 complete + 1 pruned + 1 failed for good in the last 10 minutes (the re-queued
    # failure is not a finished trial), over the whole window: 8 / 10 min.
    assert (s["window_s"], s["span_s"], s["finished_in_window"]) == (600, 600, 8)
    assert s["per_minute"] == pytest.approx(0.8)
    # ETA: 4 unclaimed + 4 running + 1 waiting = 9 trials at 0.8/min = 11.25 min.
    assert s["to_finish"] == 9
    assert s["eta_s"] == pytest.approx(9 / 0.8 * 60)
    assert s["eta_basis"] == (
        "9 trials to finish (4 unclaimed + 4 running + 1 waiting) at 0.8/min, "
        "from 8 trials finished in the last 10 min"
    )


def test_a_narrow_window_says_how_rough_its_rate_is(fleet: Fleet) -> None:
    s = _status(fleet.url, "--window", "2.5")  # finished 1 and 2 min ago: 2 complete, 1 pruned
    assert (s["span_s"], s["finished_in_window"]) == (150, 3)
    assert s["per_minute"] == pytest.approx(3 / 2.5)
    assert s["eta_s"] == pytest.approx(9 / 1.2 * 60)
    assert s["eta_basis"].endswith(
        "from 3 trials finished in the last 2.5 min; rough: only 3 trials"
    )


def test_no_finished_trial_in_the_window_means_an_unknown_eta(fleet: Fleet) -> None:
    s = _status(fleet.url, "--window", "0.5")
    assert (s["finished_in_window"], s["per_minute"], s["eta_s"]) == (0, None, None)
    assert s["eta_basis"].startswith("unknown: no trial finished in the last 30 s; 9 trials")
    table = sweeper("status", "--study", "fleet", "--storage", fleet.url, "--window", "0.5")
    assert "ETA: unknown (unknown: no trial finished" in table.stdout


def test_the_table_groups_workers_by_host(fleet: Fleet) -> None:
    result = sweeper("status", "--study", "fleet", "--storage", fleet.url)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("study 'fleet': 16 of 20 trials used, 4 left (at ")
    assert lines[1] == "trials: 4 running, 9 complete, 1 pruned, 2 fail, 1 waiting"
    stale = fleet.running["stale"], fleet.running["silent"]
    assert lines[2] == (
        "running: 4 trials, 3 workers on 2 hosts; 2 stale (silent past the 60 s grace; the "
        f"next claim or 'sweeper reap' re-queues them): {stale[0]}, {stale[1]}"
    )
    text = result.stdout
    alpha, beta, unknown = (
        text.index("  host alpha: 2 trials"),
        text.index("  host beta: 1 trial\n"),
        text.index("  worker not recorded yet: 1 trial\n"),
    )
    assert alpha < beta < unknown
    rows = {line.split()[0]: line for line in lines if line.startswith("    ")}
    assert rows["alpha:101"].split()[1:3] == [str(fleet.running["fresh"]), "2/4"]
    assert rows["-"].split()[1:4] == [str(fleet.running["silent"]), "0/4", "none"]
    assert rows["alpha:102"].rstrip().endswith("STALE")
    assert "STALE" not in rows["alpha:101"] and "STALE" not in rows["beta:7"]
    assert f"waiting: 1: {fleet.waiting_copy} (copy of {fleet.interrupted})" in lines
    assert "rate: 0.8 trials/min over the last 10 min (8 finished)" in lines
    assert lines[-1].startswith("ETA: 11.2 min (9 trials to finish")


def test_an_unlimited_budget_has_no_eta(storage_url: str) -> None:
    spec = _spec("open", None)
    study = create_or_load(open_storage(storage_url, spec.storage), spec)
    study.tell(study.ask(), 0.5)
    result = sweeper("status", "--study", "open", "--storage", storage_url, "--format", "json")
    s = json.loads(result.stdout)
    assert (s["budget_limit"], s["budget_used"], s["budget_left"]) == (None, 1, None)
    assert (s["to_finish"], s["eta_s"]) == (None, None)
    assert s["per_minute"] is not None  # the rate is still measured
    assert s["eta_basis"] == "the budget is unlimited: workers run until stopped"


def _snapshots(proc: subprocess.Popen[str], count: int) -> list[str]:
    """Read ``proc``'s stdout until ``count`` snapshots (separated by blank lines) are whole,
    or it ends: waits on its lines, however slowly a loaded machine produces them."""
    assert proc.stdout is not None
    blocks: list[list[str]] = [[]]
    for line in proc.stdout:
        if line == "\n":
            blocks.append([])
        else:
            blocks[-1].append(line)
        if len(blocks) > count:
            break
    return ["".join(b) for b in blocks[:count]]


def _watch(url: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(SCRIPT), "status", "--study", "fleet", "--storage", url, "--watch", "0.2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )


def test_watch_refreshes_until_ctrl_c(fleet: Fleet) -> None:
    proc = _watch(fleet.url)
    try:
        first, second = _snapshots(proc, 2)
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate()  # its exit is the event: no deadline
    for snapshot in (first, second):
        assert snapshot.startswith("study 'fleet': 16 of 20 trials used, 4 left"), snapshot
        assert "\x1b[" not in snapshot  # no screen codes into a pipe
        assert snapshot.rstrip().splitlines()[-1].startswith("ETA: ")
    assert proc.returncode == 0, err
    assert err == ""


def test_ctrl_c_ends_watch_while_a_query_is_blocked(fleet: Fleet) -> None:
    """A refresh blocked in the database (another session holds an exclusive lock on the
    trials table): SIGINT still ends the watch with exit 0 while the lock is held."""
    engine = sa.create_engine(fleet.url)
    holder = engine.connect()
    proc = _watch(fleet.url)
    try:
        _snapshots(proc, 1)
        holder.execute(sa.text("LOCK TABLE trials IN ACCESS EXCLUSIVE MODE"))
        with engine.connect() as probe:  # the event: the watch's query waits on the lock
            waiting = sa.text(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND datname = current_database()"
            )
            while not probe.execute(waiting).scalar_one():
                time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        # Only a bound on failure (the lock is held until after this): a watch that cannot
        # be interrupted would otherwise hang here forever.
        code = proc.wait(timeout=120)
        assert code == 0, proc.stderr.read() if proc.stderr else ""
    finally:
        holder.rollback()
        holder.close()
        proc.kill()
        proc.communicate()
        engine.dispose()


def test_bad_input_is_one_line_and_exit_2(fleet: Fleet) -> None:
    # The server's own password (the embedded server asks for one), or one it ignores.
    secret = make_url(fleet.url).password or "s3cret-pw"
    with_password = make_url(fleet.url).set(password=secret).render_as_string(False)
    cases = {
        ("--study", "nope", "--storage", with_password): "no study named 'nope'",
        ("--study", "fleet", "--storage", fleet.url, "--watch", "0"): "--watch: must be",
        ("--study", "fleet", "--storage", fleet.url, "--watch", "soon"): "--watch: must be",
        ("--study", "fleet", "--storage", fleet.url, "--window", "0"): "--window: must be",
        ("--study", "fleet", "--storage", fleet.url, "--window", "nan"): "--window: must be",
        ("--study", "fleet", "--storage", fleet.url, "--watch", "--format", "json"): (
            "--watch refreshes a screen for people"
        ),
    }
    for args, expected in cases.items():
        result = sweeper("status", *args)
        assert result.returncode == 2, (args, result.stderr)
        assert expected in one_line_error(result), (args, result.stderr)
        assert result.stdout == ""
        assert secret not in result.stderr


# 20,000 finished trials as Optuna's tables hold them, written in one statement per table:
# Optuna's add_trials takes ~45 ms a trial here (15 minutes for this study). The rows are
# the ones RDBStorage writes (a value, two epochs, a param, seed and worker attributes);
# get_trials reads them back below, so a wrong row would fail the test.
_BULK_SQL = [
    """INSERT INTO trials (number, study_id, state, datetime_start, datetime_complete)
       SELECT g, :study_id, 'COMPLETE', (now() AT TIME ZONE 'UTC') - interval '3 h',
              (now() AT TIME ZONE 'UTC')
                - make_interval(mins => CASE g % 2 WHEN 0 THEN 5 ELSE 60 END)
       FROM generate_series(0, :n - 1) g""",
    """INSERT INTO trial_values (trial_id, objective, value, value_type)
       SELECT trial_id, 0, 0.5, 'FINITE' FROM trials WHERE study_id = :study_id""",
    """INSERT INTO trial_intermediate_values
           (trial_id, step, intermediate_value, intermediate_value_type)
       SELECT trial_id, s, 0.4 + s / 20.0, 'FINITE'
       FROM trials, generate_series(1, 2) s WHERE study_id = :study_id""",
    """INSERT INTO trial_params (trial_id, param_name, param_value, distribution_json)
       SELECT trial_id, 'lr', 2e-4, :distribution FROM trials WHERE study_id = :study_id""",
    """INSERT INTO trial_user_attributes (trial_id, key, value_json)
       SELECT trial_id, 'seed', number::text FROM trials WHERE study_id = :study_id
       UNION ALL
       SELECT trial_id, 'worker', concat('"h', number % 8, chr(58), '1"') FROM trials
       WHERE study_id = :study_id""",
]


@pytest.mark.slow
def test_a_large_study_is_read_in_a_few_queries(storage_url: str) -> None:
    """20,000 finished trials and 8 running: status reads them in a small fraction of what
    Optuna's get_trials takes (which it must not call), and well under a second."""
    n = 20_000
    spec = _spec("big", 30_000)
    storage = open_storage(storage_url, spec.storage)
    study = create_or_load(storage, spec)
    lr = optuna.distributions.FloatDistribution(1e-4, 1e-3, log=True)
    study_id = storage.get_study_id_from_name("big")
    for statement in _BULK_SQL:
        _sql(
            storage.engine,
            statement,
            study_id=study_id,
            n=n,
            distribution=optuna.distributions.distribution_to_json(lr),
        )
    for i in range(8):
        trial = study.ask()
        trial.set_user_attr(attrs.WORKER, f"h{i}:2")
        storage.record_heartbeat(_optuna.trial_id(trial))
    with storage.engine.connect() as conn:  # as autovacuum does for a study written trial
        conn.execution_options(isolation_level="AUTOCOMMIT").execute(sa.text("ANALYZE"))

    def timed(read: Any) -> float:
        started = time.perf_counter()
        read()
        return time.perf_counter() - started

    status = read_status(storage, study)  # warm: connections, imports
    assert status.budget_used == n + 8 and len(status.running) == 8
    assert status.states["complete"] == n and not status.stale
    assert status.finished_in_window == n // 2  # the even ones, 5 minutes ago
    # Optuna's path, once (it takes seconds): the RDB storage itself, as a fresh process
    # reads it (a study's get_trials caches finished trials in the process after its first
    # call). It also checks that the rows written above are trials Optuna reads.
    ours = [timed(lambda: read_status(storage, study))]
    everything: list[Any] = []
    optuna_s = timed(lambda: everything.extend(storage.get_all_trials(study_id, deepcopy=False)))
    ours += [timed(lambda: read_status(storage, study)) for _ in range(2)]
    assert len(everything) == n + 8 and everything[0].intermediate_values == {1: 0.45, 2: 0.5}
    mine = statistics.median(ours)
    measured = f"status {mine:.3f} s (median of 3), Optuna's get_all_trials {optuna_s:.3f} s"
    print(measured)
    # Measured on the shared 2-core VM at load 4-6: status 0.03-0.07 s, get_all_trials
    # 7.1-7.6 s (ratio < 0.01). Both slow down together under load, so the ratio bound holds
    # with 10x headroom; 1 s is over 10x the slowest loaded read seen.
    assert mine / optuna_s < 0.1, measured
    assert mine < 1.0, measured


# -- a real worker in a scheduler's task ---------------------------------------------------------

TASK_SPEC = """
[study]
name = "tasks"
n_trials = 1
[sampler]
kind = "random"
seed = 2
[pruner]
kind = "none"
[training]
epochs = 2
[storage]
heartbeat_interval = 2
grace_period = 600
"""


@pytest.fixture(scope="module")
def long_epoch_data(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """3,000 training images: a first epoch takes seconds, far longer than it takes the test
    to see the trial start and freeze its worker."""
    from tinydata import write_official

    return write_official(tmp_path_factory.mktemp("long"), per_class_train=300)


def _started_trial(url: str, proc: subprocess.Popen[str]) -> optuna.trial.FrozenTrial:
    """The running trial, once its start is recorded (polled: the event, not a clock)."""
    study = optuna.load_study(study_name="tasks", storage=url)
    while proc.poll() is None:
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if attrs.WORKER in t.user_attrs:
                return t
        time.sleep(0.05)
    pytest.fail(f"the worker exited ({proc.returncode}) before its trial started")


def test_a_trial_names_its_cluster_task_from_its_start_and_its_copy_names_it(
    storage_url: str, long_epoch_data: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The variables SLURM sets in array task 812_3.
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "812")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "3")
    spec = tmp_path / "tasks.toml"
    spec.write_text(TASK_SPEC)
    proc = start_and_wait_for(
        ["run", str(spec), "--storage", storage_url, "--data", str(long_epoch_data)], "seed"
    )
    try:
        started = _started_trial(storage_url, proc)
        proc.send_signal(signal.SIGSTOP)  # hold it inside its first epoch while we look
        assert started.intermediate_values == {}
        running = _status_of(storage_url, "tasks")["running"]
        assert [(t["number"], t["task"]) for t in running] == [(started.number, "slurm 812_3")]
        table = sweeper("status", "--study", "tasks", "--storage", storage_url).stdout
        row = next(line for line in table.splitlines() if line.startswith("    ") and "0/2" in line)
        assert "slurm 812_3" in row, table
        listed = _trials_of(storage_url)
        assert listed[started.number]["task"] == "slurm 812_3"
        proc.send_signal(signal.SIGTERM)  # stopped before its first epoch: re-queued
    finally:
        proc.send_signal(signal.SIGCONT)
    code, rest = finish(proc)
    assert code == 130, rest

    study = optuna.load_study(study_name="tasks", storage=storage_url)
    original = study.trials[started.number]
    assert original.state == TrialState.FAIL and original.intermediate_values == {}
    assert original.user_attrs[attrs.CLUSTER_TASK] == "slurm 812_3"
    copy = study.trials[original.user_attrs[attrs.REQUEUED_AS]]
    assert copy.state == TrialState.WAITING
    assert attrs.CLUSTER_TASK not in copy.user_attrs  # it has not run anywhere yet
    assert _status_of(storage_url, "tasks")["waiting"] == [
        {
            "number": copy.number,
            "retry_of": original.number,
            "copy_of": original.number,
            "replicate_of": None,
        }
    ]
    table = sweeper("status", "--study", "tasks", "--storage", storage_url).stdout
    assert f"waiting: 1: {copy.number} (copy of {original.number})" in table.splitlines()
    listed = _trials_of(storage_url)
    assert listed[copy.number]["copy_of"] == original.number and listed[copy.number]["task"] is None
    assert listed[original.number]["task"] == "slurm 812_3"


def _status_of(url: str, study: str) -> dict[str, Any]:
    result = sweeper("status", "--study", study, "--storage", url, "--format", "json")
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


def _trials_of(url: str) -> dict[int, dict[str, Any]]:
    result = sweeper("trials", "--study", "tasks", "--storage", url, "--format", "json")
    assert result.returncode == 0 and result.stderr == "", result.stderr
    return {row["number"]: row for row in json.loads(result.stdout)}


def test_trials_waiting_with_no_live_worker_are_said_so_without_an_eta(storage_url: str) -> None:
    """Budget 4: 1 complete a minute ago (a rate), 1 interrupted (its copy waits), 1 running
    whose worker went silent an hour ago, 1 unclaimed: nobody is alive to run them."""
    spec = _spec("fleet", 4)
    storage = open_storage(storage_url, spec.storage)
    study = create_or_load(storage, spec)
    done = study.ask()
    study.tell(done, 0.5)
    silent = study.ask()
    silent.set_user_attr(attrs.WORKER, "gone:1")
    storage.record_heartbeat(_optuna.trial_id(silent))
    copy = requeue.interrupt(study, storage, study.ask(), "stopped by SIGTERM", max_retry=3)
    assert copy is not None
    engine = storage.engine
    _sql(engine, "UPDATE trials SET datetime_start = (now() AT TIME ZONE 'UTC') - interval '2 h'")
    _finished_ago(engine, done, 60)
    _sql(engine, "UPDATE trial_heartbeats SET heartbeat = LOCALTIMESTAMP - interval '1 h'")

    s = _status(storage_url)
    assert s["per_minute"] is not None, "a trial finished in the window: a rate exists"
    assert (s["to_finish"], s["unattended"], s["eta_s"]) == (3, True, None)
    assert s["eta_basis"] == (
        "no live worker: 3 trials to finish (1 unclaimed + 1 running + 1 waiting)"
    )
    table = sweeper("status", "--study", "fleet", "--storage", storage_url)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert (
        "workers: none alive: 3 trials wait for one; start one with "
        "'sweeper worker --study fleet'" in lines
    ), table.stdout
    assert lines[-1] == f"ETA: none ({s['eta_basis']})", table.stdout

    # A live heartbeat again: a worker is alive, and the ETA comes from the rate.
    storage.record_heartbeat(_optuna.trial_id(silent))
    s = _status(storage_url)
    assert s["unattended"] is False and s["eta_s"] is not None, s
