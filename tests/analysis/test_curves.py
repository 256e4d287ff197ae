"""The learning-curve model: the prior, the population update and the forecast."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from synthcurves import population, rise

from sweeper.analysis import curves


def _prior(n: int = 400, seed: int = 0, epochs: int = 10) -> curves.CurvePrior:
    return curves.fit_prior(population(n, seed, epochs), "synthetic")


def test_prior_round_trips_through_json() -> None:
    prior = _prior()
    back = curves.CurvePrior.from_json(prior.to_json())
    assert np.array_equal(back.mean, prior.mean) and np.array_equal(back.cov, prior.cov)
    assert back.n_curves == prior.n_curves and back.source == prior.source


def test_shipped_prior_is_a_corpus_of_full_curves() -> None:
    prior = curves.shipped_prior()
    assert prior.epochs >= 2 and prior.n_curves >= 100
    # A covariance: symmetric with non-negative eigenvalues (to rounding).
    assert np.allclose(prior.cov, prior.cov.T)
    assert np.linalg.eigvalsh(prior.cov).min() > -1e-9


def test_forecast_of_the_prior_alone_covers_its_own_population() -> None:
    """Forecasts from a prior fitted on other draws of the same family: the 95% band holds
    the last epoch of fresh curves about 95% of the time (binomial sd at n = 400 is 1.1
    points; the model is only approximately right for this non-Gaussian family, so the
    bound is 90%, at every epoch seen)."""
    pop = curves.population(_prior(seed=1), [], 10)
    fresh = population(400, seed=2)
    for t in (1, 3, 6, 9):
        held = 0
        for curve in fresh:
            low, high = curves.forecast(pop, curve[:t]).band()
            held += low[-1] <= curve[-1] <= high[-1]
        assert held / len(fresh) >= 0.90, (t, held)


def test_forecast_narrows_as_epochs_are_seen() -> None:
    pop = curves.population(_prior(), [], 10)
    curve = rise(0.5, 0.6)
    scales = [curves.forecast(pop, curve[:t]).scale[-1] for t in range(0, 10)]
    assert all(b < a for a, b in itertools.pairwise(scales))


def test_a_study_of_other_level_moves_the_population() -> None:
    """A study whose curves all sit 15 points above the corpus: its finished curves pull the
    forecast mean up (the prior's mean is worth 2 curves)."""
    prior = _prior()
    study = [list(np.array(c) + 0.15) for c in population(20, seed=5)]
    alone = curves.population(prior, [], 10)
    moved = curves.population(prior, study, 10)
    assert moved.n_study == 20 and alone.n_study == 0
    assert moved.mean[-1] - alone.mean[-1] > 0.12


def test_a_prior_on_other_epochs_is_resampled() -> None:
    prior = _prior(epochs=10)
    pop = curves.population(prior, [], 20)
    assert pop.mean.shape == (20,) and pop.scale.shape == (20, 20)
    # Epoch 20 of 20 is epoch 10 of 10; epoch 10 of 20 is epoch 5 of 10.
    assert pop.mean[-1] == pytest.approx(prior.mean[-1])
    assert pop.mean[9] == pytest.approx(prior.mean[4])
    assert np.linalg.eigvalsh(pop.scale).min() > 0


def test_chance_above_is_the_student_t_tail() -> None:
    f = curves.Forecast(3, (4, 5), (0.4, 0.5), (0.01, 0.02), 30.0)
    assert f.chance_above(0.5) == pytest.approx(0.5)
    # 0.54 is two scales above the mean: P(t_30 > 2) = 0.02731 (scipy.stats.t.sf(2, 30)).
    assert f.chance_above(0.54) == pytest.approx(0.02731, abs=1e-4)
    assert f.chance_above(0.46) == pytest.approx(1 - 0.02731, abs=1e-4)


def test_a_forecast_needs_fewer_epochs_than_the_run_has() -> None:
    pop = curves.population(_prior(), [], 10)
    with pytest.raises(ValueError, match="fewer than 10"):
        curves.forecast(pop, [0.1] * 10)
