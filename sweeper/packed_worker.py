"""A packed worker: K trials of one study trained at once as one stacked model.

Contract (everything ``sweeper.worker`` promises, per trial, except where noted):

- The worker claims up to K trials (``claim_trial`` under the global budget), trains them
  with ``sweeper.train.packed.PackedTrainer`` on the same minibatches with one optimizer step
  for all, and reports each trial's validation accuracy after each of its epochs.
- A trial that finishes, is pruned or fails leaves the pack at the epoch boundary; its slot is
  refilled with a freshly claimed trial while the budget (and ``max_trials``) allow, else the
  pack shrinks. A trial whose loss becomes NaN/inf fails alone, with its ``fail_reason``.
- Every trial gets a single trial's user attributes (seed, optimizer, epochs_run,
  provenance) plus ``pack_size`` (members when it started), ``order_seed`` and
  ``order_epoch_offset``: its epoch e used the batch order of
  ``epoch_order(n, order_seed, order_epoch_offset + e)``. Each trial sends its own
  heartbeats.
- Each trial is checkpointed after each epoch, in a single trial's format, before the epoch
  is reported. A re-queued trial (its worker died, was stopped, or lost the database)
  resumes from its last checkpoint in whichever worker claims it, packed or not; in a pack
  it continues on that pack's batch order, so its ``order_seed`` and
  ``order_epoch_offset`` describe the epochs after ``resumed_from_epoch`` (the failed
  original trial records those before). An exception that is not a NaN fails every trial of
  the pack with its reason; SIGINT/SIGTERM and database outages re-queue them all.
"""

from __future__ import annotations

import contextlib
import traceback
from dataclasses import dataclass, field
from typing import Any

import optuna
import torch
from optuna.trial import TrialState

from sweeper.provenance import provenance
from sweeper.train.loop import EpochResult
from sweeper.train.model import SimpleCNN
from sweeper.train.optimizers import implementation_name
from sweeper.train.packed import Member, PackedTrainer, is_finite
from sweeper.worker import (
    DATABASE_ERRORS,
    Worker,
    WorkerStopped,
    WorkerSummary,
    heartbeat,
    stop_on_signals,
)


@dataclass(eq=False)
class _Slot:
    """A trial in the pack and what the worker keeps about it."""

    trial: optuna.Trial
    original: int  # the first trial of its retry series (names its checkpoint)
    heartbeat: contextlib.ExitStack
    member: Member | None = None
    history: list[float] = field(default_factory=list)
    described: bool = False  # provenance recorded


class PackedWorker(Worker):
    """A ``Worker`` that trains ``pack`` trials at once; see the module docstring."""

    def __init__(self, study: optuna.Study, *, pack: int, **options: Any) -> None:
        """``options`` are ``Worker``'s keyword arguments."""
        super().__init__(study, **options)
        if pack < 1:
            raise ValueError(f"pack must be >= 1 (got {pack})")
        self.pack_size = pack

    def run(self, max_trials: int | None = None) -> WorkerSummary:
        """Run packs of trials until the budget is met, ``max_trials`` ran, or a signal."""
        summary = WorkerSummary()
        _ = self.data  # fail on bad data before claiming any trial
        with stop_on_signals():
            while True:
                slots: list[_Slot] = []
                try:
                    if not self._run_pack(slots, summary, max_trials):
                        break
                except KeyboardInterrupt:
                    self._release(slots)
                    raise WorkerStopped(
                        f"stopped; trials {[s.trial.number for s in slots]} were re-queued"
                    ) from None
                except DATABASE_ERRORS as err:
                    self._ride_out_outage(err, None)
                    self._release(slots)
                    if slots:
                        numbers = [s.trial.number for s in slots]
                        self.progress.say(f"trials {numbers} re-queued after the outage")
        return summary

    # -- one pack ---------------------------------------------------------------------------

    def _run_pack(self, slots: list[_Slot], summary: WorkerSummary, max_trials: int | None) -> bool:
        """Claim a pack and train it until no member is left; False if none was claimed.

        ``slots`` is filled in place so that the caller can re-queue them on a signal.
        """
        pack: PackedTrainer | None = None
        while True:
            while len(slots) < self.pack_size and self._may_claim(summary, len(slots), max_trials):
                trial = self.claim()
                if trial is None:
                    break
                slot = self._start(trial)
                if pack is None:
                    # The pack's batch order follows its first trial's seed (recorded per trial).
                    seed = int(trial.user_attrs["seed"])
                    pack = PackedTrainer(self.data, self.spec.training, order_seed=seed)
                self._join(pack, slot, len(slots) + 1)
                slots.append(slot)
            if pack is None:
                return False
            if not slots:
                return True
            try:
                results = pack.run_epoch()
            except (KeyboardInterrupt, *DATABASE_ERRORS):
                raise
            except Exception as err:
                detail = traceback.format_exception_only(type(err), err)[-1].strip()
                for slot in list(slots):
                    self._finish(slot, pack, slots, summary, self._fail(slot.trial, detail), None)
                continue
            for member, result in zip(list(pack.members), results, strict=True):
                slot = next(s for s in slots if s.member is member)
                state, value = self._record(slot, result, pack)
                if state is not None:
                    self._finish(slot, pack, slots, summary, state, value)

    def _may_claim(self, summary: WorkerSummary, running: int, max_trials: int | None) -> bool:
        return max_trials is None or summary.total + running < max_trials

    def _start(self, trial: optuna.Trial) -> _Slot:
        """Sample a claimed trial's parameters, record its attributes, start its heartbeat."""
        beats = contextlib.ExitStack()
        beats.enter_context(heartbeat(self.study._storage, trial._trial_id))
        frozen = self.study._storage.get_trial(trial._trial_id)
        # A retry inherits its original's user attributes, the seed among them.
        original = int(frozen.system_attrs.get("failed_trial", trial.number))
        seed = int(frozen.user_attrs.get("seed", self.spec.training.seed + original))
        trial.set_user_attr("seed", seed)
        return _Slot(trial, original, beats)

    def _join(self, pack: PackedTrainer, slot: _Slot, pack_size: int) -> None:
        trial = slot.trial
        lr, wd, optimizer_name = self._sample(trial)
        seed = int(trial.user_attrs["seed"])
        retry = f" | retry of trial {slot.original}" if slot.original != trial.number else ""
        self.progress.say(
            f"trial {trial.number:>3} | lr {lr:.2e} | weight_decay {wd:.2e} | "
            f"{optimizer_name} | seed {seed} | pack slot {pack_size}/{self.pack_size}{retry}"
        )
        torch.manual_seed(seed)  # the same initial weights as a single-trial run
        model = SimpleCNN().to(self.device)
        resume = None
        resumed = self._resume(trial, slot.original)
        if resumed is not None:
            state, slot.history = resumed
            resume = (state, len(slot.history))
        slot.member = pack.add(
            model,
            optimizer_name=optimizer_name,
            lr=lr,
            weight_decay=wd,
            tag=trial.number,
            resume=resume,
        )
        for key, value in {
            "optimizer": optimizer_name,
            "pack_size": pack_size,
            "order_seed": pack.order_seed,
            "order_epoch_offset": slot.member.order_offset,
        }.items():
            trial.set_user_attr(key, value)

    def _record(
        self, slot: _Slot, result: EpochResult, pack: PackedTrainer
    ) -> tuple[TrialState | None, float | None]:
        """Report one epoch of one trial; the trial's final state if it ends now, else None."""
        trial, epoch, epochs = slot.trial, result.epoch, self.spec.training.epochs
        if not slot.described and pack.optimizer is not None:
            # The optimizer exists once the pack has trained; provenance names its path.
            optimizer_impl = implementation_name(pack.optimizer)
            for key, value in provenance(
                self.device, optimizer_impl, pack.execution.describe()
            ).items():
                trial.set_user_attr(key, value)
            slot.described = True
        if not is_finite(result):
            return self._fail(trial, f"training loss is {result.train_loss} at epoch {epoch}"), None
        slot.history.append(result.val_accuracy)
        if epoch < epochs and slot.member is not None:
            # Checkpoint first: once an epoch is reported, a retry can resume after it.
            self.checkpoints.save(
                self.study.study_name,
                slot.original,
                {"trainer": pack.member_state(slot.member), "history": slot.history},
            )
        trial.report(result.val_accuracy, epoch)
        trial.set_user_attr("epochs_run", epoch)
        self.progress.epoch(trial.number, result, epochs)
        if epoch == epochs:
            return TrialState.COMPLETE, result.val_accuracy
        if trial.should_prune():
            return TrialState.PRUNED, result.val_accuracy
        return None, None

    def _finish(
        self,
        slot: _Slot,
        pack: PackedTrainer,
        slots: list[_Slot],
        summary: WorkerSummary,
        state: TrialState,
        value: float | None,
    ) -> None:
        """Tell the study how ``slot`` ended and take it out of the pack."""
        slot.heartbeat.close()
        if state is TrialState.COMPLETE:
            self.study.tell(slot.trial, value)
        elif state is TrialState.PRUNED:
            self.study.tell(slot.trial, state=TrialState.PRUNED)
        self.checkpoints.remove(self.study.study_name, slot.original)
        if slot.member is not None:
            pack.remove(slot.member)
        slots.remove(slot)
        summary.finished[state.name] += 1
        self._announce(slot.trial, state, value)

    def _release(self, slots: list[_Slot]) -> None:
        """Re-queue every running trial of the pack (a signal or an outage interrupted it)."""
        for slot in slots:
            slot.heartbeat.close()
            with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
                self._requeue(slot.trial)
