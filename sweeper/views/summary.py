"""The summary above the figures: counts per state, the best trial with its provenance, the
best configuration as the noise model allows, and failures with their reasons.

``summary_info(snap)``; the report and the live page render it as HTML
(``sweeper.dashboard.report.summary_html``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any, NamedTuple

from optuna.trial import TrialState

from sweeper import attrs
from sweeper.analysis.best import BestInfo
from sweeper.analysis.study_model import best_of
from sweeper.errors import one_line
from sweeper.snapshot import StudySnapshot, best_trial, lr_wd

# What a worker records on every trial, shown with the best trial, in this order.
PROVENANCE_KEYS = (attrs.SEED, attrs.EPOCHS_RUN, attrs.OPTIMIZER, *attrs.PROVENANCE)


# Failure reasons listed in the summary; the rest are counted.
MAX_FAILURES_LISTED = 10


class BestTrial(NamedTuple):
    number: int
    value: float
    params: dict[str, Any]
    provenance: dict[str, str]  # PROVENANCE_KEYS present on the trial, as text
    start: dt.datetime | None
    complete: dt.datetime | None


class SummaryInfo(NamedTuple):
    """Counts per state, the best trial with provenance, failures with their reasons."""

    study: str
    metric: str
    direction: str
    n_trials: int
    counts: dict[str, int]  # complete, pruned, fail, running, waiting (always all five)
    best: BestTrial | None
    failures: tuple[tuple[int, str], ...]  # (number, reason), at most MAX_FAILURES_LISTED
    n_without_lr_wd: int  # finished trials that lack lr or weight_decay
    spec: Mapping[str, Any] | None
    answer: BestInfo | None = None  # the best configuration as the noise model allows


def summary_info(snap: StudySnapshot) -> SummaryInfo:
    """The summary table's content."""
    counts = {s: 0 for s in ("complete", "pruned", "fail", "running", "waiting")}
    for t in snap.trials:
        counts[t.state.name.lower()] = counts.get(t.state.name.lower(), 0) + 1
    best = best_trial(snap)
    best_row = None
    if best is not None:
        best_row = BestTrial(
            number=best.number,
            value=float(best.value),  # type: ignore[arg-type]
            params=dict(best.params),
            provenance={
                k: str(best.user_attrs[k]) for k in PROVENANCE_KEYS if k in best.user_attrs
            },
            start=best.datetime_start,
            complete=best.datetime_complete,
        )
    failed = [t for t in snap.trials if t.state == TrialState.FAIL]
    failures = tuple(
        (t.number, one_line(str(t.user_attrs.get(attrs.FAIL_REASON, "no reason recorded")), 200))
        for t in failed[:MAX_FAILURES_LISTED]
    )
    finished = [t for t in snap.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    spec = snap.user_attrs.get(attrs.SPEC)
    return SummaryInfo(
        study=snap.name,
        metric=str(snap.user_attrs.get("metric", "value")),
        direction="maximize" if snap.maximize else "minimize",
        n_trials=len(snap.trials),
        counts=counts,
        best=best_row,
        failures=failures,
        n_without_lr_wd=sum(1 for t in finished if lr_wd(t) is None),
        spec=spec if isinstance(spec, Mapping) else None,
        answer=best_of(snap),
    )
