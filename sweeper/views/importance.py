"""View 6, importance: which hyperparameter matters.

The info and its extraction, ``ImportanceInfo`` and ``importance_info(snap)``, live with the
statistics they report (``sweeper.analysis.importance``) and are re-exported here;
``importance_figure(info)`` draws the per-optimizer shares with their intervals, Optuna's
pooled evaluators when they ran, and the shares per epoch.
"""

from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from sweeper.analysis.importance import ImportanceInfo, importance_info
from sweeper.views.style import (
    LABELS,
    empty_figure,
    optimizer_colour,
    optimizer_label,
    page_layout,
    rgba,
)

# The info and its extraction live with the statistics they report (sweeper.analysis).
__all__ = ["ImportanceInfo", "importance_figure", "importance_info"]


TERM_LABELS = {
    t: LABELS.get(t, t.replace("weight_decay", "wd"))
    for t in ("lr", "weight_decay", "lr x weight_decay")
}


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
    titles = ["per optimizer (95% bootstrap; ✱ the claim says it matters)"]
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
    # Numeric rows, one per term, each optimizer's bar at its own offset within the row:
    # its label can then stand at exactly its bar's height, past the whisker's end.
    drawn = [(name, d) for name, d in info.by_optimizer if d.shares is not None]
    width = 0.8 / max(len(drawn), 1)
    for name, d in info.by_optimizer:
        if d.shares is None:
            notes.append(f"{optimizer_label(name)}: {d.note}")
    for k, (name, d) in enumerate(drawn):
        assert d.shares is not None
        term_rows = [i for i, t in enumerate(terms) if t in d.shares]
        got = [d.shares[terms[i]] for i in term_rows]
        centre = (k - (len(drawn) - 1) / 2) * width
        fig.add_trace(
            go.Bar(
                x=[s.share for s in got],
                y=term_rows,
                orientation="h",
                offset=centre - width / 2,
                width=width,
                name=optimizer_label(name),
                marker={"color": optimizer_colour(name, k)},
                error_x={
                    "type": "data",
                    "symmetric": False,
                    "array": [s.high - s.share for s in got],
                    "arrayminus": [s.share - s.low for s in got],
                    "color": "#333333",
                    "thickness": 1.5,
                },
                customdata=[TERM_LABELS[terms[i]] for i in term_rows],
                hovertemplate="%{customdata}: %{x:.3f}<extra>" + optimizer_label(name) + "</extra>",
            ),
            row=1,
            col=1,
        )
        # Each label stands past its whisker's end: on the bar's end it sat on the whisker.
        fig.add_trace(
            go.Scatter(
                x=[s.high + 0.02 for s in got],
                y=[i + centre for i in term_rows],
                mode="text",
                text=[f"{s.share:.2f}{' ✱' if s.shown else ''}" for s in got],
                textposition="middle right",
                cliponaxis=False,
                showlegend=False,
                hoverinfo="skip",
                name=f"{optimizer_label(name)} shares",
            ),
            row=1,
            col=1,
        )
    fig.update_yaxes(
        tickvals=list(range(len(terms))),
        ticktext=[TERM_LABELS[t] for t in terms],
        range=[-0.6, len(terms) - 0.4],
        row=1,
        col=1,
    )
    if info.across is not None and info.across.shares:
        inter = info.across.shares["optimizer x weight_decay"]
        notes.append(
            f"optimizer × wd explains {inter.share:.2f} [{inter.low:.2f}, {inter.high:.2f}]"
        )
    fig.update_xaxes(range=[0, 1.3], title_text="share of variance", row=1, col=1)
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
            colour = optimizer_colour(name, k)
            fig.add_trace(
                go.Scatter(
                    x=xs + xs[::-1],
                    y=[s.high for s in shares] + [s.low for s in shares][::-1],
                    fill="toself",
                    fillcolor=rgba(colour, 0.12),
                    # Without a mode plotly.js adds markers to short traces: unlabelled
                    # dots at the band's corners.
                    mode="lines",
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
                    name=f"{optimizer_label(name)} {LABELS.get(t, t)}",
                    line={"color": colour, "width": 2, "dash": dash},
                    customdata=[[s.low, s.high] for s in shares],
                    hovertemplate="epoch %{x}: %{y:.3f} [%{customdata[0]:.2f}, "
                    "%{customdata[1]:.2f}]<extra>"
                    + f"{optimizer_label(name)} {LABELS.get(t, t)}</extra>",
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
    fig = page_layout(fig, f"{title} <sup>({sub})</sup>", 500)
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
