"""View 7, learning curves: validation accuracy after every epoch, per trial.

``curves_info(snap)`` collects every trial that reported (any state) and the best trial;
``curves_figure(info)`` draws them, pruned trials dotted and ending in a cross at the epoch
they were stopped, the best red. A trial the curve pruner stopped also shows the forecast
that decided (``attrs.FORECAST``): its later epochs' 95% band and mean, from the stop on,
and the line it had too little chance to reach.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import plotly.graph_objects as go
from numpy.typing import NDArray
from optuna.trial import TrialState

from sweeper import attrs
from sweeper.snapshot import StudySnapshot, best_trial, curve_of, lr_wd, optimizer_of
from sweeper.views.style import (
    BEST_COLOUR,
    empty_figure,
    optimizer_colour,
    optimizer_label,
    page_layout,
    rgba,
)


class Curve(NamedTuple):
    """One trial's validation accuracy per epoch."""

    number: int
    state: str  # "complete", "pruned", "running", "fail"
    optimizer: str
    epochs: tuple[int, ...]
    values: tuple[float, ...]
    lr: float | None
    weight_decay: float | None
    forecast: Forecast | None = None  # the curve pruner's, when it stopped this trial


class Forecast(NamedTuple):
    """What the curve pruner forecast when it stopped a trial (``attrs.FORECAST``)."""

    epochs: tuple[int, ...]  # the epoch it stopped at, then every later one
    mean: tuple[float, ...]  # from the last value seen, then the forecast means
    low: tuple[float, ...]  # 95% band, likewise
    high: tuple[float, ...]
    target: float  # the line it had less than ``chance`` of reaching
    chance: float


def _forecast(note: Any, last: tuple[int, float]) -> Forecast | None:
    """The stored note as a band that starts at the trial's last value; None if malformed."""
    try:
        epochs = (last[0], *(int(e) for e in note["epochs"]))
        mean, low, high = ((last[1], *(float(v) for v in note[k])) for k in ("mean", "low", "high"))
        if not len(epochs) == len(mean) == len(low) == len(high):
            return None
        return Forecast(epochs, mean, low, high, float(note["target"]), float(note["chance"]))
    except (KeyError, TypeError, ValueError):
        return None


class CurvesInfo(NamedTuple):
    """Curves of every trial that reported; ``n_silent`` trials reported nothing."""

    curves: tuple[Curve, ...]
    best_number: int | None
    n_silent: int


def curves_info(snap: StudySnapshot) -> CurvesInfo:
    """Learning curves of all trials that reported at least one epoch (any state)."""
    curves, silent = [], 0
    for t in snap.trials:
        if t.state == TrialState.WAITING:
            continue
        curve = curve_of(t)
        if not curve:
            silent += 1
            continue
        xy = lr_wd(t)
        curves.append(
            Curve(
                number=t.number,
                state=t.state.name.lower(),
                optimizer=optimizer_of(t),
                epochs=tuple(e for e, _ in curve),
                values=tuple(v for _, v in curve),
                lr=xy[0] if xy else None,
                weight_decay=xy[1] if xy else None,
                forecast=(
                    _forecast(t.user_attrs[attrs.FORECAST], curve[-1])
                    if t.state == TrialState.PRUNED and attrs.FORECAST in t.user_attrs
                    else None
                ),
            )
        )
    best = best_trial(snap)
    return CurvesInfo(tuple(curves), best.number if best else None, silent)


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


def _forecast_traces(fig: go.Figure, stopped: Sequence[Curve]) -> None:
    """The curve pruner's forecasts: every band as one filled trace (a gap between bands),
    their means dashed, each trial's target as a short tick at its last epoch."""
    if not stopped:
        return
    xs: list[float] = []
    ys: list[float] = []
    mx: list[float] = []
    my: list[float] = []
    hover: list[str] = []
    for c in stopped:
        f = c.forecast
        assert f is not None
        xs += [*f.epochs, *reversed(f.epochs), np.nan]
        ys += [*f.high, *reversed(f.low), np.nan]
        mx += [*f.epochs, np.nan]
        my += [*f.mean, np.nan]
        note = (
            f"trial {c.number}, stopped after epoch {f.epochs[0]}: {100 * f.chance:.1f}% chance "
            f"to end above {f.target:.3f} (within noise of the best)"
        )
        hover += [note] * len(f.epochs) + [""]
    fig.add_trace(
        go.Scatter(
            x=xs, y=ys, mode="lines", fill="toself", fillcolor="rgba(120,120,120,0.12)",
            line={"width": 0}, hoverinfo="skip", name="forecast when stopped (95%)",
        )
    )  # fmt: skip
    fig.add_trace(
        go.Scatter(
            x=mx, y=my, mode="lines", line={"color": "rgba(90,90,90,0.6)", "width": 1,
            "dash": "dash"}, text=hover, hovertemplate="%{text}<extra></extra>",
            name="forecast mean", connectgaps=False,
        )
    )  # fmt: skip
    ends = [(c.forecast.epochs[-1], c.forecast.target) for c in stopped if c.forecast]
    fig.add_trace(
        go.Scatter(
            x=[e for e, _ in ends], y=[t for _, t in ends], mode="markers",
            marker={"symbol": "line-ew-open", "size": 12, "color": "#666666"},
            name="what it had to reach", hovertemplate="target %{y:.3f}<extra></extra>",
        )
    )  # fmt: skip


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
                line["color"] = rgba(optimizer_colour(name, k), 0.35)
            label = f"{state}{' · ' + optimizer_label(name) if several else ''} ({len(group)})"
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
                        name="where pruned" + (f" · {optimizer_label(name)}" if several else ""),
                        hovertemplate=CURVE_HOVER,
                    )
                )
    _forecast_traces(fig, [c for c in info.curves if c.forecast is not None])
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
                name=f"best trial #{best[0].number} ({optimizer_label(best[0].optimizer)})",
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
    fig = page_layout(fig, f"{title} <sup>({sub})</sup>", 500)
    fig.update_layout(legend={"orientation": "h", "y": -0.2, "yanchor": "top", "x": 0.0})
    return fig
