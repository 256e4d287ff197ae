"""Plotly figures: each draws one NamedTuple from ``data``/``importance`` and computes nothing.

Promises:

- One function per view, ``*_figure(info) -> go.Figure``. Each accepts the empty cases its
  info can hold (no trials, no surface, one optimizer) and then draws an empty, titled figure
  that says what is missing instead of raising.
- lr, weight decay and lr x wd are always on log axes (they are searched log-uniformly);
  accuracy keeps one colour scale per figure, shared across panels, so panels compare.
- Figures reference no external resource: they render offline with the plotly.js that the
  report inlines and the live page serves.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
from numpy.typing import NDArray
from plotly.subplots import make_subplots

from sweeper.analysis.importance import ImportanceInfo
from sweeper.dashboard.data import (
    SUPPORT_EDGE,
    ComparisonInfo,
    Curve,
    CurvesInfo,
    DecouplingInfo,
    EffectiveDecayInfo,
    HistoryInfo,
    LandscapeInfo,
    SliceInfo,
    TimelineInfo,
    TrialPoint,
)

# Accuracy colour scale: perceptually uniform and readable by colour-blind users.
ACCURACY_SCALE = "Viridis"
# Colours per optimizer (AdamW blue, Adam orange: the Okabe-Ito pair) and per trial state.
OPTIMIZER_COLOURS = {"adamw": "#0072B2", "adam": "#E69F00"}
OTHER_COLOURS = ("#009E73", "#CC79A7", "#56B4E9", "#D55E00")
STATE_COLOURS = {
    "complete": "#0072B2",
    "pruned": "#999999",
    "fail": "#D55E00",
    "running": "#009E73",
    "waiting": "#CC79A7",
}
BEST_COLOUR = "#D55E00"
LABELS = {"lr": "learning rate", "weight_decay": "weight decay", "optimizer": "optimizer"}
FONT = {"family": "DejaVu Sans, Arial, sans-serif", "size": 13}
# Log axes label decades as powers of ten and, between them, only 2 and 5: every digit
# crowds the axis once a panel spans more than two decades.
LOG_AXIS = {"type": "log", "exponentformat": "power", "dtick": "D2"}
# Axes spanning many decades (lr x wd): decades only, or the 2 and 5 labels run into the
# powers of ten ("10^-82 ... 10^-52").
LOG_DECADES = {"type": "log", "exponentformat": "power", "dtick": 1}


def _num(values: Sequence[Any]) -> NDArray[np.float64]:
    """Per-trial numbers as a float array (None -> NaN, a gap): Plotly validates a list
    element by element (50 ms per 10,000-point trace on a 2-core VM) and an array in one
    copy, and serialises it as one typed array."""
    return np.array(values, dtype=float)


def _obj(values: Sequence[Any]) -> NDArray[Any]:
    """Per-trial strings (or mixed rows) as an object array, for the same reason as ``_num``."""
    return np.array(values, dtype=object)


def _colour(optimizer: str, index: int = 0) -> str:
    return OPTIMIZER_COLOURS.get(optimizer, OTHER_COLOURS[index % len(OTHER_COLOURS)])


def optimizer_label(optimizer: str) -> str:
    """How an optimizer is named on a page: AdamW, Adam, else as recorded."""
    return {"adamw": "AdamW", "adam": "Adam"}.get(optimizer, optimizer)


_name = optimizer_label


def _white(fig: go.Figure) -> None:
    """Give ``fig`` Plotly's "plotly_white" template without validating it again.

    Plotly validates a template on every assignment, a deep copy of some 400 properties:
    20 ms a figure, 0.2-0.5 s of a report on a 2-core VM. The registered template is valid
    already; Plotly assigns its own default template the same way, with the layout's
    validation off for that one assignment (plotly ``BaseFigure._initialize_layout_template``).
    """
    layout = fig.layout
    layout._validate = False
    try:
        layout.template = pio.templates["plotly_white"]
    finally:
        layout._validate = True


def _base(fig: go.Figure, title: str, height: int) -> go.Figure:
    _white(fig)
    fig.update_layout(
        title={"text": title, "x": 0.01, "xanchor": "left"},
        height=height,
        font=FONT,
        margin={"l": 70, "r": 30, "t": 80, "b": 60},
        legend={"orientation": "h", "y": -0.18, "x": 0.0},
    )
    return fig


def _legend_on_top(fig: go.Figure) -> go.Figure:
    """Single-panel figures: the legend above the plot, right-aligned, clear of the axes."""
    fig.update_layout(
        legend={"orientation": "h", "x": 1.0, "xanchor": "right", "y": 1.02, "yanchor": "bottom"}
    )
    return fig


def empty_figure(title: str, message: str, height: int = 320) -> go.Figure:
    """A titled figure whose only content is ``message`` (nothing to draw yet)."""
    fig = go.Figure()
    fig.add_annotation(
        text=message, x=0.5, y=0.5, xref="paper", yref="paper", showarrow=False, font={"size": 15}
    )
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return _base(fig, title, height)


def _fmt(x: float | None, digits: int = 4) -> str:
    return "–" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def _log_range(bounds: tuple[float, float], pad: float = 0.04) -> list[float]:
    lo, hi = math.log10(bounds[0]), math.log10(bounds[1])
    span = hi - lo
    return [lo - pad * span, hi + pad * span]


# --------------------------------------------------------------------------- 1. landscape


def _accuracy_colours(zrange: tuple[float, float], colorbar: bool) -> dict[str, Any]:
    """Marker colour settings on the accuracy scale, with the shared colorbar or none.

    The landscape does not use a layout coloraxis for accuracy: plotly.js 4.1 hung (page
    never finished loading) when a filled contour and scatter markers shared one.
    """
    return {
        "colorscale": ACCURACY_SCALE,
        "cmin": zrange[0],
        "cmax": zrange[1],
        "showscale": colorbar,
        "colorbar": ACCURACY_COLORBAR if colorbar else None,
    }


ACCURACY_COLORBAR = {"title": {"text": "val acc"}, "x": 0.545, "len": 0.9, "thickness": 14}


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
                    **(_accuracy_colours(zrange, colorbar) if zrange is not None else {}),
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
                f"{_name(p.optimizer)}: GP mean accuracy, fogged where uncertain",
                f"{_name(p.optimizer)}: GP uncertainty (dark: no data support the fit)",
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
            fig.add_trace(
                go.Heatmap(
                    x=s.lr,
                    y=s.weight_decay,
                    z=np.clip(ratio, 0.0, 1.0),
                    zmin=0.0,
                    zmax=1.0,
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
        range=_log_range(info.lr_bounds),
        showgrid=False,
        **LOG_AXIS,
    )
    fig.update_yaxes(
        title_text="weight decay (log)",
        range=_log_range(info.wd_bounds),
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
    fig = _base(fig, title, 470 * rows + 120)
    fig.update_layout(margin={"b": 150}, legend={"y": -0.3 / rows, "yanchor": "top"})
    return fig


# --------------------------------------------------------------------------- 2. decoupling


def _slope_text(p: Any) -> str:
    name = _name(p.optimizer)
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
        colour, name = _colour(p.optimizer, k), _name(p.optimizer)
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
            fig.add_trace(
                go.Scatter(
                    x=[b.center for b in bands],
                    y=[b.best_other for b in bands],
                    mode="markers+lines",
                    line={"color": colour, "width": 1},
                    marker={"color": colour, "size": 10, "line": {"width": 1, "color": "white"}},
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
                    name=f"{name}: best per band (bar: within noise)",
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
                    x=_num([x for x, _ in pts]),
                    y=_num([t.value for _, t in pts]),
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
                    customdata=_num(
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
        **LOG_AXIS, title_text="weight decay (band)", row=1, col=1, range=_log_range(info.wd_bounds)
    )
    fig.update_yaxes(
        **LOG_AXIS, title_text="best learning rate", row=1, col=1, range=_log_range(info.lr_bounds)
    )
    fig.update_xaxes(
        **LOG_AXIS,
        title_text="learning rate (band)",
        row=1,
        col=2,
        range=_log_range(info.lr_bounds),
    )
    fig.update_yaxes(
        **LOG_AXIS, title_text="best weight decay", row=1, col=2, range=_log_range(info.wd_bounds)
    )
    fig.update_xaxes(**LOG_DECADES, title_text="lr × weight decay (decay per step)", row=1, col=3)
    fig.update_yaxes(title_text="validation accuracy", row=1, col=3)
    fig = _base(fig, title, 540)
    fig.update_layout(margin={"t": 100})  # two title lines above the subplot titles
    return fig


# --------------------------------------------------------------------------- 3. Adam vs AdamW


def comparison_figure(info: ComparisonInfo) -> go.Figure:
    """Mean final accuracy per lr x wd cell, one heatmap per optimizer, one colour scale.

    The AdamW paper's figure: AdamW's good region lies parallel to the axes (the best lr does
    not depend on wd), Adam's along a diagonal. A star marks each optimizer's best cell (its
    text, so the number stays readable).
    """
    names = " vs ".join(_name(h.optimizer) for h in reversed(info.heatmaps)) or "Optimizers"
    title = f"{names}: mean final accuracy per lr × wd cell"
    if not info.heatmaps or info.zrange is None:
        return empty_figure(title, "No completed trial with lr and weight decay yet.")
    n = len(info.heatmaps)
    fig = make_subplots(
        rows=1,
        cols=n,
        horizontal_spacing=0.08,
        subplot_titles=[_name(h.optimizer) for h in info.heatmaps],
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
                + (_fmt(h.mean[i, j], 3) if h.n_complete[i, j] else "")
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
                + _name(h.optimizer)
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
                    text=[_fmt(p.value, 3) for p in off],
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
    return _base(
        fig,
        f"{title} <sup>({sub}; ★ best cell, ≈ within noise of it; blank = no completed "
        "trial)</sup>",
        500,
    )


# --------------------------------------------------------------------------- slices


def _decade_colorbar(title: str, bounds: tuple[float, float], x: float) -> dict[str, Any]:
    """A colorbar over log10 values whose ticks read as the values themselves (10^k)."""
    lo, hi = math.floor(math.log10(bounds[0]) + 1e-9), math.ceil(math.log10(bounds[1]) - 1e-9)
    ticks = list(range(lo, hi + 1)) if hi > lo else [lo]
    return {
        "title": {"text": title},
        "tickvals": ticks,
        "ticktext": [f"10<sup>{k}</sup>" for k in ticks],
        "x": x,
        "len": 0.9,
        "thickness": 14,
    }


def slice_figure(info: SliceInfo) -> go.Figure:
    """Accuracy against lr (colour: wd) and against wd (colour: lr), one row per optimizer.

    One marker per configuration at its mean over seeds; configurations with seed replicates
    are diamonds with their 95% interval as an error bar. Optuna's ``plot_slice`` draws every
    trial alone; here replicates collapse, so a point never looks better measured than it is.
    """
    title = "Slices: accuracy against each hyperparameter alone"
    if not info.configs:
        return empty_figure(title, "No completed trial with lr and weight decay yet.")
    rows = len(info.optimizers)
    several = rows > 1
    fig = make_subplots(
        rows=rows,
        cols=2,
        horizontal_spacing=0.16,
        vertical_spacing=0.16 if several else 0.0,
        shared_yaxes=False,
        subplot_titles=[
            text
            for name in info.optimizers
            for text in (
                f"{_name(name) + ': ' if several else ''}accuracy vs lr (colour: weight decay)",
                f"{_name(name) + ': ' if several else ''}accuracy vs weight decay (colour: lr)",
            )
        ],
    )
    lows = [c.low if c.n >= 2 and c.low is not None else c.mean for c in info.configs]
    highs = [c.high if c.n >= 2 and c.high is not None else c.mean for c in info.configs]
    pad = 0.05 * ((max(highs) - min(lows)) or 0.01)
    y_range = [min(lows) - pad, max(highs) + pad]
    for row, name in enumerate(info.optimizers, start=1):
        mine = [c for c in info.configs if c.optimizer == name]
        for col, (x_of, c_of, axis) in enumerate(
            (
                (lambda c: c.lr, lambda c: c.weight_decay, "coloraxis4"),
                (lambda c: c.weight_decay, lambda c: c.lr, "coloraxis5"),
            ),
            start=1,
        ):
            for replicated, label in (
                (False, "single run"),
                (True, "mean of seed replicates (bar: 95% CI)"),
            ):
                group = [c for c in mine if (c.n >= 2) == replicated]
                if not group:
                    continue
                d = np.array(
                    [
                        (
                            x_of(c),
                            c.mean,
                            math.log10(c_of(c)),
                            c.lr,
                            c.weight_decay,
                            c.n,
                            c.numbers[0],
                            c.low if c.low is not None else np.nan,
                            c.high if c.high is not None else np.nan,
                        )
                        for c in group
                    ],
                    dtype=float,
                )
                error = None
                if replicated and np.isfinite(d[:, 7]).all():
                    error = {
                        "type": "data",
                        "symmetric": False,
                        "array": d[:, 8] - d[:, 1],
                        "arrayminus": d[:, 1] - d[:, 7],
                        "color": "#444444",
                        "thickness": 1.5,
                        "width": 4,
                    }
                fig.add_trace(
                    go.Scatter(
                        x=d[:, 0],
                        y=d[:, 1],
                        mode="markers",
                        name=label,
                        legendgroup=label,
                        showlegend=row == 1 and col == 1,
                        marker={
                            "color": d[:, 2],
                            "coloraxis": axis,
                            "symbol": "diamond" if replicated else "circle",
                            "size": 10 if replicated else 7,
                            "line": {"width": 1, "color": "rgba(0,0,0,0.7)"},
                        },
                        error_y=error,
                        customdata=d[:, 3:],
                        hovertemplate="lr %{customdata[0]:.3g}, wd %{customdata[1]:.3g}"
                        "<br>mean val acc %{y:.4f} over %{customdata[2]} run(s)"
                        "<br>95% CI %{customdata[4]:.4f}..%{customdata[5]:.4f}"
                        "<br>first trial %{customdata[3]}<extra>" + _name(name) + "</extra>",
                    ),
                    row=row,
                    col=col,
                )
        fig.update_xaxes(
            **LOG_AXIS,
            title_text="learning rate (log)",
            range=_log_range(info.lr_bounds),
            row=row,
            col=1,
        )
        fig.update_xaxes(
            **LOG_AXIS,
            title_text="weight decay (log)",
            range=_log_range(info.wd_bounds),
            row=row,
            col=2,
        )
        fig.update_yaxes(title_text="validation accuracy", range=y_range, row=row)
    fig.update_layout(
        coloraxis4={
            "colorscale": "Cividis",
            "cmin": math.log10(info.wd_bounds[0]),
            "cmax": math.log10(info.wd_bounds[1]),
            "colorbar": _decade_colorbar("wd", info.wd_bounds, 0.43),
        },
        coloraxis5={
            "colorscale": "Plasma",
            "cmin": math.log10(info.lr_bounds[0]),
            "cmax": math.log10(info.lr_bounds[1]),
            "colorbar": _decade_colorbar("lr", info.lr_bounds, 1.0),
        },
    )
    sub = f"{len(info.configs)} configurations, {info.n_replicated} with seed replicates"
    if info.single_run_halfwidth is not None:
        sub += f"; one run: ±{100 * info.single_run_halfwidth:.1f} points (95%)"
    else:
        sub += "; noise unknown"
    if info.n_pruned:
        sub += f"; {info.n_pruned} pruned left out"
    fig = _base(fig, f"{title}<br><sup>({sub})</sup>", 440 * rows + 120)
    fig.update_layout(margin={"t": 110, "b": 110}, legend={"y": -0.22 / rows, "yanchor": "top"})
    return fig


# --------------------------------------------------------------------------- effective decay


def _decade_ticks(low: float, high: float) -> dict[str, Any]:
    """Tick at every power of ten in [low, high], written as a reader says it (0.1, 1, 100,
    10k): one label per decade never overlaps, and "10k epochs" reads faster than 10^4."""
    k0, k1 = math.ceil(math.log10(low) - 1e-9), math.floor(math.log10(high) + 1e-9)
    values = [10.0**k for k in range(k0, k1 + 1)]

    def label(k: int) -> str:
        if k >= 6:
            return f"10<sup>{k}</sup>"
        if k >= 3:
            return f"{10 ** (k - 3):g}k"
        return f"{10.0**k:g}"

    return {"tickvals": values, "ticktext": [label(k) for k in range(k0, k1 + 1)]}


def effective_decay_figure(info: EffectiveDecayInfo) -> go.Figure:
    """AdamW's configurations at (lr, memory of the decay in epochs), coloured by accuracy.

    The shaded band is where the memory is shorter than the run (decay has shrunk weights by
    more than 1 - 1/e by the end); the dashed lines are the searched box's wd edges (each a
    line of slope -1). The decay-axis warning, when the check gives one, is printed under the
    plot: it is the same line ``sweeper best`` prints.
    """
    title = "Effective decay: how long AdamW's weight decay remembers"
    if not info.configs and not info.pruned:
        why = (
            "No AdamW trial: "
            + ", ".join(_name(n) for n in info.left_out)
            + "'s coupled L2 does not decay weights by (1 − lr·wd) per step."
            if info.left_out
            else "No finished AdamW trial with lr and weight decay yet."
        )
        return empty_figure(title, why)
    spe = info.steps_per_epoch
    lr_lo, lr_hi = info.lr_bounds
    wd_lo, wd_hi = info.wd_bounds
    seen = [*info.memory, *info.pruned_memory]
    # The run's length is always on the axis (with half a decade under it): the distance
    # between the study's memories and the band where decay acts is what the view shows.
    seen += [info.epochs / 3.0] if info.epochs else []
    m_lo = min(1.0 / (lr_hi * wd_hi * spe), *seen)
    m_hi = max(1.0 / (lr_lo * wd_lo * spe), *seen)
    y_range = [math.log10(m_lo) - 0.15, math.log10(m_hi) + 0.15]
    fig = go.Figure()
    if info.epochs:
        e = float(info.epochs)
        fig.add_trace(
            go.Scatter(
                x=[lr_lo, lr_hi, lr_hi, lr_lo, lr_lo],
                y=[10 ** y_range[0], 10 ** y_range[0], e, e, 10 ** y_range[0]],
                fill="toself",
                fillcolor="rgba(0,158,115,0.10)",
                mode="lines",
                line={"color": "rgba(0,158,115,0.8)", "width": 1.5},
                name=f"memory < the run ({info.epochs} epochs): decay acts",
                hoverinfo="skip",
            )
        )
    for wd, dash in ((wd_hi, "dash"), (wd_lo, "dot")):
        fig.add_trace(
            go.Scatter(
                x=[lr_lo, lr_hi],
                y=[1.0 / (lr_lo * wd * spe), 1.0 / (lr_hi * wd * spe)],
                mode="lines",
                line={"color": "#777777", "dash": dash, "width": 1.2},
                name=f"wd {wd:.3g} ({'largest' if wd == wd_hi else 'smallest'} searched)",
                hoverinfo="skip",
            )
        )
    zr = info.value_range or (0.0, 1.0)
    bar_drawn = False  # one accuracy colorbar for both marker kinds
    for replicated, label in ((False, "single run"), (True, "mean of seeds")):
        group = [
            (c, m)
            for c, m in zip(info.configs, info.memory, strict=True)
            if (c.n >= 2) == replicated
        ]
        if not group:
            continue
        d = np.array(
            [(c.lr, m, c.mean, c.weight_decay, c.n, c.numbers[0]) for c, m in group], dtype=float
        )
        fig.add_trace(
            go.Scatter(
                x=d[:, 0],
                y=d[:, 1],
                mode="markers",
                name=label,
                marker={
                    "color": d[:, 2],
                    **_accuracy_colours(zr, not bar_drawn),
                    "colorbar": {"title": {"text": "val acc"}, "thickness": 14},
                    "symbol": "diamond" if replicated else "circle",
                    "size": 11 if replicated else 8,
                    "line": {"width": 1, "color": "rgba(0,0,0,0.7)"},
                },
                customdata=d[:, 2:],
                hovertemplate="lr %{x:.3g}, wd %{customdata[1]:.3g}<br>memory %{y:.3g} epochs"
                "<br>mean val acc %{customdata[0]:.4f} over %{customdata[2]} run(s)"
                "<br>first trial %{customdata[3]}<extra>AdamW</extra>",
            )
        )
        bar_drawn = True
    if info.pruned:
        q = np.array(
            [
                (p.lr, m, p.weight_decay, p.number, p.epoch or 0)
                for p, m in zip(info.pruned, info.pruned_memory, strict=True)
            ],
            dtype=float,
        )
        fig.add_trace(
            go.Scatter(
                x=q[:, 0],
                y=q[:, 1],
                mode="markers",
                name="pruned trial",
                marker={
                    "symbol": "x-thin-open",
                    "size": 8,
                    "line": {"width": 1.5},
                    "color": "#888888",
                },
                customdata=q[:, 2:],
                hovertemplate="trial %{customdata[1]}: lr %{x:.3g}, wd %{customdata[0]:.3g}"
                "<br>memory %{y:.3g} epochs; pruned at epoch %{customdata[2]}<extra></extra>",
            )
        )
    fig.update_xaxes(**LOG_AXIS, title_text="learning rate (log)", range=_log_range(info.lr_bounds))
    fig.update_yaxes(
        type="log",
        range=y_range,
        title_text="memory 1/(lr·wd) in epochs (log)",
        **_decade_ticks(10 ** y_range[0], 10 ** y_range[1]),
    )
    notes = []
    if info.check is not None and info.check.warning:
        notes.append("⚠ " + info.check.warning)
    elif info.check is not None:
        notes.append(
            f"the largest decay tried shrinks weights by {100 * info.check.max_shrink:.0f}% "
            f"over the run (memory {info.check.min_memory_epochs:.3g} epochs)"
        )
    if info.assumed:
        notes.append(info.assumed)
    if info.left_out:
        notes.append(
            ", ".join(_name(n) for n in info.left_out)
            + " left out: coupled L2 does not decay weights by (1 − lr·wd) per step"
        )
    # Under the plot, wrapped: a long line in the title is cut off at the page's width. Legend
    # and note are placed in pixels below the axis title (paper units scale with the height).
    lines = [line for n in notes for line in textwrap.wrap(n, 150)]
    height, top, legend_px, note_px = 540 + 18 * len(lines), 90, 62, 112
    bottom = note_px + 18 * len(lines) + 20
    plot_px = height - top - bottom
    if lines:
        fig.add_annotation(
            text="<br>".join(lines),
            xref="paper",
            yref="paper",
            x=0.0,
            y=-note_px / plot_px,
            xanchor="left",
            yanchor="top",
            align="left",
            showarrow=False,
            font={
                "size": 12,
                "color": "#8a4b00" if info.check and info.check.warning else "#444444",
            },
        )
    sub = f"memory = 1/(lr·wd·{spe:,} steps per epoch)"
    fig = _base(fig, f"{title} <sup>({sub})</sup>", height)
    fig.update_layout(
        margin={"t": top, "b": bottom},
        legend={"orientation": "h", "x": 0.0, "y": -legend_px / plot_px, "yanchor": "top"},
    )
    return fig


# --------------------------------------------------------------------------- 4. importance


def importance_figure(info: ImportanceInfo) -> go.Figure:
    """Per optimizer, the shares of lr, wd and their interaction with 95% bootstrap intervals
    (left); per epoch, each optimizer's lr and wd shares with their intervals (right); and,
    only when they ran (``info.evaluators``), Optuna's pooled PED-ANOVA and fANOVA between
    them. Notes replace a panel that has nothing to show."""
    title = "Hyperparameter importance"
    if not info.params and not info.by_optimizer:
        return empty_figure(title, "; ".join(info.notes) or "No parameters to assess.")
    several = len(info.by_optimizer) > 1
    pooled_col = 2 if info.evaluators else None
    epoch_col = 3 if info.evaluators else 2
    titles = ["per optimizer (95% bootstrap; ✱ more than noise)"]
    if pooled_col:
        titles.append("Optuna's evaluators" + (", optimizers pooled" if several else ""))
    titles.append("per epoch (pruned trials count)")
    fig = make_subplots(
        rows=1,
        cols=len(titles),
        column_widths=[0.34, 0.22, 0.44] if pooled_col else [0.42, 0.58],
        horizontal_spacing=0.11,
        subplot_titles=titles,
    )
    terms = ["lr", "weight_decay", "lr x weight_decay"]
    notes = []
    for k, (name, d) in enumerate(info.by_optimizer):
        if d.shares is None:
            notes.append(f"{_name(name)}: {d.note}")
            continue
        got = [d.shares[t] for t in terms if t in d.shares]
        fig.add_trace(
            go.Bar(
                x=[s.share for s in got],
                y=[LABELS.get(t, t.replace("weight_decay", "wd")) for t in terms if t in d.shares],
                orientation="h",
                name=_name(name),
                marker={"color": _colour(name, k)},
                error_x={
                    "type": "data",
                    "symmetric": False,
                    "array": [s.high - s.share for s in got],
                    "arrayminus": [s.share - s.low for s in got],
                    "color": "#333333",
                    "thickness": 1.5,
                },
                text=[f"{s.share:.2f}{' ✱' if s.shown else ''}" for s in got],
                textposition="outside",
                cliponaxis=False,
                hovertemplate="%{y}: %{x:.3f}<extra>" + _name(name) + "</extra>",
            ),
            row=1,
            col=1,
        )
    if info.across is not None and info.across.shares:
        inter = info.across.shares["optimizer x weight_decay"]
        notes.append(
            f"optimizer × wd explains {inter.share:.2f} [{inter.low:.2f}, {inter.high:.2f}]"
        )
    fig.update_xaxes(range=[0, 1.15], title_text="share of variance", row=1, col=1)
    fig.update_layout(barmode="group")
    if pooled_col:
        _pooled_bars(fig, info, pooled_col)
    by_epoch = info.per_epoch_by_optimizer
    names = list(dict.fromkeys(e.optimizer for e in by_epoch))
    for k, name in enumerate(names):
        for t, dash in (("lr", "solid"), ("weight_decay", "dot")):
            rows = [e for e in by_epoch if e.optimizer == name and e.result.shares]
            if not rows:
                continue
            xs = [e.epoch for e in rows]
            shares = [e.result.shares[t] for e in rows]  # type: ignore[index]
            colour = _colour(name, k)
            fig.add_trace(
                go.Scatter(
                    x=xs + xs[::-1],
                    y=[s.high for s in shares] + [s.low for s in shares][::-1],
                    fill="toself",
                    fillcolor=_rgba(colour, 0.12),
                    line={"width": 0},
                    hoverinfo="skip",
                    showlegend=False,
                ),
                row=1,
                col=epoch_col,
            )
            fig.add_trace(
                go.Scatter(
                    x=xs,
                    y=[s.share for s in shares],
                    mode="lines+markers",
                    name=f"{_name(name)} {LABELS.get(t, t)}",
                    line={"color": colour, "width": 2, "dash": dash},
                    customdata=[[s.low, s.high] for s in shares],
                    hovertemplate="epoch %{x}: %{y:.3f} [%{customdata[0]:.2f}, "
                    "%{customdata[1]:.2f}]<extra>" + f"{_name(name)} {LABELS.get(t, t)}</extra>",
                ),
                row=1,
                col=epoch_col,
            )
    if not any(e.result.shares for e in by_epoch):
        fig.add_annotation(
            text="no epoch with enough trials",
            xref=f"x{epoch_col} domain",
            yref=f"y{epoch_col} domain",
            x=0.5,
            y=0.5,
            showarrow=False,
        )
    epochs = sorted({e.epoch for e in by_epoch})
    fig.update_xaxes(
        title_text="epoch", dtick=1 if len(epochs) <= 20 else None, row=1, col=epoch_col
    )
    fig.update_yaxes(title_text="share of variance", range=[0, 1], row=1, col=epoch_col)
    sub = f"{info.n_complete} completed trials"
    if notes:  # the interaction share and per-optimizer notes lead: they are the answer
        sub += "; " + "; ".join(notes)
    if info.notes:
        sub += "<br>" + "; ".join(info.notes)
    fig = _base(fig, f"{title} <sup>({sub})</sup>", 500)
    fig.update_layout(margin={"b": 130}, legend={"y": -0.25, "yanchor": "top"})
    return fig


def _pooled_bars(fig: go.Figure, info: ImportanceInfo, col: int) -> None:
    """Optuna's pooled PED-ANOVA and fANOVA as bars in subplot ``col`` (opt-in)."""
    pooled = [(label, r) for label, r in (("PED-ANOVA", info.ped_anova), ("fANOVA", info.fanova))]
    if all(r is None for _, r in pooled):
        fig.add_annotation(
            text="not enough data" if info.n_complete < 8 else "no variance to attribute",
            xref=f"x{col} domain",
            yref=f"y{col} domain",
            x=0.5,
            y=0.5,
            showarrow=False,
        )
    order = list(reversed(info.params))
    for k, (label, r) in enumerate(pooled):
        if r is None:
            continue
        fig.add_trace(
            go.Bar(
                x=[r.get(p, 0.0) for p in order],
                y=[LABELS.get(p, p) for p in order],
                orientation="h",
                name=label,
                marker={"color": ("#999999", "#555555")[k]},
                text=[f"{r.get(p, 0.0):.2f}" for p in order],
                textposition="auto",
                hovertemplate="%{y}: %{x:.3f}<extra>" + label + "</extra>",
            ),
            row=1,
            col=col,
        )
    fig.update_xaxes(range=[0, 1], title_text="share", row=1, col=col)


def _param_colour(name: str) -> str:
    return {"lr": "#0072B2", "weight_decay": "#009E73", "optimizer": "#E69F00"}.get(name, "#CC79A7")


# --------------------------------------------------------------------------- 5. curves


def _joined(curves: Sequence[Curve]) -> tuple[NDArray[np.float64], ...]:
    """All ``curves`` as one trace's arrays, each curve ended by a NaN (a gap in the line).

    One trace per group instead of one per trial: a 1,000-trial study draws in a blink, and
    numeric arrays (trial number, lr, wd as customdata) serialise without Python loops.
    """
    n = sum(len(c.epochs) + 1 for c in curves)
    x = np.full(n, np.nan)
    y = np.full(n, np.nan)
    data = np.full((n, 3), np.nan)
    i = 0
    for c in curves:
        k = len(c.epochs)
        x[i : i + k] = c.epochs
        y[i : i + k] = c.values
        data[i : i + k] = (
            c.number,
            c.lr if c.lr is not None else np.nan,
            c.weight_decay if c.weight_decay is not None else np.nan,
        )
        i += k + 1
    return x, y, data


CURVE_HOVER = (
    "trial %{customdata[0]}: lr %{customdata[1]:.3g}, wd %{customdata[2]:.3g}"
    "<br>epoch %{x}: val acc %{y:.4f}<extra>%{fullData.name}</extra>"
)


def curves_figure(info: CurvesInfo) -> go.Figure:
    """Validation accuracy per epoch of every trial; pruned dotted and ending in a cross; best red.

    With several optimizers, completed curves take the optimizer's colour.
    """
    title = "Learning curves"
    if not info.curves:
        return empty_figure(title, "No trial has reported an epoch yet.")
    fig = go.Figure()
    names = sorted({c.optimizer for c in info.curves}, key=lambda n: (n != "adamw", n))
    several = len(names) > 1
    styles: dict[str, dict[str, Any]] = {
        "complete": {"width": 1},
        "pruned": {"color": "rgba(120,120,120,0.35)", "width": 1, "dash": "dot"},
        "running": {"color": "rgba(0,158,115,0.8)", "width": 1.5},
        "fail": {"color": "rgba(213,94,0,0.5)", "width": 1, "dash": "dash"},
    }
    for state, style in styles.items():
        for k, name in enumerate(names):
            group = [
                c
                for c in info.curves
                if c.state == state and c.optimizer == name and c.number != info.best_number
            ]
            if not group:
                continue
            line: dict[str, Any] = dict(style)
            if state == "complete":
                line["color"] = _rgba(_colour(name, k), 0.35)
            label = f"{state}{' · ' + _name(name) if several else ''} ({len(group)})"
            x, y, data = _joined(group)
            fig.add_trace(
                go.Scatter(
                    x=x,
                    y=y,
                    customdata=data,
                    mode="lines",
                    line=line,
                    name=label,
                    hovertemplate=CURVE_HOVER,
                    connectgaps=False,
                )
            )
            if state == "pruned":
                ends = np.array(
                    [
                        [
                            c.epochs[-1],
                            c.values[-1],
                            c.number,
                            c.lr or np.nan,
                            c.weight_decay or np.nan,
                        ]
                        for c in group
                    ]
                )
                fig.add_trace(
                    go.Scatter(
                        x=ends[:, 0],
                        y=ends[:, 1],
                        customdata=ends[:, 2:],
                        mode="markers",
                        marker={
                            "symbol": "x-thin-open",
                            "size": 7,
                            "line": {"width": 1.5},
                            "color": "#666666",
                        },
                        name="where pruned" + (f" · {_name(name)}" if several else ""),
                        hovertemplate=CURVE_HOVER,
                    )
                )
    best = [c for c in info.curves if c.number == info.best_number]
    if best:
        x, y, data = _joined(best)
        fig.add_trace(
            go.Scatter(
                x=x,
                y=y,
                customdata=data,
                mode="lines+markers",
                line={"color": BEST_COLOUR, "width": 3},
                marker={"size": 7},
                name=f"best trial #{best[0].number} ({_name(best[0].optimizer)})",
                hovertemplate=CURVE_HOVER,
            )
        )
    fig.update_xaxes(
        title_text="epoch", dtick=1 if max(max(c.epochs) for c in info.curves) <= 20 else None
    )
    fig.update_yaxes(title_text="validation accuracy")
    sub = f"{len(info.curves)} trials" + (
        f"; {info.n_silent} reported no epoch" if info.n_silent else ""
    )
    # The legend goes below the plot: above it, it covered the title's subtitle.
    fig = _base(fig, f"{title} <sup>({sub})</sup>", 500)
    fig.update_layout(legend={"orientation": "h", "y": -0.2, "yanchor": "top", "x": 0.0})
    return fig


def _rgba(hex_colour: str, alpha: float) -> str:
    r, g, b = (int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


# --------------------------------------------------------------------------- 6. history, timeline


def history_figure(info: HistoryInfo) -> go.Figure:
    """Each trial's value by trial number, and the best completed value so far."""
    title = "Optimization history"
    if not info.numbers:
        return empty_figure(title, "No finished trial yet.")
    fig = go.Figure()
    for state, symbol, colour, label in (
        ("complete", "circle", STATE_COLOURS["complete"], "completed"),
        ("pruned", "x-thin-open", STATE_COLOURS["pruned"], "pruned (last reported)"),
    ):
        idx = [i for i, s in enumerate(info.states) if s == state]
        if not idx:
            continue
        fig.add_trace(
            go.Scatter(
                x=_num([info.numbers[i] for i in idx]),
                y=_num([info.values[i] for i in idx]),
                mode="markers",
                marker={
                    "symbol": symbol,
                    "color": colour,
                    "size": 6,
                    "opacity": 0.7,
                    "line": {"width": 1.5, "color": colour},
                },
                name=label,
                hovertemplate="trial %{x}: %{y:.4f}<extra>" + label + "</extra>",
            )
        )
    if info.best_numbers:
        fig.add_trace(
            go.Scatter(
                x=_num(info.best_numbers),
                y=_num(info.best_so_far),
                mode="lines",
                line={"shape": "hv", "color": BEST_COLOUR, "width": 2.5},
                name="best so far",
                hovertemplate="after trial %{x}: best %{y:.4f}<extra></extra>",
            )
        )
    fig.update_xaxes(title_text="trial number")
    fig.update_yaxes(title_text="validation accuracy")
    return _legend_on_top(_base(fig, title, 420))


def timeline_figure(info: TimelineInfo) -> go.Figure:
    """One row per worker, one bar per trial over wall-clock time, coloured by state."""
    title = "Timeline: trials per worker over wall time"
    if not info.bars:
        return empty_figure(title, "No trial has started yet.")
    fig = go.Figure()
    for state in ("complete", "pruned", "fail", "running", "waiting"):
        bars = [b for b in info.bars if b.state == state]
        if not bars:
            continue
        fig.add_trace(
            go.Bar(
                base=_obj([b.start.isoformat() for b in bars]),
                x=_num([max((b.end - b.start).total_seconds(), 0.5) * 1000.0 for b in bars]),
                y=_obj([b.worker for b in bars]),
                orientation="h",
                marker={"color": STATE_COLOURS[state], "line": {"width": 0.5, "color": "white"}},
                name=f"{state} ({len(bars)})",
                customdata=_obj(
                    [
                        [b.number, b.start.strftime("%H:%M:%S"), (b.end - b.start).total_seconds()]
                        for b in bars
                    ]
                ),
                hovertemplate="trial %{customdata[0]} on %{y}<br>start %{customdata[1]}, "
                "%{customdata[2]:.0f} s<extra>" + state + "</extra>",
            )
        )
    fig.update_layout(barmode="overlay", bargap=0.3)
    fig.update_xaxes(type="date", title_text="wall time")
    fig.update_yaxes(
        title_text="worker (host:pid)",
        categoryorder="array",
        categoryarray=list(reversed(info.workers)),
    )
    fig = _base(
        fig, f"{title} <sup>({len(info.workers)} workers)</sup>", 160 + 40 * len(info.workers)
    )
    return _legend_on_top(fig)
