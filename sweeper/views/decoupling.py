"""View 2, decoupling: does the best lr move when weight decay changes (AdamW's claim)?

``decoupling_info(snap)`` finds, per band of one hyperparameter, the best configuration and
the range within its noise, the slope of log best-lr against log wd with its interval (or
"not identifiable", ``analysis.ridge``), and the GP surface's ridges; ``decoupling_figure``
draws them beside accuracy against lr x wd.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from sweeper.analysis import noise
from sweeper.analysis.ridge import ridge_slope
from sweeper.analysis.study_model import best_of, noise_of
from sweeper.snapshot import LR, WD, StudySnapshot, TrialPoint
from sweeper.views.grid import band_edges, grid_of, in_band
from sweeper.views.landscape import SUPPORT_EDGE, LandscapeInfo, Surface, landscape_info
from sweeper.views.style import (
    LOG_AXIS,
    LOG_DECADES,
    as_floats,
    empty_figure,
    log_range,
    optimizer_colour,
    optimizer_label,
    page_layout,
)

# Bands per axis in the decoupling view, and the fewest completed trials per band on average.
MAX_BANDS = 8
# How far apart (in decades of the band axis) two optimizers' markers stand in one band.
DODGE_DECADES = 0.04


TRIALS_PER_BAND = 6


class Band(NamedTuple):
    """A band of one hyperparameter and the best completed trial inside it."""

    low: float
    high: float
    center: float  # geometric centre (the value itself for a grid)
    n_trials: int  # completed trials in the band
    best_number: int
    best_value: float
    best_other: float  # the other hyperparameter's value in the best configuration
    # The other hyperparameter's range over the band's configurations within noise of the
    # band's best (noise model): where in the band the best could as well be.
    within_low: float
    within_high: float
    n_within: int
    flat: bool  # the within-noise range covers the band's whole range of the other


class RidgePoint(NamedTuple):
    """Where the fitted surface peaks along one hyperparameter, at a value of the other."""

    at: float  # the fixed hyperparameter's value
    best: float  # the value of the other one that maximises the surface mean
    mean: float
    std: float
    # std below SUPPORT_EDGE x the prior's, and the row not flat within noise: the data pin
    # this point down
    supported: bool


class DecouplingPanel(NamedTuple):
    """For one optimizer: does the best lr move with wd (and the best wd with lr)?


    ``slope`` is the slope of log10(best lr) against log10(wd) along the ridge of the claims'
    fitted surface (``analysis.ridge``): about 0 when lr and wd are decoupled (AdamW's
    claim), about -1 when only the product lr x wd matters (Adam with L2). None when the
    surface is not shown to peak along lr (``slope_note`` says "not identifiable") or cannot
    be fitted. ``slope_low`` and ``slope_high`` bound it (95%, the claims' coefficient draws).
    The bands are what the runs show, each band's best and the range within noise of it;
    a band that is ``flat`` has no best to speak of.
    """

    optimizer: str
    lr_by_wd: tuple[Band, ...]
    wd_by_lr: tuple[Band, ...]
    ridge_lr_by_wd: tuple[RidgePoint, ...]
    ridge_wd_by_lr: tuple[RidgePoint, ...]
    slope: float | None
    product: tuple[tuple[float, TrialPoint], ...]  # (lr x wd, trial), completed and pruned
    slope_low: float | None = None
    slope_high: float | None = None
    slope_note: str = ""


class DecouplingInfo(NamedTuple):
    panels: tuple[DecouplingPanel, ...]
    lr_bounds: tuple[float, float]
    wd_bounds: tuple[float, float]


def _bands(
    snap: StudySnapshot,
    configs: Sequence[noise.Config],
    model: noise.NoiseModel,
    key: str,
    bounds: tuple[float, float],
    grid: Sequence[float] | None = None,
) -> tuple[tuple[Band, ...], list[list[noise.Config]]]:
    """Bands of ``key`` with the best configuration in each and the range within its noise."""
    get = (lambda c: c.lr) if key == LR else (lambda c: c.weight_decay)
    get_other = (lambda c: c.weight_decay) if key == LR else (lambda c: c.lr)
    n_bins = max(3, min(MAX_BANDS, sum(c.n for c in configs) // TRIALS_PER_BAND))
    edges = band_edges([get(c) for c in configs], bounds, n_bins, grid)
    bands, members = [], []
    for i, edge in enumerate(edges):
        inside = [c for c in configs if in_band(get(c), edge, i == len(edges) - 1)]
        if not inside:
            continue
        ranked = noise.indistinguishable(model, inside)
        best = ranked[0]
        others = [get_other(c) for c in ranked]
        tried = [get_other(c) for c in inside]
        flat = len(set(tried)) > 1 and min(others) <= min(tried) and max(others) >= max(tried)
        bands.append(
            Band(
                low=edge[0],
                high=edge[1],
                center=edge[2],
                n_trials=sum(c.n for c in inside),
                best_number=best.numbers[0],
                best_value=best.mean,
                best_other=get_other(best),
                within_low=min(others),
                within_high=max(others),
                n_within=len(ranked),
                flat=flat,
            )
        )
        members.append(inside)
    return tuple(bands), members


def _ridge(surface: Surface, along_lr: bool, maximize: bool) -> tuple[RidgePoint, ...]:
    """Where the surface mean peaks in each row (``along_lr``) or column of its grid.


    Far from the data the mean reverts to the average accuracy and its argmax is arbitrary;
    such points are kept but marked unsupported, and the figure leaves them out.
    """
    pick = np.argmax if maximize else np.argmin
    edge = SUPPORT_EDGE * surface.prior_std
    if along_lr:  # for each wd row, the lr that maximises the mean
        cells = [(i, int(j)) for i, j in enumerate(pick(surface.mean, axis=1))]
    else:
        cells = [(int(i), j) for j, i in enumerate(pick(surface.mean, axis=0))]
    # A row flat within noise has an arbitrary argmax: no point there is significantly worse
    # than the row's peak, so the ridge is not drawn through it.
    mean = surface.mean if along_lr else surface.mean.T
    std = surface.std if along_lr else surface.std.T
    peaks = [j if along_lr else i for i, j in cells]
    shaped = [
        bool(
            np.any(
                np.abs(mean[r, k] - mean[r]) > noise.Z975 * np.sqrt(std[r] ** 2 + std[r, k] ** 2)
            )
        )
        for r, k in enumerate(peaks)
    ]
    return tuple(
        RidgePoint(
            at=float(surface.weight_decay[i] if along_lr else surface.lr[j]),
            best=float(surface.lr[j] if along_lr else surface.weight_decay[i]),
            mean=float(surface.mean[i, j]),
            std=float(surface.std[i, j]),
            supported=bool(surface.std[i, j] < edge) and shaped[k],
        )
        for k, (i, j) in enumerate(cells)
    )


def decoupling_info(snap: StudySnapshot, landscape: LandscapeInfo | None = None) -> DecouplingInfo:
    """Per band, the best configuration and the range within its noise; the slope with its
    interval or "not identifiable"; the surface's ridges; accuracy against lr x wd.


    ``landscape`` is reused for the ridges when given (it holds the fitted surfaces).
    """
    land = landscape if landscape is not None else landscape_info(snap)
    model = noise_of(snap)
    # The claims' box (the spec's space, or what was tried): the slope is a claim too.
    box = best_of(snap).claims.box or (land.lr_bounds, land.wd_bounds)
    grid = grid_of(snap)
    panels = []
    for panel in land.panels:
        configs = [
            c
            for c in model.configs
            if c.optimizer == panel.optimizer and c.lr is not None and c.weight_decay is not None
        ]
        by_wd, _ = _bands(snap, configs, model, WD, land.wd_bounds, grid and grid[1])
        by_lr, _ = _bands(snap, configs, model, LR, land.lr_bounds, grid and grid[0])
        ridge = ridge_slope(model, box, panel.optimizer, snap.maximize)
        panels.append(
            DecouplingPanel(
                optimizer=panel.optimizer,
                lr_by_wd=by_wd,
                wd_by_lr=by_lr,
                ridge_lr_by_wd=_ridge(panel.surface, True, snap.maximize) if panel.surface else (),
                ridge_wd_by_lr=_ridge(panel.surface, False, snap.maximize) if panel.surface else (),
                slope=ridge.slope,
                product=tuple(
                    (p.lr * p.weight_decay, p) for p in panel.points if p.value is not None
                ),
                slope_low=ridge.low,
                slope_high=ridge.high,
                slope_note=ridge.note,
            )
        )
    return DecouplingInfo(tuple(panels), land.lr_bounds, land.wd_bounds)


def _slope_text(p: Any) -> str:
    name = optimizer_label(p.optimizer)
    if p.slope is None:
        return f"{name} {p.slope_note or 'n/a'}"
    if p.slope_low is not None and p.slope_high is not None:
        return f"{name} {p.slope:+.2f} [{p.slope_low:+.2f}, {p.slope_high:+.2f}]"
    return f"{name} {p.slope:+.2f}"


def decoupling_figure(info: DecouplingInfo) -> go.Figure:
    """Best lr per wd band, best wd per lr band, accuracy against lr × wd; one colour per optimizer.


    Decoupled (AdamW): the best lr stays level as wd changes. Coupled (Adam + L2): it falls
    along a line of slope -1 on log axes, where lr × wd is constant.
    """
    title = "Decoupling: does the best lr move when weight decay changes?"
    if not any(p.lr_by_wd for p in info.panels):
        return empty_figure(title, "No completed trial with lr and weight decay yet.")
    slopes = ", ".join(_slope_text(p) for p in info.panels)
    if slopes:
        # On its own line: after the title it ran past the right edge at 1,400 px.
        title += (
            f"<br><sup>(slope of log best-lr on log wd: {slopes}; 0 = decoupled, −1 = coupled)"
            "</sup>"
        )
    fig = make_subplots(
        rows=1,
        cols=3,
        horizontal_spacing=0.09,
        subplot_titles=(
            "best lr in each weight-decay band",
            "best weight decay in each lr band",
            "accuracy against effective decay lr × wd",
        ),
    )
    for k, p in enumerate(info.panels):
        colour, name = optimizer_colour(p.optimizer, k), optimizer_label(p.optimizer)
        for col, bands, ridge in (
            (1, p.lr_by_wd, p.ridge_lr_by_wd),
            (2, p.wd_by_lr, p.ridge_wd_by_lr),
        ):
            if any(r.supported for r in ridge):
                fig.add_trace(
                    go.Scatter(
                        # Unsupported stretches become gaps: there the argmax is arbitrary.
                        x=[r.at if r.supported else None for r in ridge],
                        y=[r.best if r.supported else None for r in ridge],
                        mode="lines",
                        line={"color": colour, "dash": "dash", "width": 1.5},
                        name=f"{name}: GP ridge",
                        legendgroup=f"{p.optimizer}-ridge",
                        showlegend=col == 1,
                        customdata=[[r.mean, r.std] for r in ridge],
                        hovertemplate="%{x:.3g} → %{y:.3g}<br>GP mean %{customdata[0]:.4f}"
                        " ± %{customdata[1]:.4f}<extra>" + name + " ridge</extra>",
                    ),
                    row=1,
                    col=col,
                )
            # Optimizers side by side within a band (AdamW's markers hid under Adam's).
            shift = 10 ** ((k - (len(info.panels) - 1) / 2) * DODGE_DECADES)
            xs = [b.center * shift for b in bands]
            # The line joins only bands whose best stands out: through a band flat within
            # noise it zig-zagged between the range's ends on noise alone.
            fig.add_trace(
                go.Scatter(
                    x=xs,
                    y=[None if b.flat else b.best_other for b in bands],
                    mode="lines",
                    connectgaps=False,
                    line={"color": colour, "width": 1},
                    hoverinfo="skip",
                    showlegend=False,
                    legendgroup=f"{p.optimizer}-bands",
                    name=f"{name}: best per band, joined",
                ),
                row=1,
                col=col,
            )
            fig.add_trace(
                go.Scatter(
                    x=xs,
                    y=[b.best_other for b in bands],
                    mode="markers",
                    marker={
                        "color": [("white" if b.flat else colour) for b in bands],
                        "size": 10,
                        "symbol": "circle" if k == 0 else "diamond",
                        "line": {"width": 2, "color": colour},
                    },
                    # The bar spans the values within noise of the band's best: the best
                    # could as well sit anywhere on it.
                    error_y={
                        "type": "data",
                        "symmetric": False,
                        "array": [b.within_high - b.best_other for b in bands],
                        "arrayminus": [b.best_other - b.within_low for b in bands],
                        "color": colour,
                        "thickness": 2,
                        "width": 6,
                    },
                    name=f"{name}: best per band (bar: within noise; hollow: flat band)",
                    legendgroup=f"{p.optimizer}-bands",
                    showlegend=col == 1,
                    customdata=[
                        [b.best_number, b.best_value, b.n_trials, b.within_low, b.within_high]
                        for b in bands
                    ],
                    hovertemplate="band centre %{x:.3g}: best %{y:.3g}<br>trial %{customdata[0]}"
                    ", mean val acc %{customdata[1]:.4f}<br>within noise: %{customdata[3]:.3g}"
                    "..%{customdata[4]:.3g}<br>%{customdata[2]} completed in band"
                    "<extra>" + name + "</extra>",
                ),
                row=1,
                col=col,
            )
        done = [(x, t) for x, t in p.product if t.state == "complete"]
        pruned = [(x, t) for x, t in p.product if t.state == "pruned"]
        for pts, symbol, label, opacity in (
            (done, "circle", "completed", 0.75),
            (pruned, "x-thin-open", "pruned (last reported)", 0.45),
        ):
            if not pts:
                continue
            fig.add_trace(
                go.Scatter(
                    x=as_floats([x for x, _ in pts]),
                    y=as_floats([t.value for _, t in pts]),
                    mode="markers",
                    marker={
                        "color": colour,
                        "symbol": symbol,
                        "size": 6,
                        "opacity": opacity,
                        "line": {"width": 1.5 if symbol != "circle" else 0, "color": colour},
                    },
                    name=f"{name}: {label}",
                    legendgroup=f"{p.optimizer}-{label}",
                    customdata=as_floats(
                        [[t.number, t.lr, t.weight_decay, t.epoch or 0] for _, t in pts]
                    ),
                    hovertemplate="trial %{customdata[0]}: lr %{customdata[1]:.3g}, wd "
                    "%{customdata[2]:.3g}<br>lr×wd %{x:.3g}, val acc %{y:.4f}"
                    " (epoch %{customdata[3]})<extra>" + name + "</extra>",
                ),
                row=1,
                col=3,
            )
    fig.update_xaxes(
        **LOG_AXIS, title_text="weight decay (band)", row=1, col=1, range=log_range(info.wd_bounds)
    )
    fig.update_yaxes(
        **LOG_AXIS, title_text="best learning rate", row=1, col=1, range=log_range(info.lr_bounds)
    )
    fig.update_xaxes(
        **LOG_AXIS,
        title_text="learning rate (band)",
        row=1,
        col=2,
        range=log_range(info.lr_bounds),
    )
    fig.update_yaxes(
        **LOG_AXIS, title_text="best weight decay", row=1, col=2, range=log_range(info.wd_bounds)
    )
    fig.update_xaxes(**LOG_DECADES, title_text="lr × weight decay (decay per step)", row=1, col=3)
    fig.update_yaxes(title_text="validation accuracy", row=1, col=3)
    fig = page_layout(fig, title, 540)
    fig.update_layout(margin={"t": 100})  # two title lines above the subplot titles
    return fig
