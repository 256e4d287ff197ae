"""``views.landscape``: the GP surface knows where it has no data, finds a known optimum,
marks the region within noise of its peak; the figure's log axes and pruned epochs.
"""

from __future__ import annotations

import math

import numpy as np
from analysis.truths import flat_grid, split_grid
from dashboard.factory import (
    final_accuracy,
    make_trial,
    synthetic_trials,
)
from optuna.trial import TrialState

from sweeper.snapshot import StudySnapshot, from_trials
from sweeper.views.landscape import landscape_figure, landscape_info
from sweeper.views.panels import build_views
from views.support import axis_types, snap, snap_of, traces


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


def test_landscape_marks_the_region_within_noise_of_its_peak() -> None:
    land = landscape_info(snap(flat_grid))
    (p,) = land.panels
    assert p.surface is not None and p.surface.within is not None
    assert p.surface.within.all()  # flat within noise: everywhere could be the best
    land = landscape_info(snap(split_grid))
    adam = next(x for x in land.panels if x.optimizer == "adam")
    assert adam.surface is not None and adam.surface.within is not None
    assert 0.05 < adam.surface.within.mean() < 0.3  # Adam's good region: low wd only
    # The GP is not allowed to fit noise finer than one run's (1 point).
    assert adam.surface.noise_std >= 0.01 - 1e-12
