"""SLURM: one job array whose tasks each run ``sweeper worker`` on one study.

    sweeper slurm studies/cifar10_adamw.toml --tasks 8 --partition gpu --time 4:00:00

creates (or loads) the spec's study exactly as ``sweeper run`` does, then submits one job
array of ``--tasks`` tasks. Each task is one worker; the study's budget is global, so the
tasks share its trials and the array ends when the budget is used. ``--dry-run`` prints the
batch script and creates, starts and submits nothing.

Contract:

- ``ArrayJob`` holds every choice and checks them when it is made (``UsageError``, one line:
  nothing is created or submitted before). ``render_script(job)`` is a pure function of it:
  the batch script as text. Every value on a ``#SBATCH`` line is one token without
  whitespace; every word of the command is shell-quoted.
- The storage URL reaches the tasks through the environment only: ``submit`` runs
  ``sbatch --parsable`` with ``SWEEPER_STORAGE`` in sbatch's environment, and the script
  exports the submitter's environment (``--export=ALL``). The URL is never in sbatch's
  arguments, in the script (which SLURM keeps and shows through ``scontrol write
  batch_script``) or in a task's command line. SLURM keeps a job's environment in the
  controller's state folder, which only root and SlurmUser read.
- Signals: the task ``exec``s the worker, so the worker *is* the batch step's process and
  SLURM's SIGTERM (``scancel``, preemption, the time limit) reaches it with no shell in
  between; the worker fails its running trials, re-queues them (they resume from their last
  epoch checkpoint on whichever task claims them next) and exits 130. ``--signal=B:TERM@120``
  asks for that SIGTERM 120 s before the time limit (SLURM may send it up to 60 s earlier
  still), so the worker stops on its own terms even where the site's KillWait (the wait
  between SIGTERM and SIGKILL) is short; it is left out for time limits under 10 minutes,
  where the SIGTERM at the limit has to do.
- ``--requeue``: a task that is preempted in REQUEUE mode or loses its node goes back to the
  queue, and its worker claims whatever is left when it runs again (the budget is global, so
  a re-run task cannot overshoot it). ``--open-mode=append`` keeps the earlier run's lines in
  the task's log. A task suspended by preemption stops sending heartbeats; after the grace
  period another worker re-queues its trials (``sweeper.work.requeue``).
- Checkpoints go to ``--checkpoint-dir``, by default the submitting user's checkpoint folder
  (``$SWEEPER_CHECKPOINTS``, else ``$SWEEPER_HOME/checkpoints``, else the user data dir),
  written into the script as an absolute path. A trial resumes on another node only when
  that node sees the folder (a shared file system, as home directories on clusters usually
  are); elsewhere it starts again from epoch 0, correct but slower.
- ``--data`` is passed through as the compute nodes see it, and must exist on the submit
  host too (a shared file system; a typo is exit 2 here, not exit 1 in every task): it is
  checked, never read or created (a submit host needs neither the data set nor a GPU).
- Before the study is created, ``sinfo`` is asked what the cluster offers: GPUs per task
  that no node (of ``--partition``) has are a ``UsageError`` naming ``--gpus-per-task 0``,
  not sbatch's "Invalid generic resource" after the study exists.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sweeper.errors import SweeperError, UsageError, one_line

# SLURM's default MaxArraySize is 1001 (task ids 0-1000); sites that allow more are rare,
# and 1,000 workers already need 4,000 PostgreSQL connections.
MAX_TASKS = 1000
MAX_GPUS_PER_TASK = 64  # more GPUs than any node holds; a typo, not a request
MAX_CPUS_PER_TASK = 4096  # likewise for cores
DEFAULT_OUTPUT = "sweeper-%A_%a.log"  # %A the array's job id, %a the task id: one log a task
SIGNAL_LEAD_S = 120  # SIGTERM this long before the time limit (see the module docstring)
# Below this time limit an early signal would eat a large share of the run; SLURM's own
# SIGTERM at the limit (followed by KillWait) stops the worker instead.
MIN_LIMIT_FOR_EARLY_SIGNAL_S = 600
# Options the script sets itself; an --sbatch line may not change them (the URL must travel
# in the environment; the array is --tasks; each task's log is --output).
OWNED_OPTIONS = ("--array", "--export", "--export-file", "--output")
OWNED_SHORT = ("-a", "-o")

_OPTION_NAME = re.compile(r"-[A-Za-z]\S*|--[A-Za-z][A-Za-z0-9-]*")
_TIME = re.compile(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?")
_JOB_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def time_limit_s(text: str) -> int | None:
    """Seconds in a SLURM time limit (``M``, ``M:S``, ``H:M:S``, ``D-H``, ``D-H:M``,
    ``D-H:M:S``); None for ``UNLIMITED``/``INFINITE``/``0``; ``UsageError`` otherwise."""
    if text.upper() in ("UNLIMITED", "INFINITE"):
        return None
    match = _TIME.fullmatch(text)
    if not match:
        raise UsageError(
            f"--time {text!r} is not a SLURM time limit: give MINUTES, HH:MM:SS or "
            "DAYS-HH:MM:SS (e.g. 90, 4:00:00, 2-00:00:00)"
        )
    days, first, second, third = match.groups()
    numbers = [int(n) for n in (first, second, third) if n is not None]
    if days is not None:
        hours, minutes, seconds = [*numbers, 0, 0][:3]
        total = ((int(days) * 24 + hours) * 60 + minutes) * 60 + seconds
    elif len(numbers) == 1:
        total = numbers[0] * 60
    elif len(numbers) == 2:
        total = numbers[0] * 60 + numbers[1]
    else:
        total = (numbers[0] * 60 + numbers[1]) * 60 + numbers[2]
    return total or None  # SLURM reads a limit of 0 as "no limit"


def _token(text: str, flag: str) -> str:
    """``text`` as one ``#SBATCH`` value: printable, non-empty, no whitespace."""
    if not text or not text.isprintable() or any(c.isspace() for c in text):
        raise UsageError(f"{flag} must be one word without spaces (got {text!r})")
    return text


def sbatch_line(text: str) -> str:
    """An extra ``#SBATCH`` option (``--mem=16G``, or the same with ``#SBATCH`` before it):
    one line that starts with ``-`` and leaves the options the script owns alone."""
    if not text.isprintable():
        raise UsageError(f"--sbatch must be one line (got {text!r})")
    line = text.strip().removeprefix("#SBATCH").strip()
    name = line.split("=", 1)[0].split()[0] if line else ""
    if not _OPTION_NAME.fullmatch(name):
        raise UsageError(f"--sbatch takes an sbatch option such as --mem=16G (got {text!r})")
    owned = (
        any(option.startswith(name) for option in OWNED_OPTIONS)
        if name.startswith("--") and len(name) > 2
        else name[:2] in OWNED_SHORT
    )
    if owned:
        raise UsageError(
            f"--sbatch {line!r}: the script sets --array (use --tasks), --export (the storage "
            "URL travels in the environment) and --output (use --output) itself"
        )
    return line


@dataclass(frozen=True)
class ArrayJob:
    """Everything one submission asks for; checked when made (see the module docstring)."""

    study: str
    tasks: int
    command: tuple[str, ...]  # how a task starts sweeper, e.g. ("/venv/bin/sweeper",)
    checkpoint_dir: str  # absolute, as every node sees it
    gpus_per_task: int = 1  # one trial stream per GPU; --pack fills a GPU with more
    cpus_per_task: int | None = None  # None: the site's default (usually 1)
    max_running: int | None = None  # None: as many tasks at once as SLURM allows
    pack: int | None = None  # None: the spec's [training] pack
    device: str | None = None  # None: the spec's [training] device
    data: str | None = None  # None: the spec's [data] path (or $SWEEPER_DATA)
    partition: str | None = None
    time: str | None = None
    account: str | None = None
    output: str = DEFAULT_OUTPUT
    sbatch: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not 1 <= self.tasks <= MAX_TASKS:
            raise UsageError(f"--tasks must be an integer in 1..{MAX_TASKS} (got {self.tasks})")
        if self.max_running is not None and self.max_running < 1:
            raise UsageError(f"--max-running must be >= 1 (got {self.max_running})")
        if self.gpus_per_task < 0:
            raise UsageError(f"--gpus-per-task must be >= 0 (got {self.gpus_per_task})")
        if self.cpus_per_task is not None and self.cpus_per_task < 1:
            raise UsageError(f"--cpus-per-task must be >= 1 (got {self.cpus_per_task})")
        for flag, value in (
            ("--partition", self.partition),
            ("--account", self.account),
            ("--time", self.time),
            ("--output", self.output),
        ):
            if value is not None:
                _token(value, flag)
        if self.time is not None:
            time_limit_s(self.time)
        if "%a" not in self.output:
            raise UsageError(
                f"--output {self.output!r} must contain %a (the task id): each task writes "
                "its own log"
            )
        for line in self.sbatch:
            sbatch_line(line)

    @property
    def job_name(self) -> str:
        """``sweeper-<study>``, with characters a job name or log file would trip on
        replaced."""
        return "sweeper-" + _JOB_NAME_UNSAFE.sub("_", self.study)[:64]

    def worker_argv(self) -> list[str]:
        """The command each task runs, the storage URL not among its words."""
        argv = [*self.command, "worker", "--study", self.study]
        argv += ["--checkpoint-dir", self.checkpoint_dir]
        for flag, value in (
            ("--pack", self.pack),
            ("--device", self.device),
            ("--data", self.data),
        ):
            if value is not None:
                argv += [flag, str(value)]
        return argv


def render_script(job: ArrayJob) -> str:
    """The batch script for ``job``: ``#SBATCH`` lines, then ``exec sweeper worker``."""
    throttle = f"%{job.max_running}" if job.max_running is not None else ""
    options = [
        f"--job-name={job.job_name}",
        f"--array=0-{job.tasks - 1}{throttle}",
        "--ntasks=1",
    ]
    if job.gpus_per_task > 0:
        options.append(f"--gres=gpu:{job.gpus_per_task}")
    if job.cpus_per_task is not None:
        options.append(f"--cpus-per-task={job.cpus_per_task}")
    for flag, value in (
        ("--partition", job.partition),
        ("--time", job.time),
        ("--account", job.account),
    ):
        if value is not None:
            options.append(f"{flag}={value}")
    options += [f"--output={job.output}", "--open-mode=append", "--export=ALL", "--requeue"]
    limit = time_limit_s(job.time) if job.time is not None else None
    if limit is None or limit >= MIN_LIMIT_FOR_EARLY_SIGNAL_S:
        options.append(f"--signal=B:TERM@{SIGNAL_LEAD_S}")
    options += [sbatch_line(line) for line in job.sbatch]
    command = " ".join(shlex.quote(word) for word in job.worker_argv())
    return "\n".join(
        [
            "#!/bin/bash",
            *(f"#SBATCH {option}" for option in options),
            "",
            f"# One task = one sweeper worker on study {one_line(job.study)}; the study's budget",
            "# is global, so the tasks share its trials. Written by `sweeper slurm`.",
            "# The storage URL arrives in SWEEPER_STORAGE (sbatch exports it), never in this file.",
            "# exec: the worker is the step's process, so SLURM's SIGTERM (scancel, preemption,",
            "# the time limit) reaches it directly; it re-queues its running trial and exits.",
            "# --requeue: a preempted task comes back and claims what is left of the budget.",
            'export OMP_NUM_THREADS="${SLURM_CPUS_PER_TASK:-1}"  # the cores SLURM gave the task',
            "export PYTHONUNBUFFERED=1  # log lines reach the task's log as they happen",
            f"exec {command}",
            "",
        ]
    )


def submit(script: str, storage_url: str, sbatch: str = "sbatch") -> str:
    """Submit ``script`` through ``sbatch --parsable`` (the URL in its environment only);
    the job id, or ``SweeperError`` with sbatch's own first line."""
    from sweeper.storage import ENV_VAR

    env = {**os.environ, ENV_VAR: storage_url}
    # An inherited SBATCH_EXPORT (NONE, say) would override the script's --export=ALL and
    # leave the tasks without the URL.
    env.pop("SBATCH_EXPORT", None)
    try:
        result = subprocess.run(
            [sbatch, "--parsable"],
            input=script,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise SweeperError("sbatch did not answer within 120 s; is slurmctld up?") from None
    lines = [line.strip() for line in result.stderr.splitlines() if line.strip()]
    if result.returncode != 0:
        reason = lines[-1] if lines else f"exit code {result.returncode}"
        raise SweeperError(f"sbatch refused the job array: {reason}")
    job_id = result.stdout.strip().split(";")[0]  # --parsable: "ID" or "ID;CLUSTER"
    if not job_id.isdigit():
        raise SweeperError(f"sbatch answered {result.stdout.strip()!r}, not a job id")
    return job_id


def local_only(url: str) -> bool:
    """Whether ``url``'s server is reachable from this host only (a loopback address or a
    Unix socket)."""
    from sqlalchemy.engine import make_url

    host = make_url(url).host or ""
    return host in ("", "localhost", "::1") or host.startswith("127.")


def _sweeper_command() -> tuple[str, ...]:
    """This installation's ``sweeper``, by absolute path (the tasks need not have it on
    PATH; on a cluster the same path is on the shared file system)."""
    script = Path(sys.executable).with_name("sweeper")
    if script.is_file() and os.access(script, os.X_OK):
        return (str(script),)
    return (sys.executable, "-m", "sweeper.cli")


def _gpus_per_node(text: str) -> int:
    """The GPUs one node line of ``sinfo -o %G`` offers (``gpu:4``, ``gpu:a100:2(S:0-1)``,
    ``gpu:1,mps:100``; ``(null)`` for none)."""
    total = 0
    for item in re.split(r",(?![^()]*\))", text.strip()):  # commas outside "(S:0-1)"
        fields = item.split("(", 1)[0].split(":")
        if fields[0] == "gpu":
            total += int(fields[-1]) if fields[-1].isdigit() else 1
    return total


def check_gpus_offered(gpus_per_task: int, partition: str | None, sinfo: str) -> None:
    """``UsageError`` when no node (of ``partition``) has ``gpus_per_task`` GPUs; silent when
    it does, or when ``sinfo`` cannot tell (sbatch will say then)."""
    argv = [
        sinfo,
        "--noheader",
        "--format=%G",
        *([f"--partition={partition}"] if partition else []),
    ]
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    if result.returncode != 0 or not lines:
        return
    most = max(_gpus_per_node(line) for line in lines)
    if most >= gpus_per_task:
        return
    where = f"partition {partition}" if partition else "the cluster"
    offered = f"at most {most} GPUs per node" if most else "no GPUs (sinfo lists no gpu gres)"
    raise UsageError(
        f"--gpus-per-task {gpus_per_task}: {where} offers {offered}; give --gpus-per-task 0 "
        "to run the workers on CPU cores"
        + (f" (or --gpus-per-task {most} or fewer)" if most else "")
    )


def _device_for(args: argparse.Namespace, spec_device: str, where: str) -> str | None:
    """The ``--device`` the tasks get: the flag, or CPU when no GPU is asked for and the spec
    says ``auto`` (a node's GPUs that SLURM did not give the task are not the task's)."""
    device = args.device or spec_device
    shown = f"--device {device}" if args.device else f"{where} '{device}'"
    gpus = args.gpus_per_task
    if device.startswith("cuda"):
        if gpus == 0:
            raise UsageError(f"{shown} needs a GPU per task: give --gpus-per-task 1 or more")
        index = int(device.partition(":")[2] or 0)
        if index >= gpus:
            raise UsageError(
                f"{shown}: each task sees only its own {gpus} GPUs (cuda:0 to cuda:{gpus - 1})"
            )
    elif device == "cpu" and gpus > 0:
        raise UsageError(
            f"{shown} with --gpus-per-task {gpus}: the GPUs would sit idle; give --gpus-per-task 0"
        )
    if device == "auto" and gpus == 0:
        return "cpu"
    return args.device


def job_from_args(args: argparse.Namespace, spec: Any) -> ArrayJob:
    """The ``ArrayJob`` the command line asks for, every flag checked (``UsageError``)."""
    from sweeper.flags import check_folder
    from sweeper.work.checkpoints import default_root

    device = _device_for(args, spec.training.device, f"{args.spec}: [training] device")
    folder = Path(args.checkpoint_dir) if args.checkpoint_dir else default_root()
    check_folder(folder, "--checkpoint-dir" if args.checkpoint_dir else "the checkpoint folder")
    if args.data is not None and not Path(args.data).exists():
        raise UsageError(
            f"--data {args.data}: no such file or folder on this host; give the data's path "
            "on a file system the submit host and the nodes share"
        )
    return ArrayJob(
        study=spec.name,
        tasks=args.tasks,
        command=_sweeper_command(),
        checkpoint_dir=str(folder.absolute()),
        gpus_per_task=args.gpus_per_task,
        cpus_per_task=args.cpus_per_task,
        max_running=args.max_running,
        pack=args.pack,
        device=device,
        data=args.data,
        partition=args.partition,
        time=args.time,
        account=args.account,
        output=args.output,
        sbatch=tuple(args.sbatch),
    )


def cmd_slurm(args: argparse.Namespace) -> int:
    """Create (or load) the spec's study and submit one job array of workers."""
    from sweeper.flags import storage_url
    from sweeper.spec import load_spec
    from sweeper.storage import normalise_url, open_storage, redact
    from sweeper.study import create_or_load

    spec = load_spec(args.spec)
    job = job_from_args(args, spec)
    script = render_script(job)
    if args.dry_run:
        if args.storage:
            normalise_url(args.storage)  # a bad URL is a usage error here too
        print(script, end="")
        return 0
    sbatch = shutil.which("sbatch")
    if sbatch is None:
        raise UsageError(
            "sbatch is not on PATH: run 'sweeper slurm' on a host that submits SLURM jobs "
            "(--dry-run prints the script without it)"
        )
    if job.gpus_per_task > 0 and (sinfo := shutil.which("sinfo")) is not None:
        check_gpus_offered(job.gpus_per_task, job.partition, sinfo)
    url = storage_url(args, announce=True)
    if local_only(url):
        print(
            f"sweeper: warning: the storage {redact(url)} is reachable from this host only; "
            "tasks on other nodes need a PostgreSQL server they can reach (--storage)",
            file=sys.stderr,
        )
    create_or_load(open_storage(url, spec.storage), spec)
    job_id = submit(script, url, sbatch)
    print(job_id)
    study = shlex.quote(spec.name)
    print(
        f"submitted job array {job_id}: {job.tasks} tasks, each 'sweeper worker --study "
        f"{one_line(study)}'; logs: {job.output.replace('%A', job_id)}",
        file=sys.stderr,
    )
    print(
        f"watch: squeue -j {job_id}; sweeper status --study {one_line(study)}; "
        f"stop: scancel {job_id} (running trials are re-queued)",
        file=sys.stderr,
    )
    return 0


def register(subparsers: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Add ``slurm`` to the CLI's ``subparsers``."""
    from sweeper.flags import device_flag, int_at_least
    from sweeper.spec import MAX_PACK

    slurm = subparsers.add_parser(
        "slurm",
        parents=parents,
        help="create a study and submit a SLURM job array of workers",
        description="Create (or load) the spec's study, then submit one SLURM job array "
        "whose tasks each run 'sweeper worker' on it; the storage URL reaches the tasks "
        "through the environment only. Preempted, cancelled or timed-out tasks re-queue "
        "their running trials, which resume from their checkpoints.",
    )
    slurm.add_argument("spec", metavar="SPEC", help="study spec file (studies/*.toml)")
    slurm.add_argument(
        "--tasks",
        type=int_at_least(1, MAX_TASKS),
        required=True,
        metavar="N",
        help="array tasks, one worker each (each holds up to 4 PostgreSQL connections)",
    )
    slurm.add_argument(
        "--max-running",
        type=int_at_least(1, MAX_TASKS),
        metavar="M",
        help="at most M tasks at once (--array=0-(N-1)%%M; default: as SLURM allows)",
    )
    slurm.add_argument(
        "--gpus-per-task",
        type=int_at_least(0, MAX_GPUS_PER_TASK),
        default=1,
        metavar="G",
        help="GPUs per task, as --gres=gpu:G (default 1; 0 on CPU nodes)",
    )
    slurm.add_argument(
        "--cpus-per-task",
        type=int_at_least(1, MAX_CPUS_PER_TASK),
        metavar="C",
        help="CPU cores per task (default: the site's); also the task's OMP_NUM_THREADS",
    )
    slurm.add_argument(
        "--pack",
        type=int_at_least(1, MAX_PACK),
        metavar="K",
        help="train K trials at once in each task (default: the spec's, 1)",
    )
    slurm.add_argument("--partition", metavar="NAME", help="sbatch --partition")
    slurm.add_argument(
        "--time", metavar="LIMIT", help="sbatch --time, e.g. 4:00:00 (default: the partition's)"
    )
    slurm.add_argument("--account", metavar="NAME", help="sbatch --account")
    slurm.add_argument(
        "--sbatch",
        action="append",
        default=[],
        metavar="OPTION",
        help="an extra #SBATCH option, e.g. --sbatch=--mem=16G (repeatable)",
    )
    slurm.add_argument(
        "--output",
        default=DEFAULT_OUTPUT,
        metavar="PATTERN",
        help="each task's log, relative to this folder (default "
        + DEFAULT_OUTPUT.replace("%", "%%")  # argparse formats help with %
        + ": %%A the job id, %%a the task id)",
    )
    slurm.add_argument(
        "--data", metavar="PATH", help="CIFAR-10 location as the compute nodes see it"
    )
    slurm.add_argument(
        "--checkpoint-dir",
        metavar="DIR",
        help="epoch checkpoints, on a file system every node sees (default: your "
        "checkpoint folder, $SWEEPER_HOME/checkpoints)",
    )
    slurm.add_argument(
        "--device",
        type=device_flag,
        help="cpu, cuda or cuda:N (default: the spec's; cpu when --gpus-per-task 0)",
    )
    slurm.add_argument(
        "--dry-run",
        action="store_true",
        help="print the batch script; create, start and submit nothing",
    )
    slurm.set_defaults(handler=cmd_slurm)
