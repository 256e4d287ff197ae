"""Where the tests write what a person may want to look at afterwards."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
# Screenshots the browser tests keep (git-ignored): look at them after a run.
SCREENSHOTS = REPO_ROOT / "artifacts" / "screenshots"
