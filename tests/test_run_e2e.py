"""End to end through the real console script: run a sweep, then ask for the best trial."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import optuna
import pytest
from clirun import one_line_error, sweeper

# One fast learning rate and three slow ones: under the median rule at least one slow trial
# falls behind an earlier trial at epoch 1 and is pruned, whatever order the grid runs in.
PRUNING_SPEC = """
[study]
name = "{name}"

[space.lr]
low = 1e-5
high = 3e-3

[sampler]
kind = "grid"
seed = 0

[sampler.points]
lr = [3e-3, 1e-5, 1.2e-5, 1.4e-5]
weight_decay = [1e-3]

[pruner]
kind = "median"
n_startup_trials = 1
n_warmup_steps = 0

[training]
epochs = 2
seed = 11
"""


@pytest.mark.parametrize("layout", ["official", "imagefolder"])
def test_run_then_best_and_trials(
    layout: str, storage_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    data = request.getfixturevalue(f"tiny_{layout}")
    spec = tmp_path / "study.toml"
    spec.write_text(PRUNING_SPEC.format(name=f"e2e-{layout}"))

    run = sweeper("run", str(spec), "--storage", storage_url, "--data", str(data))
    assert run.returncode == 0, run.stderr
    assert "PRUNED at epoch 1" in run.stderr
    assert "this worker ran 4 trials" in run.stderr

    study = optuna.load_study(study_name=f"e2e-{layout}", storage=storage_url)
    states = [t.state for t in study.trials]
    assert len(states) == 4
    assert optuna.trial.TrialState.PRUNED in states
    assert optuna.trial.TrialState.COMPLETE in states
    for trial in study.trials:
        attrs = trial.user_attrs
        assert attrs["seed"] == 11 + trial.number
        assert attrs["optimizer"] == "adamw" and attrs["optimizer_impl"]
        assert attrs["torch_version"] and attrs["device"].startswith("cpu")
        assert attrs["sweeper_version"] and ":" in attrs["worker"]
        assert sorted(trial.intermediate_values) == list(range(1, attrs["epochs_run"] + 1))

    best = sweeper("best", "--study", f"e2e-{layout}", "--storage", storage_url, "--format", "json")
    assert best.returncode == 0, best.stderr
    answer = json.loads(best.stdout)
    row = answer["best_run"]  # the best single run, under its own name
    assert row["number"] == study.best_trial.number
    assert row["value"] == pytest.approx(study.best_value)
    assert row["params"]["lr"] == pytest.approx(3e-3)  # the fast one wins
    assert row["value"] > 0.5, "the learnable task must be learnt well above chance (0.1)"
    assert row["epochs_run"] == 2 and row["seed"] == 11 + row["number"]
    # The top level is the best configuration (single runs here: the same trial), its value
    # corrected for having been chosen, inside its interval.
    assert answer["number"] == row["number"] and answer["params"]["lr"] == pytest.approx(3e-3)
    assert answer["ci95"][0] <= answer["value"] <= answer["ci95"][1]

    table = sweeper("best", "--study", f"e2e-{layout}", "--storage", storage_url)
    assert table.returncode == 0 and "optimizer_impl" in table.stdout

    listing = sweeper(
        "trials", "--study", f"e2e-{layout}", "--storage", storage_url, "--format", "csv"
    )
    rows = list(csv.DictReader(io.StringIO(listing.stdout)))
    assert sorted(r["state"] for r in rows) == sorted(s.name for s in states)

    pruned = sweeper(
        "trials",
        "--study",
        f"e2e-{layout}",
        "--storage",
        storage_url,
        "--state",
        "pruned",
        "--format",
        "json",
    )
    assert {r["state"] for r in json.loads(pruned.stdout)} == {"PRUNED"}

    again = sweeper("run", str(spec), "--storage", storage_url, "--data", str(data))
    assert again.returncode == 0 and "this worker ran 0 trials" in again.stderr


def test_diverging_trial_fails_with_reason_and_the_worker_goes_on(
    storage_url: str, tiny_official: Path, tmp_path: Path
) -> None:
    spec = tmp_path / "nan.toml"
    spec.write_text(
        '[study]\nname = "nan"\n[space.lr]\nlow = 1e-3\nhigh = 1e7\n'
        '[sampler]\nkind = "grid"\n[sampler.points]\nlr = [1e7, 1e-3]\nweight_decay = [1e-3]\n'
        '[pruner]\nkind = "none"\n[training]\nepochs = 3\n'
    )
    run = sweeper("run", str(spec), "--storage", storage_url, "--data", str(tiny_official))
    assert run.returncode == 0, run.stderr
    study = optuna.load_study(study_name="nan", storage=storage_url)
    by_lr = {t.params["lr"]: t for t in study.trials}
    failed = by_lr[1e7]
    assert failed.state == optuna.trial.TrialState.FAIL
    assert "training loss is nan" in failed.user_attrs["fail_reason"]
    assert by_lr[1e-3].state == optuna.trial.TrialState.COMPLETE


def test_study_errors_are_one_line(storage_url: str, tmp_path: Path, tiny_official: Path) -> None:
    missing = sweeper("best", "--study", "nope", "--storage", storage_url)
    assert missing.returncode == 2
    assert "no study named 'nope'" in one_line_error(missing)

    spec = tmp_path / "s.toml"
    spec.write_text('[study]\nname = "clash"\n[training]\nepochs = 2\n')
    args = ("--storage", storage_url, "--max-trials", "0", "--data", str(tiny_official))
    assert sweeper("run", str(spec), *args).returncode == 0
    spec.write_text('[study]\nname = "clash"\n[training]\nepochs = 3\n')
    clash = sweeper("run", str(spec), *args)
    assert clash.returncode == 2
    assert "differs in: training.epochs" in one_line_error(clash)

    optuna.create_study(study_name="empty", storage=storage_url)
    none_yet = sweeper("best", "--study", "empty", "--storage", storage_url)
    assert none_yet.returncode == 1
    assert "has no completed trial yet (no trials)" in one_line_error(none_yet)

    bad_state = sweeper("trials", "--study", "empty", "--storage", storage_url, "--state", "done")
    assert bad_state.returncode == 2
    assert "unknown trial state 'done'" in one_line_error(bad_state)

    unknown = sweeper("frobnicate")
    assert unknown.returncode == 2
    assert "invalid choice: 'frobnicate'" in one_line_error(unknown)
