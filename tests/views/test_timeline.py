"""``views.timeline`` (and the curves of running trials): a running trial extends to the
snapshot's time.
"""

from __future__ import annotations

from dashboard.factory import (
    make_trial,
)
from optuna.trial import TrialState

from sweeper.views.curves import curves_info
from sweeper.views.timeline import timeline_info
from views.support import snap_of


def test_running_trials_extend_to_the_snapshot_time() -> None:
    done = make_trial(0, lr=2e-4, wd=1e-3, curve={1: 0.5})
    running = make_trial(1, lr=3e-4, wd=1e-3, state=TrialState.RUNNING, curve={1: 0.45})
    snap = snap_of(done, running)
    bars = {b.number: b for b in timeline_info(snap).bars}
    assert bars[1].end == snap.taken_at and bars[1].state == "running"
    assert [c.state for c in curves_info(snap).curves] == ["complete", "running"]
