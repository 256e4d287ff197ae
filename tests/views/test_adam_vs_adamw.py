"""``views.adam_vs_adamw``: one colour scale for both heatmaps; an off-grid probe is a point
on top, not a column.
"""

from __future__ import annotations

from analysis.truths import grid_plus_probe

from sweeper.snapshot import StudySnapshot
from sweeper.views.adam_vs_adamw import comparison_figure, comparison_info
from sweeper.views.grid import grid_of
from views.support import axis_types, snap


def test_comparison_shares_one_colour_scale(both: StudySnapshot) -> None:
    info = comparison_info(both)
    fig = comparison_figure(info)
    heatmaps = [t for t in fig.data if t.type == "heatmap"]
    assert len(heatmaps) == 2 and {t.coloraxis for t in heatmaps} == {"coloraxis"}
    assert (fig.layout.coloraxis.cmin, fig.layout.coloraxis.cmax) == info.zrange
    assert [a.text for a in fig.layout.annotations][:2] == ["AdamW", "Adam"]
    assert axis_types(fig, "xaxis") == {"log"}


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
