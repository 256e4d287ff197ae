"""The curve pruner and the one-epoch top-k, on curves of known shape in real Optuna studies
(in-memory storage: the pruners read only Optuna's public study API; the stopped trial's
note goes through the door, checked on PostgreSQL in test_optuna_door.py)."""

from __future__ import annotations

import time

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState
from synthcurves import population, rise

from sweeper import attrs
from sweeper.analysis import curves
from sweeper.pruners import CurvePruner, FirstEpochTopK

EPOCHS = 10


@pytest.fixture(scope="module")
def prior() -> curves.CurvePrior:
    return curves.fit_prior(population(400, seed=0), "synthetic")


def _study(pruner: optuna.pruners.BasePruner, finished: list[list[float]]) -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", pruner=pruner)
    for curve in finished:
        trial = study.ask()
        for epoch, value in enumerate(curve, start=1):
            trial.report(value, epoch)
        study.tell(trial, curve[-1])
    return study


def _stopped_at(study: optuna.Study, curve: list[float]) -> int | None:
    """Report ``curve`` epoch by epoch as the worker does; the epoch it is stopped at."""
    trial = study.ask()
    for epoch, value in enumerate(curve, start=1):
        trial.report(value, epoch)
        if epoch < len(curve) and trial.should_prune():
            study.tell(trial, state=TrialState.PRUNED)
            return epoch
    study.tell(trial, curve[-1])
    return None


def _finished() -> list[list[float]]:
    """Ten finished trials, the best ending at 0.60."""
    done = population(9, seed=3)
    done = [c for c in done if c[-1] < 0.58] + [rise(0.6, 0.8)]
    assert max(c[-1] for c in done) == pytest.approx(0.6, abs=0.01)
    return done


def test_a_flat_loser_is_stopped_early(prior: curves.CurvePrior) -> None:
    study = _study(CurvePruner(EPOCHS, prior=prior, within_noise=True, threshold=0.05), _finished())
    flat = [0.11, 0.115, 0.11, 0.112, 0.11, 0.113, 0.11, 0.11, 0.111, 0.11]
    epoch = _stopped_at(study, flat)
    assert epoch is not None and epoch <= 2
    note = study.trials[-1].user_attrs[attrs.FORECAST]
    assert note["epoch"] == epoch and note["chance"] < note["threshold"] == 0.05
    assert note["epochs"] == list(range(epoch + 1, EPOCHS + 1))
    assert len(note["mean"]) == len(note["low"]) == len(note["high"]) == EPOCHS - epoch
    assert note["high"][-1] < note["target"] < note["best"]


def _bloomer(end: float, start: float = 0.16) -> list[float]:
    """Slow first, then catching up: ``end - (end - start) exp(-0.35 (e - 1))``."""
    return [end - (end - start) * float(np.exp(-0.35 * (e - 1))) for e in range(1, EPOCHS + 1)]


def _stalled(level: float) -> list[float]:
    return [level + 0.01 * (1 - float(np.exp(-0.5 * (e - 1)))) for e in range(1, EPOCHS + 1)]


def test_a_late_bloomer_survives_where_a_flat_loser_of_the_same_start_is_stopped() -> None:
    """A population of three shapes (fast risers, late bloomers, runs that stall at their
    first epoch's level): after one epoch a late bloomer and a stalled run look alike (both
    at 0.16, the best's first epoch was 0.43), so neither is stopped; their second epochs
    tell them apart. The bloomer (0.30 at epoch 2, 0.60 at the end, within noise of the
    best's 0.62) runs to the end; the stalled run is stopped at epoch 2."""
    rng = np.random.default_rng(7)
    shapes = []
    for i in range(300):
        lift = rng.uniform(-0.03, 0.03)
        shape = (rise(0.62 + lift, 1.0), _bloomer(0.61 + lift), _stalled(0.16 + lift))[i % 3]
        shapes.append(list(np.array(shape) + rng.normal(0, 0.004, EPOCHS)))
    prior = curves.fit_prior(shapes, "three shapes")
    best = rise(0.62, 1.0)
    study = _study(CurvePruner(EPOCHS, prior=prior, within_noise=True, threshold=0.05), [best])
    bloomer, stalled = _bloomer(0.625), _stalled(0.16)
    assert bloomer[0] == pytest.approx(stalled[0]) == pytest.approx(0.16) and best[
        0
    ] == pytest.approx(0.43, abs=0.01)
    assert bloomer[-1] - best[-1] > -curves.within_noise_margin(0.01)  # within noise
    assert _stopped_at(study, bloomer) is None
    assert _stopped_at(study, stalled) == 2


def test_a_strong_trial_is_never_stopped(prior: curves.CurvePrior) -> None:
    study = _study(CurvePruner(EPOCHS, prior=prior, within_noise=True, threshold=0.05), _finished())
    assert _stopped_at(study, rise(0.64, 0.9)) is None


def test_by_default_the_line_is_the_best_itself(prior: curves.CurvePrior) -> None:
    """A trial heading for 1.5 points below the best (0.60): within noise of it, so the
    within-noise rule keeps it; by default (chance to end above the best) it is stopped,
    after its forecast has narrowed onto a final below the best."""
    close = rise(0.585, 0.8)
    keep = _study(CurvePruner(EPOCHS, prior=prior, within_noise=True, threshold=0.05), _finished())
    assert _stopped_at(keep, close) is None
    stop = _study(CurvePruner(EPOCHS, prior=prior), _finished())
    epoch = _stopped_at(stop, close)
    assert epoch is not None
    note = stop.trials[-1].user_attrs[attrs.FORECAST]
    assert note["target"] == pytest.approx(note["best"], abs=1e-5)
    assert note["best"] == pytest.approx(0.6, abs=0.01)


def test_nothing_is_stopped_before_a_trial_finishes(prior: curves.CurvePrior) -> None:
    study = _study(CurvePruner(EPOCHS, prior=prior), [])
    assert _stopped_at(study, [0.1] * EPOCHS) is None


def test_min_epochs_and_the_last_epoch(prior: curves.CurvePrior) -> None:
    study = _study(CurvePruner(EPOCHS, prior=prior, min_epochs=3, within_noise=True), _finished())
    assert _stopped_at(study, [0.1] * EPOCHS) == 3


def test_the_threshold_is_checked() -> None:
    with pytest.raises(ValueError, match="threshold"):
        CurvePruner(EPOCHS, threshold=1.0)


def test_stopped_trials_would_rarely_have_ended_within_noise(prior: curves.CurvePrior) -> None:
    """The pruner's claim: it stops a trial only when its chance of ending within noise of
    the best is below 5%. Over 300 fresh curves of the family, of those it stops, the
    fraction that would have ended within noise stays below 5% (here it is about 1%;
    binomial sd at ~200 stops is 1.5 points)."""
    finished = _finished()
    best = max(c[-1] for c in finished)
    pruner = CurvePruner(EPOCHS, prior=prior, record=False, within_noise=True, threshold=0.05)
    study = _study(pruner, finished)
    margin = curves.within_noise_margin(0.01)
    stops = wrong = 0
    for curve in population(300, seed=11):
        trial = study.ask()
        for epoch, value in enumerate(curve[:-1], start=1):
            trial.report(value, epoch)
            if pruner.prune(study, study.get_trials(deepcopy=False)[-1]):
                stops += 1
                wrong += curve[-1] >= best - margin
                break
        study.tell(trial, state=TrialState.FAIL)  # keep the finished set as it was
    assert stops > 100
    assert wrong / stops < 0.05


def test_a_decision_costs_under_10_ms(prior: curves.CurvePrior) -> None:
    """1,000 finished trials, the population cached: the median decision takes well under
    10 ms (about 0.3 ms here; the bound leaves 30x for a loaded machine)."""
    rng = np.random.default_rng(0)
    curves_ = population(1000, seed=4)
    pruner = CurvePruner(EPOCHS, prior=prior, record=False)
    study = _study(pruner, [curves_[int(rng.integers(1000))] for _ in range(1000)])
    trial = study.ask()
    for epoch, value in enumerate([0.2, 0.25, 0.3], start=1):
        trial.report(value, epoch)
    frozen = study.get_trials(deepcopy=False)[-1]
    pruner.prune(study, frozen)
    times = []
    for _ in range(50):
        started = time.perf_counter()
        pruner.prune(study, frozen)
        times.append(time.perf_counter() - started)
    assert sorted(times)[25] < 0.010


def test_top_k_keeps_the_k_best_first_epochs() -> None:
    study = _study(FirstEpochTopK(k=2), [[0.5, 0.6], [0.3, 0.4], [0.2, 0.3]])
    assert _stopped_at(study, [0.4, 0.5]) is None  # second best first epoch
    assert _stopped_at(study, [0.35, 0.9]) == 1  # third best now (0.5, 0.4 are ahead)
    assert _stopped_at(study, [0.6, 0.61]) is None  # the best: kept


def test_top_k_judges_only_the_first_epoch() -> None:
    study = _study(FirstEpochTopK(k=1), [[0.5, 0.6, 0.7]])
    assert _stopped_at(study, [0.55, 0.1, 0.1]) is None


def test_the_spec_names_the_pruners() -> None:
    from sweeper.spec import parse_spec
    from sweeper.study import make_pruner

    doc = {
        "study": {"name": "x"},
        "pruner": {"kind": "curve", "threshold": 0.1, "min_epochs": 2},
        "training": {"epochs": 7},
        "data": {"val_size": 500},
    }
    pruner = make_pruner(parse_spec(doc, "x.toml"))
    assert isinstance(pruner, CurvePruner)
    assert (pruner.epochs, pruner.threshold, pruner.min_epochs, pruner.n_val) == (7, 0.1, 2, 500)
    assert pruner.prior is curves.shipped_prior()
    top = make_pruner(parse_spec({"study": {"name": "x"}, "pruner": {"kind": "top_k"}}, "x"))
    assert isinstance(top, FirstEpochTopK) and top.k == 3
