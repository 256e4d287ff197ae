"""The door (``sweeper._optuna``) against Optuna's public API on a real PostgreSQL: what the
door reads equals what Optuna reads.
"""

from __future__ import annotations

import math

import optuna
import pytest
from dashboard.factory import (
    synthetic_trials,
)
from optuna.trial import TrialState

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
