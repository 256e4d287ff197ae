"""Re-queueing: a trial that did not end by its own fault runs again, same parameters and seed.

Contract:

- ``requeue(study, storage, trial, reason, max_retry)`` takes a trial that has just been
  failed (by this worker: a signal or a database outage interrupted it; or by ``reap``: its
  worker went silent) and queues a WAITING copy with the same parameters and user attributes
  (so the same seed and batch order; not its provenance: where it ran), and ``failed_trial`` /
  ``retry_history`` system attributes as Optuna's ``RetryHeartbeatStaleTrialCallback`` writes
  them (so Optuna's ``RetryFailedTrialCallback.retry_history`` reads them). The failed trial records
  ``fail_reason`` ("<reason>; re-queued as trial N") and ``requeued_as`` (N), so it does not
  use up the budget (its copy does). Past ``max_retry`` retries of one series no copy is made
  and the reason says so; that failure then counts.
- ``reap(study, storage, grace_period, max_retry)`` fails every running trial whose
  heartbeat is older than the grace period, or that never sent one and started longer ago
  than that (a worker that lost the database right after claiming it), and re-queues each.
  Failing uses the storage's atomic state change, so when several workers reap at once each
  stale trial is failed and re-queued exactly once.
- ``fail(study, trial, reason)`` ends a trial that failed by its own fault (not re-queued).
"""

from __future__ import annotations

from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from sweeper import _optuna, attrs

# Optuna's names (optuna/storages/_callbacks.py), kept so its RetryFailedTrialCallback
# helpers (retried_trial_number, retry_history) read our copies too.
FAILED_TRIAL = "failed_trial"
RETRY_HISTORY = "retry_history"


def series_of(frozen: FrozenTrial) -> int:
    """The number of the first trial of ``frozen``'s retry series (itself if none)."""
    first = optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number(frozen)
    return frozen.number if first is None else int(first)


def requeue(
    study: optuna.Study,
    storage: optuna.storages.RDBStorage,
    failed: FrozenTrial,
    reason: str,
    max_retry: int | None,
) -> int | None:
    """Queue a copy of the just-failed trial ``failed``; its number, or None past max_retry."""
    history = [*optuna.storages.RetryHeartbeatStaleTrialCallback.retry_history(failed)]
    history.append(failed.number)
    study_id = storage.get_study_id_from_name(study.study_name)
    failed_id = storage.get_trial_id_from_study_id_trial_number(study_id, failed.number)
    if max_retry is not None and len(history) > max_retry:
        note = f"{reason}; not re-queued: retried {max_retry} times"
        _optuna.annotate_finished(storage.engine, failed_id, {attrs.FAIL_REASON: note})
        return None
    system_attrs: dict[str, Any] = {
        **failed.system_attrs,
        FAILED_TRIAL: series_of(failed),
        RETRY_HISTORY: history,
    }
    template = optuna.trial.create_trial(
        state=TrialState.WAITING,
        params=failed.params,
        distributions=failed.distributions,
        # Not where the original ran (worker, cluster task, device...): the copy records
        # its own when it starts, and until then names no task whose log is not its own.
        user_attrs={
            k: v
            for k, v in failed.user_attrs.items()
            if k not in (attrs.FAIL_REASON, attrs.REQUEUED_AS, *attrs.PROVENANCE)
        },
        system_attrs=system_attrs,
    )
    number = storage.get_trial_number_from_id(storage.create_new_trial(study_id, template))
    _optuna.annotate_finished(
        storage.engine,
        failed_id,
        {attrs.REQUEUED_AS: number, attrs.FAIL_REASON: f"{reason}; re-queued as trial {number}"},
    )
    return number


def interrupt(
    study: optuna.Study,
    storage: optuna.storages.RDBStorage,
    trial: optuna.Trial,
    reason: str,
    max_retry: int | None,
) -> int | None:
    """Fail a running trial that was interrupted through no fault of its own and re-queue
    it; the copy's number, or None when it was already finished (someone else re-queued it)
    or is past max_retry."""
    try:
        failed = study.tell(trial, state=TrialState.FAIL)
    except (RuntimeError, optuna.exceptions.UpdateFinishedTrialError):
        return None  # finished meanwhile (a reaper failed and re-queued it): nothing to do
    return requeue(study, storage, failed, reason, max_retry)


def fail(study: optuna.Study, trial: optuna.Trial, reason: str) -> None:
    """End ``trial`` as FAIL with ``reason``: its own fault, not re-queued."""
    trial.set_user_attr(attrs.FAIL_REASON, reason)
    study.tell(trial, state=TrialState.FAIL)


def reap(
    study: optuna.Study,
    storage: optuna.storages.RDBStorage,
    grace_period: float,
    max_retry: int | None,
) -> list[tuple[int, int | None]]:
    """Fail and re-queue silent running trials; ``(failed number, copy number or None)``."""
    study_id = storage.get_study_id_from_name(study.study_name)
    reaped = []
    for trial_id, number, last_beat in _optuna.stale_trials(storage.engine, study_id, grace_period):
        try:
            if not storage.set_trial_state_values(trial_id, state=TrialState.FAIL):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another worker reaped it first
        if last_beat is None:
            reason = f"its worker went silent before its first heartbeat (grace {grace_period:g} s)"
        else:
            at = last_beat.replace(microsecond=0)
            reason = f"heartbeat lost (last at {at.isoformat(sep=' ')}, database time)"
        copy = requeue(study, storage, storage.get_trial(trial_id), reason, max_retry)
        reaped.append((number, copy))
    return reaped
