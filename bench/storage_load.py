"""How much load the storage takes: trials/s and ask+tell latency with 1, 4 and 16 workers.

    .venv/bin/python bench/storage_load.py                 # embedded PostgreSQL in a temp dir
    .venv/bin/python bench/storage_load.py --storage URL   # another server (a scratch database!)
    .venv/bin/python bench/storage_load.py --quick         # fewer trials, for a smoke run

Each worker is a separate process running exactly the loop a sweeper worker runs around a
trial, with a no-op objective: fail stale trials, claim a trial under the global budget
(advisory lock + count + ask), sample lr and wd, report one intermediate value, tell. We
measure each worker's claim+tell latency per trial and the wall time for the whole budget,
first on an empty study, then on one that already holds --backlog trials (users report
per-trial overhead growing to seconds at tens of thousands of trials: optuna issue 3053).
Finally the latency of ``sweeper best`` (the real console script, process start included)
and of the query behind it, on the study with the backlog.
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


def _worker(url: str, name: str, index: int, out: Any, go: Any) -> None:
    """One worker: connect, wait for the start signal, run trials until the budget is met."""
    warnings.filterwarnings("ignore")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(url)
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
    while True:
        started = time.perf_counter()
        reap(study, storage, spec.storage.grace_period, spec.storage.max_retry)
        trial = budget.claim()
        if trial is None:
            break
        lr = trial.suggest_float("lr", spec.space.lr.low, spec.space.lr.high, log=True)
        trial.suggest_float("weight_decay", spec.space.weight_decay.low, 1e-2, log=True)
        trial.report(lr, 1)
        study.tell(trial, lr)
        latencies.append(time.perf_counter() - started)
    out.put(latencies)


def _backlog(url: str, name: str, count: int) -> None:
    """Fill the study with ``count`` finished trials, fast, through Optuna's own API."""
    study = optuna.load_study(study_name=name, storage=url)
    dists: dict[str, optuna.distributions.BaseDistribution] = {
        "lr": optuna.distributions.FloatDistribution(1e-4, 1e-3, log=True),
        "weight_decay": optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True),
    }
    batch = []
    for i in range(count):
        lr = 1e-4 * 10 ** ((i % 97) / 97)
        batch.append(
            optuna.trial.create_trial(
                params={"lr": lr, "weight_decay": 1e-3},
                distributions=dists,
                value=lr,
                intermediate_values={1: lr},
                user_attrs={"seed": i},
            )
        )
    study.add_trials(batch)


def run_load(url: str, name: str, workers: int, trials: int, backlog: int) -> dict[str, float]:
    storage = open_storage(url)
    create_or_load(storage, _spec(name, backlog + trials))
    if backlog:
        _backlog(url, name, backlog)
    ctx = mp.get_context("spawn")
    queue, go = ctx.Queue(), ctx.Event()
    procs = [ctx.Process(target=_worker, args=(url, name, i, queue, go)) for i in range(workers)]
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
    reported = 0
    while reported < len(procs):
        try:
            latencies += queue.get(timeout=1)
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
    parser.add_argument("--backlog", type=int, default=10_000)
    parser.add_argument("--workers", default="1,4,16")
    parser.add_argument("--repeats", type=int, default=5, help="repeats of the best timing")
    parser.add_argument("--quick", action="store_true", help="100 trials, backlog 1,000")
    args = parser.parse_args()
    if args.quick:
        args.trials, args.backlog = 100, 1000

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
        f"each row: {args.trials} no-op trials claimed and told by N worker processes; "
        "latency = fail-stale + claim (lock, count, ask) + sample + report + tell; "
        "join = a worker's first read of the study's history (median over workers)\n"
    )
    print(
        f"{'workers':>7} {'backlog':>8} {'trials/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'join s':>7}"
    )
    try:
        for backlog in (0, args.backlog):
            for workers in [int(w) for w in args.workers.split(",")]:
                name = f"load-{workers}-{backlog}-{os.getpid()}"
                r = run_load(url, name, workers, args.trials, backlog)
                print(
                    f"{workers:>7} {backlog:>8} {r['trials_per_s']:>9.1f} "
                    f"{r['p50_ms']:>8.1f} {r['p99_ms']:>8.1f} {r['join_s']:>7.2f}",
                    flush=True,
                )
        cli_s, query_s = time_best(url, name, args.repeats)
        print(
            f"\n`sweeper best` on a study of {args.backlog + args.trials} trials: "
            f"{cli_s:.2f} s for the whole command (median of {args.repeats}), "
            f"{1000 * query_s:.1f} ms for the query itself"
        )
    finally:
        if server is not None:
            server.stop()
            shutil.rmtree(server.data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
