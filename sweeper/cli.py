"""The ``sweeper`` command line. It owns exit codes and one-line error messages.

Exit codes: 0 success; 1 runtime failure (``SweeperError``: the database went away, the data
are corrupt, no completed trial yet, ``db status`` of a stopped server); 2 usage error
(``UsageError`` or a bad flag); 130 stopped by a signal. Every failure prints one line,
``sweeper: error: ...``, with unprintable characters escaped and anything shaped like a
password removed; ``--debug`` (anywhere on the line) adds the traceback.

Bad input is found before anything runs: flags, the spec and the data (including subset
sizes) are checked before a study is created or a trial is claimed, so a mistaken command
never changes what is stored.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from sweeper.errors import SweeperError, UsageError, one_line
from sweeper.flags import (
    check_folder,
    device_flag,
    format_table,
    int_at_least,
    margin_points,
    open_storage_for,
    start_embedded,
    storage_url,
)
from sweeper.spec import MAX_INT, MAX_PACK  # flag bounds shared with the spec's keys

Handler = Callable[[argparse.Namespace], int]


class _Parser(argparse.ArgumentParser):
    """argparse that raises ``UsageError`` (one line) instead of printing usage and exiting."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message} (see '{self.prog} --help')")


# -- output ----------------------------------------------------------------------------------


def emit(rows: list[dict[str, Any]], fmt: str, columns: Sequence[str] | None = None) -> None:
    """Print rows as a table, CSV or JSON on stdout."""
    if fmt == "json":
        print(json.dumps(rows, indent=2, default=str))
    elif fmt == "csv":
        cols = list(columns or (rows[0].keys() if rows else []))
        writer = csv.DictWriter(sys.stdout, fieldnames=cols, extrasaction="ignore")
        writer.writeheader()
        # Stored text (names, reasons, worker ids) escaped as in the table: no terminal codes.
        writer.writerows(
            {k: one_line(v) if isinstance(v, str) else v for k, v in row.items()} for row in rows
        )
    else:
        print(format_table(rows, columns))


# -- shared helpers --------------------------------------------------------------------------


def _study_for(args: argparse.Namespace) -> Any:
    from sweeper.study import load_study

    return load_study(open_storage_for(args), args.study)


# -- commands --------------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    """Create (or load) the spec's study and run trials in this process."""
    from sweeper.spec import load_spec
    from sweeper.storage import open_storage
    from sweeper.study import create_or_load, load_study
    from sweeper.train.data import load_dataset
    from sweeper.work.progress import LOADING_DATA, Progress

    if (args.workers > 1 or args.gpus) and args.max_trials is not None:
        raise UsageError("--max-trials applies to one worker; with --workers set [study] n_trials")
    spec = load_spec(args.spec)
    _check_work_flags(args, spec.training.device, f"{args.spec}: [training] device")
    url = storage_url(args, announce=True)
    storage = open_storage(url, spec.storage)
    # The data (and the subset sizes) before the study exists: a spec that cannot run must
    # not leave a study behind under its name. Workers then read the decoded cache.
    with Progress().waiting(LOADING_DATA):
        load_dataset(spec.data, args.data)
    create_or_load(storage, spec)
    if args.pack is None:
        args.pack = spec.training.pack  # the file's, not the study creator's: it is per worker
    if args.workers > 1 or args.gpus:
        return _launch(args, spec, url)
    study = load_study(storage, spec.name)
    return _work(args, storage, study)


# Worker processes one `run --workers N` may start: each holds up to 4 database connections,
# so 256 already ask for 1,024, beyond any PostgreSQL's default max_connections.
MAX_WORKERS = 256


def _check_work_flags(args: argparse.Namespace, spec_device: str, spec_where: str) -> None:
    """Fail on flags that cannot work here before anything runs: the device, the checkpoint
    folder, the GPUs and the number of workers."""
    from sweeper.train.data import cache_dir
    from sweeper.work.checkpoints import default_root

    device = args.device or spec_device
    _check_device(device, f"--device {device}" if args.device else f"{spec_where} '{device}'")
    folder = args.checkpoint_dir
    check_folder(
        Path(folder) if folder else default_root(),
        "--checkpoint-dir" if folder else "the checkpoint folder ($SWEEPER_CHECKPOINTS)",
    )
    check_folder(cache_dir(), "the data cache ($SWEEPER_CACHE)")
    if getattr(args, "workers", 1) > MAX_WORKERS:
        raise UsageError(f"--workers {args.workers} is more than {MAX_WORKERS} on one host")
    if getattr(args, "gpus", None):
        from sweeper.work.launch import parse_gpus

        visible = _cuda_count()
        for gpu in parse_gpus(args.gpus):
            if int(gpu) >= visible and "CUDA_VISIBLE_DEVICES" not in os.environ:
                raise UsageError(
                    f"--gpus {args.gpus}: this host has {visible} CUDA GPUs "
                    f"(indices 0 to {visible - 1})"
                    if visible
                    else f"--gpus {args.gpus}: no CUDA GPU is visible on this host"
                )
        if device.startswith("cuda:") and device != "cuda:0":
            raise UsageError(
                f"{device} with --gpus: each worker sees only its own GPU; use --device cuda"
            )


def _cuda_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _check_device(device: str, where: str) -> None:
    """A CUDA device must exist here (CPU and ``auto`` always do)."""
    if not device.startswith("cuda"):
        return
    count = _cuda_count()
    if count == 0:
        raise UsageError(f"{where}: no CUDA GPU is visible on this host; use --device cpu")
    index = int(device.partition(":")[2] or 0)
    if index >= count:
        raise UsageError(f"{where}: this host has {count} CUDA GPUs (cuda:0 to cuda:{count - 1})")


def _launch(args: argparse.Namespace, spec: Any, storage_url: str) -> int:
    """Supervise ``--workers`` worker processes (one per GPU with ``--gpus``)."""
    from sweeper.train.data import load_dataset
    from sweeper.work.launch import Launcher, parse_gpus

    gpus = parse_gpus(args.gpus)
    n_workers = args.workers if args.workers > 1 or not gpus else len(gpus)
    load_dataset(spec.data, args.data)  # decode once here; the workers read the cache
    extra = [
        f"--{name.replace('_', '-')}={value}"
        for name in ("data", "device", "checkpoint_dir", "pack")
        if (value := getattr(args, name)) is not None
    ]
    print(
        f"launching {n_workers} workers for study '{spec.name}'"
        + (f" on GPUs {','.join(gpus)}" if gpus else " on CPU slots"),
        file=sys.stderr,
    )
    code = Launcher(spec.name, storage_url, n_workers, gpus, extra).run()
    if code == 0:
        from sweeper.study import describe_study, load_study

        print(describe_study(load_study(open_storage_for(args), spec.name)), file=sys.stderr)
    return code


def _study_with_its_settings(args: argparse.Namespace, announce: bool = False) -> Any:
    """``(storage, study)``: ``--study`` through a storage opened with the study's own
    heartbeat settings."""
    from sweeper.study import load_study, stored_spec

    spec = stored_spec(load_study(open_storage_for(args), args.study))
    storage = open_storage_for(args, spec.storage, announce=announce)
    return storage, load_study(storage, args.study)


def cmd_worker(args: argparse.Namespace) -> int:
    """Join an existing study and run its trials until the budget is met."""
    from sweeper.study import stored_spec

    storage, study = _study_with_its_settings(args, announce=True)
    device = stored_spec(study).training.device
    _check_work_flags(args, device, f"the study's [training] device '{device}'")
    return _work(args, storage, study)


def cmd_confirm(args: argparse.Namespace) -> int:
    """Queue seed replicates of the best configurations now, then run them here."""
    from sweeper.study import stored_spec
    from sweeper.work import confirm

    storage, study = _study_with_its_settings(args, announce=True)
    spec = stored_spec(study)
    top = args.top if args.top is not None else spec.confirm.top_k
    seeds = args.seeds if args.seeds is not None else spec.confirm.seeds
    if top < 1:
        raise UsageError(
            f"study '{one_line(study.study_name)}' sets no [confirm] top_k: give --top K"
        )
    if not args.queue_only:
        _check_work_flags(args, spec.training.device, "the study's [training] device")
    running = confirm.pending(study)
    queued = confirm.enqueue(study, storage, top, seeds)
    print(
        f"queued {queued} seed replicates of the top {top} configurations ({seeds} seeds each)"
        + (
            f"; {running} search trials are still running, so the top may change" if running else ""
        ),
        file=sys.stderr,
    )
    if args.queue_only:
        return 0
    # A budget of 0 serves queued trials only: the replicates (and re-queued retries).
    return _work(args, storage, study, budget=0)


def cmd_reap(args: argparse.Namespace) -> int:
    """Fail trials whose heartbeat went silent and re-queue them with the same parameters."""
    from optuna.trial import TrialState

    from sweeper.study import stored_spec
    from sweeper.work.requeue import reap

    storage, study = _study_with_its_settings(args)
    settings = stored_spec(study).storage
    reaped = reap(study, storage, settings.grace_period, settings.max_retry)
    waiting = [t.number for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,))]
    numbers = [number for number, _ in reaped]
    print(f"failed {len(reaped)} stale trials {numbers}; {len(waiting)} trials wait for a worker")
    return 0


def _work(args: argparse.Namespace, storage: Any, study: Any, budget: int | None = None) -> int:
    """Run a worker on ``study``; ``budget`` overrides the spec's (0: queued trials only)."""
    from sweeper.study import describe_study, stored_spec
    from sweeper.work.checkpoints import CheckpointStore
    from sweeper.work.progress import Progress
    from sweeper.work.worker import Worker

    checkpoints = CheckpointStore(Path(args.checkpoint_dir)) if args.checkpoint_dir else None
    pack = args.pack if args.pack is not None else stored_spec(study).training.pack
    worker = Worker(
        study,
        storage,
        slots=pack,
        data_override=args.data,
        device=args.device,
        checkpoints=checkpoints,
        budget=budget,
    )
    _ = worker.data  # bad data (or subset sizes) fail here, before any line or trial
    progress = Progress()
    budget = worker.budget.limit
    shown = one_line(study.study_name)
    progress.say(
        f"study '{shown}': budget {budget if budget is not None else 'unlimited'}"
        f" trials, {worker.spec.training.epochs} epochs each, on {worker.device}"
        + (f", {pack} at a time" if pack > 1 else "")
    )
    summary = worker.run(max_trials=args.max_trials)
    progress.say(
        f"this worker ran {summary.total} trials: "
        + ", ".join(
            f"{n} {word}"
            for word, n in zip(
                ("complete", "pruned", "failed"), summary.finished.values(), strict=True
            )
        )
    )
    progress.say(describe_study(study))
    return 0


def cmd_best(args: argparse.Namespace) -> int:
    """Print the best configuration with its uncertainty (sweeper.dashboard.view_commands)."""
    from sweeper.dashboard.view_commands import cmd_best as best

    return best(args)


def cmd_trials(args: argparse.Namespace) -> int:
    """List the study's trials."""
    from sweeper.study import TRIAL_COLUMNS, parse_states, trial_rows

    states = parse_states(args.state.split(",")) if args.state else None
    emit(trial_rows(_study_for(args), states), args.format, TRIAL_COLUMNS)
    return 0


def cmd_studies(args: argparse.Namespace) -> int:
    """List the studies in the storage."""
    from sweeper.study import study_rows

    emit(study_rows(open_storage_for(args)), args.format)
    return 0


def cmd_db(args: argparse.Namespace) -> int:
    """Manage the embedded PostgreSQL server."""
    from sweeper.embedded import EmbeddedPostgres
    from sweeper.storage import redact

    server = EmbeddedPostgres()
    check_folder(server.data_dir, "the embedded PostgreSQL's folder ($SWEEPER_HOME)")
    if args.action == "start":
        print(redact(start_embedded(server)))
    elif args.action == "stop":
        print("stopped" if server.stop() else "not running")
    elif args.action == "url":
        print(server.url())  # the one output that shows the password: its job is to hand it out
    else:
        pid = server.pid()
        if pid is None:  # not a failure of ours, but scripts test `db status` by its code
            raise SweeperError(
                f"the embedded PostgreSQL is stopped (data in {server.data_dir}); "
                "start it with 'sweeper db start'"
            )
        print(f"running: pid {pid}, 127.0.0.1:{server.port()}, data in {server.data_dir}")
    return 0


# -- parser ----------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The ``sweeper`` parser with every subcommand (the views' come from the dashboard)."""
    common = _Parser(add_help=False)
    common.add_argument(
        "--storage",
        metavar="URL",
        help="postgresql+psycopg2://USER:PASSWORD@HOST:PORT/DB "
        "(default: $SWEEPER_STORAGE, else the embedded PostgreSQL)",
    )
    common.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    parser = _Parser(prog="sweeper", description="lr x weight-decay sweeps for AdamW.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    def work_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--data", metavar="PATH", help="CIFAR-10 location (overrides the spec)")
        p.add_argument(
            "--device", type=device_flag, help="cpu, cuda or cuda:N (default: the spec's)"
        )
        p.add_argument(
            "--max-trials",
            type=int_at_least(0, MAX_INT),
            metavar="N",
            help="stop after N trials here (0: create or check the study, run none)",
        )
        p.add_argument("--checkpoint-dir", metavar="DIR", help="where epoch checkpoints go")
        p.add_argument(
            "--pack",
            type=int_at_least(1, MAX_PACK),
            metavar="K",
            help="train K trials at once as one stacked model (default: the spec's, 1)",
        )

    run = sub.add_parser("run", parents=[common], help="create or load a study and run trials")
    run.add_argument("spec", metavar="SPEC", help="study spec file (studies/*.toml)")
    work_options(run)
    run.add_argument(
        "--workers",
        type=int_at_least(1),
        default=1,
        metavar="N",
        help="worker processes on this host (default 1: run in this process)",
    )
    run.add_argument(
        "--gpus",
        metavar="all|0,1,...",
        help="one worker per GPU, each pinned with CUDA_VISIBLE_DEVICES",
    )
    run.set_defaults(handler=cmd_run)

    worker = sub.add_parser("worker", parents=[common], help="join a study and run its trials")
    worker.add_argument("--study", required=True, metavar="NAME")
    work_options(worker)
    worker.set_defaults(handler=cmd_worker)

    best = sub.add_parser(
        "best",
        parents=[common],
        help="the best configuration, corrected for selection, and what matters",
    )
    best.add_argument("--study", required=True, metavar="NAME")
    best.add_argument("--format", choices=("table", "json"), default="table")
    best.add_argument(
        "--margin",
        type=margin_points,
        default=1.0,
        metavar="POINTS",
        help="'does not matter' means: moves accuracy by less than this many points anywhere "
        "in the space tried (default 1: one run's seed noise on the tutorial CNN)",
    )
    best.set_defaults(handler=cmd_best)

    trials = sub.add_parser("trials", parents=[common], help="list a study's trials")
    trials.add_argument("--study", required=True, metavar="NAME")
    trials.add_argument("--format", choices=("table", "csv", "json"), default="table")
    trials.add_argument("--state", metavar="STATES", help="e.g. complete,pruned")
    trials.set_defaults(handler=cmd_trials)

    studies = sub.add_parser("studies", parents=[common], help="list studies")
    studies.add_argument("--format", choices=("table", "json"), default="table")
    studies.set_defaults(handler=cmd_studies)

    confirm = sub.add_parser(
        "confirm", parents=[common], help="re-run the best configurations with new seeds"
    )
    confirm.add_argument("--study", required=True, metavar="NAME")
    confirm.add_argument(
        "--top",
        type=int_at_least(1, MAX_INT),
        metavar="K",
        help="replicate the K best configurations (default: the spec's [confirm] top_k)",
    )
    confirm.add_argument(
        "--seeds",
        type=int_at_least(1, MAX_INT),
        metavar="R",
        help="new seeds per configuration (default: the spec's [confirm] seeds, 3)",
    )
    confirm.add_argument(
        "--queue-only", action="store_true", help="queue the replicates; let workers run them"
    )
    work_options(confirm)
    confirm.set_defaults(handler=cmd_confirm)

    reap = sub.add_parser("reap", parents=[common], help="fail and re-queue stale trials now")
    reap.add_argument("--study", required=True, metavar="NAME")
    reap.set_defaults(handler=cmd_reap)

    db = sub.add_parser("db", parents=[common], help="the embedded PostgreSQL server")
    db.add_argument("action", choices=("start", "stop", "status", "url"))
    db.set_defaults(handler=cmd_db)

    _register_extensions(sub, [common])
    return parser


def _register_extensions(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    from sweeper.cluster import slurm, status
    from sweeper.dashboard import view_commands

    view_commands.register(sub, parents)
    slurm.register(sub, parents)
    status.register(sub, parents)


def _version() -> str:
    import sweeper

    return f"sweeper {sweeper.__version__}"


def _secrets(arguments: Sequence[str]) -> list[str]:
    """Anything shaped like a password in the command line or $SWEEPER_STORAGE, whatever the
    shape of the mistake (``sweeper.storage.secrets_in``), to scrub from every message."""
    from sweeper.storage import ENV_VAR, secrets_in

    found: list[str] = []
    for text in [*arguments, os.environ.get(ENV_VAR, "")]:
        value = text.partition("=")[2] if text.startswith("--") else text
        found += secrets_in(value)
    return sorted({s for s in found if s}, key=len, reverse=True)


def _quiet_optuna() -> None:
    """Our own progress lines replace Optuna's INFO logs; its warnings about features we use
    on purpose (heartbeats with ask/tell, retry callbacks) would only alarm users."""
    import warnings

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")


def _is_database_error(err: BaseException) -> bool:
    """A SQLAlchemy or Optuna storage error (checked by name: importing either is slow)."""
    names = {c.__module__.split(".")[0] + "." + c.__name__ for c in type(err).__mro__}
    return any(n in names for n in ("sqlalchemy.SQLAlchemyError", "optuna.StorageInternalError"))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sweeper`` console script."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    _quiet_optuna()
    debug = "--debug" in arguments
    try:
        args = build_parser().parse_args(arguments)
        if getattr(args, "study", None) is not None:
            from sweeper.spec import check_study_name

            args.study = check_study_name(args.study.strip(), "--study")
        handler: Handler = args.handler
        return handler(args)
    except KeyboardInterrupt:
        print("sweeper: stopped", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`sweeper trials | head`): not an error of ours. Point stdout at
        # devnull so the interpreter's final flush does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as err:
        if isinstance(err, SweeperError):
            message, code = str(err), err.exit_code
        elif isinstance(err, OSError) and err.filename is not None:
            # A file or folder the system refused (full disk, permissions): name it.
            message, code = f"cannot use {err.filename}: {err.strerror or err}", 1
        elif _is_database_error(err):
            # Name the driver's reason: Optuna wraps any failed commit, a lost connection
            # included, in "invalid data in the commit, e.g. exceeding max length".
            from sweeper.storage import explain_refusal
            from sweeper.work.worker import root_cause

            cause = root_cause(err)
            message, code = explain_refusal(cause) or f"the database failed: {cause}", 1
            message += " (run with --debug for the traceback)" if not debug else ""
        else:
            message = f"unexpected {type(err).__name__}: {err}".splitlines()[0]
            message += " (run with --debug for the traceback)" if not debug else ""
            code = 1
        text = "".join(traceback.format_exception(err)) if debug else ""
        for secret in _secrets(arguments):
            message = message.replace(secret, "***")
            text = text.replace(secret, "***")
        if text:
            print(text, file=sys.stderr, end="")
        print(f"sweeper: error: {one_line(message)}", file=sys.stderr)
        return code


if __name__ == "__main__":
    raise SystemExit(main())
