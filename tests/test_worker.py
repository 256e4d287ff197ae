"""Workers as real processes: a stopped or killed trial is re-run with the same parameters
and resumes from its last epoch checkpoint."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import optuna
import pytest
from clirun import finish, start_and_wait_for, sweeper
from optuna.trial import TrialState

SPEC = """
[study]
name = "resume"
n_trials = 1
[sampler]
kind = "random"
[pruner]
kind = "none"
[training]
epochs = 3
[storage]
heartbeat_interval = 1
grace_period = 3
"""


@pytest.mark.parametrize("how", ["sigterm", "sigkill"])
def test_interrupted_trial_resumes_from_its_checkpoint(
    how: str, storage_url: str, tiny_official: Path, tmp_path: Path
) -> None:
    spec = tmp_path / "resume.toml"
    spec.write_text(SPEC)
    args = ["run", str(spec), "--storage", storage_url, "--data", str(tiny_official)]
    proc = start_and_wait_for(args, "epoch 1/3")
    if how == "sigterm":
        proc.send_signal(signal.SIGTERM)
        code, rest = finish(proc)
        assert code == 130, rest
        assert "re-queued to resume from its last checkpoint" in rest
    else:
        proc.kill()
        proc.wait()
        time.sleep(4)  # longer than the grace period: the trial's heartbeat is stale

    study = optuna.load_study(study_name="resume", storage=storage_url)
    first = study.trials[0]
    if how == "sigterm":
        assert first.state == TrialState.FAIL and len(study.trials) == 2
    else:
        assert first.state == TrialState.RUNNING  # only a later worker can tell it died

    rerun = sweeper(*args)
    assert rerun.returncode == 0, rerun.stderr
    assert "retry of trial 0" in rerun.stderr and "resumed after epoch 1" in rerun.stderr

    study = optuna.load_study(study_name="resume", storage=storage_url)
    trials = study.get_trials(deepcopy=False)
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE]
    retried = trials[1]
    assert retried.params == first.params
    assert retried.user_attrs["seed"] == first.user_attrs["seed"]
    assert retried.user_attrs["resumed_from_epoch"] == 1
    assert sorted(retried.intermediate_values) == [1, 2, 3]
    assert retried.intermediate_values[1] == first.intermediate_values[1]
    assert not list((Path(os.environ["SWEEPER_HOME"]) / "checkpoints").rglob("*.pt"))
