"""How much load the storage takes: SQL round trips per trial, trials/s and per-trial latency.

    .venv/bin/python bench/storage_load.py                 # embedded PostgreSQL in a temp dir
    .venv/bin/python bench/storage_load.py --storage URL   # another server (a scratch database!)
    .venv/bin/python bench/storage_load.py --quick         # fewer trials, for a smoke run

Each worker is a separate process running the storage calls a sweeper worker makes around a
one-epoch trial, with a no-op objective: fail stale trials, claim, sample lr and wd, record
the six attributes a trial starts with, report the epoch and its count, ask the pruner,
tell. Two claim paths run in the same run, on the same server:

- ``baseline``: the claim as sweeper made it before issue 14 (an advisory lock held in one
  transaction around a count and Optuna's ``ask`` on another connection, one trial at a
  time, engines that ping before every checkout, one storage call per attribute and report);
- ``sweeper``: ``Budget.claim(k)`` (queued and new trials in one transaction on one
  connection, k at a time for a pack of k) on ``open_storage``'s engine (idle-only pings),
  a trial's starting attributes in one round trip and a pack's epoch in one
  (``_optuna.record``), as ``Worker`` does.

Round trips are counted in every worker process by engine events: each statement sent
(``before_cursor_execute``), each COMMIT and ROLLBACK, and each ping; divided by the trials
told. Every configuration runs ``--repeats`` times on a fresh study; the table shows medians.
Then the latency of ``sweeper best`` (the real console script, process start included) and
of the query behind it, on a study that holds --backlog trials (users report per-trial
overhead growing to seconds at tens of thousands of trials: optuna issue 3053).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from queue import Empty
from typing import Any

import optuna
import sqlalchemy

from sweeper import _optuna, attrs
from sweeper.embedded import EmbeddedPostgres
from sweeper.spec import StudySpec, parse_spec
from sweeper.storage import open_storage
from sweeper.study import Budget, best_trial_row, create_or_load, load_study, stored_spec
from sweeper.work.requeue import reap

warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
optuna.logging.set_verbosity(optuna.logging.WARNING)


def _spec(name: str, budget: int) -> StudySpec:
    return parse_spec({"study": {"name": name, "n_trials": budget}}, "bench")


_LOCK_SQL = sqlalchemy.text("SELECT pg_advisory_xact_lock(:k)")
# The attributes a worker records when a trial starts (Worker._join).
STARTED_WITH = (attrs.WORKER, attrs.SEED, attrs.OPTIMIZER, attrs.PACK_SIZE, attrs.ORDER_SEED,
                attrs.ORDER_EPOCH_OFFSET)  # fmt: skip


def _open(url: str, mode: str) -> optuna.storages.RDBStorage:
    if mode == "sweeper":
        return open_storage(url)
    # The engine sweeper opened before: a ping in front of every checkout.
    return optuna.storages.RDBStorage(
        url,
        engine_kwargs={"pool_pre_ping": True, "pool_size": 2, "max_overflow": 2},
        heartbeat_interval=60,
        grace_period=120,
    )


def _baseline_claim(budget: Budget, wanted: int) -> list[optuna.Trial]:
    """The claim before issue 14: lock, count and ``ask`` per trial (the lock's key is any
    fixed one: only these processes take it)."""
    trials = []
    for _ in range(wanted):
        with budget.engine.connect() as conn, conn.begin():
            conn.execute(_LOCK_SQL, {"k": budget.study_id})
            if budget.limit is not None and budget._count(conn) >= budget.limit:
                break
            trials.append(budget.study.ask())
    return trials


def _count_round_trips(engine: sqlalchemy.Engine) -> list[int]:
    """A one-element counter of the round trips ``engine`` makes from now on."""
    counter = [0]

    def one(*args: Any) -> None:
        counter[0] += 1

    for name in ("before_cursor_execute", "commit", "rollback"):
        sqlalchemy.event.listen(engine, name, one)
    # A ping is a statement the events above do not see: count it where the dialect runs it.
    ping = engine.dialect.do_ping

    def counted_ping(dbapi_connection: Any) -> bool:
        counter[0] += 1
        return ping(dbapi_connection)

    engine.dialect.do_ping = counted_ping  # type: ignore[method-assign]
    return counter


def _worker(url: str, name: str, mode: str, pack: int, out: Any, go: Any) -> None:
    """One worker: connect, wait for the start signal, run trials until the budget is met."""
    warnings.filterwarnings("ignore")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = _open(url, mode)
    study = load_study(storage, name)
    spec = stored_spec(study)
    budget = Budget(study, storage, spec.budget)
    latencies = []
    # Joining a big study costs one read of its history (Optuna's cache fills once per
    # process); measure it apart from the steady state.
    started = time.perf_counter()
    study.get_trials(deepcopy=False)
    out.put(("ready", time.perf_counter() - started))
    go.wait()  # connection set-up and imports stay out of the measured wall time
    round_trips = _count_round_trips(storage.engine)
    while True:
        started = time.perf_counter()
        reap(study, storage, spec.storage.grace_period, spec.storage.max_retry)
        trials = budget.claim(pack) if mode == "sweeper" else _baseline_claim(budget, pack)
        if not trials:
            break
        started_with = {key: 1 for key in STARTED_WITH}
        for trial in trials:
            trial.suggest_float("lr", spec.space.lr.low, spec.space.lr.high, log=True)
            trial.suggest_float("weight_decay", spec.space.weight_decay.low, 1e-2, log=True)
            if mode == "sweeper":  # as Worker._join: one round trip per trial
                _optuna.record(storage.engine, [(trial, started_with, {})])
            else:
                for key, value in started_with.items():
                    trial.set_user_attr(key, value)
        # The epoch: report it and count it (as Worker._record: one round trip for the pack),
        # then ask the pruner.
        if mode == "sweeper":
            epoch = [(t, {attrs.EPOCHS_RUN: 1}, {1: t.params["lr"]}) for t in trials]
            _optuna.record(storage.engine, epoch)
        else:
            for trial in trials:
                trial.report(trial.params["lr"], 1)
                trial.set_user_attr(attrs.EPOCHS_RUN, 1)
        for trial in trials:
            trial.should_prune()
        for trial in trials:
            study.tell(trial, trial.params["lr"])
        per_trial = (time.perf_counter() - started) / len(trials)
        latencies += [per_trial] * len(trials)
    out.put((latencies, round_trips[0]))


# A backlog of finished trials written as Optuna's RDBStorage writes them, one statement per
# table: Optuna's own add_trials takes about 50 ms a trial here (100,000 would take over an
# hour). lr and the value vary with the trial number (period 97), weight decay is fixed.
_BACKLOG_SQL = (
    """INSERT INTO trials (number, study_id, state, datetime_start, datetime_complete)
       SELECT g, :study_id, 'COMPLETE', now() AT TIME ZONE 'UTC', now() AT TIME ZONE 'UTC'
       FROM generate_series(0, :count - 1) g""",
    """INSERT INTO trial_params (trial_id, param_name, param_value, distribution_json)
       SELECT trial_id, 'lr', 1e-4 * power(10, (number % 97) / 97.0), :lr
       FROM trials WHERE study_id = :study_id
       UNION ALL
       SELECT trial_id, 'weight_decay', 1e-3, :wd FROM trials WHERE study_id = :study_id""",
    """INSERT INTO trial_values (trial_id, objective, value, value_type)
       SELECT trial_id, 0, 1e-4 * power(10, (number % 97) / 97.0), 'FINITE'
       FROM trials WHERE study_id = :study_id""",
    """INSERT INTO trial_intermediate_values
           (trial_id, step, intermediate_value, intermediate_value_type)
       SELECT trial_id, 1, 1e-4 * power(10, (number % 97) / 97.0), 'FINITE'
       FROM trials WHERE study_id = :study_id""",
    """INSERT INTO trial_user_attributes (trial_id, key, value_json)
       SELECT trial_id, 'seed', number::text FROM trials WHERE study_id = :study_id""",
)


def _backlog(url: str, name: str, count: int) -> None:
    """Fill the (empty) study with ``count`` finished trials; Optuna reads them back."""
    from optuna.distributions import FloatDistribution, distribution_to_json

    storage = open_storage(url)
    params = {
        "study_id": storage.get_study_id_from_name(name),
        "count": count,
        "lr": distribution_to_json(FloatDistribution(1e-4, 1e-3, log=True)),
        "wd": distribution_to_json(FloatDistribution(1e-4, 1e-2, log=True)),
    }
    with storage.engine.begin() as conn:
        for statement in _BACKLOG_SQL:
            conn.execute(sqlalchemy.text(statement), params)
    storage.engine.dispose()


def run_load(
    url: str, name: str, mode: str, workers: int, pack: int, trials: int, backlog: int
) -> dict[str, float]:
    storage = open_storage(url)
    create_or_load(storage, _spec(name, backlog + trials))
    if backlog:
        _backlog(url, name, backlog)
    ctx = mp.get_context("spawn")
    queue, go = ctx.Queue(), ctx.Event()
    procs = [
        ctx.Process(target=_worker, args=(url, name, mode, pack, queue, go)) for _ in range(workers)
    ]
    for p in procs:
        p.start()
    joins = []
    for _ in procs:
        word, seconds = queue.get(timeout=600)
        assert word == "ready"
        joins.append(seconds)
    started = time.perf_counter()
    go.set()
    latencies: list[float] = []
    round_trips = 0
    reported = 0
    while reported < len(procs):
        try:
            done, sent = queue.get(timeout=1)
            latencies += done
            round_trips += sent
            reported += 1
        except Empty:
            broken = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
            if broken:
                raise SystemExit(f"a worker process died (exit codes {broken})") from None
    wall = time.perf_counter() - started
    for p in procs:
        p.join()
    latencies.sort()
    finished = len(latencies)
    assert finished == trials, f"{finished} trials ran, budget allowed {trials}"
    return {
        "trials": finished,
        "trials_per_s": finished / wall,
        "round_trips": round_trips / finished,
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
        "join_s": statistics.median(joins),
    }


def time_best(url: str, name: str, repeats: int) -> tuple[float, float]:
    """Median seconds of `sweeper best` (whole process) and of the query behind it."""
    script = Path(sys.executable).with_name("sweeper")
    cli = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run([str(script), "best", "--study", name, "--storage", url, "--format",
                        "json"], check=True, capture_output=True)  # fmt: skip
        cli.append(time.perf_counter() - started)
    study = load_study(open_storage(url), name)
    query = []
    for _ in range(repeats):
        started = time.perf_counter()
        best_trial_row(study)
        query.append(time.perf_counter() - started)
    return statistics.median(cli), statistics.median(query)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storage", help="server URL (default: a temporary embedded server)")
    parser.add_argument("--trials", type=int, default=400, help="trials per configuration")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each configuration")
    parser.add_argument("--backlog", type=int, default=100_000, help="trials behind `best`")
    parser.add_argument(
        "--configs",
        default="1x1,16x1,1x16,4x16",
        help="WORKERSxPACK configurations (default: 1x1,16x1,1x16,4x16)",
    )
    parser.add_argument("--quick", action="store_true", help="64 trials, 1 repeat, backlog 1,000")
    args = parser.parse_args()
    if args.quick:
        args.trials, args.repeats, args.backlog = 64, 1, 1000
    configs = [tuple(int(n) for n in c.split("x")) for c in args.configs.split(",")]

    server = None
    if args.storage:
        url = args.storage
    else:
        server = EmbeddedPostgres(Path(tempfile.mkdtemp(prefix="sweeper-bench-pg-")))
        url = server.start()
    engine = sqlalchemy.create_engine(url)
    with engine.connect() as conn:
        pg_version = conn.execute(sqlalchemy.text("SHOW server_version")).scalar_one()
    engine.dispose()
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
        f"python {platform.python_version()}, optuna {optuna.__version__}, "
        f"sqlalchemy {sqlalchemy.__version__}, PostgreSQL {pg_version}"
    )
    print(
        f"each row: {args.trials} no-op one-epoch trials claimed and told by N worker processes"
        f" claiming K at a time; median of {args.repeats} runs, each on a fresh study; "
        "round trips = statements + commits + rollbacks + pings per trial told; latency = a "
        "claim round's wall time per trial; join = a worker's first read of the study\n"
    )
    header = (
        f"{'path':>8} {'workers':>7} {'pack':>4} {'round trips':>11} {'trials/s':>9} "
        f"{'p50 ms':>8} {'p99 ms':>8} {'join s':>7}"
    )
    print(header)
    rows: dict[tuple[str, int, int], dict[str, float]] = {}
    try:
        for workers, pack in configs:
            for mode in ("baseline", "sweeper"):
                tag = f"load-{mode}-{workers}x{pack}-{os.getpid()}"
                names = [f"{tag}-{i}" for i in range(args.repeats)]
                runs = [run_load(url, n, mode, workers, pack, args.trials, 0) for n in names]
                r = {k: statistics.median(run[k] for run in runs) for k in runs[0]}
                rows[(mode, workers, pack)] = r
                print(
                    f"{mode:>8} {workers:>7} {pack:>4} {r['round_trips']:>11.1f} "
                    f"{r['trials_per_s']:>9.1f} {r['p50_ms']:>8.1f} {r['p99_ms']:>8.1f} "
                    f"{r['join_s']:>7.2f}",
                    flush=True,
                )
        print()
        for workers, pack in configs:
            base, new = rows[("baseline", workers, pack)], rows[("sweeper", workers, pack)]
            print(
                f"{workers} workers x pack {pack}: round trips per trial "
                f"{base['round_trips']:.1f} -> {new['round_trips']:.1f} "
                f"({new['round_trips'] / base['round_trips']:.2f}x), trials/s "
                f"{base['trials_per_s']:.1f} -> {new['trials_per_s']:.1f} "
                f"({new['trials_per_s'] / base['trials_per_s']:.2f}x)"
            )
        name = f"load-backlog-{os.getpid()}"
        r = run_load(url, name, "sweeper", 1, 1, 16, args.backlog)
        print(f"\none worker joining a study of {args.backlog} trials: {r['join_s']:.2f} s")
        cli_s, query_s = time_best(url, name, 5)
        print(
            f"`sweeper best` on a study of {args.backlog + 16} trials: "
            f"{cli_s:.2f} s for the whole command (median of 5), "
            f"{1000 * query_s:.1f} ms for the query itself"
        )
    finally:
        if server is not None:
            server.stop()
            shutil.rmtree(server.data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
