"""The noise model on replicated, unreplicated and non-accuracy data (numbers worked by hand)."""

from __future__ import annotations

import math

import pytest

from sweeper.analysis import noise as nm
from sweeper.analysis.study_model import noise_of
from sweeper.snapshot import from_trials

from .truths import replicated, split_grid


def snap_with_spec(trials, spec):  # type: ignore[no-untyped-def]
    return from_trials(trials, name=spec["name"])._replace(user_attrs={"spec": spec})


def test_t_quantiles_match_the_table_and_the_normal_limit() -> None:
    assert nm.t975(1) == pytest.approx(12.706)
    assert nm.t975(10) == pytest.approx(2.228)
    assert nm.t975(16) == pytest.approx(2.120)
    assert 2.021 < nm.t975(35) < 2.042
    assert nm.t975(1e9) == pytest.approx(1.96, abs=1e-3)


def test_replicates_give_a_pooled_sd_combined_with_the_prior() -> None:
    trials, spec = replicated()
    model = noise_of(snap_with_spec(trials, spec))
    # Within-configuration sums of squares 0.0002 + 0.0002 + 0.0006 over 6 df.
    assert model.pooled_df == 6 and model.n_replicated == 3
    assert model.pooled_sd == pytest.approx(math.sqrt(0.001 / 6))
    assert model.df == nm.PRIOR_DF + 6
    assert model.sd_run == pytest.approx(math.sqrt((10 * 1e-4 + 0.001) / 16))  # 0.01118
    assert model.n_val == 5000 and not model.n_val_assumed
    best = model.configs[0]
    assert (best.lr, best.weight_decay, best.n) == (4.6e-4, 1e-3, 3)
    assert best.mean == pytest.approx(0.71)
    assert best.numbers == (0, 1, 2) and best.seeds == (1000, 1001, 1002)
    half = nm.t975(16) * model.sd_run / math.sqrt(3)  # 0.0137
    assert (best.low, best.high) == (pytest.approx(0.71 - half), pytest.approx(0.71 + half))
    # The singles are configurations of one run with the same per-run sd.
    single = next(c for c in model.configs if c.lr == 1e-3 and c.weight_decay == 1e-3)
    assert single.n == 1 and single.se == pytest.approx(model.sd_run)


def test_replicate_of_joins_a_run_to_its_original_even_when_params_drift() -> None:
    trials, spec = replicated()
    trials[1].params["lr"] = 4.6000001e-4  # a float written back with a different last digit
    model = noise_of(snap_with_spec(trials, spec))
    assert model.configs[0].numbers == (0, 1, 2)


def test_without_replicates_the_prior_and_the_test_set_floor_apply() -> None:
    trials, spec = split_grid()
    model = noise_of(snap_with_spec(trials, spec))
    assert model.pooled_df == 0 and model.sd_run == nm.PRIOR_SD
    assert "no seed replicates" in model.source
    # A tiny test set: the binomial floor sqrt(p(1-p)/n) exceeds the prior.
    spec["data"]["val_size"] = 500
    small = noise_of(snap_with_spec(trials, spec))
    top = small.configs[0]
    assert top.sd_run == pytest.approx(math.sqrt(top.mean * (1 - top.mean) / 500))
    assert top.sd_run > nm.PRIOR_SD


def test_values_that_are_not_accuracies_without_replicates_have_unknown_noise() -> None:
    obs = [nm.Observation(i, "adamw", 1e-4 * (i + 1), 1e-3, v) for i, v in enumerate((3.0, 2.0))]
    model = nm.noise_model(obs, maximize=False)
    assert model.sd_run is None and model.n_val is None
    assert all(c.low is None for c in model.configs)
    assert model.configs[0].mean == 2.0  # minimise: the lowest first
    assert len(nm.indistinguishable(model)) == 2


def test_runs_noisier_than_the_prior_widen_the_noise_through_their_scatter() -> None:
    """48 single runs with 2 points of seed noise around a smooth surface and no replicates:
    the prior alone (1 point) would make every interval half as wide as it should be. The
    scatter around the per-optimizer quadratic (42 df) takes over; its estimate of a 2-point
    sd has a relative sd of about 1/sqrt(2 * 42) = 11%, so 1.5..2.5 points holds it with
    margin. With 0.3 points of noise the prior stays (lack of fit never narrows)."""
    import numpy as np

    def runs(sd: float) -> nm.NoiseModel:
        rng = np.random.default_rng(7)
        obs = []
        for i in range(48):
            u, v = rng.uniform(), rng.uniform()
            value = 0.6 - 0.04 * (u - 0.5) ** 2 + sd * rng.standard_normal()
            obs.append(nm.Observation(i, "adamw", 10 ** (u - 4), 10 ** (2 * v - 4), value))
        return nm.noise_model(obs)

    noisy = runs(0.02)
    assert noisy.sd_run is not None and 0.015 < noisy.sd_run < 0.025
    assert noisy.df == 42 and "scatter" in noisy.source
    quiet = runs(0.003)
    assert quiet.sd_run == nm.PRIOR_SD and "prior" in quiet.source
