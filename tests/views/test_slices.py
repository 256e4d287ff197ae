"""``views.slices`` on studies of known truth: replicates collapse into one point with its
interval, error bars only where replicates exist, pruned trials left out and counted.
"""

from __future__ import annotations

import math

import numpy as np
from analysis.truths import random_study, replicated, split_grid
from dashboard.factory import make_trial
from optuna.trial import TrialState

from sweeper.snapshot import from_trials
from sweeper.views.slices import slice_figure, slice_info
from views.support import snap


def test_slice_collapses_replicates_into_one_point_with_its_interval() -> None:
    info = slice_info(snap(replicated))
    # Three replicated configurations (3 seeds each) and three single runs: six points.
    assert len(info.configs) == 6 and info.n_replicated == 3
    top = next(c for c in info.configs if (c.lr, c.weight_decay) == (4.6e-4, 1e-3))
    assert top.n == 3 and top.numbers == (0, 1, 2)
    assert math.isclose(top.mean, 0.71)
    # Pooled within-configuration SS = 0.0002 + 0.0002 + 0.0006 over 6 df, with the prior
    # (sd 0.01, 10 df): sd = sqrt((10 * 1e-4 + 1e-3) / 16); t(16) = 2.120; se = sd / sqrt(3).
    sd = math.sqrt((10 * 1e-4 + 1e-3) / 16)
    half = 2.120 * sd / math.sqrt(3)
    assert top.low is not None and top.high is not None
    assert math.isclose(top.low, 0.71 - half, abs_tol=1e-9)
    assert math.isclose(top.high, 0.71 + half, abs_tol=1e-9)
    # A single run's half-width, stated once: t x sd (above the 5,000-image floor here).
    assert info.single_run_halfwidth is not None
    assert math.isclose(info.single_run_halfwidth, 2.120 * sd, abs_tol=1e-9)
    assert info.n_pruned == 0 and info.optimizers == ("adamw",)


def test_slice_figure_draws_error_bars_only_on_replicated_configurations() -> None:
    info = slice_info(snap(replicated))
    fig = slice_figure(info)
    singles = [t for t in fig.data if t.name == "single run"]
    reps = [t for t in fig.data if t.name.startswith("mean of seed replicates")]
    assert len(singles) == 2 and len(reps) == 2  # vs lr and vs wd
    for t in singles:
        assert t.error_y.array is None and len(t.x) == 3
    for t in reps:
        assert len(t.x) == 3
        top = int(np.argmax(t.y))
        high = next(c.high for c in info.configs if c.numbers[0] == 0)
        assert math.isclose(t.y[top] + t.error_y.array[top], high)
    # vs lr coloured by log10 wd, vs wd coloured by log10 lr
    lr_panel, wd_panel = reps
    assert list(lr_panel.x) == [4.6e-4, 2.2e-4, 1e-4]
    np.testing.assert_allclose(lr_panel.marker.color, [-3.0, -3.0, -3.0])
    np.testing.assert_allclose(wd_panel.marker.color, np.log10([4.6e-4, 2.2e-4, 1e-4]))
    assert fig.layout.xaxis.type == "log" and fig.layout.xaxis2.type == "log"
    assert "3 with seed replicates" in fig.layout.title.text


def test_slice_per_optimizer_on_the_split_grid() -> None:
    info = slice_info(snap(split_grid))
    assert info.optimizers == ("adamw", "adam")
    assert len(info.configs) == 32 and info.n_replicated == 0
    assert [c.optimizer for c in info.configs[:16]] == ["adamw"] * 16
    fig = slice_figure(info)
    assert len(fig.data) == 4  # 2 optimizers x 2 panels, single runs only
    assert all(t.error_y.array is None for t in fig.data)


def test_slice_leaves_pruned_trials_out_and_counts_them() -> None:
    trials, spec = random_study()
    pruned = make_trial(99, lr=3e-4, wd=1e-3, state=TrialState.PRUNED, curve={1: 0.2})
    s = from_trials([*trials, pruned])._replace(user_attrs={"spec": spec})
    info = slice_info(s)
    assert len(info.configs) == 10 and info.n_pruned == 1
    assert 99 not in {n for c in info.configs for n in c.numbers}
