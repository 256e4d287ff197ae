"""Workers beyond PostgreSQL's max_connections, through a real PgBouncer in transaction mode.

The server here allows 20 connections; 32 worker processes would ask for up to 128 directly.
Through PgBouncer (at most 8 server connections) they must fill a study to exactly its
budget with no trial numbered twice, the study's advisory lock must stay exclusive, and the
real ``sweeper worker`` must train through it. Without the pooler, the server's refusal must
come out as one line that says what to do.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest
import sqlalchemy
from bouncer import pgbouncer
from clirun import one_line_error, sweeper
from pgtools import embedded_postgres, fresh_database
from sqlalchemy.engine import make_url

from sweeper.storage import MIN_POOLER_CONNECTIONS, SETUP_PATIENCE_S

MAX_CONNECTIONS = 20
SERVER_CONNECTIONS = 8
WORKERS = 32
BUDGET = 160


@pytest.fixture(scope="module")
def small_server() -> Iterator[str]:
    """An embedded PostgreSQL restarted with max_connections = 20."""
    with embedded_postgres() as server:
        engine = sqlalchemy.create_engine(server.url(), isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text(f"ALTER SYSTEM SET max_connections = {MAX_CONNECTIONS}"))
        engine.dispose()
        server.stop()
        server.start()  # postgresql.auto.conf wins over the server's own settings file
        yield server.url()


@pytest.fixture
def database(small_server: str) -> Iterator[str]:
    with fresh_database(small_server) as url:
        yield url


def _connect(url: str) -> psycopg2.extensions.connection:
    u = make_url(url)
    return psycopg2.connect(
        host=u.host, port=u.port, user=u.username, password=u.password, dbname=u.database
    )


@contextlib.contextmanager
def _server_connections(url: str) -> Iterator[list[int]]:
    """Sample, every 20 ms, how many server backends serve ``url``'s database (the
    sampler's own excluded); the list of samples, filled while the block runs."""
    samples: list[int] = []
    stop = threading.Event()
    conn = _connect(url)
    conn.autocommit = True

    def sample() -> None:
        with conn.cursor() as cur:
            while not stop.is_set():
                cur.execute(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
                samples.append(int(cur.fetchone()[0]))
                stop.wait(0.02)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield samples
    finally:
        stop.set()
        thread.join()
        conn.close()


def _claim_until_done(url: str, name: str, out: mp.Queue, go: mp.Event) -> None:  # type: ignore[type-arg]
    """One worker process: the real claim path (reap, ``Budget.claim``) with a no-op trial."""
    import optuna

    from sweeper.storage import open_storage
    from sweeper.study import Budget, load_study, stored_spec
    from sweeper.work.requeue import reap

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(url)
    study = load_study(storage, name)
    spec = stored_spec(study)
    budget = Budget(study, storage, spec.budget)
    go.wait()
    numbers = []
    while True:
        reap(study, storage, spec.storage.grace_period, spec.storage.max_retry)
        trials = budget.claim()
        if not trials:
            break
        (trial,) = trials
        lr = trial.suggest_float("lr", 1e-4, 1e-3, log=True)
        trial.report(lr, 1)
        study.tell(trial, lr)
        numbers.append(trial.number)
    out.put(numbers)


def test_32_workers_through_8_server_connections_fill_exactly_the_budget(database: str) -> None:
    from sweeper.spec import parse_spec
    from sweeper.storage import open_storage
    from sweeper.study import create_or_load

    name = "bounced"
    spec = {"study": {"name": name, "n_trials": BUDGET}, "sampler": {"kind": "random"}}
    with pgbouncer(database, SERVER_CONNECTIONS) as url:
        create_or_load(open_storage(url), parse_spec(spec, "test"))
        ctx = mp.get_context("spawn")
        out, go = ctx.Queue(), ctx.Event()
        procs = [
            ctx.Process(target=_claim_until_done, args=(url, name, out, go)) for _ in range(WORKERS)
        ]
        for p in procs:
            p.start()
        with _server_connections(database) as samples:
            go.set()
            results = [out.get(timeout=600) for _ in procs]
        for p in procs:
            p.join(timeout=60)
            assert p.exitcode == 0
    numbers = sorted(n for r in results for n in r)
    # Exactly the budget, each trial told by exactly one worker, numbered 0..159 once each.
    assert numbers == list(range(BUDGET))
    assert sum(1 for r in results if r) > 1  # the work was shared, not done by one process
    engine = sqlalchemy.create_engine(database)
    with engine.connect() as conn:
        states = conn.execute(sqlalchemy.text("SELECT state, count(*) FROM trials GROUP BY state"))
        assert dict(states.all()) == {"COMPLETE": BUDGET}
    engine.dispose()
    # The pooler kept the server within its 8 connections (and did use several of them).
    assert samples and max(samples) <= SERVER_CONNECTIONS
    assert max(samples) >= 2


def _locked_increments(url: str, name: str, times: int, go: mp.Event) -> None:  # type: ignore[type-arg]
    """Read a counter, pause, write it back plus one, inside the study's advisory lock:
    any two holders at once would lose an increment."""
    from sweeper.study import advisory_lock

    engine = sqlalchemy.create_engine(url, pool_size=2, max_overflow=2)
    go.wait()
    for _ in range(times):
        with advisory_lock(engine, name) as conn:
            value = conn.execute(sqlalchemy.text("SELECT n FROM counter")).scalar_one()
            time.sleep(0.005)
            conn.execute(sqlalchemy.text("UPDATE counter SET n = :n"), {"n": value + 1})
    engine.dispose()


def test_the_study_lock_stays_exclusive_through_the_pooler(database: str) -> None:
    engine = sqlalchemy.create_engine(database)
    with engine.begin() as conn:
        conn.execute(sqlalchemy.text("CREATE TABLE counter (n integer)"))
        conn.execute(sqlalchemy.text("INSERT INTO counter VALUES (0)"))
    holders, times = 16, 10
    with pgbouncer(database, SERVER_CONNECTIONS) as url:
        ctx = mp.get_context("spawn")
        go = ctx.Event()
        procs = [
            ctx.Process(target=_locked_increments, args=(url, "locked", times, go))
            for _ in range(holders)
        ]
        for p in procs:
            p.start()
        go.set()
        for p in procs:
            p.join(timeout=600)
            assert p.exitcode == 0
    with engine.connect() as conn:
        assert (
            conn.execute(sqlalchemy.text("SELECT n FROM counter")).scalar_one() == holders * times
        )
    engine.dispose()


SPEC = """
[study]
name = "pooled"
n_trials = 4
[sampler]
kind = "random"
[pruner]
kind = "none"
[training]
epochs = 2
batch_size = 16
device = "cpu"
[storage]
heartbeat_interval = 1
grace_period = 10
"""


@pytest.mark.slow
def test_real_workers_train_through_the_pooler(
    database: str, tiny_official: Path, tmp_path: Path
) -> None:
    spec = tmp_path / "pooled.toml"
    spec.write_text(SPEC)
    with pgbouncer(database, SERVER_CONNECTIONS) as url:
        created = sweeper("run", str(spec), "--storage", url, "--max-trials", "0",
                          "--data", str(tiny_official))  # fmt: skip
        assert created.returncode == 0, created.stderr
        ran = sweeper("run", str(spec), "--storage", url, "--workers", "2",
                      "--data", str(tiny_official), timeout=600)  # fmt: skip
        assert ran.returncode == 0, ran.stderr
        best = sweeper("best", "--study", "pooled", "--storage", url, "--format", "json")
        assert best.returncode == 0, best.stderr
    engine = sqlalchemy.create_engine(database)
    with engine.connect() as conn:
        rows = conn.execute(
            sqlalchemy.text(
                "SELECT t.state, count(DISTINCT v.step) FROM trials t "
                "LEFT JOIN trial_intermediate_values v ON v.trial_id = t.trial_id "
                "GROUP BY t.trial_id, t.state"
            )
        ).all()
    engine.dispose()
    # Every trial trained both epochs through the pooler (heartbeats, reports, attributes).
    assert sorted(rows) == [("COMPLETE", 2)] * 4


def test_too_many_connections_is_one_line_that_says_what_to_do(database: str) -> None:
    held = []
    try:
        with contextlib.suppress(psycopg2.OperationalError):
            while len(held) < MAX_CONNECTIONS + 5:
                held.append(_connect(database))
        assert len(held) < MAX_CONNECTIONS + 5  # the server did run out
        result = sweeper("studies", "--storage", database)
    finally:
        for conn in held:
            conn.close()
    assert result.returncode == 1
    line = one_line_error(result)
    assert "too many connections" in line
    assert "PgBouncer" in line and "max_connections" in line


# -- a misconfigured pooler --------------------------------------------------------------------


def test_a_pool_too_small_for_the_set_up_is_one_line_naming_the_settings(database: str) -> None:
    """Transaction mode with 2 server connections: Optuna's set-up holds one while it opens
    another under sweeper's set-up lock (3 at once), so it can never finish."""
    with pgbouncer(database, MIN_POOLER_CONNECTIONS - 1) as url:
        started = time.monotonic()
        result = sweeper("studies", "--storage", url, timeout=600)
        took = time.monotonic() - started
    assert result.returncode == 1, result.stdout + result.stderr
    line = one_line_error(result)
    assert f"waited {SETUP_PATIENCE_S:g} s for the database" in line, line
    assert "pool_mode = transaction" in line and f"at least {MIN_POOLER_CONNECTIONS}" in line
    assert "server closed the connection" not in line
    assert took >= SETUP_PATIENCE_S  # it gave the set-up its full patience first


def test_a_session_mode_pooler_held_by_other_clients_is_one_line(database: str) -> None:
    """Session mode pins a server connection to each client: with every one held (as a
    fleet's pools hold them), the next process's set-up waits; it says why."""
    with pgbouncer(database, SERVER_CONNECTIONS, pool_mode="session") as url:
        held = [_connect(url) for _ in range(SERVER_CONNECTIONS)]
        try:
            for conn in held:  # a query gives each client its server connection
                with conn.cursor() as cur:
                    cur.execute("SELECT 1")
            result = sweeper("studies", "--storage", url, timeout=600)
        finally:
            for conn in held:
                conn.close()
        assert result.returncode == 1, result.stdout + result.stderr
        line = one_line_error(result)
        assert "pool_mode = transaction" in line and "session mode pins" in line, line
        # With the clients gone the same pooler serves the set-up (3 server connections).
        assert sweeper("studies", "--storage", url).returncode == 0
