"""A worker: claim trials, train them (K >= 1 at a time), report every epoch, prune or
finish, refill, repeat. ``--pack 1`` is the same code with one slot.

Contract:

- A worker needs a storage and a study name; everything else comes from the spec stored in
  the study. Any number of workers on any number of hosts may run at once; the budget is
  global (``sweeper.study.Budget``).
- Each claimed trial: sample lr, weight decay (and the optimizer when the study compares
  several); seed = training seed + the number of the first trial of its retry series (kept
  when re-queued); train epoch by epoch with up to K-1 other trials on the same minibatches
  (``sweeper.train.trainer``); after each epoch checkpoint, then ``trial.report(val_accuracy,
  epoch)``, then ask the pruner. The value is the last epoch's validation accuracy. User
  attributes: ``sweeper.attrs`` names each, and provenance (``sweeper.work.provenance``).
- A trial that finishes, is pruned or fails leaves at the epoch boundary; its slot is
  refilled while the budget (and ``max_trials``) allow. When every slot is empty the next
  trial starts a new trainer, on its own batch order.
- Seed replicates (the spec's ``[confirm]``, ``sweeper.work.confirm``): once the search
  budget is used, a worker with no trial of its own waits for the other workers' search
  trials to end, queues the replicates of the top configurations (exactly once over all
  workers) and runs them like any trial; replicates are never pruned.
- A worker with no trial of its own and nothing to claim does not leave while other
  workers' trials of the study still run: it waits, reaping, so a trial whose worker dies
  (cancelled, preempted, out of time) is re-queued and finished here.
- A trial whose loss becomes NaN/inf, or whose setup raises, fails alone with its
  ``fail_reason`` (not re-queued). An exception during a shared epoch fails every trial in
  it with the reason. The worker goes on with the next trials.
- A trial resumed from a checkpoint continues where its original stopped: when it starts a
  trainer, on its original batch order (bit-identical to an uninterrupted run); when it
  joins one, on that trainer's order (its attributes say which).
- A running trial sends heartbeats. Before each claim the worker reaps: trials silent past
  the grace period are failed and re-queued (``sweeper.work.requeue``).
- SIGINT/SIGTERM: every running trial keeps its last checkpoint, is failed with the reason
  and re-queued, and the worker exits with ``WorkerStopped`` (exit 130).
- The database going away (one outage path): the worker waits for it (up to
  ``DATABASE_WAIT_S``), then fails and re-queues every trial it was running; they resume
  from their checkpoints.
"""

from __future__ import annotations

import signal
import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

import optuna
import sqlalchemy
import torch
from optuna.trial import TrialState

from sweeper import _optuna, attrs
from sweeper.errors import SweeperError, root_cause
from sweeper.spec import StudySpec
from sweeper.study import Budget, stored_spec
from sweeper.train.data import Dataset, load_dataset
from sweeper.train.execution import resolve_device
from sweeper.train.model import SimpleCNN
from sweeper.train.optimizers import implementation_name
from sweeper.train.trainer import EpochResult, Trainer
from sweeper.work import confirm, requeue
from sweeper.work.checkpoints import (
    Checkpoint,
    CheckpointError,
    CheckpointStore,
    Owner,
    study_identity,
)
from sweeper.work.progress import LOADING_DATA, Progress
from sweeper.work.provenance import cluster_task, provenance, worker_id
from sweeper.work.slot import Slot

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


def _one_line(err: BaseException) -> str:
    return traceback.format_exception_only(type(err), err)[-1].strip()


class Worker:
    """Runs trials of one study, ``slots`` at a time, until its budget is met."""

    def __init__(
        self,
        study: optuna.Study,
        storage: optuna.storages.RDBStorage,
        *,
        slots: int = 1,
        data_override: str | None = None,
        device: str | None = None,
        checkpoints: CheckpointStore | None = None,
        progress: Progress | None = None,
        budget: int | None = None,
    ) -> None:
        """``storage`` is the one ``study`` lives in (the CLI opened it with the study's
        heartbeat settings); ``budget`` overrides the spec's."""
        if slots < 1:
            raise ValueError(f"slots must be >= 1 (got {slots})")
        self.study = study
        self.storage = storage
        self.spec: StudySpec = stored_spec(study)
        self.slots = slots
        self.budget = Budget(study, storage, budget if budget is not None else self.spec.budget)
        self.device = resolve_device(device or self.spec.training.device)
        self.checkpoints = checkpoints or CheckpointStore()
        self.identity = study_identity(storage, study.study_name)  # binds its checkpoints
        self.progress = progress or Progress()
        self.data_override = data_override
        self._data: Dataset | None = None

    @property
    def data(self) -> Dataset:
        """The data set, loaded on first use and kept on the training device."""
        if self._data is None:
            started = time.perf_counter()
            with self.progress.waiting(LOADING_DATA):
                data = load_dataset(self.spec.data, self.data_override, say=self.progress.say).to(
                    self.device
                )
            self._data = data
            self.progress.say(
                f"data: {len(data.train_y)} train / {len(data.test_y)} val images from "
                f"{data.origin} on {self.device} ({time.perf_counter() - started:.1f} s)"
            )
        return self._data

    # -- the claim loop, the signal path and the outage path --------------------------------

    def run(self, max_trials: int | None = None) -> WorkerSummary:
        """Claim and run trials until the budget is met, ``max_trials`` ran, or a signal."""
        summary = WorkerSummary()
        _ = self.data  # fail on bad data before claiming any trial
        with stop_on_signals():
            while True:
                slots: list[Slot] = []  # filled in place, so both paths below see them
                try:
                    if not self._run_trainer(slots, summary, max_trials):
                        break
                except KeyboardInterrupt as stop:
                    numbers = self._release(
                        slots, f"stopped by {stop.args[0] if stop.args else 'SIGINT'}"
                    )
                    raise WorkerStopped(
                        f"stopped; trials {numbers} were re-queued to resume from their last "
                        "checkpoint"
                        if numbers
                        else "stopped; no trial was running"
                    ) from None
                except DATABASE_ERRORS as err:
                    numbers = self._recover(err, slots)
                    if numbers:
                        self.progress.say(f"trials {numbers} re-queued after the outage")
        return summary

    def claim(self, wanted: int = 1, *, may_wait: bool = False) -> list[optuna.Trial]:
        """Reap silent trials (they are re-queued), then claim up to ``wanted`` trials within
        the study's budget in one transaction; once it is used up, seed replicates when the
        spec asks for them. With ``may_wait`` (the worker runs nothing), while other workers'
        trials still run it waits for them, reaping: one whose worker dies comes back
        re-queued and is claimed here, so no queued trial is left without a worker. Empty
        when nothing is left to run and nothing runs."""
        self._reap()
        trials = self.budget.claim(wanted)
        say = self.progress.every()
        replicated = self.spec.confirm.top_k < 1  # nothing to queue after the search
        while not trials:
            pending = 0 if replicated else confirm.pending(self.study)
            if not replicated and pending == 0:
                top_k, seeds = self.spec.confirm.top_k, self.spec.confirm.seeds
                queued = confirm.enqueue(self.study, self.storage, top_k, seeds)
                replicated = True
                if queued:
                    self.progress.say(
                        f"search budget used: queued {queued} seed replicates of the top "
                        f"{top_k} configurations ({seeds} seeds each)"
                    )
                trials = self.budget.claim(wanted)
                continue
            if not may_wait:
                return []
            running = len(self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))
            if pending:
                say(
                    f"search budget used: waiting for the running search trials to end "
                    f"before replicating the top configurations ({pending} still running or "
                    "queued)"
                )
            elif running:
                say(
                    f"budget used: waiting for the {running} trials other workers run (one "
                    "whose worker dies is re-queued and run here)"
                )
            else:
                return []
            time.sleep(min(5.0, self.spec.storage.heartbeat_interval))
            self._reap()
            trials = self.budget.claim(wanted)  # a re-queued trial, if a worker died
        return trials

    def _reap(self) -> None:
        for number, copy in requeue.reap(
            self.study, self.storage, self.spec.storage.grace_period, self.spec.storage.max_retry
        ):
            where = f"re-queued as trial {copy}" if copy is not None else "not re-queued"
            self.progress.trial(number, f"its worker went silent; failed and {where}")

    def _ride_out_outage(self, err: BaseException) -> None:
        """Wait until the database answers again (``SweeperError`` after DATABASE_WAIT_S)."""
        self.progress.say(
            f"database unreachable ({root_cause(err)}); waiting up to {DATABASE_WAIT_S} s for it"
        )
        started = time.monotonic()
        deadline = started + DATABASE_WAIT_S
        delay = 0.5
        say = self.progress.every(at_once=False)  # the line above was the first
        while True:
            try:
                with self.storage.engine.connect() as conn:
                    conn.execute(sqlalchemy.text("SELECT 1"))
                break
            except DATABASE_ERRORS:
                if time.monotonic() > deadline:
                    raise SweeperError(
                        f"the database stayed unreachable for {DATABASE_WAIT_S} s; giving up"
                    ) from None
                waited = time.monotonic() - started
                say(
                    f"database still unreachable after {waited:.0f} s; "
                    f"waiting up to {DATABASE_WAIT_S} s"
                )
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
        self.progress.say("database is back")

    def _recover(self, err: BaseException, slots: list[Slot]) -> list[int]:
        """Ride out an outage, then re-queue the interrupted trials; a database that fails
        again meanwhile is ridden out again (released slots are not released twice)."""
        numbers: list[int] = []
        while True:
            self._ride_out_outage(err)
            try:
                numbers += self._release(slots, "the database went away mid-trial")
                return numbers
            except DATABASE_ERRORS as again:
                err = again

    def _release(self, slots: list[Slot], reason: str) -> list[int]:
        """Fail and re-queue every running trial (a signal or an outage interrupted them),
        taking each out of ``slots`` once done; the numbers of those re-queued."""
        numbers = []
        for slot in list(slots):
            slot.close()
            copy = requeue.interrupt(
                self.study, self.storage, slot.trial, reason, self.spec.storage.max_retry
            )
            slots.remove(slot)
            if copy is not None:
                numbers.append(slot.number)
        return numbers

    # -- one trainer's life -----------------------------------------------------------------

    def _run_trainer(
        self, slots: list[Slot], summary: WorkerSummary, max_trials: int | None
    ) -> bool:
        """Fill a trainer and train it until its last trial ends; False if none was claimed."""
        trainer: Trainer | None = None
        claimed = False
        while True:
            while wanted := self._room(slots, summary, max_trials):
                # The free slots are claimed at once, in one transaction.
                trials = self.claim(wanted, may_wait=not slots)
                if not trials:
                    break
                claimed = True
                opened = [Slot.open(self.study, self.storage, t, self.spec) for t in trials]
                slots += opened
                for slot in opened:
                    try:
                        trainer = self._join(trainer, slot, slots.index(slot) + 1)
                    except (KeyboardInterrupt, *DATABASE_ERRORS):
                        raise
                    except Exception as err:  # its setup failed: its fault, not the pack's
                        self._end(slot, trainer, slots, summary, self._fail(slot, _one_line(err)))
            if not slots:
                return claimed
            assert trainer is not None
            try:
                results = trainer.run_epoch()
            except (KeyboardInterrupt, *DATABASE_ERRORS):
                raise
            except Exception as err:
                detail = _one_line(err)
                for slot in list(slots):
                    self._end(slot, trainer, slots, summary, self._fail(slot, detail))
                return True
            for slot, state in self._record(slots, trainer, results):
                self._end(slot, trainer, slots, summary, state)
            if not slots:
                return True  # the next trial starts a trainer of its own, on its own order

    def _room(self, slots: list[Slot], summary: WorkerSummary, max_trials: int | None) -> int:
        """How many trials to claim now: the free slots, within ``max_trials``."""
        room = self.slots - len(slots)
        if max_trials is not None:
            room = min(room, max_trials - summary.total - len(slots))
        return max(0, room)

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

    def _join(self, trainer: Trainer | None, slot: Slot, position: int) -> Trainer:
        """Sample ``slot``'s trial, load its checkpoint, add it to ``trainer`` (a new one
        when None) and record what it is; return the trainer."""
        trial = slot.trial
        lr, wd, optimizer_name = self._sample(trial)
        if slot.series != trial.number:
            slot.checkpoint = self._resume_point(slot)
        retry = f" | retry of trial {slot.series}" if slot.series != trial.number else ""
        replicate_of = trial.user_attrs.get(attrs.REPLICATE_OF)
        if replicate_of is not None:
            retry += f" | seed replicate of trial {replicate_of}"
        where = f" | slot {position}/{self.slots}" if self.slots > 1 else ""
        self.progress.trial(
            trial.number,
            f"lr {lr:.2e} | weight_decay {wd:.2e} | {optimizer_name} | seed {slot.seed}"
            f"{where}{retry}",
        )
        resume = None
        if slot.checkpoint is not None:
            slot.history = list(slot.checkpoint.history)
            resume = (slot.checkpoint.trainer, slot.checkpoint.epochs)
        if trainer is None:
            # The trainer's batch order is its first trial's: a fresh trial's (seed, epoch 0),
            # or a resumed trial's own order where it stopped.
            order_seed, start = slot.seed, 0
            if resume is not None:
                order_seed = int(trial.user_attrs.get(attrs.ORDER_SEED, slot.seed))
                offset = int(trial.user_attrs.get(attrs.ORDER_EPOCH_OFFSET, 0))
                start = offset + slot.checkpoint.epochs  # type: ignore[union-attr]
            trainer = Trainer(
                self.data, self.spec.training, order_seed=order_seed, start_epoch=start
            )
        torch.manual_seed(slot.seed)  # the same initial weights in any pack
        model = SimpleCNN().to(self.device)
        slot.member = trainer.add(
            model, optimizer_name=optimizer_name, lr=lr, weight_decay=wd, resume=resume
        )
        recorded = {
            # Who runs it, from its start (provenance repeats it after the first epoch):
            # `sweeper status` shows it, and a trial stopped before its first epoch keeps it.
            attrs.WORKER: worker_id(),
            attrs.SEED: slot.seed,
            attrs.OPTIMIZER: optimizer_name,
            attrs.PACK_SIZE: len(trainer.members),
            attrs.ORDER_SEED: trainer.order_seed,
            attrs.ORDER_EPOCH_OFFSET: slot.member.order_offset,
        }
        task = cluster_task()
        if task is not None:
            recorded[attrs.CLUSTER_TASK] = task  # where its log is
        reports: dict[int, float] = {}
        if slot.checkpoint is not None:
            # The epochs its original ran are reported again, so the pruner and the
            # learning curve see the whole trial.
            reports = dict(enumerate(slot.history, start=1))
            recorded[attrs.RESUMED_FROM_EPOCH] = slot.checkpoint.epochs
            self.progress.trial(trial.number, f"resumed after epoch {slot.checkpoint.epochs}")
        _optuna.record(self.storage.engine, [(trial, recorded, reports)])  # one round trip
        return trainer

    def _owner(self, slot: Slot) -> Owner:
        return Owner(self.study.study_name, self.identity, slot.series)

    def _resume_point(self, slot: Slot) -> Checkpoint | None:
        """``slot``'s series' checkpoint if it resumes this trial; a checkpoint that must
        not be trained on (malformed, another trial's, as long as the trial) is ignored with
        a warning and the trial starts over."""
        owner = self._owner(slot)
        try:
            checkpoint = self.checkpoints.load(owner)
            if checkpoint is not None:
                with torch.device("meta"):  # shapes only: no memory, no draw from the RNG
                    model = SimpleCNN()
                checkpoint.check(model, self.spec.training.epochs)
            return checkpoint
        except CheckpointError as err:
            self.progress.trial(
                slot.number,
                f"warning: checkpoint {self.checkpoints.path(owner)} ignored ({err}); "
                "starting over from epoch 1",
            )
            return None

    def _save(self, slot: Slot, trainer: Trainer) -> None:
        """Checkpoint ``slot``'s trial; when that fails (a full disk), say so once and go on
        without checkpointing it: its earlier checkpoint, if any, stays for a retry."""
        if not slot.checkpointing or slot.member is None:
            return
        try:
            self.checkpoints.save(
                self._owner(slot), Checkpoint(trainer.member_state(slot.member), slot.history)
            )
        except CheckpointError as err:
            slot.checkpointing = False
            self.progress.trial(
                slot.number, f"warning: {err}; the trial goes on without checkpointing"
            )

    def _record(
        self, slots: list[Slot], trainer: Trainer, results: list[EpochResult]
    ) -> list[tuple[Slot, TrialState]]:
        """Checkpoint, report and judge one pack epoch (``results`` in member order); the
        trials that end, with their final states. Every trial's report and attributes go to
        the database in one round trip."""
        epochs = self.spec.training.epochs
        described: dict[str, str] | None = None
        entries: list[tuple[optuna.Trial, dict[str, Any], dict[int, float]]] = []
        judged: list[tuple[Slot, EpochResult]] = []
        for member, result in zip(list(trainer.members), results, strict=True):
            slot = next(s for s in slots if s.member is member)
            values: dict[str, Any] = {}
            if not slot.described and trainer.optimizer is not None:
                # The optimizer exists once the trainer has trained; provenance names its path.
                if described is None:
                    described = provenance(
                        self.device,
                        implementation_name(trainer.optimizer),
                        trainer.execution.describe(),
                    )
                values.update(described)
                batch = self.spec.training.batch_size
                values[attrs.STEPS_PER_EPOCH] = -(-len(trainer.data.train_y) // batch)
                slot.described = True
            reports: dict[int, float] = {}
            if result.finite:
                slot.history.append(result.val_accuracy)
                if result.epoch < epochs:
                    # Checkpoint first: once an epoch is reported, a retry can resume after it.
                    self._save(slot, trainer)
                reports[result.epoch] = result.val_accuracy
                values[attrs.EPOCHS_RUN] = result.epoch
            entries.append((slot.trial, values, reports))
            judged.append((slot, result))
        _optuna.record(self.storage.engine, entries)
        ended: list[tuple[Slot, TrialState]] = []
        for slot, result in judged:
            epoch = result.epoch
            if not result.finite:
                reason = f"training loss is {result.train_loss} at epoch {epoch}"
                ended.append((slot, self._fail(slot, reason)))
                continue
            self.progress.epoch(slot.number, result, epochs)
            if epoch >= epochs:
                ended.append((slot, TrialState.COMPLETE))
            # A replicate measures seed noise at a configuration already chosen: never pruned.
            elif not slot.replicate and slot.trial.should_prune():
                ended.append((slot, TrialState.PRUNED))
        return ended

    def _fail(self, slot: Slot, reason: str) -> TrialState:
        requeue.fail(self.study, slot.trial, reason)
        self.progress.trial(slot.number, f"FAILED | {reason}")
        return TrialState.FAIL

    def _end(
        self,
        slot: Slot,
        trainer: Trainer | None,
        slots: list[Slot],
        summary: WorkerSummary,
        state: TrialState,
    ) -> None:
        """Tell the study how ``slot``'s trial ended (a failure is told already) and free
        its slot."""
        slot.close()
        value = slot.history[-1] if slot.history else None
        if state is TrialState.COMPLETE:
            self.study.tell(slot.trial, value)
        elif state is TrialState.PRUNED:
            self.study.tell(slot.trial, state=TrialState.PRUNED)
        self.checkpoints.remove(self._owner(slot))
        if trainer is not None and slot.member is not None:
            trainer.remove(slot.member)
        slots.remove(slot)
        summary.finished[state.name] += 1
        if state is not TrialState.FAIL:
            self._announce(slot, state, value)

    def _announce(self, slot: Slot, state: TrialState, value: float | None) -> None:
        line = state.name
        if state is TrialState.PRUNED:
            line += f" at epoch {len(slot.history)}"
        if value is not None:
            line += f" | val_acc {value:6.2%}"
        try:
            best = self.study.best_trial
            line += f" | best so far: trial {best.number} ({best.value:.2%})"
        except ValueError:
            pass
        self.progress.trial(slot.number, line)
