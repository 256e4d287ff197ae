"""Every view together (``views.panels``) on the edge cases a real study goes through: empty,
one trial, all pruned, failed, missing values, both optimizers, minimize, equal values.

Hand-made trials (``factory.make_trial``) pin exact expectations without a database.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from analysis.truths import uniform
from dashboard.factory import (
    learning_curve,
    make_trial,
    synthetic_trials,
)
from optuna.trial import TrialState

from sweeper.analysis.importance import importance_info
from sweeper.snapshot import StudySnapshot, TrialPoint, from_trials
from sweeper.views.curves import curves_figure
from sweeper.views.decoupling import decoupling_figure
from sweeper.views.history import history_figure
from sweeper.views.importance import importance_figure
from sweeper.views.panels import build_views, panels
from sweeper.views.style import BEST_COLOUR
from sweeper.views.timeline import timeline_figure
from views.support import axis_types, snap, snap_of, traces


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
    # One value: the colour scale still spans 4 per-run sds (the 1-point prior) about it.
    assert views.landscape.value_range == pytest.approx((0.53, 0.57))
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


def test_minimize_studies_pick_the_lowest_value() -> None:
    trials = [
        make_trial(i, lr=1e-4 * (i + 1), wd=1e-3, curve={1: v})
        for i, v in enumerate([0.3, 0.1, 0.2])
    ]
    views = build_views(snap_of(*trials, maximize=False))
    assert views.summary.best is not None and views.summary.best.number == 1
    assert views.summary.direction == "minimize"
    assert views.history.best_so_far == (0.3, 0.1, 0.1)


def test_decoupling_importance_curves_history_timeline(both: StudySnapshot) -> None:
    views = build_views(both)
    dec = decoupling_figure(views.decoupling)
    assert "slope of log best-lr on log wd" in dec.layout.title.text
    assert axis_types(dec, "xaxis") == {"log"}
    bands = traces(dec, "best per band (bar: within noise; hollow: flat band)")
    assert len(bands) == 4  # 2 optimizers x 2 panels
    assert all(b.error_y.array is not None for b in bands)  # the range within noise
    # The two optimizers' markers stand apart within each band (AdamW's hid under Adam's).
    adamw, adam = bands[0], bands[2]
    p_adamw, p_adam = views.decoupling.panels
    assert adamw.x == pytest.approx([b.center * 10**-0.02 for b in p_adamw.lr_by_wd])
    assert adam.x == pytest.approx([b.center * 10**0.02 for b in p_adam.lr_by_wd])
    # The joining line skips flat bands: its y is None exactly where a band is flat.
    for panel, line in zip(
        views.decoupling.panels, traces(dec, "best per band, joined")[::2], strict=True
    ):
        assert [y is None for y in line.y] == [b.flat for b in panel.lr_by_wd]

    imp = importance_figure(views.importance)
    bars = [t for t in imp.data if t.type == "bar" and t.orientation == "h"]
    assert not [b for b in bars if b.name in ("PED-ANOVA", "fANOVA")]  # opt-in
    assert [a.text for a in imp.layout.annotations][:2] == [
        "per optimizer (95% bootstrap; ✱ the claim says it matters)",
        "per epoch (pruned trials count)",
    ]
    asked = importance_figure(importance_info(both, ("ped-anova", "fanova")))
    pooled = [t for t in asked.data if t.type == "bar" and t.name in ("PED-ANOVA", "fANOVA")]
    assert len(pooled) == 2 and all(b.xaxis == "x2" for b in pooled)
    assert all(set(b.y) == {"optimizer", "weight decay", "learning rate"} for b in pooled)
    lines = [t for t in asked.data if t.type == "scatter" and t.mode != "text"]
    assert {t.xaxis for t in lines} == {"x3"}  # per epoch, right
    # Share labels (text) stand past their whiskers, on the left panel, one per bar.
    labels = [t for t in asked.data if t.type == "scatter" and t.mode == "text"]
    mine = [t for t in asked.data if t.type == "bar" and t.xaxis in (None, "x")]
    assert {t.xaxis for t in labels} == {"x"} and len(labels) == len(mine)
    for bar, text in zip(mine, labels, strict=True):
        assert list(text.x) == pytest.approx(
            [x + hi + 0.02 for x, hi in zip(bar.x, bar.error_x.array, strict=True)]
        )
    # A band's fill never gets plotly's default markers (unlabelled dots at its corners).
    assert all(t.mode == "lines" for t in asked.data if t.type == "scatter" and t.fill == "toself")
    per_opt = [b for b in bars if b.name in ("AdamW", "Adam")]
    assert len(per_opt) == 2 and all(b.error_x.array is not None for b in per_opt)
    lines = [t for t in imp.data if t.type == "scatter" and t.mode == "lines+markers"]
    assert {t.name for t in lines} == {
        f"{o} {p}" for o in ("AdamW", "Adam") for p in ("learning rate", "weight decay")
    }

    curves = curves_figure(views.curves)
    best = traces(curves, "best trial")
    assert len(best) == 1 and best[0].line.color == BEST_COLOUR
    assert traces(curves, "pruned") and traces(curves, "where pruned")
    drawn = sum(
        int(np.isfinite(np.asarray(t.y, dtype=float)).sum())
        for t in curves.data
        if t.mode in ("lines", "lines+markers")
    )
    assert drawn == sum(len(c.values) for c in views.curves.curves)  # every report, once

    hist = history_figure(views.history)
    assert list(traces(hist, "best so far")[0].y) == list(views.history.best_so_far)

    timeline = timeline_figure(views.timeline)
    assert timeline.layout.xaxis.type == "date"
    assert sum(len(t.y) for t in timeline.data) == len(views.timeline.bars)
    assert set(np.concatenate([t.y for t in timeline.data])) == set(views.timeline.workers)


def test_every_figure_draws_an_empty_study_with_a_message() -> None:
    for panel in panels(build_views(from_trials([]))):
        texts = [a.text for a in panel.figure.layout.annotations]
        assert len(panel.figure.data) == 0, panel.key
        assert texts and texts[0].lower().startswith("no "), (panel.key, texts)


def test_every_view_builds_on_equal_values() -> None:
    views = build_views(snap(uniform))
    assert views.importance.fanova is None
    (h,) = views.comparison.heatmaps
    assert h.within is not None and h.within[h.n_complete > 0].all()
    assert np.isfinite(h.mean).sum() == int((h.n_complete > 0).sum())
