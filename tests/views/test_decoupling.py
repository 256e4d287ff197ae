"""``views.decoupling``: AdamW's decoupled optimum told from Adam's diagonal, and slopes with
intervals or "not identifiable".
"""

from __future__ import annotations

import numpy as np
from analysis.truths import flat_grid, split_grid
from dashboard.factory import (
    synthetic_trials,
)

from sweeper.views.decoupling import decoupling_info
from sweeper.views.panels import build_views
from views.support import snap, snap_of


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


def test_decoupling_on_a_flat_study_is_not_identifiable() -> None:
    dec = decoupling_info(snap(flat_grid))
    (p,) = dec.panels
    assert p.slope is None and p.slope_note.startswith("not identifiable")
    assert all(b.flat and b.n_within == 4 for b in p.lr_by_wd)
    assert all((b.within_low, b.within_high) == (1e-4, 1e-3) for b in p.lr_by_wd)


def test_decoupling_slope_comes_with_an_interval() -> None:
    """Both optimizers' best lr is 4.6e-4 at every wd in truth (Adam's wd effect is additive):
    the ridge of the fitted quadratic is level to within its interval (noise 0.3 points)."""
    dec = decoupling_info(snap(split_grid))
    for p in dec.panels:
        assert p.slope is not None and abs(p.slope) < 0.05
        assert p.slope_low is not None and p.slope_high is not None
        assert -0.3 < p.slope_low <= 0 <= p.slope_high < 0.3
        # Per band: best lr 4.6e-4, within noise 2.2e-4..1e-3 (1e-4 is 6 points worse).
        assert [(b.best_other, b.within_low, b.within_high) for b in p.lr_by_wd] == [
            (4.6e-4, 2.2e-4, 1e-3)
        ] * 4
