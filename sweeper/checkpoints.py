"""Per-epoch trial checkpoints, so a re-run of a trial whose worker died resumes.

Contract: ``CheckpointStore(root)`` keeps one file per (study, original trial number) at
``root/<study>/trial-<n>.pt``. ``save`` is atomic (write, then rename), so a crash leaves the
previous checkpoint intact; ``load`` returns None when there is none or it is unreadable;
``remove`` is called when the trial finishes for good. A retried trial finds its original's
checkpoint through the original's number. The root should be shared storage when retries
may land on another host; otherwise a retry elsewhere starts from epoch 0.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Any

import platformdirs
import torch

ENV_VAR = "SWEEPER_CHECKPOINTS"


def default_root() -> Path:
    """``$SWEEPER_CHECKPOINTS``, else ``$SWEEPER_HOME/checkpoints``, else the user data dir."""
    configured = os.environ.get(ENV_VAR)
    if configured:
        return Path(configured)
    home = os.environ.get("SWEEPER_HOME")
    base = Path(home) if home else Path(platformdirs.user_data_dir("sweeper"))
    return base / "checkpoints"


class CheckpointStore:
    """Checkpoint files of trials; see the module docstring."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or default_root()

    def path(self, study_name: str, trial_number: int) -> Path:
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", study_name)
        return self.root / safe / f"trial-{trial_number}.pt"

    def save(self, study_name: str, trial_number: int, state: dict[str, Any]) -> Path:
        target = self.path(study_name, trial_number)
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=".pt")
        os.close(handle)
        try:
            torch.save(state, tmp)
            Path(tmp).replace(target)
        finally:
            Path(tmp).unlink(missing_ok=True)
        return target

    def load(self, study_name: str, trial_number: int) -> dict[str, Any] | None:
        target = self.path(study_name, trial_number)
        if not target.exists():
            return None
        try:
            state: dict[str, Any] = torch.load(target, map_location="cpu", weights_only=True)
        except Exception:  # unreadable: start the trial over rather than fail it
            return None
        return state

    def remove(self, study_name: str, trial_number: int) -> None:
        self.path(study_name, trial_number).unlink(missing_ok=True)
