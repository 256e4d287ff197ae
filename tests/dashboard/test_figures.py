"""Figures draw what the extraction says: log axes, shared colour scales, pruned trials apart."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import pytest
from optuna.trial import TrialState

from sweeper.analysis.importance import importance_info
from sweeper.snapshot import StudySnapshot, from_trials
from sweeper.views.adam_vs_adamw import comparison_figure, comparison_info
from sweeper.views.curves import curves_figure
from sweeper.views.decoupling import decoupling_figure
from sweeper.views.history import history_figure
from sweeper.views.importance import importance_figure
from sweeper.views.landscape import landscape_figure, landscape_info
from sweeper.views.panels import build_views, panels
from sweeper.views.style import BEST_COLOUR
from sweeper.views.timeline import timeline_figure

from .factory import make_trial, synthetic_trials


@pytest.fixture(scope="module")
def both() -> StudySnapshot:
    return from_trials(synthetic_trials(160, optimizers=("adamw", "adam"), epochs=4, n_failed=2))


def traces(fig: go.Figure, name_part: str) -> list:
    return [t for t in fig.data if t.name and name_part in t.name]


def axis_types(fig: go.Figure, prefix: str) -> set[str]:
    layout = fig.layout.to_plotly_json()
    return {v.get("type") for k, v in layout.items() if k.startswith(prefix)}


def test_landscape_log_axes_surface_uncertainty_and_pruned_epochs(both: StudySnapshot) -> None:
    info = landscape_info(both)
    fig = landscape_figure(info)
    assert axis_types(fig, "xaxis") == {"log"} and axis_types(fig, "yaxis") == {"log"}
    contours = [t for t in fig.data if t.type == "contour" and t.name == "GP mean"]
    assert len(contours) == 2  # one surface per optimizer
    for c, panel in zip(contours, info.panels, strict=True):
        assert panel.surface is not None
        np.testing.assert_array_equal(c.z, panel.surface.mean)
    sds = [t for t in fig.data if t.type == "heatmap" and t.name == "GP sd"]
    assert len(sds) == 2 and all(t.coloraxis == "coloraxis2" for t in sds)
    # Surface and completed markers share one accuracy scale.
    lo, hi = contours[0].zmin, contours[0].zmax
    assert all((c.zmin, c.zmax) == (lo, hi) for c in contours)
    coloured = [t for t in traces(fig, "completed trial") if t.marker.cmin is not None]
    assert coloured and all((t.marker.cmin, t.marker.cmax) == (lo, hi) for t in coloured)
    # Pruned trials: crosses shaded by the epoch they reached.
    pruned = [t for t in traces(fig, "pruned trial") if t.marker.coloraxis == "coloraxis3"]
    expected = sorted(
        p.epoch or 0 for panel in info.panels for p in panel.points if p.state == "pruned"
    )
    assert sorted(np.concatenate([t.marker.color for t in pruned]).tolist()) == expected
    assert all(t.marker.symbol == "x-thin-open" for t in pruned)


def test_comparison_shares_one_colour_scale(both: StudySnapshot) -> None:
    info = comparison_info(both)
    fig = comparison_figure(info)
    heatmaps = [t for t in fig.data if t.type == "heatmap"]
    assert len(heatmaps) == 2 and {t.coloraxis for t in heatmaps} == {"coloraxis"}
    assert (fig.layout.coloraxis.cmin, fig.layout.coloraxis.cmax) == info.zrange
    assert [a.text for a in fig.layout.annotations][:2] == ["AdamW", "Adam"]
    assert axis_types(fig, "xaxis") == {"log"}


def test_decoupling_importance_curves_history_timeline(both: StudySnapshot) -> None:
    views = build_views(both)
    dec = decoupling_figure(views.decoupling)
    assert "slope of log best-lr on log wd" in dec.layout.title.text
    assert axis_types(dec, "xaxis") == {"log"}
    bands = traces(dec, "best per band (bar: within noise)")
    assert len(bands) == 4  # 2 optimizers x 2 panels
    assert all(b.error_y.array is not None for b in bands)  # the range within noise

    imp = importance_figure(views.importance)
    bars = [t for t in imp.data if t.type == "bar" and t.orientation == "h"]
    assert not [b for b in bars if b.name in ("PED-ANOVA", "fANOVA")]  # opt-in
    assert [a.text for a in imp.layout.annotations][:2] == [
        "per optimizer (95% bootstrap; ✱ more than noise)",
        "per epoch (pruned trials count)",
    ]
    asked = importance_figure(importance_info(both, ("ped-anova", "fanova")))
    pooled = [t for t in asked.data if t.type == "bar" and t.name in ("PED-ANOVA", "fANOVA")]
    assert len(pooled) == 2 and all(b.xaxis == "x2" for b in pooled)
    assert all(set(b.y) == {"optimizer", "weight decay", "learning rate"} for b in pooled)
    assert {t.xaxis for t in asked.data if t.type == "scatter"} == {"x3"}  # per epoch, right
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


def test_a_study_of_pruned_trials_only_still_shows_them() -> None:
    trials = [
        make_trial(
            i, lr=1e-4 * (1 + i), wd=1e-3, state=TrialState.PRUNED, curve={1: 0.3 + 0.01 * i}
        )
        for i in range(5)
    ]
    fig = landscape_figure(landscape_info(from_trials(trials)))
    assert sum(len(t.x) for t in traces(fig, "pruned trial")) == 10  # both panels
    assert not [t for t in fig.data if t.type == "contour"]
