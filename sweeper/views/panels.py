"""The list of views every surface shows: the report, the live page and the notebook.

``build_views(snap)`` runs every extraction once (the landscape's GP is fitted once and reused
by the decoupling view); ``panels(views)`` turns them into titled, captioned figures in the
order a reader should meet them. Adding a view means adding its module under
``sweeper/views/`` and one line here; all three surfaces then show it.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import NamedTuple

import plotly.graph_objects as go

from sweeper.snapshot import StudySnapshot
from sweeper.views import (
    adam_vs_adamw,
    curves,
    decoupling,
    effective_decay,
    history,
    importance,
    landscape,
    slices,
    timeline,
)
from sweeper.views.adam_vs_adamw import ComparisonInfo
from sweeper.views.curves import CurvesInfo
from sweeper.views.decoupling import DecouplingInfo
from sweeper.views.effective_decay import EffectiveDecayInfo
from sweeper.views.history import HistoryInfo
from sweeper.views.importance import ImportanceInfo
from sweeper.views.landscape import LandscapeInfo
from sweeper.views.slices import SliceInfo
from sweeper.views.style import optimizer_label
from sweeper.views.summary import SummaryInfo, summary_info
from sweeper.views.timeline import TimelineInfo


class Views(NamedTuple):
    """Every view's data for one snapshot."""

    summary: SummaryInfo
    landscape: LandscapeInfo
    slices: SliceInfo
    decoupling: DecouplingInfo
    comparison: ComparisonInfo
    decay: EffectiveDecayInfo
    importance: ImportanceInfo
    curves: CurvesInfo
    history: HistoryInfo
    timeline: TimelineInfo


class Panel(NamedTuple):
    """A figure with the words around it. ``key`` is stable: it names the page element."""

    key: str
    title: str
    caption: str
    figure: go.Figure


def build_views(
    snap: StudySnapshot, evaluators: Collection[str] = (), summary: SummaryInfo | None = None
) -> Views:
    """Extract every view from ``snap`` (pure; the GP is fitted once, here).

    ``evaluators`` names Optuna's pooled importance evaluators to run as well (opt-in:
    ``sweeper.analysis.importance``); ``summary``, when given, is ``summary_info(snap)``
    already computed (the live page shows it first).
    """
    land = landscape.landscape_info(snap)
    return Views(
        summary=summary if summary is not None else summary_info(snap),
        landscape=land,
        slices=slices.slice_info(snap),
        decoupling=decoupling.decoupling_info(snap, land),
        comparison=adam_vs_adamw.comparison_info(snap),
        decay=effective_decay.effective_decay_info(snap),
        importance=importance.importance_info(snap, evaluators),
        curves=curves.curves_info(snap),
        history=history.history_info(snap),
        timeline=timeline.timeline_info(snap),
    )


def panels(views: Views) -> list[Panel]:
    """The figures in reading order, each with a caption that says how to read it."""
    names = [h.optimizer for h in views.comparison.heatmaps]
    both = len(names) > 1
    return [
        Panel(
            "landscape",
            "Where are the good learning rates and weight decays?",
            "Each marker is a trial on log-log axes: circles completed (colour = final validation "
            "accuracy), crosses pruned (shade = the epoch it reached). Under them, a Gaussian "
            "process fitted on log lr and log wd to the completed trials. Where the fit is "
            "uncertain the surface fades to white and the right panel turns dark: no trial "
            "supports the colour there. The dotted line bounds the region the data pin down.",
            landscape.landscape_figure(views.landscape),
        ),
        Panel(
            "slices",
            "Accuracy against each hyperparameter alone",
            "Left: accuracy against learning rate, coloured by weight decay; right: against "
            "weight decay, coloured by learning rate (Optuna's slice plot). One marker per "
            "configuration: seed replicates of a configuration are one diamond at their mean, "
            "its bar the noise model's 95% interval; circles are single runs, each as noisy "
            "as the subtitle says. A trend smaller than that noise is not a trend.",
            slices.slice_figure(views.slices),
        ),
        Panel(
            "decoupling",
            "Are lr and weight decay decoupled?",
            "Left: in each band of weight decay, the lr of the best configuration (markers; "
            "each bar spans the lrs within noise of that best, and a hollow marker is a band "
            "flat within noise, where the best is noise and no line is drawn) and where the GP "
            "surface peaks (dashed). A level line means the best lr does not depend on wd, "
            "AdamW's claim; a line falling with slope -1 means only lr x wd matters, as with "
            "Adam's coupled L2. The slope in the title, with its 95% interval, is the ridge of "
            "the claims' fitted surface. Middle: the same question the other way round. Right: "
            "accuracy against lr x wd, the decay applied per step.",
            decoupling.decoupling_figure(views.decoupling),
        ),
        Panel(
            "comparison",
            "Adam vs AdamW"
            if both
            else f"{optimizer_label(names[0]) if names else 'Optimizer'} heatmap",
            "Mean final accuracy of completed trials in each lr x wd cell, one heatmap per "
            "optimizer on one colour scale (Loshchilov & Hutter's figure). AdamW's good region "
            "should run parallel to the axes, Adam's along the diagonal."
            + (
                ""
                if both
                else " This study ran one optimizer; run studies/adam_vs_adamw.toml "
                "for the side-by-side comparison."
            ),
            adam_vs_adamw.comparison_figure(views.comparison),
        ),
        Panel(
            "decay",
            "Can weight decay matter over this run?",
            "AdamW multiplies every weight by (1 − lr·wd) each step, so its decay forgets over "
            "1/(lr·wd) steps (Wang & Aitchison, ICML 2025), drawn here in epochs against lr. "
            "Inside the green band that memory is shorter than the run and the decay has acted "
            "by the end; far above it, weight decay cannot have done much, and a flat wd axis "
            "is what the study should find. Dashed lines bound the searched wd range.",
            effective_decay.effective_decay_figure(views.decay),
        ),
        Panel(
            "importance",
            "Which hyperparameter matters?",
            _importance_caption(views.importance),
            importance.importance_figure(views.importance),
        ),
        Panel(
            "curves",
            "Learning curves",
            "Validation accuracy after every epoch. Pruned trials are dotted and end in a cross "
            "where the pruner stopped them; the best trial is red.",
            curves.curves_figure(views.curves),
        ),
        Panel(
            "history",
            "Optimization history",
            "Each trial's final accuracy by trial number (pruned: the last accuracy it "
            "reported) and the best completed accuracy so far.",
            history.history_figure(views.history),
        ),
        Panel(
            "timeline",
            "Workers at work",
            "One row per worker process (host:pid), one bar per trial from its start to its "
            "end. Running trials extend to the moment the page was built.",
            timeline.timeline_figure(views.timeline),
        ),
    ]


def _importance_caption(info: ImportanceInfo) -> str:
    words = (
        "Left: per optimizer, each hyperparameter's share of the variance of a smooth fit to "
        "the completed trials (lr, wd and their interaction, in the log units they were "
        "sampled in), with 95% bootstrap intervals; ✱ marks a share larger than noise alone "
        "gives. With several optimizers, the subtitle says how much the optimizer x wd "
        "interaction explains. Right: the same shares at each epoch over every trial that "
        "reported it, pruned ones included; late epochs only see the trials the pruner let "
        "through."
    )
    if info.evaluators:
        return words + (
            " Middle: Optuna's PED-ANOVA and fANOVA over all completed trials, every "
            "optimizer pooled: with several optimizers they mix answers that differ."
        )
    return words + (
        " Optuna's pooled PED-ANOVA and fANOVA were not run (they pool the optimizers); "
        "`--evaluators ped-anova,fanova` adds them."
    )
