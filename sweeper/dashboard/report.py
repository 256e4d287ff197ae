"""The HTML report: one self-contained file with every view and a summary table.

Promises:

- ``render_report(snap)`` returns one HTML document that opens with no network: plotly.js
  (from the installed plotly package) is inlined once in the head, every figure follows as
  a div and a call into it; nothing is fetched from a CDN or elsewhere.
- Everything the study holds (its name, params, failure reasons, provenance, the spec) is
  HTML-escaped before it reaches the page.
- ``summary_html`` is also the live page's summary, so both show the same table.
"""

from __future__ import annotations

import datetime as dt
import html
import json
from collections.abc import Collection
from pathlib import Path
from typing import Any

import plotly.io as pio
from plotly.offline import get_plotlyjs

from sweeper.analysis.best import BestInfo, optimism
from sweeper.snapshot import StudySnapshot
from sweeper.views.panels import Panel, build_views, panels
from sweeper.views.summary import SummaryInfo

# Plotly's modebar shows a logo linking to plotly.com; a page meant for offline use drops it.
PLOTLY_CONFIG = {"displaylogo": False, "responsive": True}

PAGE_CSS = """
body { font-family: "DejaVu Sans", Arial, sans-serif; margin: 0 auto; max-width: 1400px;
       padding: 1em 2em; color: #222; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.25em; margin: 1.6em 0 0.2em; border-bottom: 1px solid #ddd; }
p.caption { color: #444; max-width: 75em; margin: 0.2em 0 0.6em; line-height: 1.4; }
p.meta { color: #666; margin-top: 0; }
table.summary { border-collapse: collapse; margin: 0.5em 2em 0.5em 0; vertical-align: top;
                display: inline-table; }
table.summary th, table.summary td { border: 1px solid #ddd; padding: 0.25em 0.7em;
                                     text-align: left; font-size: 0.95em; }
table.summary th { background: #f4f6f8; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
details { margin: 0.6em 0; } pre { background: #f7f7f7; padding: 0.7em; overflow-x: auto; }
.figure { min-height: 300px; }
"""


def _escaped(x: Any) -> str:
    """``x`` as text safe inside HTML (a study's names and spec come from its users)."""
    return html.escape(str(x))


def _time(t: dt.datetime | None) -> str:
    return t.strftime("%Y-%m-%d %H:%M:%S") if t else "–"


def summary_html(info: SummaryInfo) -> str:
    """The summary tables: trials by state, the best trial with params and provenance,
    failures with their reasons, and the study spec (collapsed)."""
    c = info.counts
    counts = "".join(
        f"<tr><th>{label}</th><td class='num'>{c.get(key, 0)}</td></tr>"
        for key, label in (
            ("complete", "complete"),
            ("pruned", "pruned"),
            ("fail", "failed"),
            ("running", "running"),
            ("waiting", "waiting"),
        )
    )
    parts = [
        "<table class='summary' id='summary-counts'>"
        f"<tr><th>trials</th><td class='num'>{info.n_trials}</td></tr>{counts}</table>"
    ]
    a = info.answer
    if a is not None and a.best is not None:
        parts.append(_answer_html(a))
    if info.best is not None:
        b = info.best
        rows = [
            ("best single run", f"#{b.number}"),
            (f"{info.metric} ({info.direction})", f"{b.value:.4f}"),
        ]
        rows += [(k, f"{v:.4g}" if isinstance(v, float) else v) for k, v in b.params.items()]
        rows += [(k, v) for k, v in b.provenance.items() if k not in b.params]
        rows += [("started", _time(b.start)), ("completed", _time(b.complete))]
        parts.append(
            "<table class='summary' id='summary-best'>"
            + "".join(f"<tr><th>{_escaped(k)}</th><td>{_escaped(v)}</td></tr>" for k, v in rows)
            + "</table>"
        )
    else:
        parts.append("<p id='summary-best'>No completed trial yet: no best trial.</p>")
    if info.failures:
        more = c.get("fail", 0) - len(info.failures)
        parts.append(
            "<table class='summary' id='summary-failures'>"
            "<tr><th>failed trial</th><th>reason</th></tr>"
            + "".join(f"<tr><td>#{n}</td><td>{_escaped(r)}</td></tr>" for n, r in info.failures)
            + (f"<tr><td colspan='2'>… and {more} more</td></tr>" if more > 0 else "")
            + "</table>"
        )
    if info.n_without_lr_wd:
        parts.append(
            f"<p>{info.n_without_lr_wd} finished trials have no lr or weight_decay parameter "
            "and are left out of the lr × wd views.</p>"
        )
    if info.spec is not None:
        spec = json.dumps(info.spec, indent=2, sort_keys=True, default=str)
        parts.append(f"<details><summary>study spec</summary><pre>{_escaped(spec)}</pre></details>")
    return "<div class='summary'>" + "".join(parts) + "</div>"


def _answer_html(a: BestInfo) -> str:
    """The verdict, the best configuration corrected for selection, and every claim with its
    test and what would settle it: the same text ``sweeper best`` prints."""
    cfg, est = a.best, a.estimate
    assert cfg is not None
    where = f"lr {cfg.lr:.3g}, wd {cfg.weight_decay:.3g}" if cfg.lr and cfg.weight_decay else ""
    if est is not None:
        value = (
            f"{est.estimate:.4f} (95% CI {est.low:.4f}..{est.high:.4f}), corrected for being "
            f"chosen as the best of {est.k}; its mean {cfg.mean:.4f} over {cfg.n} seed(s)"
        )
    else:
        value = f"mean {cfg.mean:.4f} over {cfg.n} seed(s) (noise unknown)"
    lift = optimism(a)
    claims = "".join(
        f"<li class='claim claim-{c.kind.replace(' ', '-')}'><b>{_escaped(c.kind)}</b>: "
        + _escaped(c.sentence)
        + (f"<br><i>to settle it:</i> {_escaped(c.settle)}" if c.settle else "")
        + "</li>"
        for c in a.claims.claims
    )
    note = f"<li>{_escaped(a.claims.note)}</li>" if a.claims.note else ""
    return (
        "<div id='summary-verdict'><p><b>"
        + _escaped(a.verdict)
        + "</b></p><p>best configuration: "
        + _escaped(f"{cfg.optimizer} {where}: {value}")
        + (f"<br>{_escaped(lift)}" if lift else "")
        + "<br>noise: "
        + _escaped(a.model.source)
        + "</p>"
        + (
            f"<p>claims (margin ±{100 * a.claims.margin:g} points, 95% each):</p>"
            f"<ul id='summary-claims'>{claims}{note}</ul>"
            if claims
            else ""
        )
        + (
            f"<p class='warning'>⚠ {_escaped(a.decay.warning)}</p>"
            if a.decay and a.decay.warning
            else ""
        )
        + "</div>"
    )


def figure_div(panel: Panel) -> str:
    """One panel's heading, caption and figure (no plotly.js: the page provides it)."""
    div = pio.to_html(
        panel.figure,
        full_html=False,
        include_plotlyjs=False,
        div_id=f"fig-{panel.key}",
        config=PLOTLY_CONFIG,
        default_height=f"{panel.figure.layout.height or 450}px",
    )
    return (
        f"<section id='{panel.key}'><h2>{_escaped(panel.title)}</h2>"
        f"<p class='caption'>{_escaped(panel.caption)}</p><div class='figure'>{div}</div></section>"
    )


def render_report(snap: StudySnapshot, evaluators: Collection[str] = ()) -> str:
    """The whole report for ``snap`` as one offline HTML document (``evaluators``: Optuna's
    pooled importance evaluators to add, see ``sweeper.analysis.importance``)."""
    views = build_views(snap, evaluators)
    body = "".join(figure_div(p) for p in panels(views))
    title = f"sweeper report: {snap.name}"
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{_escaped(title)}</title><style>{PAGE_CSS}</style>"
        f"<script type='text/javascript'>{get_plotlyjs()}</script></head><body>"
        f"<h1>{_escaped(title)}</h1>"
        f"<p class='meta'>{views.summary.n_trials} trials, read {_time(snap.taken_at)}. "
        "Hover any point for its trial; drag to zoom, double-click to reset.</p>"
        f"{summary_html(views.summary)}{body}</body></html>"
    )


def write_report(snap: StudySnapshot, path: Path, evaluators: Collection[str] = ()) -> None:
    """Write the report to ``path`` (atomically: a reader never sees half a file, and a
    failed write leaves none)."""
    from sweeper.dashboard.output import write_atomically

    text = render_report(snap, evaluators)
    write_atomically(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
