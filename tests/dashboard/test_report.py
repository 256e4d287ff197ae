"""The report: one offline HTML file with every view and the summary table."""

from __future__ import annotations

import re
from pathlib import Path

import optuna
from optuna.trial import TrialState

from sweeper.dashboard.report import render_report, summary_html, write_report
from sweeper.snapshot import from_trials, snapshot
from sweeper.storage import open_storage
from sweeper.views.summary import summary_info

from .factory import SWEEP, make_trial

PANELS = (
    "landscape",
    "slices",
    "decoupling",
    "comparison",
    "decay",
    "importance",
    "curves",
    "history",
    "timeline",
)


def test_report_holds_every_view_and_needs_no_network(shared_url: str, tmp_path: Path) -> None:
    storage = open_storage(shared_url)
    snap = snapshot(optuna.load_study(study_name=SWEEP, storage=storage), storage)
    out = tmp_path / "report.html"
    write_report(snap, out)
    text = out.read_text(encoding="utf-8")
    for key in PANELS:
        assert f"id='{key}'" in text and f'id="fig-{key}"' in text, key
    # plotly.js is inlined once; no script or stylesheet is fetched from anywhere.
    assert text.count("plotly.js v") == 1
    assert not re.search(r"<script[^>]+src=", text)
    assert not re.search(r"<link[^>]+href=", text)
    # Summary: counts per state and the best trial with its provenance.
    counts = {s: sum(1 for t in snap.trials if t.state == s) for s in TrialState}
    assert f"<th>complete</th><td class='num'>{counts[TrialState.COMPLETE]}</td>" in text
    assert f"<th>pruned</th><td class='num'>{counts[TrialState.PRUNED]}</td>" in text
    assert f"<th>failed</th><td class='num'>{counts[TrialState.FAIL]}</td>" in text
    best = max((t for t in snap.trials if t.state == TrialState.COMPLETE), key=lambda t: t.value)
    assert f"<th>best single run</th><td>#{best.number}</td>" in text
    assert f"<th>worker</th><td>{best.user_attrs['worker']}</td>" in text
    assert "CUDA error: out of memory" in text  # failure reasons are listed
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically, nothing left over


def test_everything_from_the_study_is_escaped() -> None:
    hostile = "<script>alert(1)</script>"
    t = make_trial(0, lr=2e-4, wd=1e-3, state=TrialState.FAIL, curve={}, fail_reason=hostile)
    ok = make_trial(1, lr=2e-4, wd=1e-3, curve={1: 0.5})
    ok.user_attrs["worker"] = hostile
    snap = from_trials([t, ok], name=hostile)
    snap = snap._replace(user_attrs={"spec": {"name": hostile}})
    html = render_report(snap)
    assert hostile not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert hostile not in summary_html(summary_info(snap))
