"""notebooks/lr_wd_analysis.ipynb runs top to bottom against a real study (nbclient)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import nbclient
import nbformat
import pytest
from dashboard.factory import GRID, add_grid

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "lr_wd_analysis.ipynb"


def test_notebook_executes_against_a_study(
    storage_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_grid(storage_url)
    # The parameters cell reads these, as a user's shell would provide them.
    monkeypatch.setenv("SWEEPER_STORAGE", storage_url)
    monkeypatch.setenv("SWEEPER_STUDY", GRID)
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert any("parameters" in c.metadata.get("tags", []) for c in nb.cells)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), "commit it clean"
    client = nbclient.NotebookClient(
        nb,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
    )
    client.execute(env=dict(os.environ))  # raises CellExecutionError on any failing cell

    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    figures = [o for o in outputs if "application/vnd.plotly.v1+json" in o.get("data", {})]
    # landscape, slices, decoupling, comparison, decay, importance, curves, history, timeline
    assert len(figures) == 9
    titles = [
        json.dumps(f["data"]["application/vnd.plotly.v1+json"]["layout"]["title"]) for f in figures
    ]
    assert any("Adam vs AdamW" in t for t in titles)
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert f"study '{GRID}': 32 trials" in text
    assert "adamw: slope of log best-lr against log wd = " in text
    assert "32 configurations, 0 with seed replicates" in text
    assert "left out (coupled L2, no (1 - lr*wd) decay): adam" in text
    # The same claims as `sweeper best`, each of one of the three kinds.
    assert "claims (margin ±1 points, each right 95% of the time):" in text
    assert "  matters: lr matters (adamw)" in text
    assert "corrected for being the best of 32" in text
    html = "".join(o.get("data", {}).get("text/html", "") for o in outputs)
    assert "<th>best single run</th>" in html and "id='summary-claims'" in html
    assert "Traceback" not in text
