"""``sweeper.snapshot`` on real studies in PostgreSQL: one read, ``Run`` rows from storage that
answer ``best`` as the full snapshot does, multi-objective studies refused in one line.
"""

from __future__ import annotations

import optuna
import pytest
from dashboard.factory import (
    SWEEP,
)
from optuna.trial import TrialState

from sweeper.analysis.study_model import best_of, best_of_runs
from sweeper.errors import UsageError
from sweeper.snapshot import runs_from_storage, snapshot
from sweeper.storage import open_storage


def test_snapshot_reads_a_real_study(shared_url: str) -> None:
    storage = open_storage(shared_url)
    study = optuna.load_study(study_name=SWEEP, storage=storage)
    fast = snapshot(study, storage)
    slow = snapshot(study)
    assert fast.trials == slow.trials and len(fast.trials) == 120
    assert fast.user_attrs["metric"] == "val_accuracy"
    states = {t.state for t in fast.trials}
    assert states == {TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL}


def test_best_reads_less_and_answers_the_same(shared_url: str) -> None:
    """``sweeper best``'s lean read gives the same answer as the full snapshot."""
    storage = open_storage(shared_url)
    for name in ("cifar10-adamw", "adam-vs-adamw"):
        study = optuna.load_study(study_name=name, storage=storage)
        assert best_of_runs(*runs_from_storage(study, storage)) == best_of(snapshot(study, storage))


def test_multi_objective_studies_are_refused_in_one_line(storage_url: str) -> None:
    study = optuna.create_study(
        storage=storage_url, study_name="mo", directions=["maximize", "minimize"]
    )
    with pytest.raises(UsageError, match="has 2 objectives"):
        snapshot(study)
