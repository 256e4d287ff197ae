"""A worker: claim a trial, train it, report every epoch, prune or finish, repeat.

Contract:

- A worker needs only a storage and a study name; everything else comes from the spec
  stored in the study. Any number of workers on any number of hosts may run at once; the
  budget is global (``sweeper.study.claim_trial``).
- Each trial: sample lr, weight decay (and the optimizer when the study compares several),
  seed = training seed + trial number (kept when the trial is retried), train epoch by
  epoch, ``trial.report(val_accuracy, epoch)`` after each, checkpoint, ask the pruner.
  The trial's value is the last epoch's validation accuracy. User attributes: seed,
  optimizer, the batch order in packed trials' terms (``pack_size`` 1, ``order_seed`` =
  seed, ``order_epoch_offset`` 0), provenance (``sweeper.provenance``), ``epochs_run``.
- A running trial sends heartbeats. Before each claim the worker fails trials whose
  heartbeat went silent; Optuna then re-queues them with the same parameters, and the re-run
  resumes from the dead trial's last checkpoint.
- A trial that raises, or whose loss becomes NaN/inf, is failed with the reason in its
  ``fail_reason`` user attribute (not retried), and the worker goes on with the next one.
- SIGINT/SIGTERM: the running trial keeps its last checkpoint, is failed and re-queued so
  a later worker resumes it, and the worker exits with ``WorkerStopped``.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, TextIO

import optuna
import sqlalchemy
import torch
from optuna.storages._heartbeat import is_heartbeat_enabled
from optuna.trial import TrialState

from sweeper.checkpoints import CheckpointStore
from sweeper.errors import SweeperError
from sweeper.provenance import provenance
from sweeper.spec import StudySpec
from sweeper.study import FAIL_REASON_ATTR, claim_trial, engine_of, stored_spec
from sweeper.train.data import Dataset, load_dataset
from sweeper.train.loop import EpochResult, NonFiniteLoss, Trainer, resolve_device
from sweeper.train.model import SimpleCNN
from sweeper.train.optimizers import implementation_name

# Errors that mean "the database is unreachable", not "the trial is broken". Optuna turns some
# SQLAlchemy errors into StorageInternalError.
DATABASE_ERRORS = (sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.StorageInternalError)
# How long a worker waits for PostgreSQL to come back before it gives up.
DATABASE_WAIT_S = 600


class WorkerStopped(SweeperError):
    """The worker was asked to stop (SIGINT or SIGTERM)."""

    exit_code = 130


@dataclass
class WorkerSummary:
    """What one worker did."""

    finished: dict[str, int] = field(
        default_factory=lambda: {"COMPLETE": 0, "PRUNED": 0, "FAIL": 0}
    )

    @property
    def total(self) -> int:
        return sum(self.finished.values())


class Progress:
    """One line per event on ``stream``: epochs, prunes, completions, the budget."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr

    def say(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def epoch(self, number: int, r: EpochResult, epochs: int) -> None:
        self.say(
            f"trial {number:>3} | epoch {r.epoch}/{epochs} | loss {r.train_loss:.4f} | "
            f"val_acc {r.val_accuracy:6.2%} | {r.seconds:.1f} s"
        )


@contextmanager
def heartbeat(storage: optuna.storages.BaseStorage, trial_id: int) -> Iterator[None]:
    """Record a heartbeat for ``trial_id`` every interval until the block ends."""
    if not is_heartbeat_enabled(storage):
        yield
        return
    interval = storage.get_heartbeat_interval()  # type: ignore[attr-defined]
    stop = threading.Event()

    def beat() -> None:
        while True:
            # A database blip must not kill the trial: the next beat retries.
            with contextlib.suppress(Exception):
                storage.record_heartbeat(trial_id)  # type: ignore[attr-defined]
            if stop.wait(interval):
                return

    thread = threading.Thread(target=beat, name=f"heartbeat-{trial_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """Turn SIGTERM into the same exception as SIGINT while a worker runs."""

    def raise_stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, raise_stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class Worker:
    """Runs trials of one study until its budget is met (or ``max_trials`` here)."""

    def __init__(
        self,
        study: optuna.Study,
        *,
        data_override: str | None = None,
        device: str | None = None,
        checkpoints: CheckpointStore | None = None,
        progress: Progress | None = None,
        budget: int | None = None,
    ) -> None:
        self.study = study
        self.spec: StudySpec = stored_spec(study)
        self.budget = budget if budget is not None else self.spec.budget
        self.device = resolve_device(device or self.spec.training.device)
        self.checkpoints = checkpoints or CheckpointStore()
        self.progress = progress or Progress()
        self.data_override = data_override
        self._data: Dataset | None = None

    @property
    def data(self) -> Dataset:
        """The data set, loaded on first use and kept on the training device."""
        if self._data is None:
            started = time.perf_counter()
            data = load_dataset(self.spec.data, self.data_override).to(self.device)
            self._data = data
            self.progress.say(
                f"data: {len(data.train_y)} train / {len(data.test_y)} val images from "
                f"{data.origin} on {self.device} ({time.perf_counter() - started:.1f} s)"
            )
        return self._data

    def run(self, max_trials: int | None = None) -> WorkerSummary:
        """Claim and run trials until the budget is met, ``max_trials`` ran, or a signal."""
        summary = WorkerSummary()
        _ = self.data  # fail on bad data before claiming any trial
        with stop_on_signals():
            while max_trials is None or summary.total < max_trials:
                trial = None
                try:
                    trial = self.claim()
                    if trial is None:
                        break
                    state = self.run_trial(trial)
                except DATABASE_ERRORS as err:
                    self._ride_out_outage(err, trial)
                    continue
                summary.finished[state.name] += 1
        return summary

    def claim(self) -> optuna.Trial | None:
        """Fail trials whose worker died (Optuna re-queues them), then claim the next trial
        within the study's budget; None when the budget is used up."""
        optuna.storages.fail_stale_trials(self.study)
        return claim_trial(self.study, self.budget)

    def _ride_out_outage(self, err: BaseException, trial: optuna.Trial | None) -> None:
        """Wait for the database to come back, then re-queue the trial it interrupted."""
        reason = str(getattr(err, "orig", None) or err).strip().splitlines()
        self.progress.say(
            f"database unreachable ({reason[0] if reason else type(err).__name__}); "
            f"waiting up to {DATABASE_WAIT_S} s for it"
        )
        deadline = time.monotonic() + DATABASE_WAIT_S
        delay = 0.5
        while True:
            try:
                with engine_of(self.study).connect() as conn:
                    conn.execute(sqlalchemy.text("SELECT 1"))
                break
            except DATABASE_ERRORS:
                if time.monotonic() > deadline:
                    raise SweeperError(
                        f"the database stayed unreachable for {DATABASE_WAIT_S} s; giving up"
                    ) from None
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
        self.progress.say("database is back")
        if trial is not None:
            with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
                self._requeue(trial)
                self.progress.say(f"trial {trial.number:>3} | re-queued after the outage")

    # -- one trial --------------------------------------------------------------------------

    def _sample(self, trial: optuna.Trial) -> tuple[float, float, str]:
        space = self.spec.space
        lr = trial.suggest_float("lr", space.lr.low, space.lr.high, log=space.lr.log)
        wd = trial.suggest_float(
            "weight_decay",
            space.weight_decay.low,
            space.weight_decay.high,
            log=space.weight_decay.log,
        )
        optimizer = space.optimizer[0]
        if len(space.optimizer) > 1:
            optimizer = str(trial.suggest_categorical("optimizer", list(space.optimizer)))
        return lr, wd, optimizer

    def run_trial(self, trial: optuna.Trial) -> TrialState:
        """Train ``trial`` to its end; tell the study; return the final state."""
        original = trial.number
        try:
            with heartbeat(self.study._storage, trial._trial_id):
                # A retry (see RetryHeartbeatStaleTrialCallback) names the first trial of its
                # series and inherits that trial's user attributes, the seed among them.
                frozen = self.study._storage.get_trial(trial._trial_id)
                original = int(frozen.system_attrs.get("failed_trial", trial.number))
                lr, wd, optimizer_name = self._sample(trial)
                seed = int(frozen.user_attrs.get("seed", self.spec.training.seed + original))
                retry = f" | retry of trial {original}" if original != trial.number else ""
                self.progress.say(
                    f"trial {trial.number:>3} | lr {lr:.2e} | weight_decay {wd:.2e} | "
                    f"{optimizer_name} | seed {seed}{retry}"
                )
                state, value = self._train(trial, original, seed, lr, wd, optimizer_name)
        except KeyboardInterrupt:
            self._requeue(trial)
            raise WorkerStopped(
                f"stopped; trial {trial.number} was re-queued to resume from its last checkpoint"
            ) from None
        except NonFiniteLoss as err:
            state, value = self._fail(trial, str(err)), None
        except DATABASE_ERRORS:
            raise  # not the trial's fault: the worker waits and re-queues it
        except Exception as err:
            detail = traceback.format_exception_only(type(err), err)[-1].strip()
            state, value = self._fail(trial, detail), None
        if state is TrialState.COMPLETE:
            self.study.tell(trial, value)
        elif state is TrialState.PRUNED:
            self.study.tell(trial, state=TrialState.PRUNED)
        self.checkpoints.remove(self.study.study_name, original)
        self._announce(trial, state, value)
        return state

    def _train(
        self, trial: optuna.Trial, original: int, seed: int, lr: float, wd: float, opt: str
    ) -> tuple[TrialState, float | None]:
        spec = self.spec.training
        torch.manual_seed(seed)
        model = SimpleCNN().to(self.device)
        trainer = Trainer(
            model, self.data, spec, optimizer_name=opt, lr=lr, weight_decay=wd, seed=seed
        )
        attrs: dict[str, Any] = {
            "seed": seed,
            "optimizer": opt,
            # The batch order, in packed trials' terms (a retry of a packed trial inherits
            # its pack's values, which no longer hold here): epoch e is epoch_order(seed, e).
            "pack_size": 1,
            "order_seed": seed,
            "order_epoch_offset": 0,
            **provenance(
                self.device, implementation_name(trainer.optimizer), trainer.execution.describe()
            ),
        }
        history: list[float] = []
        resumed = self._resume(trial, original)
        if resumed is not None:
            state, history = resumed
            trainer.load_state_dict(state)
        for key, value in attrs.items():
            trial.set_user_attr(key, value)
        for epoch in range(len(history) + 1, spec.epochs + 1):
            result = trainer.run_epoch(epoch)
            history.append(result.val_accuracy)
            if epoch < spec.epochs:
                # Checkpoint first: once an epoch is reported, a retry can resume after it.
                self.checkpoints.save(
                    self.study.study_name,
                    original,
                    {"trainer": trainer.state_dict(), "history": history},
                )
            trial.report(result.val_accuracy, epoch)
            trial.set_user_attr("epochs_run", epoch)
            self.progress.epoch(trial.number, result, spec.epochs)
            if epoch < spec.epochs and trial.should_prune():
                return TrialState.PRUNED, history[-1]
        return TrialState.COMPLETE, history[-1]

    def _resume(
        self, trial: optuna.Trial, original: int
    ) -> tuple[dict[str, Any], list[float]] | None:
        """The trainer state and accuracy history a retry continues from, if its original
        left a checkpoint; the history is re-reported to the retry, which records
        ``resumed_from_epoch``."""
        if original == trial.number:
            return None  # a first run: no checkpoint to look for
        checkpoint = self.checkpoints.load(self.study.study_name, original)
        if checkpoint is None:
            return None
        history = list(checkpoint["history"])
        for epoch, accuracy in enumerate(history, start=1):
            trial.report(accuracy, epoch)
        trial.set_user_attr("resumed_from_epoch", len(history))
        self.progress.say(f"trial {trial.number:>3} | resumed after epoch {len(history)}")
        return checkpoint["trainer"], history

    def _fail(self, trial: optuna.Trial, reason: str) -> TrialState:
        trial.set_user_attr(FAIL_REASON_ATTR, reason)
        self.study.tell(trial, state=TrialState.FAIL)
        return TrialState.FAIL

    def _requeue(self, trial: optuna.Trial) -> None:
        """Fail an interrupted trial and queue a copy that resumes from its checkpoint."""
        storage = self.study._storage
        storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL)
        frozen = storage.get_trial(trial._trial_id)
        retry = optuna.storages.RetryHeartbeatStaleTrialCallback(
            max_retry=self.spec.storage.max_retry
        )
        retry(self.study, frozen)

    def _announce(self, trial: optuna.Trial, state: TrialState, value: float | None) -> None:
        epochs = trial.user_attrs.get("epochs_run", 0)
        if state is TrialState.FAIL:
            reason = self.study._storage.get_trial(trial._trial_id).user_attrs.get(
                FAIL_REASON_ATTR, "unknown"
            )
            self.progress.say(f"trial {trial.number:>3} | FAILED | {reason}")
            return
        line = f"trial {trial.number:>3} | {state.name}"
        if state is TrialState.PRUNED:
            line += f" at epoch {epochs}"
        if value is not None:
            line += f" | val_acc {value:6.2%}"
        try:
            best = self.study.best_trial
            line += f" | best so far: trial {best.number} ({best.value:.2%})"
        except ValueError:
            pass
        self.progress.say(line)


def describe_study(study: optuna.Study) -> str:
    """One line: how many trials ended how, and the best one."""
    counts: dict[str, int] = {}
    for trial in study.get_trials(deepcopy=False):
        counts[trial.state.name.lower()] = counts.get(trial.state.name.lower(), 0) + 1
    parts = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
    line = f"study '{study.study_name}': {sum(counts.values())} trials ({parts or 'none'})"
    try:
        best = study.best_trial
    except ValueError:
        return line
    params = ", ".join(
        f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in best.params.items()
    )
    return line + f"; best trial {best.number}: val_acc {best.value:.2%} ({params})"
