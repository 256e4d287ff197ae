"""View 4, slices: accuracy against one hyperparameter at a time (Optuna's ``plot_slice``).

``slice_info(snap)`` gives one point per configuration of the noise model (seed replicates
are one point with its 95% interval); ``slice_figure(info)`` draws accuracy against lr
coloured by wd, and against wd coloured by lr.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from sweeper.analysis import noise
from sweeper.analysis.study_model import noise_of
from sweeper.snapshot import LR, WD, StudySnapshot, axis_bounds, optimizers, trial_points
from sweeper.views.style import (
    LOG_AXIS,
    empty_figure,
    log_range,
    optimizer_label,
    page_layout,
)


class SliceInfo(NamedTuple):
    """Accuracy against one hyperparameter at a time (Optuna's ``plot_slice``), one point per
    configuration of the noise model, so seed replicates are one point with their interval.


    ``configs`` are the completed configurations with an lr and a wd (AdamW's first, then in
    trial order); each carries its mean over seeds, ``n`` and the noise model's 95% interval
    ``low``..``high``. The figure draws that interval as an error bar where ``n >= 2``: a
    single run's interval rests on the pooled estimate alone, so ``single_run_halfwidth``
    (t x the per-run sd at the median accuracy) is stated once instead of drawn on every
    point. Pruned trials are left out (their accuracy is from an earlier epoch) and counted.
    """

    configs: tuple[noise.Config, ...]
    optimizers: tuple[str, ...]
    lr_bounds: tuple[float, float]
    wd_bounds: tuple[float, float]
    n_replicated: int  # configurations with two or more runs
    single_run_halfwidth: float | None  # None when the noise is unknown
    noise: str  # where the per-run sd comes from (the noise model's one line)
    n_pruned: int


def slice_info(snap: StudySnapshot) -> SliceInfo:
    """Every completed configuration's mean and 95% interval, placed at its lr and wd."""
    model = noise_of(snap)
    points = trial_points(snap)
    names = optimizers(snap)
    configs = sorted(
        (c for c in model.configs if c.lr is not None and c.weight_decay is not None),
        key=lambda c: (names.index(c.optimizer) if c.optimizer in names else 0, c.numbers[0]),
    )
    half = None
    if model.sd_run is not None and configs:
        middle = float(np.median([c.mean for c in configs]))
        sd = model.sd_run
        if model.n_val is not None:
            sd = max(sd, noise.floor_sd(middle, model.n_val))
        half = model.t * sd
    return SliceInfo(
        configs=tuple(configs),
        optimizers=tuple(n for n in names if any(c.optimizer == n for c in configs)),
        lr_bounds=axis_bounds(snap, LR, [p.lr for p in points]),
        wd_bounds=axis_bounds(snap, WD, [p.weight_decay for p in points]),
        n_replicated=sum(1 for c in configs if c.n >= 2),
        single_run_halfwidth=half,
        noise=model.source,
        n_pruned=sum(1 for p in points if p.state == "pruned"),
    )


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
            for prefix in [optimizer_label(name) + ": " if several else ""]
            for text in (
                f"{prefix}accuracy vs lr (colour: weight decay)",
                f"{prefix}accuracy vs weight decay (colour: lr)",
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
                        "<br>first trial %{customdata[3]}<extra>"
                        + optimizer_label(name)
                        + "</extra>",
                    ),
                    row=row,
                    col=col,
                )
        fig.update_xaxes(
            **LOG_AXIS,
            title_text="learning rate (log)",
            range=log_range(info.lr_bounds),
            row=row,
            col=1,
        )
        fig.update_xaxes(
            **LOG_AXIS,
            title_text="weight decay (log)",
            range=log_range(info.wd_bounds),
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
    fig = page_layout(fig, f"{title}<br><sup>({sub})</sup>", 440 * rows + 120)
    fig.update_layout(margin={"t": 110, "b": 110}, legend={"y": -0.22 / rows, "yanchor": "top"})
    return fig
