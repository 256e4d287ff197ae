"""Views on studies of known truth: grids from the spec, regions within noise, slopes with
intervals or "not identifiable" (the numbers each info tuple carries)."""

from __future__ import annotations

import numpy as np
from analysis.truths import flat_grid, grid_plus_probe, random_study, split_grid, uniform

from sweeper.snapshot import from_trials
from sweeper.views.adam_vs_adamw import HEATMAP_BINS, comparison_info
from sweeper.views.decoupling import decoupling_info
from sweeper.views.grid import grid_of
from sweeper.views.landscape import landscape_info
from sweeper.views.panels import build_views


def snap(builder):  # type: ignore[no-untyped-def]
    trials, spec = builder()
    return from_trials(trials, name=spec["name"])._replace(user_attrs={"spec": spec})


def test_a_random_study_never_becomes_a_grid() -> None:
    s = snap(random_study)
    assert grid_of(s) is None
    comp = comparison_info(s)
    assert comp.binned and len(comp.lr) == HEATMAP_BINS and comp.off_grid == ()


def test_an_off_grid_probe_is_a_point_on_top_not_a_column() -> None:
    s = snap(grid_plus_probe)
    comp = comparison_info(s)
    assert not comp.binned and comp.lr == (1e-4, 2.2e-4, 4.6e-4, 1e-3)
    assert comp.weight_decay == (1e-4, 1e-3, 1e-2, 1e-1)
    assert [p.number for p in comp.off_grid] == [32]
    (h,) = comp.heatmaps
    assert (h.n_complete == 1).all()  # every cell filled, none squashed
    # Without a spec the grid is inferred the same way, the probe still off it.
    bare = s._replace(user_attrs={})
    assert grid_of(bare) == ((1e-4, 2.2e-4, 4.6e-4, 1e-3), (1e-4, 1e-3, 1e-2, 1e-1))


def test_decoupling_on_a_flat_study_is_not_identifiable() -> None:
    dec = decoupling_info(snap(flat_grid))
    (p,) = dec.panels
    assert p.slope is None and p.slope_note.startswith("not identifiable")
    assert all(b.flat and b.n_within == 4 for b in p.lr_by_wd)
    assert all((b.within_low, b.within_high) == (1e-4, 1e-3) for b in p.lr_by_wd)


def test_decoupling_slope_comes_with_an_interval() -> None:
    dec = decoupling_info(snap(split_grid))
    for p in dec.panels:
        assert p.slope is not None and abs(p.slope) < 1e-9
        assert p.slope_low is not None and p.slope_high is not None
        assert -0.3 < p.slope_low <= 0 <= p.slope_high < 0.3
        # Per band: best lr 4.6e-4, within noise 2.2e-4..1e-3 (1e-4 is 6 points worse).
        assert [(b.best_other, b.within_low, b.within_high) for b in p.lr_by_wd] == [
            (4.6e-4, 2.2e-4, 1e-3)
        ] * 4


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


def test_every_view_builds_on_equal_values() -> None:
    views = build_views(snap(uniform))
    assert views.importance.fanova is None
    (h,) = views.comparison.heatmaps
    assert h.within is not None and h.within[h.n_complete > 0].all()
    assert np.isfinite(h.mean).sum() == int((h.n_complete > 0).sum())
