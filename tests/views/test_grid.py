"""``views.grid``: a random study never becomes a grid."""

from __future__ import annotations

from analysis.truths import random_study

from sweeper.views.adam_vs_adamw import HEATMAP_BINS, comparison_info
from sweeper.views.grid import grid_of
from views.support import snap


def test_a_random_study_never_becomes_a_grid() -> None:
    s = snap(random_study)
    assert grid_of(s) is None
    comp = comparison_info(s)
    assert comp.binned and len(comp.lr) == HEATMAP_BINS and comp.off_grid == ()
