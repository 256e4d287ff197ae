"""The look every view shares: colours, axis styles, the page layout, the empty figure.

Promises: accuracy keeps one perceptually uniform scale (Viridis); each optimizer keeps one
colour on every figure (AdamW blue, Adam orange: the Okabe-Ito pair); lr, weight decay and
lr x wd are drawn on log axes (they are searched log-uniformly). Nothing here reads a study.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
from numpy.typing import NDArray

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


def as_floats(values: Sequence[Any]) -> NDArray[np.float64]:
    """Per-trial numbers as a float array (None -> NaN, a gap): Plotly validates a list
    element by element (50 ms per 10,000-point trace on a 2-core VM) and an array in one
    copy, and serialises it as one typed array."""
    return np.array(values, dtype=float)


def as_objects(values: Sequence[Any]) -> NDArray[Any]:
    """Per-trial strings (or mixed rows) as an object array (the reason: ``as_floats``)."""
    return np.array(values, dtype=object)


def optimizer_colour(optimizer: str, index: int = 0) -> str:
    """The optimizer's colour; another optimizer takes the ``index``-th spare colour."""
    return OPTIMIZER_COLOURS.get(optimizer, OTHER_COLOURS[index % len(OTHER_COLOURS)])


def optimizer_label(optimizer: str) -> str:
    """How an optimizer is named on a page: AdamW, Adam, else as recorded."""
    return {"adamw": "AdamW", "adam": "Adam"}.get(optimizer, optimizer)


def white_template(fig: go.Figure) -> None:
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


def page_layout(fig: go.Figure, title: str, height: int) -> go.Figure:
    """``fig`` with the layout every view shares: white template, title, height, font,
    margins, the legend below."""
    white_template(fig)
    fig.update_layout(
        title={"text": title, "x": 0.01, "xanchor": "left"},
        height=height,
        font=FONT,
        margin={"l": 70, "r": 30, "t": 80, "b": 60},
        legend={"orientation": "h", "y": -0.18, "x": 0.0},
    )
    return fig


def legend_on_top(fig: go.Figure) -> go.Figure:
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
    return page_layout(fig, title, height)


def decimals(x: float | None, digits: int = 4) -> str:
    """``x`` with ``digits`` decimals, or "–" when it is missing or not finite."""
    return "–" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def log_range(bounds: tuple[float, float], pad: float = 0.04) -> list[float]:
    """A log axis's range (in decades) covering ``bounds`` with ``pad`` of its span each side."""
    lo, hi = math.log10(bounds[0]), math.log10(bounds[1])
    span = hi - lo
    return [lo - pad * span, hi + pad * span]


def accuracy_colours(zrange: tuple[float, float], colorbar: bool) -> dict[str, Any]:
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


def rgba(hex_colour: str, alpha: float) -> str:
    """``#rrggbb`` as a CSS ``rgba()`` with opacity ``alpha``."""
    r, g, b = (int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"
