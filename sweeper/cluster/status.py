"""``sweeper status``: the fleet at a glance, for an operator.

Contract:

- ``read_status(storage, study, window_minutes)`` returns a ``FleetStatus``: the budget (its
  limit, what is used, what is left: ``sweeper.study.Budget``'s own count), trials by state,
  every running trial with its worker (``host:pid``), cluster task (SLURM array task or
  Kubernetes index, recorded when the trial starts), last reported epoch, heartbeat age and
  whether it is stale (what the reaper would fail: ``sweeper._optuna.stale_trials`` with the
  stored spec's grace period), the waiting trials (a re-queued copy names the trial it
  copies), the rate of trials finished over the last ``window_minutes`` and an ETA with its
  basis. It reads a handful of SQL queries whatever the study's size (no ``get_trials``): the
  fleet's rows in one consistent transaction (``sweeper._optuna.fleet_rows``), the budget's
  count and the stale query. Ages come from the database server's clock, so clocks that differ
  between hosts do not matter.
- The rate counts trials that finished for good (complete, pruned, or failed and not
  re-queued) within the window, over the window or the study's age if that is shorter. The
  ETA is the trials still to finish (unclaimed budget + running + waiting) at that rate; with
  no trial finished in the window it is unknown, never guessed, and a rate from fewer than
  ``FEW`` trials says it is rough. Seed replicates that are not queued yet are not counted.
  When trials are left to finish and none runs with a fresh heartbeat, no worker is alive to
  run them (``unattended``): the ETA is none and the status says to start a worker.
- ``render(status)`` is pure: the status as text lines, running trials grouped by host.
- ``register(subparsers, parents)`` adds ``sweeper status --study NAME [--watch [SECONDS]]
  [--window MINUTES] [--format table|json]``. ``--watch`` refreshes in place on a terminal
  (ANSI home and clear) and prints successive snapshots separated by a blank line otherwise;
  Ctrl-C ends it at once with exit 0, whatever it waits on (the database is read in a
  thread the main thread waits for, so a blocked query cannot hold the signal). ``--watch``
  with ``--format json`` is a usage error (exit 2): a script polls ``sweeper status
  --format json`` itself.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from sweeper.errors import UsageError, one_line

DEFAULT_WATCH_S = 2.0  # a screen that feels live; a refresh is ~10 indexed queries (ms)
MIN_WATCH_S = 0.1  # below this a refresh would only load the database
DEFAULT_WINDOW_MIN = (
    10  # long enough to hold several trials of a CPU study, short enough to be recent
)
MAX_WINDOW_MIN = 7 * 24 * 60  # a week: any longer is the study's whole history anyway
FEW = 5  # a rate from fewer finished trials is called rough
LISTED_WAITING = 20  # waiting trials named one by one; the rest are counted
CLEAR = "\x1b[H\x1b[2J"  # ANSI: cursor home, clear the screen


@dataclass(frozen=True)
class RunningTrial:
    """A running trial: who runs it, how far it got, when it was last heard from."""

    number: int
    worker: str | None  # "host:pid" (sweeper.attrs.WORKER); None before it was recorded
    host: str | None
    task: str | None  # the scheduler's task, e.g. "slurm 812_3" (its log); None outside one
    epoch: int | None  # the last epoch it reported; None before its first
    heartbeat_age_s: float | None  # None: it never sent a heartbeat
    running_s: float | None
    stale: bool  # silent past the grace period: the next reap fails and re-queues it


@dataclass(frozen=True)
class WaitingTrial:
    """A queued trial: a retry of an interrupted one, or a seed replicate."""

    number: int
    retry_of: int | None  # the first trial of the retry series it continues
    copy_of: int | None  # the trial it copies (the last of its retry series so far)
    replicate_of: int | None


@dataclass(frozen=True)
class FleetStatus:
    """One snapshot of a study's fleet (see the module docstring)."""

    study: str
    taken_at: str  # the database server's UTC time, ISO 8601
    budget_limit: int | None  # None: unlimited
    budget_used: int
    budget_left: int | None
    epochs: int  # epochs per trial (the stored spec's)
    grace_period_s: float
    states: dict[str, int]  # lower-case state name -> trials, every state listed
    running: list[RunningTrial]
    waiting: list[WaitingTrial]  # the first LISTED_WAITING, by number
    window_s: float  # the window asked for
    span_s: float | None  # the time the rate is measured over: window, or the study's age
    finished_in_window: int
    per_minute: float | None  # None: no trial finished in the window
    to_finish: int | None  # unclaimed + running + waiting; None: unlimited budget
    eta_s: float | None  # None: unknown (see eta_basis)
    eta_basis: str
    # Trials wait (queued or unclaimed) and no trial runs with a fresh heartbeat: no worker
    # is alive to run them, whatever the rate was.
    unattended: bool = False

    @property
    def stale(self) -> list[int]:
        """Numbers of the running trials that are stale."""
        return [t.number for t in self.running if t.stale]


def host_of(worker: str | None) -> str | None:
    """The host of a ``host:pid`` worker id (``sweeper.work.provenance.worker_id``)."""
    if worker is None:
        return None
    host, sep, _ = worker.rpartition(":")
    return host if sep else worker


def read_status(
    storage: Any, study: Any, window_minutes: float = DEFAULT_WINDOW_MIN
) -> FleetStatus:
    """A ``FleetStatus`` of ``study`` in ``storage`` (an RDB storage), measured over the last
    ``window_minutes`` (see the module docstring)."""
    from optuna.trial import TrialState

    from sweeper import _optuna, attrs
    from sweeper.study import Budget, stored_spec
    from sweeper.work.requeue import FAILED_TRIAL, RETRY_HISTORY

    spec = stored_spec(study)
    budget = Budget(study, storage, spec.budget)
    grace = float(spec.storage.grace_period)
    window_s = float(window_minutes) * 60.0
    rows = _optuna.fleet_rows(
        storage.engine,
        budget.study_id,
        keys={
            "worker": attrs.WORKER,
            "task": attrs.CLUSTER_TASK,
            "retry": FAILED_TRIAL,
            "history": RETRY_HISTORY,
            "replicate": attrs.REPLICATE_OF,
            "requeued": attrs.REQUEUED_AS,
        },
        window_seconds=window_s,
        waiting_limit=LISTED_WAITING,
    )
    used = budget.used()
    stale = {n for _, n, _ in _optuna.stale_trials(storage.engine, budget.study_id, grace)}
    running = [
        RunningTrial(
            number=number,
            worker=None if worker is None else str(worker),
            host=host_of(None if worker is None else str(worker)),
            task=None if task is None else str(task),
            epoch=epoch,
            heartbeat_age_s=beat_age,
            running_s=running_s,
            stale=number in stale,
        )
        for number, worker, task, epoch, beat_age, running_s in rows["running"]
    ]
    waiting = [
        WaitingTrial(
            n,
            None if r is None else int(r),
            int(h[-1]) if h else None,
            None if p is None else int(p),
        )
        for n, r, h, p in rows["waiting"]
    ]
    states = {s.name.lower(): rows["states"].get(s.name, 0) for s in TrialState}
    left = None if budget.limit is None else max(budget.limit - used, 0)
    age = rows["study_age"]
    span = None if age is None else min(window_s, max(age, 0.0))
    finished = rows["finished"]
    per_minute = finished / (span / 60.0) if finished and span else None
    to_finish = None if left is None else left + states["running"] + states["waiting"]
    unattended = bool(to_finish) and all(t.stale for t in running)
    eta_s, basis = _eta(to_finish, left, states, per_minute, finished, span, unattended)
    return FleetStatus(
        study=study.study_name,
        taken_at=rows["now"].isoformat(timespec="seconds") + "Z",
        budget_limit=budget.limit,
        budget_used=used,
        budget_left=left,
        epochs=spec.training.epochs,
        grace_period_s=grace,
        states=states,
        running=running,
        waiting=waiting,
        window_s=window_s,
        span_s=span,
        finished_in_window=finished,
        per_minute=per_minute,
        to_finish=to_finish,
        eta_s=eta_s,
        eta_basis=basis,
        unattended=unattended,
    )


def _eta(
    to_finish: int | None,
    left: int | None,
    states: dict[str, int],
    per_minute: float | None,
    finished: int,
    span: float | None,
    unattended: bool = False,
) -> tuple[float | None, str]:
    """The ETA in seconds (None: unknown) and the sentence that says what it rests on."""
    if to_finish is None or left is None:
        return None, "the budget is unlimited: workers run until stopped"
    parts = f"{left} unclaimed + {states['running']} running + {states['waiting']} waiting"
    if to_finish == 0:
        return 0.0, "nothing left to run"
    if unattended:
        return None, f"no live worker: {_n(to_finish, 'trial')} to finish ({parts})"
    if per_minute is None or span is None:
        return None, (
            f"unknown: no trial finished in the last {duration(span or 0)}; "
            f"{_n(to_finish, 'trial')} to finish ({parts})"
        )
    eta = to_finish / per_minute * 60.0
    basis = (
        f"{_n(to_finish, 'trial')} to finish ({parts}) at {per_minute:.3g}/min, "
        f"from {_n(finished, 'trial')} finished in the last {duration(span)}"
    )
    if finished < FEW:
        basis += f"; rough: only {_n(finished, 'trial')}"
    return eta, basis


# -- rendering --------------------------------------------------------------------------------


def duration(seconds: float) -> str:
    """``42 s``, ``7.5 min``, ``3.2 h``, ``2.1 d``: short and readable."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.3g} min"
    if seconds < 36 * 3600:
        return f"{seconds / 3600:.3g} h"
    return f"{seconds / 86400:.3g} d"


def _n(count: int, word: str) -> str:
    """``1 trial``, ``2 trials``."""
    return f"{count} {word}{'' if count == 1 else 's'}"


def _numbers(numbers: list[int], total: int) -> str:
    shown = ", ".join(str(n) for n in numbers)
    return shown + (f" and {total - len(numbers)} more" if total > len(numbers) else "")


def render(status: FleetStatus) -> list[str]:
    """The status as text lines (pure: no I/O)."""
    from sweeper.flags import format_table

    s = status
    name = one_line(s.study)
    if s.budget_limit is None:
        budget = f"{s.budget_used} trials used of an unlimited budget"
    else:
        budget = f"{s.budget_used} of {s.budget_limit} trials used, {s.budget_left} left"
    lines = [f"study '{name}': {budget} (at {s.taken_at}, database time)"]
    counts = ", ".join(f"{n} {state}" for state, n in s.states.items() if n)
    lines.append(f"trials: {counts or 'none'}")
    workers = {t.worker for t in s.running if t.worker is not None}
    hosts = {t.host for t in s.running if t.host is not None}
    line = (
        f"running: {_n(len(s.running), 'trial')}, {_n(len(workers), 'worker')} on "
        f"{_n(len(hosts), 'host')}"
        if s.running
        else "running: none"
    )
    if s.stale:
        line += (
            f"; {len(s.stale)} stale (silent past the {s.grace_period_s:g} s grace; the next "
            f"claim or 'sweeper reap' re-queues them): {_numbers(s.stale, len(s.stale))}"
        )
    lines.append(line)
    by_host: dict[str | None, list[RunningTrial]] = {}
    for t in s.running:
        by_host.setdefault(t.host, []).append(t)
    for host in sorted(by_host, key=lambda h: (h is None, h or "")):
        trials = sorted(by_host[host], key=lambda t: (t.worker or "", t.number))
        where = f"host {one_line(host)}" if host is not None else "worker not recorded yet"
        lines.append(f"  {where}: {_n(len(trials), 'trial')}")
        rows = [
            {
                "worker": t.worker,
                "trial": t.number,
                "epoch": f"{t.epoch}/{s.epochs}" if t.epoch is not None else f"0/{s.epochs}",
                "heartbeat": "none"
                if t.heartbeat_age_s is None
                else f"{duration(t.heartbeat_age_s)} ago",
                "running": None if t.running_s is None else duration(t.running_s),
                # Only on a cluster: the scheduler's task names the log to read.
                **({"task": t.task} if any(r.task for r in s.running) else {}),
                "": "STALE" if t.stale else "",
            }
            for t in trials
        ]
        lines += ["    " + row for row in format_table(rows).splitlines()]
    n_waiting = s.states["waiting"]
    if n_waiting:
        named = [
            f"{w.number} (copy of {w.copy_of})"
            if w.copy_of is not None
            else f"{w.number} (retry of {w.retry_of})"
            if w.retry_of is not None
            else f"{w.number} (replicate of {w.replicate_of})"
            if w.replicate_of is not None
            else str(w.number)
            for w in s.waiting
        ]
        shown = ", ".join(named)
        more = f" and {n_waiting - len(s.waiting)} more" if n_waiting > len(s.waiting) else ""
        lines.append(f"waiting: {n_waiting}: {shown}{more}")
    else:
        lines.append("waiting: none")
    if s.per_minute is None:
        lines.append(f"rate: no trial finished in the last {duration(s.span_s or s.window_s)}")
    else:
        lines.append(
            f"rate: {s.per_minute:.3g} trials/min over the last {duration(s.span_s or 0)} "
            f"({s.finished_in_window} finished)"
        )
    if s.unattended:
        lines.append(
            f"workers: none alive: {_n(s.to_finish or 0, 'trial')} wait for one; start "
            f"one with 'sweeper worker --study {name}'"
        )
    eta = "unknown" if s.eta_s is None else duration(s.eta_s)
    if s.eta_s is None and (s.budget_limit is None or s.unattended):
        eta = "none"
    lines.append(f"ETA: {eta} ({s.eta_basis})")
    return lines


def as_json(status: FleetStatus) -> dict[str, Any]:
    """The status as plain JSON data (every field, and ``stale``)."""
    data = dataclasses.asdict(status)
    data["stale"] = status.stale
    return data


# -- the command ------------------------------------------------------------------------------


def _number(unit: str, low: float, high: float | None = None) -> Callable[[str], float]:
    """An argparse type: a finite number of ``unit`` >= ``low`` (> 0 when ``low`` is 0),
    and <= ``high`` when given."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        above = value > 0 if low == 0 else value >= low
        if not (math.isfinite(value) and above and (high is None or value <= high)):
            bounds = f">= {low:g}" if high is None else f"in ({low:g}, {high:g}]"
            raise argparse.ArgumentTypeError(f"must be a number of {unit} {bounds} (got {text!r})")
        return value

    return parse


def register(subparsers: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Add ``status`` to the CLI's ``subparsers``."""
    status = subparsers.add_parser(
        "status",
        parents=parents,
        help="the fleet at a glance: budget, running trials per host, stale ones, ETA",
        description="Budget used and left, trials running per host and worker with their "
        "epoch and heartbeat age, stale and waiting trials, the recent rate of finished "
        "trials and an ETA, read from the database in a few queries.",
    )
    status.add_argument("--study", required=True, metavar="NAME")
    status.add_argument(
        "--watch",
        nargs="?",
        const=DEFAULT_WATCH_S,
        type=_number("seconds", MIN_WATCH_S),
        metavar="SECONDS",
        help=f"refresh every SECONDS (default {DEFAULT_WATCH_S:g}) until Ctrl-C",
    )
    status.add_argument(
        "--window",
        type=_number("minutes", 0, MAX_WINDOW_MIN),
        default=DEFAULT_WINDOW_MIN,
        metavar="MINUTES",
        help=f"measure the rate over the last MINUTES (default {DEFAULT_WINDOW_MIN})",
    )
    status.add_argument("--format", choices=("table", "json"), default="table")
    status.set_defaults(handler=cmd_status)


T = TypeVar("T")


def _interruptible(compute: Callable[[], T]) -> T:
    """``compute()`` in a daemon thread, waited for here: Ctrl-C reaches this (main) thread
    at once as KeyboardInterrupt even while ``compute`` blocks in the database driver, where
    a signal handler would not run until the query returned. Its exception is raised here."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = compute()
        except BaseException as err:  # handed to the waiting thread
            box["error"] = err

    thread = threading.Thread(target=run, name="status-read", daemon=True)
    thread.start()
    thread.join()  # a lock wait: interrupted by SIGINT
    if "error" in box:
        raise box["error"]
    return cast(T, box["value"])


def _open(args: argparse.Namespace) -> tuple[Any, Any]:
    """The storage and the study ``args`` name."""
    from sweeper.flags import open_storage_for
    from sweeper.study import load_study

    storage = open_storage_for(args)
    return storage, load_study(storage, args.study)


def cmd_status(args: argparse.Namespace) -> int:
    """Print the fleet's status once, or every ``--watch`` seconds until Ctrl-C (exit 0)."""
    if args.watch is not None and args.format == "json":
        raise UsageError(
            "--watch refreshes a screen for people; a script runs 'sweeper status "
            "--format json' once per snapshot"
        )
    if args.watch is None:
        storage, study = _open(args)
        if args.format == "json":
            print(json.dumps(as_json(read_status(storage, study, args.window)), indent=2))
        else:
            print("\n".join(render(read_status(storage, study, args.window))))
        return 0
    tty = sys.stdout.isatty()
    try:
        storage, study = _interruptible(lambda: _open(args))
        first = True
        while True:
            text = _interruptible(
                lambda: "\n".join(render(read_status(storage, study, args.window)))
            )
            footer = f"(every {args.watch:g} s; Ctrl-C to stop)"
            if tty:
                sys.stdout.write(f"{CLEAR}{text}\n{footer}\n")
            else:
                sys.stdout.write(("" if first else "\n") + text + "\n")
            sys.stdout.flush()
            first = False
            time.sleep(args.watch)
    except KeyboardInterrupt:
        return 0
