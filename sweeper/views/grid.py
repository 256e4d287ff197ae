"""How a study's lr x wd plane is cut: its grid (from the spec, or recognised in a study made
by hand), the bands of one hyperparameter, and the cell a value falls in.

Shared by the decoupling view (bands) and the Adam-vs-AdamW heatmaps (cells): a grid study
gets one band or cell per grid value, any other study log-spaced bins.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np

from sweeper.analysis.study_model import setup
from sweeper.snapshot import StudySnapshot, TrialPoint, trial_points

# Up to this many distinct values per axis a study is read as a grid (one heatmap cell per
# value); past it the values are binned. Grid specs in studies/ use 4-8 values per axis.
MAX_GRID_VALUES = 10


# A hand-made study (no spec) is read as a grid when this fraction of its configurations sit
# on the lattice of values that occur at least twice per axis (one probe off it is fine).
GRID_ON_FRACTION = 0.75


def grid_of(
    snap: StudySnapshot, points: Sequence[TrialPoint] | None = None
) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """The study's (lr values, wd values) grid, or None when it is not a grid study.


    From the stored spec when there is one: its grid sampler's points, and never a grid for
    any other sampler (a random study of 10 trials has 10 distinct values per axis, not a
    10 x 10 grid). A study without a spec (made by hand) is a grid when the values that occur
    at least twice per axis hold at least ``GRID_ON_FRACTION`` of its configurations and fill
    at least half of their lattice.
    """
    st = setup(snap)
    if st.grid is not None:
        return st.grid
    if st.sampler is not None:
        return None
    pts = trial_points(snap) if points is None else points
    configs = {(p.lr, p.weight_decay) for p in pts}
    if len(configs) < 4:
        return None
    lr_counts: dict[float, int] = {}
    wd_counts: dict[float, int] = {}
    for lr, wd in configs:
        lr_counts[lr] = lr_counts.get(lr, 0) + 1
        wd_counts[wd] = wd_counts.get(wd, 0) + 1
    lrs = sorted(v for v, k in lr_counts.items() if k >= 2)
    wds = sorted(v for v, k in wd_counts.items() if k >= 2)
    if not (2 <= len(lrs) <= MAX_GRID_VALUES and 2 <= len(wds) <= MAX_GRID_VALUES):
        return None
    on = [c for c in configs if c[0] in lr_counts and lr_counts[c[0]] >= 2 and c[1] in wds]
    if len(on) < GRID_ON_FRACTION * len(configs) or len(on) < 0.5 * len(lrs) * len(wds):
        return None
    return tuple(lrs), tuple(wds)


def band_edges(
    values: Sequence[float],
    bounds: tuple[float, float],
    n_bins: int,
    grid: Sequence[float] | None = None,
) -> list[tuple[float, float, float]]:
    """Bands ``(low, high, centre)``: one per grid value for a grid study, else log bins."""
    del values  # bands follow the study's design, never the values that happen to occur
    if grid:
        return [(v, v, v) for v in grid]
    cuts = np.geomspace(bounds[0], bounds[1], n_bins + 1)
    return [(float(a), float(b), float(math.sqrt(a * b))) for a, b in itertools.pairwise(cuts)]


def in_band(x: float, band: tuple[float, float, float], last: bool) -> bool:
    """Whether ``x`` is in ``band`` (a grid value, or [low, high); the ``last`` one is closed)."""
    low, high, _ = band
    if low == high:
        return math.isclose(x, low, rel_tol=1e-9)
    return low <= x < high or (last and x == high)


def cell_index(x: float, cells: Sequence[tuple[float, float, float]]) -> int | None:
    """The index of the cell (band) that holds ``x``, or None when none does."""
    for i, cell in enumerate(cells):
        if in_band(x, cell, i == len(cells) - 1):
            return i
    return None
