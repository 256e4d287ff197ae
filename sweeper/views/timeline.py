"""View 9, timeline: trials per worker process over wall time.

``timeline_info(snap)`` gives one bar per started trial (a running trial ends at the
snapshot's time); ``timeline_figure(info)`` draws one row per worker (host:pid).
"""

from __future__ import annotations

import datetime as dt
from typing import NamedTuple

import plotly.graph_objects as go

from sweeper import attrs
from sweeper.snapshot import StudySnapshot
from sweeper.views.style import (
    STATE_COLOURS,
    as_floats,
    as_objects,
    empty_figure,
    legend_on_top,
    page_layout,
)


class TimelineBar(NamedTuple):
    """One trial's run on one worker; ``end`` is the snapshot time for a running trial."""

    number: int
    worker: str
    start: dt.datetime
    end: dt.datetime
    state: str


class TimelineInfo(NamedTuple):
    bars: tuple[TimelineBar, ...]
    workers: tuple[str, ...]  # sorted; "unknown" for trials without a recorded worker


def timeline_info(snap: StudySnapshot) -> TimelineInfo:
    """Trials over wall time per worker (trials that never started are left out)."""
    bars = []
    for t in snap.trials:
        if t.datetime_start is None:
            continue
        end = t.datetime_complete or max(snap.taken_at, t.datetime_start)
        bars.append(
            TimelineBar(
                number=t.number,
                worker=str(t.user_attrs.get(attrs.WORKER, "unknown")),
                start=t.datetime_start,
                end=end,
                state=t.state.name.lower(),
            )
        )
    bars.sort(key=lambda b: (b.start, b.number))
    return TimelineInfo(tuple(bars), tuple(sorted({b.worker for b in bars})))


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
                base=as_objects([b.start.isoformat() for b in bars]),
                x=as_floats([max((b.end - b.start).total_seconds(), 0.5) * 1000.0 for b in bars]),
                y=as_objects([b.worker for b in bars]),
                orientation="h",
                marker={"color": STATE_COLOURS[state], "line": {"width": 0.5, "color": "white"}},
                name=f"{state} ({len(bars)})",
                customdata=as_objects(
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
    fig = page_layout(
        fig, f"{title} <sup>({len(info.workers)} workers)</sup>", 160 + 40 * len(info.workers)
    )
    return legend_on_top(fig)
