"""Per-epoch trial checkpoints, so a re-run of a trial whose worker died resumes.

Contract: a ``Checkpoint`` is a trial's trainer state after some epochs (one member as
``sweeper.train.trainer.Trainer.member_state`` writes it: ``model``, ``optimizer``,
``scheduler``) and the validation accuracy of each of those epochs. On disk it is the dict
``{"trainer": ..., "history": [...]}``, the layout every earlier sweeper wrote, so their
checkpoints still resume. ``CheckpointStore(root)`` keeps one file per (study, first trial
of the retry series) at ``root/<study>/trial-<n>.pt``. ``save`` is atomic (write, then
rename), so a crash leaves the previous checkpoint intact; ``load`` returns None when there
is none or it is unreadable; ``remove`` is called when the trial finishes for good. The root
should be shared storage when retries may land on another host; otherwise a retry elsewhere
starts from epoch 0.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Checkpoint:
    """A trial after ``len(history)`` epochs; see the module docstring."""

    trainer: dict[str, Any]
    history: list[float]

    @property
    def epochs(self) -> int:
        return len(self.history)

    def to_dict(self) -> dict[str, Any]:
        return {"trainer": self.trainer, "history": list(self.history)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Checkpoint:
        return cls(trainer=data["trainer"], history=[float(a) for a in data["history"]])


class CheckpointStore:
    """Checkpoint files of trials; see the module docstring."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or default_root()

    def path(self, study_name: str, trial_number: int) -> Path:
        """``root/<study>/trial-<n>.pt``. A name that is not a plain file name gets a short
        hash of itself appended, so that names differing only in such characters ("a/b",
        "a_b") never share a folder; plain names keep the folder earlier sweepers used."""
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", study_name)
        if safe != study_name or safe in (".", ".."):
            safe += "-" + hashlib.sha256(study_name.encode()).hexdigest()[:8]
        return self.root / safe / f"trial-{trial_number}.pt"

    def save(self, study_name: str, trial_number: int, checkpoint: Checkpoint) -> Path:
        target = self.path(study_name, trial_number)
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=".pt")
        os.close(handle)
        try:
            torch.save(checkpoint.to_dict(), tmp)
            Path(tmp).replace(target)
        finally:
            Path(tmp).unlink(missing_ok=True)
        return target

    def load(self, study_name: str, trial_number: int) -> Checkpoint | None:
        target = self.path(study_name, trial_number)
        if not target.exists():
            return None
        try:
            data = torch.load(target, map_location="cpu", weights_only=True)
            return Checkpoint.from_dict(data)
        except Exception:  # unreadable or malformed: start the trial over rather than fail it
            return None

    def remove(self, study_name: str, trial_number: int) -> None:
        self.path(study_name, trial_number).unlink(missing_ok=True)
