"""The slice view and the effective-decay view on studies of known truth: the numbers each
info tuple carries, and figures that draw them (error bars only where replicates exist)."""

from __future__ import annotations

import math

import numpy as np
from analysis.truths import random_study, replicated, split_grid
from optuna.trial import TrialState

from sweeper.analysis.study_model import best_of
from sweeper.snapshot import from_trials
from sweeper.views.effective_decay import effective_decay_figure, effective_decay_info
from sweeper.views.slices import slice_figure, slice_info

from .factory import make_trial


def snap(builder):  # type: ignore[no-untyped-def]
    trials, spec = builder()
    return from_trials(trials, name=spec["name"])._replace(user_attrs={"spec": spec})


# ----------------------------------------------------------------------------------- slices


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


# ----------------------------------------------------------------------------------- decay


def test_effective_decay_places_configurations_at_their_memory() -> None:
    s = snap(replicated)
    info = effective_decay_info(s)
    # The spec: 10,000 training images, batch 32 -> 313 steps per epoch, 4 epochs.
    assert (info.steps_per_epoch, info.epochs, info.assumed) == (313, 4, "")
    assert len(info.configs) == 6 and info.left_out == ()
    top = next(i for i, c in enumerate(info.configs) if (c.lr, c.weight_decay) == (4.6e-4, 1e-3))
    assert math.isclose(info.memory[top], 1 / (4.6e-4 * 1e-3 * 313))  # 6,945 epochs
    # The check is the one `sweeper best` prints, on the same box: not written twice.
    assert info.check == best_of(s).decay
    assert info.check is not None and info.check.warning is not None
    assert math.isclose(info.check.max_shrink, 1 - (1 - 1e-3 * 1e-2) ** (4 * 313))  # 1.2%
    fig = effective_decay_figure(info)
    assert fig.layout.yaxis.type == "log" and fig.layout.xaxis.type == "log"
    # Decade ticks only, labelled as numbers a reader says: 1, 10, 100, 1k, 10k, 100k.
    assert list(fig.layout.yaxis.ticktext) == ["1", "10", "100", "1k", "10k", "100k"]
    assert np.allclose(np.log10(fig.layout.yaxis.tickvals), np.arange(6))
    (note,) = fig.layout.annotations
    assert note.text.startswith("⚠ weight decay cannot do much here")
    band = next(t for t in fig.data if t.name.startswith("memory < the run"))
    assert max(band.y) == 4.0


def test_effective_decay_leaves_adam_out_and_says_why() -> None:
    info = effective_decay_info(snap(split_grid))
    assert info.left_out == ("adam",)
    assert len(info.configs) == 16 and {c.optimizer for c in info.configs} == {"adamw"}
    assert info.wd_bounds == (1e-4, 1e-1)
    fig = effective_decay_figure(info)
    assert "Adam left out" in fig.layout.annotations[0].text
    trials, spec = split_grid()
    adam_only = [t for t in trials if t.user_attrs["optimizer"] == "adam"]
    empty = effective_decay_figure(
        effective_decay_info(from_trials(adam_only)._replace(user_attrs={"spec": spec}))
    )
    assert len(empty.data) == 0
    assert "coupled L2" in empty.layout.annotations[0].text


def test_effective_decay_without_a_spec_assumes_and_says_so() -> None:
    trials, _ = random_study()
    info = effective_decay_info(from_trials(trials))
    # CIFAR-10's 50,000 images at batch 32; epochs from the trials (each reported 2).
    assert (info.steps_per_epoch, info.epochs) == (1563, 2)
    assert info.assumed.startswith("schedule not recorded") and info.check is None
    fig = effective_decay_figure(info)
    assert "schedule not recorded" in fig.layout.annotations[0].text
