"""One claimed trial inside a worker: what it is, and its heartbeat.

Contract: ``Slot.open(study, storage, trial, spec)`` reads the trial's series (the first
trial of its retry series names its checkpoint and its seed), starts its heartbeat thread
and returns the slot; ``close()`` stops the heartbeat and is idempotent. The heartbeat
thread records a beat every ``heartbeat_interval`` seconds and survives database blips (a
failed beat is retried at the next interval).
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass, field

import optuna

from sweeper import _optuna, attrs
from sweeper.spec import StudySpec
from sweeper.train.trainer import Member
from sweeper.work.checkpoints import Checkpoint
from sweeper.work.requeue import series_of


class Heartbeat:
    """Records a heartbeat for one trial every interval until ``stop()``."""

    def __init__(self, storage: optuna.storages.BaseStorage, trial_id: int) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        interval = getattr(storage, "get_heartbeat_interval", lambda: None)()
        if interval is None:
            return  # heartbeats off for this storage
        record = storage.record_heartbeat  # type: ignore[attr-defined]

        def beat() -> None:
            while True:
                # A database blip must not kill the trial: the next beat retries.
                with contextlib.suppress(Exception):
                    record(trial_id)
                if self._stop.wait(interval):
                    return

        self._thread = threading.Thread(target=beat, name=f"heartbeat-{trial_id}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None


@dataclass(eq=False)
class Slot:
    """A claimed trial and what the worker keeps about it."""

    trial: optuna.Trial
    series: int  # the first trial of its retry series (names its checkpoint)
    seed: int
    heartbeat: Heartbeat
    member: Member | None = None
    checkpoint: Checkpoint | None = None  # what it resumes from, if anything
    history: list[float] = field(default_factory=list)  # val accuracy per epoch
    described: bool = False  # provenance recorded
    checkpointing: bool = True  # False once a checkpoint could not be written (a full disk)
    replicate: bool = False  # a seed replicate (sweeper.work.confirm): never pruned

    @classmethod
    def open(
        cls,
        study: optuna.Study,
        storage: optuna.storages.BaseStorage,
        trial: optuna.Trial,
        spec: StudySpec,
    ) -> Slot:
        """Start the trial's heartbeat first (a claimed trial without one looks orphaned
        to reapers after the grace period), then read its series and seed."""
        heartbeat = Heartbeat(storage, _optuna.trial_id(trial))
        try:
            stored = _optuna.frozen(storage, trial)
            series = series_of(stored)
            # A re-queued copy inherits its original's user attributes, the seed among them.
            seed = int(stored.user_attrs.get(attrs.SEED, spec.training.seed + series))
        except BaseException:
            heartbeat.stop()
            raise
        replicate = attrs.REPLICATE_OF in stored.user_attrs
        return cls(trial, series, seed, heartbeat, replicate=replicate)

    @property
    def number(self) -> int:
        return self.trial.number

    def close(self) -> None:
        self.heartbeat.stop()
