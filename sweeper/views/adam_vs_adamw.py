"""View 3, Adam vs AdamW: mean final accuracy per lr x wd cell, one heatmap per optimizer.

``comparison_info(snap)`` averages each optimizer's completed trials per grid cell (log bins
for a study that is not a grid) and marks the cells within noise of the best;
``comparison_figure(info)`` draws the heatmaps on one colour scale (Loshchilov & Hutter's
figure).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import plotly.graph_objects as go
from numpy.typing import NDArray
from plotly.subplots import make_subplots

from sweeper.analysis import noise
from sweeper.analysis.study_model import noise_of
from sweeper.snapshot import (
    LR,
    WD,
    StudySnapshot,
    TrialPoint,
    axis_bounds,
    optimizers,
    trial_points,
)
from sweeper.views.grid import band_edges, cell_index, grid_of
from sweeper.views.style import (
    ACCURACY_SCALE,
    LOG_AXIS,
    decimals,
    empty_figure,
    optimizer_label,
    page_layout,
)

# Bins per axis for randomly sampled studies: fine enough to see a diagonal ridge, coarse
# enough that a few hundred trials fill most cells.
HEATMAP_BINS = 8


class Heatmap(NamedTuple):
    """Mean final accuracy of one optimizer's completed trials per (wd row, lr column) cell.


    ``mean`` is NaN where a cell has no completed trial; ``n_pruned`` counts the pruned ones.
    """

    optimizer: str
    mean: NDArray[np.float64]
    n_complete: NDArray[np.int64]
    n_pruned: NDArray[np.int64]
    best_cell: tuple[int, int] | None  # (row, column) of the best mean in the study's direction
    # Cells not significantly worse than the best cell (noise model: se = sd / sqrt(n)).
    within: NDArray[np.bool_] | None = None


class ComparisonInfo(NamedTuple):
    """Heatmaps on shared cells and one colour scale, AdamW first.


    ``lr``/``weight_decay`` are cell centres; ``lr_edges``/``wd_edges`` the cells' bounds
    (equal to the centre for a grid study). ``zrange`` is None when no cell has a value.
    """

    lr: tuple[float, ...]
    weight_decay: tuple[float, ...]
    lr_edges: tuple[tuple[float, float], ...]
    wd_edges: tuple[tuple[float, float], ...]
    heatmaps: tuple[Heatmap, ...]
    zrange: tuple[float, float] | None
    binned: bool
    off_grid: tuple[TrialPoint, ...] = ()  # trials of a grid study off its grid, drawn on top


def comparison_info(snap: StudySnapshot) -> ComparisonInfo:
    """Per optimizer, mean final accuracy on a shared lr x wd lattice (the AdamW paper's view).


    A grid study (``grid_of``: the spec's grid) gets a cell per grid value and its off-grid
    trials as points on top; any other study gets ``HEATMAP_BINS`` log-spaced bins per axis.
    """
    points = trial_points(snap)
    lr_b = axis_bounds(snap, LR, [p.lr for p in points])
    wd_b = axis_bounds(snap, WD, [p.weight_decay for p in points])
    grid = grid_of(snap, points)
    lr_cells = band_edges([p.lr for p in points], lr_b, HEATMAP_BINS, grid and grid[0])
    wd_cells = band_edges([p.weight_decay for p in points], wd_b, HEATMAP_BINS, grid and grid[1])
    model = noise_of(snap)
    off_grid: list[TrialPoint] = []
    heatmaps = []
    for name in optimizers(snap):
        shape = (len(wd_cells), len(lr_cells))
        total = np.zeros(shape)
        n_done = np.zeros(shape, dtype=np.int64)
        n_pruned = np.zeros(shape, dtype=np.int64)
        for p in points:
            if p.optimizer != name:
                continue
            i = cell_index(p.weight_decay, wd_cells)
            j = cell_index(p.lr, lr_cells)
            if i is None or j is None:
                off_grid.append(p)
                continue
            if p.state == "complete" and p.value is not None:
                total[i, j] += p.value
                n_done[i, j] += 1
            elif p.state == "pruned":
                n_pruned[i, j] += 1
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(n_done > 0, total / np.maximum(n_done, 1), np.nan)
        best = None
        if np.isfinite(mean).any():
            flat = np.nanargmax(mean) if snap.maximize else np.nanargmin(mean)
            row, col = np.unravel_index(flat, mean.shape)
            best = (int(row), int(col))
        heatmaps.append(
            Heatmap(name, mean, n_done, n_pruned, best, _within_cells(model, mean, n_done, best))
        )
    finite = [h.mean[np.isfinite(h.mean)] for h in heatmaps]
    values = np.concatenate(finite) if finite else np.array([])
    return ComparisonInfo(
        lr=tuple(c for _, _, c in lr_cells),
        weight_decay=tuple(c for _, _, c in wd_cells),
        lr_edges=tuple((a, b) for a, b, _ in lr_cells),
        wd_edges=tuple((a, b) for a, b, _ in wd_cells),
        heatmaps=tuple(heatmaps),
        zrange=(float(values.min()), float(values.max())) if values.size else None,
        binned=grid is None,
        off_grid=tuple(off_grid),
    )


def _within_cells(
    model: noise.NoiseModel,
    mean: NDArray[np.float64],
    n: NDArray[np.int64],
    best: tuple[int, int] | None,
) -> NDArray[np.bool_] | None:
    """Cells whose mean is not significantly worse than the best cell's."""
    if best is None or model.sd_run is None:
        return None
    sd = np.full(mean.shape, model.sd_run)
    if model.n_val is not None:
        p = np.clip(np.nan_to_num(mean), 0.0, 1.0)
        sd = np.maximum(sd, np.sqrt(p * (1 - p) / model.n_val))
    se = sd / np.sqrt(np.maximum(n, 1))
    gap = (mean[best] - mean) if model.maximize else (mean - mean[best])
    with np.errstate(invalid="ignore"):
        return np.asarray((n > 0) & (gap <= model.t * np.sqrt(se**2 + se[best] ** 2)))


def comparison_figure(info: ComparisonInfo) -> go.Figure:
    """Mean final accuracy per lr x wd cell, one heatmap per optimizer, one colour scale.


    The AdamW paper's figure: AdamW's good region lies parallel to the axes (the best lr does
    not depend on wd), Adam's along a diagonal. A star marks each optimizer's best cell (its
    text, so the number stays readable).
    """
    names = (
        " vs ".join(optimizer_label(h.optimizer) for h in reversed(info.heatmaps)) or "Optimizers"
    )
    title = f"{names}: mean final accuracy per lr × wd cell"
    if not info.heatmaps or info.zrange is None:
        return empty_figure(title, "No completed trial with lr and weight decay yet.")
    n = len(info.heatmaps)
    fig = make_subplots(
        rows=1,
        cols=n,
        horizontal_spacing=0.08,
        subplot_titles=[optimizer_label(h.optimizer) for h in info.heatmaps],
        shared_yaxes=True,
    )
    for col, h in enumerate(info.heatmaps, start=1):
        text = [
            [
                (
                    "★ "
                    if h.best_cell == (i, j)
                    else "≈ "
                    if h.within is not None and h.within[i, j]
                    else ""
                )
                + (decimals(h.mean[i, j], 3) if h.n_complete[i, j] else "")
                + (f"<br>{h.n_pruned[i, j]} pruned" if h.n_pruned[i, j] else "")
                for j in range(len(info.lr))
            ]
            for i in range(len(info.weight_decay))
        ]
        fig.add_trace(
            go.Heatmap(
                x=info.lr,
                y=info.weight_decay,
                z=h.mean,
                coloraxis="coloraxis",
                text=text,
                texttemplate="%{text}" if len(info.lr) * len(info.weight_decay) <= 100 else None,
                textfont={"size": 10},
                customdata=np.dstack([h.n_complete, h.n_pruned]),
                hovertemplate="lr %{x:.3g}, wd %{y:.3g}<br>mean val acc %{z:.4f}<br>"
                "%{customdata[0]} completed, %{customdata[1]} pruned<extra>"
                + optimizer_label(h.optimizer)
                + "</extra>",
                xgap=1,
                ygap=1,
            ),
            row=1,
            col=col,
        )
        off = [p for p in info.off_grid if p.optimizer == h.optimizer and p.value is not None]
        if off:
            fig.add_trace(
                go.Scatter(
                    x=[p.lr for p in off],
                    y=[p.weight_decay for p in off],
                    mode="markers+text",
                    text=[decimals(p.value, 3) for p in off],
                    textposition="top center",
                    marker={
                        "symbol": "diamond",
                        "size": 10,
                        "color": "white",
                        "line": {"width": 2, "color": "#222222"},
                    },
                    name="off-grid trial",
                    showlegend=col == 1,
                    hovertemplate="trial %{customdata}: lr %{x:.3g}, wd %{y:.3g}<br>val acc "
                    "%{text}<extra>off the grid</extra>",
                    customdata=[p.number for p in off],
                ),
                row=1,
                col=col,
            )
    fig.update_xaxes(**LOG_AXIS, title_text="learning rate (log)")
    fig.update_yaxes(**LOG_AXIS, title_text="weight decay (log)", col=1)
    fig.update_yaxes(**LOG_AXIS)
    fig.update_layout(
        coloraxis={
            "colorscale": ACCURACY_SCALE,
            "cmin": info.zrange[0],
            "cmax": info.zrange[1],
            "colorbar": {"title": {"text": "mean val acc"}, "thickness": 14},
        }
    )
    sub = "grid values" if not info.binned else "log-spaced bins"
    return page_layout(
        fig,
        f"{title} <sup>({sub}; ★ best cell, ≈ within noise of it; blank = no completed "
        "trial)</sup>",
        500,
    )
