"""Extraction: every view's data on the edge cases a real study goes through.

Hand-made trials (``factory.make_trial``) pin exact expectations without a database; the
tests at the end read real studies from PostgreSQL through ``snapshot``.
"""

from __future__ import annotations

import math

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

from sweeper._optuna.read import read_trials
from sweeper.analysis.importance import importance_info
from sweeper.analysis.study_model import best_of, best_of_runs
from sweeper.errors import UsageError
from sweeper.snapshot import StudySnapshot, TrialPoint, from_trials, runs_from_storage, snapshot
from sweeper.storage import open_storage
from sweeper.views.curves import curves_info
from sweeper.views.panels import build_views
from sweeper.views.timeline import timeline_info

from .factory import (
    SWEEP,
    final_accuracy,
    learning_curve,
    make_trial,
    synthetic_trials,
)


def snap_of(*trials: optuna.trial.FrozenTrial, maximize: bool = True) -> StudySnapshot:
    return from_trials(trials, name="t", maximize=maximize)


def test_empty_study_gives_empty_views() -> None:
    views = build_views(snap_of())
    assert views.landscape.value_range is None
    assert all(not p.points and p.surface is None for p in views.landscape.panels)
    assert all(not p.lr_by_wd and p.slope is None for p in views.decoupling.panels)
    assert views.comparison.heatmaps == () and views.comparison.zrange is None
    assert views.importance.params == () and views.importance.ped_anova is None
    assert views.curves.curves == () and views.curves.best_number is None
    assert views.history.numbers == () and views.history.best_so_far == ()
    assert views.timeline.bars == ()
    assert views.summary.n_trials == 0 and views.summary.best is None
    assert views.summary.counts == {
        "complete": 0,
        "pruned": 0,
        "fail": 0,
        "running": 0,
        "waiting": 0,
    }


def test_one_trial() -> None:
    t = make_trial(0, lr=3e-4, wd=1e-3, curve={1: 0.4, 2: 0.55})
    views = build_views(snap_of(t))
    (panel,) = views.landscape.panels
    assert panel.points == (TrialPoint(0, 3e-4, 1e-3, 0.55, "complete", 2, "adamw"),)
    assert panel.surface is None and "1 completed trial:" in panel.note
    assert views.landscape.value_range == (0.55, 0.55)
    (dec,) = views.decoupling.panels
    # One trial is not a grid: its band is a log bin around it.
    assert [(b.best_other, b.best_number) for b in dec.lr_by_wd] == [(3e-4, 0)]
    (band,) = dec.lr_by_wd
    assert band.low <= 1e-3 <= band.high and band.n_within == 1
    assert dec.slope is None and dec.ridge_lr_by_wd == ()
    (heat,) = views.comparison.heatmaps
    assert heat.mean.shape == (8, 8) and np.nanmax(heat.mean) == pytest.approx(0.55)
    assert int(heat.n_complete.sum()) == 1 and views.comparison.binned
    assert views.importance.ped_anova is None and views.importance.fanova is None
    assert any("importances need at least" in n for n in views.importance.notes)
    assert views.curves.best_number == 0
    assert views.history.best_so_far == (0.55,)
    assert views.summary.best is not None and views.summary.best.number == 0
    assert views.summary.best.provenance["worker"] == "gpu-a:4101"
    assert views.summary.best.params == {"lr": 3e-4, "weight_decay": 1e-3}


def test_all_pruned_study_draws_pruned_trials_with_their_epochs() -> None:
    trials = [
        make_trial(
            i,
            lr=1e-4 * (1 + i),
            wd=1e-3,
            state=TrialState.PRUNED,
            curve=learning_curve(0.5, 1 + i % 3),
        )
        for i in range(9)
    ]
    views = build_views(snap_of(*trials))
    (panel,) = views.landscape.panels
    assert [p.state for p in panel.points] == ["pruned"] * 9
    assert [p.epoch for p in panel.points] == [1 + i % 3 for i in range(9)]
    assert panel.points[1].value == pytest.approx(learning_curve(0.5, 2)[2])
    assert panel.surface is None and views.landscape.value_range is None
    assert views.summary.best is None and views.curves.best_number is None
    assert views.history.best_so_far == () and views.history.states == ("pruned",) * 9
    (heat,) = views.comparison.heatmaps
    assert np.isnan(heat.mean).all() and heat.n_pruned.sum() == 9
    # Pruned trials count in the importance per epoch (Optuna's evaluators see none of them).
    assert views.importance.per_epoch == ()  # Optuna's pooled evaluators are opt-in
    imp = importance_info(snap_of(*trials), ("ped-anova",))
    assert imp.n_complete == 0 and imp.ped_anova is None
    assert [(e.epoch, e.n_trials, e.n_pruned) for e in imp.per_epoch] == [
        (1, 9, 9),
        (2, 6, 6),
        (3, 3, 3),
    ]
    assert imp.per_epoch[0].importances is not None and imp.per_epoch[1].importances is None


def test_failed_trials_are_counted_and_explained_but_not_drawn_as_results() -> None:
    trials = [
        make_trial(0, lr=2e-4, wd=1e-3, curve={1: 0.5, 2: 0.6}),
        make_trial(
            1,
            lr=3e-4,
            wd=1e-3,
            state=TrialState.FAIL,
            curve={1: 0.3},
            fail_reason="CUDA error: out of memory\nmore",
        ),
        make_trial(2, lr=4e-4, wd=1e-3, state=TrialState.FAIL, curve={}),
    ]
    views = build_views(snap_of(*trials))
    assert [p.number for p in views.landscape.panels[0].points] == [0]
    assert views.summary.counts["fail"] == 2
    assert views.summary.failures == (
        (1, "CUDA error: out of memory more"),
        (2, "no reason recorded"),
    )
    assert [c.state for c in views.curves.curves] == ["complete", "fail"]
    assert views.curves.n_silent == 1
    assert {b.number: b.state for b in views.timeline.bars} == {0: "complete", 1: "fail", 2: "fail"}
    assert views.history.numbers == (0,)


def test_trials_missing_intermediate_values_or_params() -> None:
    trials = [
        make_trial(0, lr=2e-4, wd=1e-3, curve={}, value=0.61),  # completed, reported nothing
        make_trial(1, lr=3e-4, wd=1e-3, state=TrialState.PRUNED, curve={}),  # pruned before epoch 1
        make_trial(2, lr=4e-4, wd=1e-3, curve={1: 0.5, 2: math.nan, 3: 0.66}),
    ]
    no_params = make_trial(3, lr=1e-4, wd=1e-4, curve={1: 0.2})
    no_params.params.clear()
    no_params.distributions.clear()
    views = build_views(snap_of(*trials, no_params))
    points = {p.number: p for p in views.landscape.panels[0].points}
    assert points[0].value == 0.61 and points[0].epoch is None
    assert points[1].value is None and points[1].epoch is None and points[1].state == "pruned"
    assert 3 not in points  # no lr/wd: cannot be placed, but counted
    assert views.summary.n_without_lr_wd == 1
    assert views.curves.n_silent == 2
    (curve2,) = [c for c in views.curves.curves if c.number == 2]
    assert curve2.epochs == (1, 3)  # the NaN report is left out of the curve
    assert views.history.numbers == (0, 2, 3)  # trial 1 has no value to draw
    assert views.summary.best is not None and views.summary.best.number == 2


def test_both_optimizers_share_cells_and_colour_scale() -> None:
    grid = ((1e-4, 3e-4, 1e-3), (1e-4, 1e-3, 1e-2))
    trials = synthetic_trials(0, grid=grid, optimizers=("adam", "adamw"), prune=False, epochs=3)
    views = build_views(snap_of(*trials))
    comp = views.comparison
    assert [h.optimizer for h in comp.heatmaps] == ["adamw", "adam"]  # AdamW first
    assert comp.lr == grid[0] and comp.weight_decay == grid[1] and not comp.binned
    for h in comp.heatmaps:
        assert (h.n_complete == 1).all()
        for t in trials:
            if t.user_attrs["optimizer"] == h.optimizer:
                i = grid[1].index(t.params["weight_decay"])
                j = grid[0].index(t.params["lr"])
                assert h.mean[i, j] == pytest.approx(t.value)
        best = max(
            (t for t in trials if t.user_attrs["optimizer"] == h.optimizer), key=lambda t: t.value
        )
        assert h.best_cell == (
            grid[1].index(best.params["weight_decay"]),
            grid[0].index(best.params["lr"]),
        )
    all_means = np.concatenate([h.mean.ravel() for h in comp.heatmaps])
    assert comp.zrange == (pytest.approx(all_means.min()), pytest.approx(all_means.max()))
    assert [p.optimizer for p in views.landscape.panels] == ["adamw", "adam"]
    assert all(p.optimizer == "adamw" for p in views.landscape.panels[0].points)
    assert "optimizer" in views.importance.params


def test_decoupling_tells_adamw_from_adam() -> None:
    """On the synthetic landscape AdamW's best lr ignores wd; Adam's falls as wd grows."""
    lrs = tuple(float(x) for x in np.geomspace(1e-4, 1e-3, 7))
    wds = tuple(float(x) for x in np.geomspace(1e-4, 1e-2, 7))
    trials = synthetic_trials(
        0, grid=(lrs, wds), optimizers=("adamw", "adam"), prune=False, epochs=2
    )
    dec = build_views(snap_of(*trials)).decoupling
    slopes = {p.optimizer: p.slope for p in dec.panels}
    assert slopes["adamw"] is not None and abs(slopes["adamw"]) < 0.1, slopes
    assert slopes["adam"] is not None and slopes["adam"] < -0.3, slopes
    adamw = dec.panels[0]
    assert len(adamw.lr_by_wd) == 7 and all(b.n_trials == 7 for b in adamw.lr_by_wd)
    # Each band's winner is the best trial of that wd row.
    for band in adamw.lr_by_wd:
        row = [
            t
            for t in trials
            if t.user_attrs["optimizer"] == "adamw" and t.params["weight_decay"] == band.center
        ]
        assert band.best_value == max(t.value for t in row)


def test_surface_knows_where_it_has_no_data() -> None:
    """Trials only in the low-lr, low-wd corner: the GP is sure there and unsure far away."""
    rng = np.random.default_rng(3)
    trials = []
    for i in range(40):
        lr, wd = float(10 ** rng.uniform(-4, -3.6)), float(10 ** rng.uniform(-4, -3.3))
        trials.append(make_trial(i, lr=lr, wd=wd, curve={1: final_accuracy(lr, wd, "adamw")}))
    trials.append(make_trial(40, lr=1e-3, wd=1e-2, curve={1: 0.3}))  # one far point fixes bounds
    s = build_views(snap_of(*trials)).landscape.panels[0].surface
    assert s is not None
    near = s.std[2, 2]  # lr ~ 1.1e-4, wd ~ 1.2e-4: amid the cluster
    far = s.std[len(s.weight_decay) // 2, -4]  # lr ~ 7e-4, wd ~ 1e-3: no trial near
    assert far > 3 * near, (near, far)
    assert far > 0.5 * s.prior_std
    # Where there are data the mean follows them (within the noise the GP fitted).
    truth = final_accuracy(float(s.lr[2]), float(s.weight_decay[2]), "adamw")
    assert abs(s.mean[2, 2] - truth) < 0.01


def test_surface_finds_the_optimum_of_a_known_landscape() -> None:
    trials = synthetic_trials(300, epochs=2, prune=False, seed=5)
    s = build_views(snap_of(*trials)).landscape.panels[0].surface
    assert s is not None
    i, j = np.unravel_index(np.argmax(s.mean), s.mean.shape)
    # The factory's AdamW optimum is lr 4e-4, wd 1e-3; the grid step is ~0.03-0.06 decades.
    assert abs(math.log10(s.lr[j] / 4e-4)) < 0.1
    assert abs(math.log10(s.weight_decay[i] / 1e-3)) < 0.25


def test_minimize_studies_pick_the_lowest_value() -> None:
    trials = [
        make_trial(i, lr=1e-4 * (i + 1), wd=1e-3, curve={1: v})
        for i, v in enumerate([0.3, 0.1, 0.2])
    ]
    views = build_views(snap_of(*trials, maximize=False))
    assert views.summary.best is not None and views.summary.best.number == 1
    assert views.summary.direction == "minimize"
    assert views.history.best_so_far == (0.3, 0.1, 0.1)


def test_running_trials_extend_to_the_snapshot_time() -> None:
    done = make_trial(0, lr=2e-4, wd=1e-3, curve={1: 0.5})
    running = make_trial(1, lr=3e-4, wd=1e-3, state=TrialState.RUNNING, curve={1: 0.45})
    snap = snap_of(done, running)
    bars = {b.number: b for b in timeline_info(snap).bars}
    assert bars[1].end == snap.taken_at and bars[1].state == "running"
    assert [c.state for c in curves_info(snap).curves] == ["complete", "running"]


# ------------------------------------------------------------------ real PostgreSQL


def test_snapshot_reads_a_real_study(shared_url: str) -> None:
    storage = open_storage(shared_url)
    study = optuna.load_study(study_name=SWEEP, storage=storage)
    fast = snapshot(study, storage)
    slow = snapshot(study)
    assert fast.trials == slow.trials and len(fast.trials) == 120
    assert fast.user_attrs["metric"] == "val_accuracy"
    states = {t.state for t in fast.trials}
    assert states == {TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL}


def test_fast_reader_matches_optuna_field_by_field(storage_url: str) -> None:
    """Every kind of value Optuna stores, read back identically (order included)."""
    storage = open_storage(storage_url)
    study = optuna.create_study(storage=storage, study_name="odd", direction="maximize")
    study.add_trials(synthetic_trials(6, optimizers=("adamw", "adam"), n_failed=1, epochs=3))
    trial = study.ask()
    trial.report(float("nan"), 1)
    trial.report(float("inf"), 2)
    trial.set_user_attr("nested", {"a": [1, 2.5, None]})
    trial.storage.set_trial_system_attr(trial._trial_id, "sys", "x")
    study.tell(trial, float("-inf"))
    study.ask()  # left RUNNING, no params
    ref = optuna.load_study(study_name="odd", storage=storage).get_trials(deepcopy=False)
    got = read_trials(storage, "odd")
    assert len(got) == len(ref) == 8
    for a, b in zip(got, ref, strict=True):
        assert (a.number, a.state, a.values, a.params, a.distributions) == (
            b.number,
            b.state,
            b.values,
            b.params,
            b.distributions,
        )
        assert (a.user_attrs, a.system_attrs, a.datetime_start, a.datetime_complete) == (
            b.user_attrs,
            b.system_attrs,
            b.datetime_start,
            b.datetime_complete,
        )
        assert a.intermediate_values.keys() == b.intermediate_values.keys()
        for k, v in a.intermediate_values.items():
            assert v == b.intermediate_values[k] or (
                math.isnan(v) and math.isnan(b.intermediate_values[k])
            )
    with pytest.raises(UsageError, match="no study named 'absent'"):
        read_trials(storage, "absent")
    # Reading less: only some states, no curves, no system attributes, chosen user keys.
    lean = read_trials(
        storage,
        "odd",
        states=(TrialState.COMPLETE,),
        intermediate_values=False,
        system_attrs=False,
        user_keys=("optimizer",),
    )
    full = [t for t in ref if t.state == TrialState.COMPLETE]
    assert [t.number for t in lean] == [t.number for t in full] and len(lean) == 5
    for a, b in zip(lean, full, strict=True):
        assert (a.values, a.params) == (b.values, b.params)
        assert a.intermediate_values == {} and a.system_attrs == {}
        assert a.user_attrs == {k: v for k, v in b.user_attrs.items() if k == "optimizer"}


def test_best_reads_less_and_answers_the_same(shared_url: str) -> None:
    """``sweeper best``'s lean read gives the same answer as the full snapshot."""
    storage = open_storage(shared_url)
    for name in ("cifar10-adamw", "adam-vs-adamw"):
        study = optuna.load_study(study_name=name, storage=storage)
        assert best_of_runs(*runs_from_storage(study, storage)) == best_of(snapshot(study, storage))


def test_multi_objective_studies_are_refused_in_one_line(storage_url: str) -> None:
    study = optuna.create_study(
        storage=storage_url, study_name="mo", directions=["maximize", "minimize"]
    )
    with pytest.raises(UsageError, match="has 2 objectives"):
        snapshot(study)
