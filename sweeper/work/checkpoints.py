"""Per-epoch trial checkpoints, so a re-run of a trial whose worker died resumes.

Contract: a ``Checkpoint`` is a trial's trainer state after some epochs (one member as
``sweeper.train.trainer.Trainer.member_state`` writes it: ``model``, ``optimizer``,
``scheduler``) and the validation accuracy of each of those epochs. On disk it is the dict
``{"trainer": ..., "history": [...], "owner": ...}``. ``owner`` binds it to the one retry
series that wrote it (``Owner``: the study's name and identity, and the first trial of the
series); the identity (``study_identity``) is the database server's system identifier, the
database's name and the study's id, so studies of one name in two databases (or on two
servers) never share a checkpoint, and studies made before it existed need nothing new.

``CheckpointStore(root)`` keeps one file per owner at ``root/<study>/<identity
hash>/trial-<n>.pt``. ``save`` is atomic (write, then rename), so a crash leaves the
previous checkpoint intact; a write that fails (a full disk above all) raises
``CheckpointError`` with one line, leaving no partial file. ``load`` returns None when there
is none, and raises ``CheckpointError`` for a file that must not be trained on: unreadable,
malformed, written for another owner (or by an earlier sweeper, which bound none), or
holding as many epochs as the trial has or more. ``Checkpoint.check`` does the same against
the model it is to be loaded into. ``remove`` is called when the trial finishes for good.
The root should be shared storage when retries may land on another host; otherwise a retry
elsewhere starts from epoch 0.
"""

from __future__ import annotations

import errno
import hashlib
import io
import math
import os
import re
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import optuna
import platformdirs
import sqlalchemy
import torch

from sweeper.errors import one_line

ENV_VAR = "SWEEPER_CHECKPOINTS"


def default_root() -> Path:
    """``$SWEEPER_CHECKPOINTS``, else ``$SWEEPER_HOME/checkpoints``, else the user data dir."""
    configured = os.environ.get(ENV_VAR)
    if configured:
        return Path(configured)
    home = os.environ.get("SWEEPER_HOME")
    base = Path(home) if home else Path(platformdirs.user_data_dir("sweeper"))
    return base / "checkpoints"


class CheckpointError(Exception):
    """A checkpoint that cannot be written, or must not be trained on; one line."""


@dataclass(frozen=True)
class Owner:
    """The one retry series a checkpoint belongs to; see the module docstring."""

    study_name: str
    study_identity: str  # see ``study_identity``
    series: int  # the first trial of the retry series


def study_identity(storage: optuna.storages.RDBStorage, study_name: str) -> str:
    """``<system identifier>/<database>/<study id>``: differs between any two studies that
    are not the same row of the same database. A server that hides its system identifier
    (a revoked ``pg_control_system``) is named by its address and port instead."""
    study_id = storage.get_study_id_from_name(study_name)
    with storage.engine.connect() as conn:
        database = conn.execute(sqlalchemy.text("SELECT current_database()")).scalar_one()
        try:
            with conn.begin_nested():
                server = conn.execute(
                    sqlalchemy.text("SELECT system_identifier::text FROM pg_control_system()")
                ).scalar_one()
        except sqlalchemy.exc.DBAPIError:
            server = conn.execute(
                sqlalchemy.text("SELECT concat(inet_server_addr(), ':', inet_server_port())")
            ).scalar_one()
    return f"{server}/{database}/{study_id}"


@dataclass(frozen=True)
class Checkpoint:
    """A trial after ``len(history)`` epochs; see the module docstring."""

    trainer: dict[str, Any]
    history: list[float]

    @property
    def epochs(self) -> int:
        return len(self.history)

    def to_dict(self, owner: Owner) -> dict[str, Any]:
        return {"trainer": self.trainer, "history": list(self.history), "owner": asdict(owner)}

    @classmethod
    def from_dict(cls, data: Any, owner: Owner) -> Checkpoint:
        """The checkpoint in ``data`` if ``owner`` wrote it; ``CheckpointError`` otherwise."""
        if not isinstance(data, dict) or not {"trainer", "history"} <= data.keys():
            keys = sorted(map(str, data)) if isinstance(data, dict) else type(data).__name__
            raise CheckpointError(f"malformed (holds {keys}, not trainer and history)")
        written = data.get("owner")
        if written is None:
            raise CheckpointError("written by an earlier sweeper, bound to no study")
        if not isinstance(written, dict):
            raise CheckpointError("malformed (its owner is not a study and trial)")
        if written != asdict(owner):
            raise CheckpointError(
                f"written by trial {written.get('series')} of study "
                f"{written.get('study_name')!r} in {written.get('study_identity')}, "
                f"not by trial {owner.series} of {owner.study_name!r} in {owner.study_identity}"
            )
        history = data["history"]
        if not isinstance(history, list) or not all(
            isinstance(a, float | int) and math.isfinite(a) for a in history
        ):
            raise CheckpointError("malformed history (not a list of finite accuracies)")
        trainer = data["trainer"]
        parts = {"model", "optimizer", "scheduler"}
        if not isinstance(trainer, dict) or not parts <= trainer.keys():
            raise CheckpointError("malformed trainer state (not model, optimizer, scheduler)")
        return cls(trainer=trainer, history=[float(a) for a in history])

    def check(self, model: torch.nn.Module, epochs: int) -> None:
        """``CheckpointError`` unless this resumes a trial of ``epochs`` epochs in ``model``:
        1 to ``epochs - 1`` epochs done (the last epoch is never checkpointed), the model's
        exact keys and shapes, optimizer moments shaped like the parameters they belong to,
        a learning rate and a scheduler state."""
        if not 1 <= self.epochs < epochs:
            raise CheckpointError(f"holds {self.epochs} epochs of a trial of {epochs}")
        weights, expected = self.trainer["model"], model.state_dict()
        if not isinstance(weights, dict) or weights.keys() != expected.keys():
            raise CheckpointError("malformed model state (not this model's parameters)")
        for name, tensor in expected.items():
            if not isinstance(weights[name], torch.Tensor) or weights[name].shape != tensor.shape:
                raise CheckpointError(f"malformed model state ({name} has the wrong shape)")
        optimizer = self.trainer["optimizer"]
        params = list(model.parameters())
        try:
            float(optimizer["param_groups"][0]["lr"])
            states = optimizer["state"].items()
        except (KeyError, IndexError, TypeError, ValueError, AttributeError):
            raise CheckpointError("malformed optimizer state (no lr or state)") from None
        for index, state in states:
            if not isinstance(index, int) or not 0 <= index < len(params):
                raise CheckpointError(f"malformed optimizer state (parameter {index!r})")
            for key, value in dict(state).items():
                shaped = isinstance(value, torch.Tensor) and (
                    value.dim() == 0 or value.shape == params[index].shape
                )
                if not shaped:
                    raise CheckpointError(f"malformed optimizer state ({key} of {index})")
        if not isinstance(self.trainer["scheduler"], dict | None):
            raise CheckpointError("malformed scheduler state")


class CheckpointStore:
    """Checkpoint files of trials; see the module docstring."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or default_root()

    def path(self, owner: Owner) -> Path:
        """``root/<study>/<identity hash>/trial-<n>.pt``. A name that is not a plain file
        name gets a short hash of itself appended, so that names differing only in such
        characters ("a/b", "a_b") never share a folder."""
        name = owner.study_name
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name)
        if safe != name or safe in (".", ".."):
            safe += "-" + hashlib.sha256(name.encode()).hexdigest()[:8]
        where = hashlib.sha256(owner.study_identity.encode()).hexdigest()[:12]
        return self.root / safe / where / f"trial-{owner.series}.pt"

    def save(self, owner: Owner, checkpoint: Checkpoint) -> Path:
        """Write atomically; ``CheckpointError`` (one line, no file left behind) when the
        folder cannot take it, "checkpoint folder full: ..." when the disk or quota is."""
        target = self.path(owner)
        buffer = io.BytesIO()
        torch.save(checkpoint.to_dict(owner), buffer)  # in memory: a write error is an OSError
        tmp: str | None = None
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            handle, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=".pt")
            with os.fdopen(handle, "wb") as out:
                out.write(buffer.getbuffer())
            Path(tmp).replace(target)
        except OSError as err:
            if err.errno in (errno.ENOSPC, errno.EDQUOT):
                free = shutil.disk_usage(target.parent if target.parent.exists() else "/").free
                raise CheckpointError(
                    f"checkpoint folder full: {target.parent} ({free / 2**20:.1f} MiB free, "
                    f"{buffer.tell() / 2**20:.1f} MiB needed)"
                ) from None
            raise CheckpointError(f"checkpoint not written: {one_line(str(err))}") from None
        finally:
            if tmp is not None:
                Path(tmp).unlink(missing_ok=True)
        return target

    def load(self, owner: Owner) -> Checkpoint | None:
        """``owner``'s checkpoint; None when there is none, ``CheckpointError`` when the
        file there must not be trained on (see the module docstring)."""
        target = self.path(owner)
        if not target.exists():
            return None
        try:
            data = torch.load(target, map_location="cpu", weights_only=True)
        except Exception as err:
            raise CheckpointError(f"unreadable ({type(err).__name__})") from None
        return Checkpoint.from_dict(data, owner)

    def remove(self, owner: Owner) -> None:
        self.path(owner).unlink(missing_ok=True)
