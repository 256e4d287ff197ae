"""``bench/pruning_replay.py``'s accounting, on a synthetic corpus whose truth is known: one
configuration ten points above the rest, three seeds each, curves of known shape."""

from __future__ import annotations

import importlib.util
import itertools
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import optuna
import pytest
from synthcurves import rise

from sweeper.spec import PrunerSpec

ROOT = Path(__file__).resolve().parent.parent
EPOCHS = 6
BEST = ("adamw", 0.001, 0.01)


@pytest.fixture(scope="module")
def harness() -> ModuleType:
    spec = importlib.util.spec_from_file_location("replay", ROOT / "bench" / "pruning_replay.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["replay"] = module
    spec.loader.exec_module(module)
    return module


def _document() -> dict[str, Any]:
    runs = []
    configs = list(itertools.product(("adamw", "adam"), (1e-4, 1e-3, 3e-3), (1e-4, 1e-2)))
    for i, (opt, lr, wd) in enumerate(configs):
        ceiling = 0.7 if (opt, lr, wd) == BEST else 0.45 + 0.01 * (i % 5)
        for seed in range(3):
            curve = rise(ceiling + 0.003 * seed, 0.8, EPOCHS)
            runs.append(
                {"optimizer": opt, "lr": lr, "weight_decay": wd, "seed": seed,
                 "val_accuracy": curve}
            )  # fmt: skip
    settings = {"epochs": EPOCHS, "val_size": 10_000, "train_size": 5000}
    return {"settings": settings, "machine": {"device": "synthetic"}, "runs": runs}


@pytest.fixture(scope="module")
def corpus(harness: ModuleType) -> Any:
    return harness.corpus_from(_document())


def test_the_truth_is_the_configuration_ten_points_ahead(corpus: Any) -> None:
    assert corpus.best_set == {BEST}
    assert corpus.means[BEST] == pytest.approx(rise(0.703, 0.8, EPOCHS)[-1], abs=1e-9)
    assert len(corpus.configs) == 12 and corpus.seeds == (0, 1, 2)


class _OddAtTwo(optuna.pruners.BasePruner):
    """Stops every odd-numbered trial at its second epoch."""

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        return trial.number % 2 == 1 and trial.last_step == 2


@pytest.mark.parametrize("workers", [1, 4])
def test_epochs_are_counted_trial_by_trial(harness: ModuleType, corpus: Any, workers: int) -> None:
    scenario = harness.Scenario(0, "random", workers, 1)
    spec = harness.study_spec(corpus, scenario, PrunerSpec("none"))
    out = harness.replay(corpus, scenario, _OddAtTwo(), spec, 10)
    assert len(out.log) == 10
    assert out.epochs == 5 * EPOCHS + 5 * 2 == sum(e for _, _, e, _ in out.log)
    assert {(n % 2, e, s) for n, _, e, s in out.log} == {(0, EPOCHS, "complete"), (1, 2, "pruned")}
    assert out.stopped == 5


def test_hit_regret_and_epochs_to_hit(harness: ModuleType, corpus: Any) -> None:
    """One worker, no pruning: the answer is the best configuration once a trial of it has
    finished, and the epochs until then are the trials' epochs up to that one."""
    scenario = harness.Scenario(3, "random", 1, 0)
    spec = harness.study_spec(corpus, scenario, PrunerSpec("none"))
    for trials in (1, 30):
        out = harness.replay(corpus, scenario, optuna.pruners.NopPruner(), spec, trials)
        keys = [k for _, k, _, _ in out.log]
        assert out.epochs == trials * EPOCHS
        if BEST in keys:
            assert out.hit and out.answer == BEST and out.regret == 0.0
            assert out.epochs_to_hit == (keys.index(BEST) + 1) * EPOCHS
        else:
            assert not out.hit and out.epochs_to_hit is None
            assert out.regret == pytest.approx(
                100 * (corpus.means[BEST] - corpus.means[out.answer])
            )
    assert out.hit  # 30 trials over 12 configurations found it


def test_wrong_stops_count_stopped_trials_that_would_have_ended_within_noise(
    harness: ModuleType, corpus: Any
) -> None:
    """Stopping every odd trial: the wrong stops are the stopped trials of the best
    configuration (the only runs within noise of an answer 25 points above the rest)."""
    scenario = harness.Scenario(5, "random", 1, 2)
    spec = harness.study_spec(corpus, scenario, PrunerSpec("none"))
    out = harness.replay(corpus, scenario, _OddAtTwo(), spec, 40)
    assert out.answer == BEST
    stopped_best = sum(1 for n, k, _, s in out.log if s == "pruned" and k == BEST)
    assert out.wrong_stops == stopped_best


def test_every_pruner_meets_the_same_studies(harness: ModuleType, corpus: Any) -> None:
    """The table's rows: each pruner over the same scenarios; 'none' trains every epoch."""
    kinds = harness.pruner_kinds([0.05], [3])
    rows, outcomes = harness.run(corpus, 8, 12, kinds)
    by = {r.name: r for r in rows}
    assert by["none"].epochs == 12 * EPOCHS and by["none"].stopped == 0
    assert by["median (default until now)"].ratio == pytest.approx(1.0)
    for name, outs in outcomes.items():
        assert len(outs) == 8, name
        assert all(o.epochs == sum(e for _, _, e, _ in o.log) for o in outs), name
