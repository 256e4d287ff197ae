"""View 8, optimization history: each trial's final value by trial number, and the best so far.

``history_info(snap)`` (the running best counts COMPLETE trials only); ``history_figure(info)``.
"""

from __future__ import annotations

from typing import NamedTuple

import plotly.graph_objects as go
from optuna.trial import TrialState

from sweeper.snapshot import StudySnapshot, better, final_value
from sweeper.views.style import (
    BEST_COLOUR,
    STATE_COLOURS,
    as_floats,
    empty_figure,
    legend_on_top,
    page_layout,
)


class HistoryInfo(NamedTuple):
    """Final values by trial number and the best value so far after each completed trial."""

    numbers: tuple[int, ...]
    values: tuple[float, ...]
    states: tuple[str, ...]  # "complete" or "pruned" (last reported value)
    best_numbers: tuple[int, ...]
    best_so_far: tuple[float, ...]


def history_info(snap: StudySnapshot) -> HistoryInfo:
    """Values over trial numbers; the running best counts COMPLETE trials only."""
    rows = sorted(
        (t.number, final_value(t), t.state)
        for t in snap.trials
        if t.state in (TrialState.COMPLETE, TrialState.PRUNED)
    )
    rows_v = [(n, v, s) for n, v, s in rows if v is not None]
    best_numbers, best_so_far = [], []
    best: float | None = None
    for n, v, s in rows_v:
        if s == TrialState.COMPLETE and (best is None or better(snap, v, best)):
            best = v
        if best is not None:
            best_numbers.append(n)
            best_so_far.append(best)
    return HistoryInfo(
        numbers=tuple(n for n, _, _ in rows_v),
        values=tuple(v for _, v, _ in rows_v),
        states=tuple(s.name.lower() for _, _, s in rows_v),
        best_numbers=tuple(best_numbers),
        best_so_far=tuple(best_so_far),
    )


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
                x=as_floats([info.numbers[i] for i in idx]),
                y=as_floats([info.values[i] for i in idx]),
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
                x=as_floats(info.best_numbers),
                y=as_floats(info.best_so_far),
                mode="lines",
                line={"shape": "hv", "color": BEST_COLOUR, "width": 2.5},
                name="best so far",
                hovertemplate="after trial %{x}: best %{y:.4f}<extra></extra>",
            )
        )
    fig.update_xaxes(title_text="trial number")
    fig.update_yaxes(title_text="validation accuracy")
    return legend_on_top(page_layout(fig, title, 420))
