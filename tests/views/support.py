"""What the view tests share: snapshots of hand-made trials and of known-truth studies, and
lookups into a drawn figure."""

from __future__ import annotations

import optuna
import plotly.graph_objects as go

from sweeper.snapshot import StudySnapshot, from_trials


def snap_of(*trials: optuna.trial.FrozenTrial, maximize: bool = True) -> StudySnapshot:
    return from_trials(trials, name="t", maximize=maximize)


def traces(fig: go.Figure, name_part: str) -> list:
    return [t for t in fig.data if t.name and name_part in t.name]


def axis_types(fig: go.Figure, prefix: str) -> set[str]:
    layout = fig.layout.to_plotly_json()
    return {v.get("type") for k, v in layout.items() if k.startswith(prefix)}


def snap(builder):  # type: ignore[no-untyped-def]
    trials, spec = builder()
    return from_trials(trials, name=spec["name"])._replace(user_attrs={"spec": spec})
