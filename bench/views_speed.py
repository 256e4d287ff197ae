"""sweeper's views against stock Optuna's, end to end through the console scripts.

Run:  .venv/bin/python bench/views_speed.py --storage postgresql+psycopg2://USER@HOST/DB
      [--trials 1000,10000] [--repeats 5] [--dashboard-trials 50000] [--best-trials 100000]

What is timed (wall clock, each a fresh process, median of ``--repeats`` runs):

  ours   ``sweeper report -o r.html`` + ``sweeper importance`` (the console script of this
         interpreter's environment: Python start-up, imports, reading the study, computing,
         writing), summed.
  stock  one Python process that loads the study with Optuna and writes
         ``plot_contour(study, params=["lr", "weight_decay"])`` and
         ``plot_param_importances(study)`` to HTML: what a user of stock Optuna runs.
  ratio  ours / stock, both measured in this run (goal: at most 0.6).

With ``--dashboard-trials N`` it also serves ``sweeper dashboard`` on an N-trial study and
times ``GET /api/study/NAME``: how long the first poll takes to answer, when the summary and
when every figure is there (polling once a second, as the page does while ``pending``), and
later polls (a fingerprint query; figures reused while nothing changed). With
``--best-trials N`` it times ``sweeper best`` on an N-trial study.

The 1,000-trial study (synthetic: tests/dashboard/factory.py's landscape, 8 epochs, ~40%
pruned, 10 failed, 4 workers) is created through Optuna on the first run (~40 s) and reused.
Larger ones are copies of it made in SQL (Optuna adds trials one by one: 10,000 would take
7 minutes): copy k renumbers the trials by k x 1,000 and scales lr and wd by (1 - k 1e-6),
so every configuration stays distinct; the database is then analysed (ANALYZE), as
autovacuum would have done for a study written trial by trial. The machine, the versions and
the load average are printed with the numbers: other processes on a shared machine slow
every run.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import optuna
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
STUDY = "views-speed-{n}"
BASE = 1000
# The stock pair, as a user of Optuna writes it. Run with the same interpreter as ours.
STOCK = """
import sys, warnings
import optuna
warnings.filterwarnings("ignore")
optuna.logging.set_verbosity(optuna.logging.WARNING)
url, name, out = sys.argv[1:4]
study = optuna.load_study(study_name=name, storage=url)
optuna.visualization.plot_contour(study, params=["lr", "weight_decay"]).write_html(out + "-c.html")
optuna.visualization.plot_param_importances(study).write_html(out + "-i.html")
"""


def _factory():  # the test-suite's study builder, loaded by path (tests/ is not a package)
    spec = importlib.util.spec_from_file_location("factory", ROOT / "tests/dashboard/factory.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _count(storage: optuna.storages.RDBStorage, name: str) -> int | None:
    if name not in optuna.get_all_study_names(storage):
        return None
    return len(optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False))


def ensure_study(url: str, n: int) -> str:
    """The name of a study of ``n`` synthetic trials in ``url`` (a multiple of 1,000)."""
    if n % BASE:
        raise SystemExit(f"--trials: {n} is not a multiple of {BASE}")
    name = STUDY.format(n=n)
    storage = optuna.storages.RDBStorage(url)
    have = _count(storage, name)
    if have == n:
        return name
    if have is not None:
        optuna.delete_study(study_name=name, storage=storage)
    started = time.perf_counter()
    if n == BASE:
        factory = _factory()
        factory.create_study(url, name, factory.synthetic_trials(n, epochs=8, n_failed=10))
    else:
        _copy_study(url, ensure_study(url, BASE), name, n // BASE)
    # A real study grows trial by trial and autovacuum keeps PostgreSQL's statistics current;
    # a bulk copy leaves them stale until autovacuum gets round to it, and with stale
    # statistics the planner scans whole tables (a 1,000-trial read took 0.6 s instead of
    # 0.05 s). Analyse now, so both sides are timed on the database a user has.
    engine = sa.create_engine(url)
    with engine.connect() as db:
        db.execution_options(isolation_level="AUTOCOMMIT").execute(sa.text("ANALYZE"))
    engine.dispose()
    print(f"created study {name} in {time.perf_counter() - started:.1f} s", flush=True)
    return name


def _copy_study(url: str, source: str, name: str, copies: int) -> None:
    """``name`` = ``copies`` copies of ``source``'s trials, written in SQL."""
    storage = optuna.storages.RDBStorage(url)
    src = optuna.load_study(study_name=source, storage=storage)
    dst = optuna.create_study(study_name=name, storage=storage, direction=src.direction)
    for key, value in src.user_attrs.items():
        dst.set_user_attr(key, value)
    src_id = storage.get_study_id_from_name(source)
    dst_id = storage.get_study_id_from_name(name)
    engine = sa.create_engine(url)
    p = {"src": src_id, "dst": dst_id, "c": copies, "n": BASE}
    with engine.begin() as db:
        db.execute(
            sa.text(
                "INSERT INTO trials (number, study_id, state, datetime_start, datetime_complete) "
                "SELECT t.number + k * :n, :dst, t.state, t.datetime_start, t.datetime_complete "
                "FROM trials t, generate_series(0, :c - 1) k WHERE t.study_id = :src"
            ),
            p,
        )
        db.execute(
            sa.text(
                "CREATE TEMP TABLE copy_map ON COMMIT DROP AS SELECT n.trial_id AS new_id, "
                "o.trial_id AS old_id, n.number / :n AS k FROM trials n JOIN trials o "
                "ON o.study_id = :src AND o.number = n.number % :n WHERE n.study_id = :dst"
            ),
            p,
        )
        db.execute(
            sa.text(
                "INSERT INTO trial_params (trial_id, param_name, param_value, distribution_json) "
                "SELECT m.new_id, x.param_name, CASE WHEN x.param_name IN ('lr', 'weight_decay') "
                "THEN x.param_value * (1 - m.k * 1e-6) ELSE x.param_value END, "
                "x.distribution_json FROM trial_params x JOIN copy_map m ON x.trial_id = m.old_id"
            )
        )
        for table, cols in (
            ("trial_values", "objective, value, value_type"),
            ("trial_intermediate_values", "step, intermediate_value, intermediate_value_type"),
            ("trial_user_attributes", "key, value_json"),
            ("trial_system_attributes", "key, value_json"),
        ):
            db.execute(
                sa.text(
                    f"INSERT INTO {table} (trial_id, {cols}) SELECT m.new_id, "
                    + ", ".join(f"x.{c.strip()}" for c in cols.split(","))
                    + f" FROM {table} x JOIN copy_map m ON x.trial_id = m.old_id"
                )
            )
    engine.dispose()


def median_s(fn: Callable[[], object], repeats: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), times


def run(cmd: Sequence[str]) -> None:
    subprocess.run(cmd, check=True, capture_output=True)


def runs(times: list[float]) -> str:
    return ", ".join(f"{t:.2f}" for t in times)


def time_pair(url: str, name: str, repeats: int, out: Path) -> tuple[float, float, float]:
    """Medians of ours (report, importance) and of the stock pair, interleaved per repeat so
    that a burst of load elsewhere hits both sides alike."""
    sweeper = str(Path(sys.executable).with_name("sweeper"))
    common = ["--study", name, "--storage", url]
    report, importance, stock = [], [], []
    for _ in range(repeats):
        for cmd, into in (
            ([sweeper, "report", "-o", str(out / "r.html"), *common], report),
            ([sweeper, "importance", *common], importance),
            ([sys.executable, "-c", STOCK, url, name, str(out / "stock")], stock),
        ):
            started = time.perf_counter()
            run(cmd)
            into.append(time.perf_counter() - started)
    print(f"  sweeper report      {statistics.median(report):6.2f} s  ({runs(report)})")
    print(f"  sweeper importance  {statistics.median(importance):6.2f} s  ({runs(importance)})")
    print(f"  stock Optuna pair   {statistics.median(stock):6.2f} s  ({runs(stock)})")
    return statistics.median(report), statistics.median(importance), statistics.median(stock)


def time_dashboard(url: str, name: str, repeats: int) -> tuple[float, float]:
    """(first poll, median later poll) of the live page's API, in seconds."""
    sweeper = str(Path(sys.executable).with_name("sweeper"))
    cmd = [sweeper, "dashboard", "--study", name, "--storage", url, "--port", "0"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        base = None
        for line in proc.stdout:
            found = re.search(r"at (http://\S+)", line)
            if found:
                base = found.group(1).rstrip("/")
                break
        if base is None:
            raise SystemExit("the dashboard did not start")
        api = f"{base}/api/study/{name}"

        def poll() -> None:
            with urllib.request.urlopen(api, timeout=600) as response:
                response.read()

        def poll_doc() -> dict[str, object]:
            with urllib.request.urlopen(api, timeout=600) as response:
                return json.loads(response.read())

        started = time.perf_counter()
        doc = poll_doc()
        first = time.perf_counter() - started
        summary_at = first if doc.get("n_trials") is not None else None
        while doc.get("pending"):  # the page polls every second while views are drawn
            time.sleep(1.0)
            doc = poll_doc()
            if summary_at is None and doc.get("n_trials") is not None:
                summary_at = time.perf_counter() - started
        complete = time.perf_counter() - started
        later, times = median_s(poll, repeats)
        print(
            f"  first poll answered in {first:.2f} s; summary shown after {summary_at:.1f} s; "
            f"every figure after {complete:.1f} s\n"
            f"  later polls (nothing changed) {later:.2f} s ({runs(times)})"
        )
        return first, later
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storage", default=os.environ.get("SWEEPER_STORAGE"))
    parser.add_argument("--trials", default="1000,10000", help="study sizes, comma-separated")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dashboard-trials", type=int, default=0, metavar="N")
    parser.add_argument("--best-trials", type=int, default=0, metavar="N")
    args = parser.parse_args()
    if not args.storage:
        parser.error("give --storage postgresql+psycopg2://... (or set SWEEPER_STORAGE)")

    import numpy
    import plotly
    import sklearn

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    sizes = [int(x) for x in args.trials.split(",") if x]
    names = {n: ensure_study(args.storage, n) for n in sizes}
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}\n"
        f"Python {platform.python_version()}, optuna {optuna.__version__}, plotly "
        f"{plotly.__version__}, numpy {numpy.__version__}, scikit-learn {sklearn.__version__}\n"
        f"load average at start {os.getloadavg()[0]:.2f}; median of {args.repeats} runs, "
        "each a fresh process\n",
        flush=True,
    )
    out = Path(tempfile.mkdtemp(prefix="views-speed-"))
    rows = []
    for n in sizes:
        print(f"{n:,} trials:", flush=True)
        report, importance, stock = time_pair(args.storage, names[n], args.repeats, out)
        rows.append((n, report, importance, stock))
    if rows:
        print("\n trials   report  importance   ours   stock   ours/stock (goal <= 0.6)")
    for n, report, importance, stock in rows:
        ours = report + importance
        ratio = ours / stock
        print(
            f"{n:7,d}  {report:6.2f}  {importance:10.2f}  {ours:5.2f}  {stock:6.2f}   {ratio:.2f}"
        )
    if args.best_trials:
        name = ensure_study(args.storage, args.best_trials)
        sweeper = str(Path(sys.executable).with_name("sweeper"))
        med, times = median_s(
            lambda: run([sweeper, "best", "--study", name, "--storage", args.storage]),
            args.repeats,
        )
        print(f"\nsweeper best on {args.best_trials:,} trials: {med:.2f} s ({runs(times)})")
    if args.dashboard_trials:
        name = ensure_study(args.storage, args.dashboard_trials)
        print(f"\nlive page API on {args.dashboard_trials:,} trials:")
        time_dashboard(args.storage, name, args.repeats)
    print(f"\nload average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
