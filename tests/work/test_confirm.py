"""Seed replicates through the real console script: after the search budget, the workers
re-run the top configurations with new seeds, exactly once, and ``sweeper best`` counts them.
"""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
from clirun import sweeper
from optuna.trial import TrialState

SPEC = """
[study]
name = "confirm"
n_trials = 3
[sampler]
kind = "random"
seed = 3
[pruner]
kind = "median"
n_startup_trials = 3
n_warmup_steps = 0
[training]
epochs = 2
[data]
train_size = 120
val_size = 60
[confirm]
top_k = 2
seeds = 2
"""


@pytest.mark.parametrize("pack", [1, 2])
def test_workers_replicate_the_top_configurations_after_the_search(
    pack: int, storage_url: str, tiny_official: Path, tmp_path: Path
) -> None:
    spec = tmp_path / "confirm.toml"
    spec.write_text(SPEC)
    args = ["run", str(spec), "--storage", storage_url, "--data", str(tiny_official)]
    run = sweeper(*args, "--pack", str(pack))
    assert run.returncode == 0, run.stderr
    assert "queued 4 seed replicates of the top 2 configurations" in run.stderr, run.stderr

    trials = optuna.load_study(study_name="confirm", storage=storage_url).trials
    search = [t for t in trials if "replicate_of" not in t.user_attrs]
    replicates = [t for t in trials if "replicate_of" in t.user_attrs]
    assert len(search) == 3 and len(replicates) == 4, [t.user_attrs for t in trials]
    assert all(t.state == TrialState.COMPLETE for t in replicates), "replicates are not pruned"
    finished = [t for t in search if t.state == TrialState.COMPLETE]
    top = sorted(finished, key=lambda t: -float(t.value))[:2]  # type: ignore[arg-type]
    assert sorted({t.user_attrs["replicate_of"] for t in replicates}) == sorted(
        t.number for t in top
    )
    for r in replicates:
        original = next(t for t in trials if t.number == r.user_attrs["replicate_of"])
        assert r.params == original.params
        assert r.user_attrs["seed"] == 0 + r.number, "a new seed: its own trial number's"
    assert len({t.user_attrs["seed"] for t in trials}) == len(trials)

    best = sweeper("best", "--study", "confirm", "--storage", storage_url, "--format", "json")
    assert best.returncode == 0, best.stderr
    answer = json.loads(best.stdout)
    assert answer["configuration"]["n_seeds"] == 3, answer["configuration"]

    again = sweeper(*args, "--pack", str(pack))
    assert again.returncode == 0 and "this worker ran 0 trials" in again.stderr, again.stderr
    assert "queued" not in again.stderr, "each replicate is queued once"


def test_confirm_on_demand_queues_once_and_runs_the_replicates(
    storage_url: str, tiny_official: Path, tmp_path: Path
) -> None:
    """``sweeper confirm`` on a study without [confirm]: queue, run here, and never twice."""
    spec = tmp_path / "plain.toml"
    spec.write_text(SPEC.replace('name = "confirm"', 'name = "plain"').split("[confirm]")[0])
    run = sweeper("run", str(spec), "--storage", storage_url, "--data", str(tiny_official))
    assert run.returncode == 0 and "queued" not in run.stderr, run.stderr

    base = ["confirm", "--study", "plain", "--storage", storage_url]
    missing = sweeper(*base)
    assert missing.returncode == 2 and "give --top K" in missing.stderr, missing.stderr

    done = sweeper(*base, "--top", "1", "--seeds", "2", "--data", str(tiny_official))
    assert done.returncode == 0, done.stderr
    assert "queued 2 seed replicates of the top 1 configurations" in done.stderr
    assert "this worker ran 2 trials: 2 complete" in done.stderr, done.stderr
    trials = optuna.load_study(study_name="plain", storage=storage_url).trials
    assert (
        len(trials) == 5
        and [t.user_attrs.get("replicate_of") for t in trials[3:]]
        == [trials[3].user_attrs["replicate_of"]] * 2
    )

    again = sweeper(*base, "--top", "1", "--seeds", "2", "--queue-only")
    assert again.returncode == 0 and "queued 0 seed replicates" in again.stderr, again.stderr
