"""Studies: how samplers behave across processes (sweeper/study.py).

Two ``load_study`` calls stand for two worker processes: each builds its own sampler, as a
process does. Before trial-seeded sampling, two processes with one spec seed proposed the
same points in lockstep (issue 13, item 1).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import optuna
import pytest
from clirun import SCRIPT
from optuna.trial import TrialState

from sweeper.spec import StudySpec, parse_spec
from sweeper.study import create_or_load, load_study, trial_seed


def _spec(kind: str, name: str = "s") -> StudySpec:
    sampler: dict[str, object] = {"kind": kind, "seed": 0}
    if kind == "tpe":
        sampler["n_startup_trials"] = 2  # the model, not only its random start, is exercised
    if kind == "grid":
        sampler["points"] = {"lr": [1e-4, 1e-3], "weight_decay": [1e-4, 1e-3]}
    document = {
        "study": {"name": name},
        "space": {"optimizer": ["adamw", "adam"]},  # a categorical, drawn apart from QMC
        "sampler": sampler,
    }
    return parse_spec(document, "inline")


def _ask(study: optuna.Study, spec: StudySpec) -> tuple[optuna.Trial, tuple[object, ...]]:
    """Ask as a worker does: lr, weight decay, then the optimizer."""
    trial = study.ask()
    space = spec.space
    lr = trial.suggest_float("lr", space.lr.low, space.lr.high, log=True)
    wd = trial.suggest_float(
        "weight_decay", space.weight_decay.low, space.weight_decay.high, log=True
    )
    optimizer = trial.suggest_categorical("optimizer", list(space.optimizer))
    return trial, (lr, wd, optimizer)


def _score(point: tuple[object, ...]) -> float:
    lr, wd, _ = point
    assert isinstance(lr, float) and isinstance(wd, float)
    return -abs(lr - 4e-4) - abs(wd - 1e-3)


@pytest.mark.parametrize("kind", ["tpe", "random", "qmc", "grid"])
def test_processes_in_lockstep_draw_distinct_points(kind: str, storage_url: str) -> None:
    spec = _spec(kind)
    storage = optuna.storages.RDBStorage(storage_url)
    create_or_load(storage, spec)
    workers = [load_study(storage, spec.name), load_study(storage, spec.name)]
    rounds = 2 if kind == "grid" else 4
    points = []
    for _ in range(rounds):
        asked = [_ask(study, spec) for study in workers]  # both running at once
        for study, (trial, point) in zip(workers, asked, strict=True):
            points.append(point[:2])
            study.tell(trial, _score(point))
    assert len(set(points)) == len(points), points
    if kind == "grid":
        assert set(points) == {(lr, wd) for lr in (1e-4, 1e-3) for wd in (1e-4, 1e-3)}


@pytest.mark.parametrize("kind", ["tpe", "random"])
def test_one_worker_replays_the_same_study(kind: str, storage_url: str) -> None:
    """Sampling depends on (seed, trial number, history) only: a study is reproducible."""
    storage = optuna.storages.RDBStorage(storage_url)
    runs = []
    for name in ("first", "second"):
        spec = _spec(kind, name)
        create_or_load(storage, spec)
        study = load_study(storage, name)
        points = []
        for _ in range(5):
            trial, point = _ask(study, spec)
            points.append(point)
            study.tell(trial, _score(point))
        runs.append(points)
    assert runs[0] == runs[1]


def test_trial_seeds_differ_for_every_trial_number() -> None:
    seeds = [trial_seed(0, n) for n in range(10_000)]
    assert len(set(seeds)) == len(seeds) and all(0 <= s < 2**32 for s in seeds)
    assert trial_seed(1, 0) != trial_seed(0, 1)


def test_two_runs_started_together_sample_distinct_points(
    storage_url: str, tiny_official: Path, tmp_path: Path
) -> None:
    """Issue 13 item 1: TPE, seed 0, budget 4, two `sweeper run` started at the same instant."""
    spec = tmp_path / "together.toml"
    spec.write_text(
        '[study]\nname = "together"\nn_trials = 4\n[sampler]\nkind = "tpe"\nseed = 0\n'
        '[pruner]\nkind = "none"\n[training]\nepochs = 1\n[data]\ntrain_size = 40\nval_size = 20\n'
    )
    command = [
        str(SCRIPT),
        "run",
        str(spec),
        "--storage",
        storage_url,
        "--data",
        str(tiny_official),
    ]
    procs = [subprocess.Popen(command, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    errors = [proc.communicate(timeout=300)[1] for proc in procs]
    for proc, stderr in zip(procs, errors, strict=True):
        assert proc.returncode == 0, stderr[-2000:]
    trials = optuna.load_study(study_name="together", storage=storage_url).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4
    points = [(t.params["lr"], t.params["weight_decay"]) for t in trials]
    assert len(set(points)) == 4, points
