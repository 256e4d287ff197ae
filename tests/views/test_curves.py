"""``views.curves``: a trial the curve pruner stopped shows the forecast that decided."""

from __future__ import annotations

from dashboard.factory import make_trial
from optuna.trial import TrialState

from sweeper import attrs
from sweeper.views.curves import curves_figure, curves_info
from views.support import snap_of, traces

NOTE = {
    "epoch": 2,
    "epochs": [3, 4],
    "mean": [0.22, 0.24],
    "low": [0.18, 0.19],
    "high": [0.26, 0.29],
    "best": 0.6,
    "target": 0.572,
    "chance": 0.001,
    "threshold": 0.05,
}


def _stopped(note: object) -> list:
    done = make_trial(0, lr=1e-3, wd=1e-3, curve={1: 0.4, 2: 0.5, 3: 0.55, 4: 0.6})
    stopped = make_trial(1, lr=1e-4, wd=1e-3, state=TrialState.PRUNED, curve={1: 0.15, 2: 0.2})
    stopped.user_attrs[attrs.FORECAST] = note
    median = make_trial(2, lr=2e-4, wd=1e-3, state=TrialState.PRUNED, curve={1: 0.3})
    return [done, stopped, median]


def test_the_band_starts_at_the_last_value_and_reaches_the_last_epoch() -> None:
    info = curves_info(snap_of(*_stopped(NOTE)))
    by = {c.number: c for c in info.curves}
    f = by[1].forecast
    assert f is not None and by[2].forecast is None and by[0].forecast is None
    assert f.epochs == (2, 3, 4) and f.mean == (0.2, 0.22, 0.24)
    assert f.low == (0.2, 0.18, 0.19) and f.high == (0.2, 0.26, 0.29)
    assert f.target == 0.572 and f.chance == 0.001

    fig = curves_figure(info)
    (band,) = traces(fig, "forecast when stopped")
    assert band.fill == "toself"
    assert list(band.x[:6]) == [2, 3, 4, 4, 3, 2] and list(band.y[:6]) == [
        0.2, 0.26, 0.29, 0.19, 0.18, 0.2,
    ]  # fmt: skip
    (mean,) = traces(fig, "forecast mean")
    assert "stopped after epoch 2: 0.1% chance to end above 0.572" in mean.text[0]
    (target,) = traces(fig, "what it had to reach")
    assert list(target.x) == [4] and list(target.y) == [0.572]


def test_a_malformed_note_draws_no_band() -> None:
    for note in ({"epochs": [3]}, {**NOTE, "mean": [0.2]}, "text", {**NOTE, "target": "x"}):
        info = curves_info(snap_of(*_stopped(note)))
        assert all(c.forecast is None for c in info.curves)
        assert not traces(curves_figure(info), "forecast")
