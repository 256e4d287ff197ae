"""The report and the importance command against stock Optuna, measured in the same test.

What is timed, in-process after a warm-up (imports and Python start-up excluded: both sides
pay them; bench/views_speed.py times the console scripts end to end):

  ours   open the storage, load the study, read its trials, ``write_report`` and
         ``importance_info`` (what ``sweeper report`` + ``sweeper importance`` do).
  stock  ``optuna.load_study`` and ``plot_contour(lr, wd)`` + ``plot_param_importances``
         written to HTML (what a user of stock Optuna runs), on the same study.

Medians of 3, interleaved (ours, stock, ours, stock, ...) so that a burst of load elsewhere
hits both sides alike. The assertion is on the ratio, never on seconds: a busy machine slows
both sides. Measured on a 2-core VM with both cores loaded by another test suite (load
average 4.5-8.9): ours / stock = 0.76-0.84 after the speed work; 3.95 before it (Optuna's
pooled PED-ANOVA and fANOVA in the default path). The bound of 2.0 leaves ~2.4x for load
landing on one side only, and still fails by 2x if that regression comes back. Creating the
1,000-trial study takes ~30 s, hence ``slow``.
"""

from __future__ import annotations

import os
import statistics
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest

from sweeper.analysis.importance import importance_info
from sweeper.dashboard.report import write_report
from sweeper.snapshot import snapshot
from sweeper.storage import open_storage
from sweeper.study import load_study

from .factory import create_study, synthetic_trials

N_TRIALS = 1000
REPEATS = 3
MAX_RATIO = 2.0  # see the module docstring for the measurements behind it


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


@pytest.mark.slow
def test_report_and_importance_against_stock_optuna(storage_url: str, tmp_path: Path) -> None:
    create_study(storage_url, "big", synthetic_trials(N_TRIALS, epochs=8, n_failed=10))

    def load():  # as the commands do: a fresh connection, the study, one read of its trials
        storage = open_storage(storage_url)
        return snapshot(load_study(storage, "big"), storage)

    def ours() -> None:
        write_report(load(), tmp_path / "report.html")
        importance_info(load())

    def stock() -> None:
        study = optuna.load_study(study_name="big", storage=storage_url)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Optuna's experimental-feature warnings
            contour = optuna.visualization.plot_contour(study, params=["lr", "weight_decay"])
            contour.write_html(tmp_path / "contour.html")
            importances = optuna.visualization.plot_param_importances(study)
            importances.write_html(tmp_path / "importances.html")

    assert len(load().trials) == N_TRIALS
    ours(), stock()  # warm-up: imports and first-call caches, on both sides
    our_runs, stock_runs = [], []
    for _ in range(REPEATS):
        our_runs.append(timed(ours))
        stock_runs.append(timed(stock))
    ratio = statistics.median(our_runs) / statistics.median(stock_runs)
    message = (
        f"ours/stock = {ratio:.2f} (bound {MAX_RATIO}); ours {our_runs}, stock {stock_runs}, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    print(message)
    assert ratio <= MAX_RATIO, message
    assert (tmp_path / "report.html").stat().st_size > 1_000_000  # plotly.js + the figures
