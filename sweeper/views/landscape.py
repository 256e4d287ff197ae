"""View 1, the landscape: where the good learning rates and weight decays are.

``landscape_info(snap)`` places every COMPLETE and PRUNED trial in the lr x wd plane and fits,
per optimizer, a GP surface over log lr, log wd with its uncertainty and the region within
noise of its peak; ``landscape_figure(info)`` draws the mean with the trials on it and the
uncertainty beside it, fading where no trial supports the colour.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
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
from sweeper.views.style import (
    ACCURACY_COLORBAR,
    ACCURACY_SCALE,
    BEST_COLOUR,
    LOG_AXIS,
    accuracy_colours,
    empty_figure,
    log_range,
    optimizer_label,
    page_layout,
)

# Where the GP's sd reaches this fraction of its prior sd, the data no longer pin the surface
# down: the landscape's fog is thick there and the decoupling view drops the ridge.
SUPPORT_EDGE = 0.5


class Surface(NamedTuple):
    """A GP fitted on log lr, log wd; ``mean``/``std`` rows follow ``weight_decay``."""

    lr: NDArray[np.float64]
    weight_decay: NDArray[np.float64]
    mean: NDArray[np.float64]
    std: NDArray[np.float64]
    prior_std: float
    length_scale: float  # in units of the log search range
    noise_std: float  # accuracy units
    n_fit: int
    # Where the surface is within noise of its peak: peak - mean <= 1.96 sqrt(sd^2 + sd_peak^2).
    # Far from the data the sd is large, so the region also covers what no trial rules out.
    within: NDArray[np.bool_] | None = None


class LandscapePanel(NamedTuple):
    """The trials of one optimizer and the surface fitted to its completed trials."""

    optimizer: str
    points: tuple[TrialPoint, ...]
    surface: Surface | None
    note: str  # why there is no surface, or how it was fitted


class LandscapeInfo(NamedTuple):
    """One panel per optimizer, sharing axes ranges and one colour scale."""

    panels: tuple[LandscapePanel, ...]
    lr_bounds: tuple[float, float]
    wd_bounds: tuple[float, float]
    value_range: tuple[float, float] | None  # of completed trials; None when there are none


# Completed trials before a surface is drawn. The GP can be fitted to 5, but 8 noisy runs gave
# "bullseyes" (one bump per trial, each a single run's noise) on a 3.5-point colour scale; at
# 12 the surface is smooth over the runs' noise on the studies in tests/views.
SURFACE_MIN = 12
# The colour scale spans at least this many per-run sds (±2 sd): noise never fills it.
COLOUR_SPAN_SDS = 4


def _unit(
    values: Sequence[float] | NDArray[np.float64], bounds: tuple[float, float]
) -> NDArray[np.float64]:
    lo, hi = math.log10(bounds[0]), math.log10(bounds[1])
    return (np.log10(np.asarray(values, dtype=np.float64)) - lo) / (hi - lo)


def _from_unit(u: NDArray[np.float64], bounds: tuple[float, float]) -> NDArray[np.float64]:
    lo, hi = math.log10(bounds[0]), math.log10(bounds[1])
    return np.asarray(10.0 ** (lo + u * (hi - lo)), dtype=np.float64)


def _within_peak(
    mean: NDArray[np.float64], std: NDArray[np.float64], maximize: bool
) -> NDArray[np.bool_]:
    k = int(np.argmax(mean) if maximize else np.argmin(mean))
    peak, peak_sd = mean.flat[k], std.flat[k]
    gap = (peak - mean) if maximize else (mean - peak)
    return np.asarray(gap <= noise.Z975 * np.sqrt(std**2 + peak_sd**2))


def landscape_info(snap: StudySnapshot) -> LandscapeInfo:
    """Trials in the lr x wd plane and, per optimizer, a GP surface over log lr, log wd.


    The surface is fitted on COMPLETE trials only: a pruned trial's accuracy is from an
    earlier epoch and would drag the surface down where the pruner acted, not where the
    hyperparameters are bad. Pruned trials are drawn on top, marked with their epoch.
    """
    points = trial_points(snap)
    model = noise_of(snap)
    lr_b = axis_bounds(snap, LR, [p.lr for p in points])
    wd_b = axis_bounds(snap, WD, [p.weight_decay for p in points])
    # The colour scale spans completed trials only: pruned trials are drawn in grey, and
    # their early-epoch accuracies would stretch the scale and flatten the surface's colours.
    values = [p.value for p in points if p.value is not None and p.state == "complete"]
    panels = []
    for name in optimizers(snap) or ("adamw",):
        mine = tuple(p for p in points if p.optimizer == name)
        done = [p for p in mine if p.state == "complete" and p.value is not None]
        surface, note = None, ""
        # Here, not at the top: the GP needs scipy.linalg, which `sweeper best` and
        # `sweeper importance` never use (a third of a second of start-up each).
        from sweeper.analysis import surface as gp

        if len(done) < SURFACE_MIN:
            note = (
                f"{len(done)} completed trial{'s' if len(done) != 1 else ''}: "
                f"a surface needs at least {SURFACE_MIN}"
            )
        else:
            x = np.column_stack(
                [_unit([p.lr for p in done], lr_b), _unit([p.weight_decay for p in done], wd_b)]
            )
            y = np.array([p.value for p in done], dtype=np.float64)
            fit = gp.fit_surface(x, y, min_noise_sd=noise.sd_at(model, float(np.mean(y))) or 0.0)
            surface = Surface(
                lr=_from_unit(fit.u, lr_b),
                weight_decay=_from_unit(fit.v, wd_b),
                mean=fit.mean,
                std=fit.std,
                prior_std=fit.prior_std,
                length_scale=fit.length_scale,
                noise_std=fit.noise_std,
                n_fit=fit.n_fit,
                within=_within_peak(fit.mean, fit.std, snap.maximize),
            )
            note = (
                f"GP on {fit.n_fit} completed trials; length scale {fit.length_scale:g} "
                f"of the log range, noise sd {fit.noise_std:.3g}"
            )
        panels.append(LandscapePanel(name, mine, surface, note))
    return LandscapeInfo(
        panels=tuple(panels),
        lr_bounds=lr_b,
        wd_bounds=wd_b,
        value_range=(
            _colour_range(values, noise.sd_at(model, float(np.mean(values))) or 0.0)
            if values
            else None
        ),
    )


def _colour_range(values: Sequence[float], sd_run: float) -> tuple[float, float]:
    """The values' range, widened to at least ``COLOUR_SPAN_SDS`` per-run sds about its
    middle: differences the noise alone makes must not span the whole colour scale."""
    low, high = min(values), max(values)
    half = max((high - low) / 2, COLOUR_SPAN_SDS * sd_run / 2)
    mid = (low + high) / 2
    return mid - half, mid + half


def _point_traces(
    points: Sequence[TrialPoint],
    show_legend: bool,
    zrange: tuple[float, float] | None,
    colorbar: bool = False,
    shade_epochs: bool = True,
) -> list[go.Scatter]:
    """Completed trials as circles (coloured on ``zrange``, or dark grey when None) and
    pruned trials as crosses (shaded by the epoch reached, or plain grey)."""
    with_colour = zrange is not None
    done = [p for p in points if p.state == "complete" and p.value is not None]
    pruned = [p for p in points if p.state == "pruned"]
    traces = []
    if done:
        # Numeric arrays, not lists: Plotly validates and serialises them without a loop.
        d = np.array([(p.lr, p.weight_decay, p.number, p.value) for p in done], dtype=float)
        traces.append(
            go.Scatter(
                x=d[:, 0],
                y=d[:, 1],
                mode="markers",
                name="completed trial (colour: final accuracy)",
                legendgroup="complete",
                showlegend=show_legend,
                marker={
                    "size": 8,
                    "color": d[:, 3] if with_colour else "#222222",
                    **(accuracy_colours(zrange, colorbar) if zrange is not None else {}),
                    # A dark rim: a marker whose colour matches the surface under it still
                    # shows, and one that does not shows the fit's residual.
                    "line": {"width": 1, "color": "rgba(0,0,0,0.7)"},
                    "opacity": 1.0 if with_colour else 0.5,
                },
                customdata=d[:, 2:],
                hovertemplate="trial %{customdata[0]}<br>lr %{x:.3g}, wd %{y:.3g}"
                "<br>val acc %{customdata[1]:.4f}<extra>completed</extra>",
            )
        )
    if pruned:
        q = np.array(
            [
                (
                    p.lr,
                    p.weight_decay,
                    p.number,
                    p.epoch if p.epoch is not None else 0,
                    p.value if p.value is not None else np.nan,
                )
                for p in pruned
            ],
            dtype=float,
        )
        traces.append(
            go.Scatter(
                x=q[:, 0],
                y=q[:, 1],
                mode="markers",
                name="pruned trial (grey: epoch reached)",
                legendgroup="pruned",
                showlegend=show_legend,
                marker={
                    "symbol": "x-thin-open",
                    "size": 9,
                    "line": {"width": 2},
                    "color": q[:, 3] if shade_epochs else "#777777",
                    "coloraxis": "coloraxis3" if shade_epochs else None,
                },
                customdata=q[:, 2:],
                hovertemplate="trial %{customdata[0]}<br>lr %{x:.3g}, wd %{y:.3g}"
                "<br>pruned at epoch %{customdata[1]} (val acc %{customdata[2]:.4f})"
                "<extra>pruned</extra>",
            )
        )
    return traces


def landscape_figure(info: LandscapeInfo) -> go.Figure:
    """Per optimizer: GP mean with trials on it (left) and GP uncertainty (right).


    Left, the surface's mean as filled contours on log lr x log wd, fogged in proportion to
    its uncertainty and bounded by a dotted line where the sd reaches half its prior; trials
    on top, completed ones coloured on the same scale as the surface, pruned ones as grey
    crosses whose shade is the epoch they reached. Right, the sd itself.
    """
    title = "lr × weight decay landscape"
    if not any(p.points for p in info.panels):
        return empty_figure(title, "No finished trial with lr and weight decay yet.")
    rows = len(info.panels)
    fig = make_subplots(
        rows=rows,
        cols=2,
        column_widths=[0.6, 0.4],
        horizontal_spacing=0.16,
        vertical_spacing=0.14 if rows > 1 else 0.0,
        subplot_titles=[
            text
            for p in info.panels
            for text in (
                f"{optimizer_label(p.optimizer)}: GP mean accuracy, fogged where uncertain",
                f"{optimizer_label(p.optimizer)}: GP uncertainty (dark: no data support the fit)",
            )
        ],
    )
    # With no completed trial (all pruned) there is no accuracy to colour: any range will do.
    zmin, zmax = info.value_range or (0.0, 1.0)
    for panel in info.panels:
        s = panel.surface
        if s is not None:
            zmin, zmax = min(zmin, float(s.mean.min())), max(zmax, float(s.mean.max()))
    colorbar_drawn = False
    for row, panel in enumerate(info.panels, start=1):
        s = panel.surface
        if s is not None:
            ratio = s.std / s.prior_std if s.prior_std > 0 else np.ones_like(s.std)
            fig.add_trace(
                go.Contour(
                    x=s.lr,
                    y=s.weight_decay,
                    z=s.mean,
                    colorscale=ACCURACY_SCALE,
                    zmin=zmin,
                    zmax=zmax,
                    # Explicit levels: the same 18 steps of the shared scale in every panel.
                    contours={
                        "coloring": "fill",
                        "showlines": False,
                        "start": zmin,
                        "end": zmax,
                        "size": (zmax - zmin) / 18 or 1e-3,
                    },
                    autocontour=False,
                    showscale=not colorbar_drawn,
                    colorbar=ACCURACY_COLORBAR,
                    customdata=s.std,
                    hovertemplate="lr %{x:.3g}, wd %{y:.3g}<br>GP mean %{z:.4f}"
                    " ± %{customdata:.4f}<extra>surface</extra>",
                    name="GP mean",
                    showlegend=False,
                ),
                row=row,
                col=1,
            )
            colorbar_drawn = True
            # The fog is a contour trace like the mean it covers: plotly.js draws heatmap
            # traces beneath contour traces whatever their order, so a heatmap fog never
            # showed. Its colours blend towards white as the sd nears the prior's.
            fig.add_trace(
                go.Contour(
                    x=s.lr,
                    y=s.weight_decay,
                    z=np.clip(ratio, 0.0, 1.0),
                    zmin=0.0,
                    zmax=1.0,
                    contours={"coloring": "heatmap", "showlines": False},
                    line={"width": 0},
                    colorscale=[[0.0, "rgba(255,255,255,0)"], [1.0, "rgba(255,255,255,0.85)"]],
                    showscale=False,
                    hoverinfo="skip",
                    name="uncertainty fog",
                ),
                row=row,
                col=1,
            )
            fig.add_trace(
                go.Contour(
                    x=s.lr,
                    y=s.weight_decay,
                    z=ratio,
                    contours={
                        "coloring": "none",
                        "start": SUPPORT_EDGE,
                        "end": SUPPORT_EDGE,
                        "size": 1.0,
                    },
                    line={"dash": "dot", "color": "#333333", "width": 1.5},
                    name=f"edge of data support (sd = {SUPPORT_EDGE:g} × prior sd)",
                    legendgroup="edge",
                    showlegend=row == 1,
                    showscale=False,
                    hoverinfo="skip",
                ),
                row=row,
                col=1,
            )
            if s.within is not None and not s.within.all():
                fig.add_trace(
                    go.Contour(
                        x=s.lr,
                        y=s.weight_decay,
                        z=s.within.astype(float),
                        contours={"coloring": "none", "start": 0.5, "end": 0.5, "size": 1.0},
                        line={"color": BEST_COLOUR, "width": 2.5},
                        name="within noise of the surface's peak",
                        legendgroup="within",
                        showlegend=row == 1,
                        showscale=False,
                        hoverinfo="skip",
                    ),
                    row=row,
                    col=1,
                )
            fig.add_trace(
                go.Heatmap(
                    x=s.lr,
                    y=s.weight_decay,
                    # Relative to the prior's sd: 0 = pinned down by trials, 1 = no information.
                    # An absolute scale would stretch tiny differences over the whole colour
                    # range when trials cover the space (a grid study).
                    z=ratio,
                    customdata=s.std,
                    coloraxis="coloraxis2",
                    hovertemplate="lr %{x:.3g}, wd %{y:.3g}<br>GP sd %{customdata:.4f}"
                    " (%{z:.2f} of the prior's)<extra></extra>",
                    name="GP sd",
                ),
                row=row,
                col=2,
            )
        else:
            # Inside the panel, not above it: above, it ran into the subplot's title.
            fig.add_annotation(
                text=f"no surface: {panel.note}",
                xref="x domain" if row == 1 else f"x{2 * row - 1} domain",
                yref="y domain" if row == 1 else f"y{2 * row - 1} domain",
                x=0.5,
                y=0.5,
                showarrow=False,
                bgcolor="rgba(255,255,255,0.8)",
                font={"size": 12, "color": "#555555"},
            )
        first_bar = not colorbar_drawn and any(
            p.state == "complete" and p.value is not None for p in panel.points
        )
        for trace in _point_traces(panel.points, row == 1, (zmin, zmax), colorbar=first_bar):
            fig.add_trace(trace, row=row, col=1)
        colorbar_drawn = colorbar_drawn or first_bar
        for trace in _point_traces(panel.points, False, None, shade_epochs=False):
            trace.marker.size = 5
            fig.add_trace(trace, row=row, col=2)
    fig.update_xaxes(
        title_text="learning rate (log)",
        range=log_range(info.lr_bounds),
        showgrid=False,
        **LOG_AXIS,
    )
    fig.update_yaxes(
        title_text="weight decay (log)",
        range=log_range(info.wd_bounds),
        showgrid=False,
        **LOG_AXIS,
    )
    fig.update_layout(
        coloraxis2={
            "colorscale": "Blues",
            "cmin": 0.0,
            "cmax": 1.0,
            "colorbar": {
                "title": {"text": "GP sd /<br>prior sd"},
                "x": 1.0,
                "len": 0.9,
                "thickness": 14,
            },
        },
        coloraxis3={
            "colorscale": [[0.0, "#d9d9d9"], [1.0, "#252525"]],
            "showscale": any(p.state == "pruned" for panel in info.panels for p in panel.points),
            "colorbar": {
                "orientation": "h",
                "x": 0.86,
                "xanchor": "center",
                "len": 0.24,
                "y": -0.3 / rows,
                "yanchor": "top",
                "thickness": 10,
                "title": {"text": "pruned at epoch", "side": "top"},
            },
        },
        legend={"y": -0.3 / rows, "yanchor": "top", "x": 0.0},
    )
    fig = page_layout(fig, title, 470 * rows + 120)
    fig.update_layout(margin={"b": 150}, legend={"y": -0.3 / rows, "yanchor": "top"})
    return fig
