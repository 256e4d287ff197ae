"""The report and the importance command on a 1,000-trial study: under 3 s each.

Timed in-process (what ``sweeper report`` / ``sweeper importance`` do after Python start-up
and imports: open the storage, load the study, read the trials, compute, write), median of
3 runs. bench/views_speed.py prints the same stages and the console script's wall time.
Creating the study through Optuna takes ~30 s on a 2-core machine, hence ``slow``.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from sweeper.analysis.importance import importance_info
from sweeper.dashboard.data import snapshot
from sweeper.dashboard.report import write_report
from sweeper.storage import open_storage
from sweeper.study import load_study

from .factory import create_study, synthetic_trials

BUDGET_S = 3.0
N_TRIALS = 1000


def median_s(fn: Callable[[], object], repeats: int = 3) -> tuple[float, list[float]]:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), times


@pytest.mark.slow
def test_report_and_importance_on_1000_trials(storage_url: str, tmp_path: Path) -> None:
    create_study(storage_url, "big", synthetic_trials(N_TRIALS, epochs=8, n_failed=10))
    out = tmp_path / "report.html"

    def load():  # as the commands do: a fresh connection, the study, one read of its trials
        storage = open_storage(storage_url)
        return snapshot(load_study(storage, "big"), storage)

    assert len(load().trials) == N_TRIALS
    report_s, report_runs = median_s(lambda: write_report(load(), out))
    importance_s, importance_runs = median_s(lambda: importance_info(load()))
    load_avg = os.getloadavg()[0]
    message = (
        f"report {report_s:.2f} s {report_runs}, importance {importance_s:.2f} s "
        f"{importance_runs}, load average {load_avg:.1f}"
    )
    print(message)
    assert report_s < BUDGET_S, message
    assert importance_s < BUDGET_S, message
    assert out.stat().st_size > 1_000_000  # plotly.js inlined plus the figures
