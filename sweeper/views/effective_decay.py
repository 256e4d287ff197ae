"""View 5, effective decay: how long AdamW's weight decay remembers, in epochs.

``effective_decay_info(snap)`` places AdamW's configurations at (lr, 1 / (lr * wd * steps per
epoch)) with the same decay-axis check ``sweeper best`` prints (``analysis.decay``);
``effective_decay_figure(info)`` draws them against the band where the decay has acted by the
end of a run.
"""

from __future__ import annotations

import math
import textwrap
from typing import Any, NamedTuple

import numpy as np
import plotly.graph_objects as go

from sweeper import attrs
from sweeper.analysis import noise
from sweeper.analysis.decay import (
    DEFAULT_TRAIN_SIZE,
    DecayCheck,
    Schedule,
    decay_check,
    memory_epochs,
    schedule,
)
from sweeper.analysis.study_model import adamw_space, noise_of, setup
from sweeper.snapshot import StudySnapshot, TrialPoint, optimizers, trial_points
from sweeper.views.style import (
    LOG_AXIS,
    accuracy_colours,
    empty_figure,
    log_range,
    optimizer_label,
    page_layout,
)

# When neither the spec nor the trials record the schedule (a study made by hand): the
# tutorial's batch of 32 on CIFAR-10's 50,000 training images, the spec's defaults. The view's
# title then says it assumed them.
ASSUMED_BATCH = 32


class EffectiveDecayInfo(NamedTuple):
    """AdamW's trials on the axes its weight decay really sets: lr and the decay's memory
    1 / (lr * wd * steps per epoch), in epochs (``sweeper.analysis.decay``).


    ``configs`` are AdamW's completed configurations (mean over seeds) and ``memory`` their
    memories; ``pruned`` / ``pruned_memory`` the pruned AdamW trials. ``check`` is the same
    judgement ``sweeper best`` and the report print (``decay.decay_check`` on
    ``adamw_space``), or None when the study records no schedule; ``assumed`` then says which
    schedule the memories assume. Adam's coupled L2 does not shrink weights by (1 - lr * wd)
    per step, so other optimizers are left out and named in ``left_out``.
    """

    configs: tuple[noise.Config, ...]
    memory: tuple[float, ...]
    pruned: tuple[TrialPoint, ...]
    pruned_memory: tuple[float, ...]
    lr_bounds: tuple[float, float]
    wd_bounds: tuple[float, float]  # the AdamW space: its edges bound the memories drawn
    steps_per_epoch: int
    epochs: int | None  # of a full run; None when unknown
    assumed: str  # "" when the schedule comes from the study's spec
    check: DecayCheck | None
    left_out: tuple[str, ...]  # optimizers whose trials are not drawn
    value_range: tuple[float, float] | None


def _recorded_steps(snap: StudySnapshot) -> int | None:
    """The steps per epoch AdamW's trials recorded (the most common value), or None."""
    counts: dict[int, int] = {}
    for t in snap.trials:
        steps = t.user_attrs.get(attrs.STEPS_PER_EPOCH)
        if isinstance(steps, int) and not isinstance(steps, bool) and steps > 0:
            counts[steps] = counts.get(steps, 0) + 1
    return max(counts, key=lambda k: counts[k]) if counts else None


def effective_decay_info(snap: StudySnapshot) -> EffectiveDecayInfo:
    """AdamW's configurations placed at (lr, memory in epochs), with the decay-axis check."""
    points = trial_points(snap)
    st = setup(snap)
    space = adamw_space(snap, points)
    reached = max((p.epoch for p in points if p.epoch is not None), default=None)
    sched, assumed = st.schedule, ""
    recorded = _recorded_steps(snap)
    if sched is None and recorded is not None:
        sched = Schedule(reached or 1, recorded)
    elif sched is None:
        sched = schedule(reached or 1, ASSUMED_BATCH, None)
        assumed = (
            f"ASSUMED: neither the study's spec nor its trials record the steps per epoch; "
            f"memories assume {sched.steps_per_epoch:,} ({DEFAULT_TRAIN_SIZE:,} images, batch "
            f"{ASSUMED_BATCH}): with fewer training images every memory is longer in proportion"
        )
    spe = sched.steps_per_epoch
    configs = sorted(
        (
            c
            for c in noise_of(snap).configs
            if c.optimizer == "adamw" and c.lr is not None and c.weight_decay is not None
        ),
        key=lambda c: c.numbers[0],
    )
    pruned = tuple(p for p in points if p.optimizer == "adamw" and p.state == "pruned")
    values = [c.mean for c in configs]
    lr_b, wd_b = space or ((1e-4, 1e-3), (1e-4, 1e-2))  # sweeper's default space
    return EffectiveDecayInfo(
        configs=tuple(configs),
        memory=tuple(memory_epochs(c.lr, c.weight_decay, spe) for c in configs),  # type: ignore[arg-type]
        pruned=pruned,
        pruned_memory=tuple(memory_epochs(p.lr, p.weight_decay, spe) for p in pruned),
        lr_bounds=lr_b,
        wd_bounds=wd_b,
        steps_per_epoch=spe,
        epochs=st.schedule.epochs if st.schedule else reached,
        assumed=assumed,
        # The same judgement `sweeper best` and the report print, on the same box.
        check=decay_check(space[0], space[1], st.schedule) if space and st.schedule else None,
        left_out=tuple(n for n in optimizers(snap) if n != "adamw"),
        value_range=(min(values), max(values)) if values else None,
    )


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
    if info.assumed:
        title += " <sup>(steps per epoch ASSUMED: see below)</sup>"
    if not info.configs and not info.pruned:
        why = (
            "No AdamW trial: "
            + ", ".join(optimizer_label(n) for n in info.left_out)
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
                    **accuracy_colours(zr, not bar_drawn),
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
    fig.update_xaxes(**LOG_AXIS, title_text="learning rate (log)", range=log_range(info.lr_bounds))
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
            ", ".join(optimizer_label(n) for n in info.left_out)
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
    fig = page_layout(fig, f"{title} <sup>({sub})</sup>", height)
    fig.update_layout(
        margin={"t": top, "b": bottom},
        legend={"orientation": "h", "x": 0.0, "y": -legend_px / plot_px, "yanchor": "top"},
    )
    return fig
