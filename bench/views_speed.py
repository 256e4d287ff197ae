"""How long the report and the importance command take on a 1,000-trial study.

Run:  .venv/bin/python bench/views_speed.py --storage postgresql+psycopg2://USER@HOST/DB
      [--trials 1000] [--repeats 5] [--cli]

The study (synthetic: tests/dashboard/factory.py's landscape, 8 epochs, ~40% pruned, 10
failed, 4 workers) is created in that database on the first run (about half a minute:
Optuna adds trials one by one) and reused afterwards. Each stage is timed ``--repeats``
times and the median printed, with the machine, the library versions and the load average
(other processes on a shared machine slow every stage). Stages:

  load        open the storage and read every trial (sweeper.dashboard.fastread, as the CLI)
  views       every extraction: GP surface, decoupling, heatmaps, importances, curves...
  importance  PED-ANOVA + fANOVA + PED-ANOVA per epoch alone
  render      figures to one self-contained HTML file (plotly.js inlined), written to disk
  report      load + views + render: what ``sweeper report`` does after start-up
  importance_cmd  load + importance: what ``sweeper importance`` does after start-up

``--cli`` adds the wall time of the real console script (Python start-up and imports
included) for ``sweeper report`` and ``sweeper importance``.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import optuna

ROOT = Path(__file__).resolve().parent.parent
STUDY = "views-speed-{n}"


def _factory():  # the test-suite's study builder, loaded by path (tests/ is not a package)
    spec = importlib.util.spec_from_file_location("factory", ROOT / "tests/dashboard/factory.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def ensure_study(url: str, n: int) -> str:
    """The name of a study of ``n`` synthetic trials in ``url``, created when missing."""
    name = STUDY.format(n=n)
    storage = optuna.storages.RDBStorage(url)
    if name in optuna.get_all_study_names(storage):
        if len(optuna.load_study(study_name=name, storage=storage).trials) == n:
            return name
        optuna.delete_study(study_name=name, storage=storage)
    factory = _factory()
    started = time.perf_counter()
    factory.create_study(url, name, factory.synthetic_trials(n, epochs=8, n_failed=10))
    print(f"created study {name} in {time.perf_counter() - started:.1f} s")
    return name


def median_time(fn: Callable[[], object], repeats: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storage", default=os.environ.get("SWEEPER_STORAGE"), required=False)
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cli", action="store_true", help="also time the console script")
    args = parser.parse_args()
    if not args.storage:
        parser.error("give --storage postgresql+psycopg2://... (or set SWEEPER_STORAGE)")

    import plotly
    import sklearn

    from sweeper.analysis.importance import importance_info
    from sweeper.dashboard.data import snapshot
    from sweeper.dashboard.report import write_report
    from sweeper.dashboard.views import build_views
    from sweeper.storage import open_storage
    from sweeper.study import load_study

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # sweeper's storage turns on heartbeats, which Optuna flags as experimental on every open.
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    name = ensure_study(args.storage, args.trials)
    print(
        f"machine: {platform.machine()} {os.cpu_count()} CPUs, Python {platform.python_version()}"
        f", optuna {optuna.__version__}, plotly {plotly.__version__}, "
        f"scikit-learn {sklearn.__version__}; load average {os.getloadavg()[0]:.1f}"
    )
    print(f"study {name}: {args.trials} trials; median of {args.repeats} runs\n")

    out = Path(tempfile.mkdtemp()) / "report.html"

    def load():
        storage = open_storage(args.storage)
        return snapshot(load_study(storage, name), storage)

    snap = load()
    views_fn = lambda: build_views(snap)  # noqa: E731
    stages: list[tuple[str, Callable[[], object]]] = [
        ("load", load),
        ("views", views_fn),
        ("importance", lambda: importance_info(snap)),
        ("render", lambda: write_report(snap, out)),
        ("report", lambda: write_report(load(), out)),
        ("importance_cmd", lambda: importance_info(load())),
    ]
    rows = []
    for label, fn in stages:
        med, times = median_time(fn, args.repeats)
        rows.append((label, med, times))
        print(f"{label:16s} {med:7.3f} s   (runs: {', '.join(f'{t:.2f}' for t in times)})")
    if args.cli:
        script = str(Path(sys.executable).with_name("sweeper"))
        for label, extra in (
            ("cli report", ["report", "-o", str(out)]),
            ("cli importance", ["importance"]),
        ):
            cmd = [script, *extra, "--study", name, "--storage", args.storage]
            med, times = median_time(
                lambda cmd=cmd: subprocess.run(cmd, check=True, capture_output=True), args.repeats
            )
            print(f"{label:16s} {med:7.3f} s   (runs: {', '.join(f'{t:.2f}' for t in times)})")
    size = out.stat().st_size / 1e6
    print(f"\nreport size: {size:.1f} MB; load average now {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
