"""``sweeper slurm`` against a real SLURM: Debian's munged, slurmctld and slurmd started as a
one-node cluster by the tests (``slurmtools.py``), CPU tasks, a real PostgreSQL.

- The script: what each flag asks for, shell-quoted, the storage URL never in it.
- A dry run prints it and creates nothing, not even Optuna's tables; bad input is one line,
  exit 2, before anything is created, and never shows the password.
- A 3-task array runs a study to exactly its budget; the URL (with a password) reaches the
  tasks through the environment, never the script SLURM stored, a log or the output.
- A task cancelled mid-trial (``scancel``): its trial is failed and re-queued, another task
  resumes it from its checkpoint, and the study still ends at exactly its budget.

The storage URLs carry the server's password (or one a server that trusts local connections
ignores), so a leak would show.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from clirun import SCRIPT, one_line_error, sweeper
from optuna.trial import TrialState
from pgtools import admin_connect
from slurmtools import PARTITION, Cluster
from sqlalchemy.engine import make_url

from sweeper.cluster.slurm import SIGNAL_LEAD_S, ArrayJob, _gpus_per_node, render_script
from sweeper.errors import UsageError

SPEC = """
[study]
name = "{name}"
n_trials = {budget}
[sampler]
kind = "random"
seed = 3
[pruner]
kind = "none"
[training]
epochs = {epochs}
[data]
{data}
[storage]
heartbeat_interval = 2
grace_period = 10
"""
SECRET = "pw-Zq81-never-printed"
# A PATH without SLURM's commands: a dry run needs none, and a bad flag must fail before
# one would be looked for.
NO_SLURM = {"PATH": str(Path(sys.executable).parent)}


def _spec(tmp_path: Path, name: str, budget: int, epochs: int, data: str = "") -> Path:
    path = tmp_path / f"{name.replace(' ', '_')}.toml"
    path.write_text(SPEC.format(name=name, budget=budget, epochs=epochs, data=data))
    return path


def _with_password(url: str) -> tuple[str, str]:
    """``url`` with a password (the server's own if it has one) and that password."""
    parsed = make_url(url)
    secret = parsed.password or SECRET
    return parsed.set(password=secret).render_as_string(hide_password=False), str(secret)


def _tables(url: str) -> int:
    """How many tables the database holds (Optuna creates its own on first contact)."""
    with contextlib.closing(admin_connect(url)) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema='public'")
        return int(cur.fetchone()[0])


def _exec_argv(script: str) -> list[str]:
    (line,) = [line for line in script.splitlines() if line.startswith("exec ")]
    return shlex.split(line)[1:]


# -- the script --------------------------------------------------------------------------------


def _job(**changes: object) -> ArrayJob:
    fields: dict[str, object] = {
        "study": "lr-wd",
        "tasks": 4,
        "command": ("/opt/venv/bin/sweeper",),
        "checkpoint_dir": "/shared/ckpt",
    }
    return ArrayJob(**{**fields, **changes})  # type: ignore[arg-type]


def _options(script: str) -> list[str]:
    return [line.removeprefix("#SBATCH ") for line in script.splitlines() if "#SBATCH" in line]


def test_the_script_asks_for_what_the_flags_say() -> None:
    script = render_script(
        _job(
            study="it's $HOME; `x`",
            tasks=8,
            max_running=3,
            gpus_per_task=2,
            cpus_per_task=6,
            pack=4,
            device="cuda",
            data="/shared/cifar 10",
            partition="gpu",
            time="1-00:00:00",
            account="lab",
            output="logs/%x-%A_%a.out",
            sbatch=("--mem=16G", "#SBATCH --constraint=a100"),
        )
    )
    assert script.startswith("#!/bin/bash\n")
    options = _options(script)
    for wanted in (
        "--array=0-7%3", "--ntasks=1", "--gres=gpu:2", "--cpus-per-task=6", "--partition=gpu",
        "--time=1-00:00:00", "--account=lab", "--output=logs/%x-%A_%a.out",
        "--open-mode=append", "--export=ALL", "--requeue", f"--signal=B:TERM@{SIGNAL_LEAD_S}",
        "--mem=16G", "--constraint=a100", "--job-name=sweeper-it_s_HOME_x_",
    ):  # fmt: skip
        assert wanted in options, (wanted, options)
    # sbatch reads #SBATCH lines only before the first command.
    last_option = max(i for i, line in enumerate(script.splitlines()) if "#SBATCH" in line)
    first_command = min(
        i for i, line in enumerate(script.splitlines()) if line and not line.startswith("#")
    )
    assert last_option < first_command
    # Every word reaches the worker as written, whatever the shell would make of it.
    assert _exec_argv(script) == [
        "/opt/venv/bin/sweeper", "worker", "--study", "it's $HOME; `x`",
        "--checkpoint-dir", "/shared/ckpt", "--pack", "4", "--device", "cuda",
        "--data", "/shared/cifar 10",
    ]  # fmt: skip
    check = subprocess.run(["bash", "-n"], input=script, text=True, capture_output=True)
    assert check.returncode == 0, check.stderr


def test_defaults_one_gpu_no_limit_and_short_limits_skip_the_early_signal() -> None:
    options = _options(render_script(_job()))
    assert "--gres=gpu:1" in options and "--array=0-3" in options
    assert "--output=sweeper-%A_%a.log" in options
    assert not any(o.startswith(("--partition", "--time", "--account", "--cpus")) for o in options)
    assert f"--signal=B:TERM@{SIGNAL_LEAD_S}" in options  # the partition's limit, unknown here
    cpu = _options(render_script(_job(gpus_per_task=0, time="9:59")))
    assert not any(o.startswith(("--gres", "--signal")) for o in cpu), cpu
    assert f"--signal=B:TERM@{SIGNAL_LEAD_S}" in _options(render_script(_job(time="10")))


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"tasks": 0}, "--tasks must be an integer in 1..1000 (got 0)"),
        ({"time": "2h"}, "--time '2h' is not a SLURM time limit"),
        ({"partition": "a\nb"}, "--partition must be one word"),
        ({"output": "one.log"}, "must contain %a"),
        ({"sbatch": ("--mem=1G\n--array=0-99",)}, "--sbatch must be one line"),
        ({"sbatch": ("--exp=NONE",)}, "the script sets --array (use --tasks), --export"),
        ({"sbatch": ("-a0-9",)}, "the script sets --array"),
        ({"sbatch": ("--export-file=/tmp/env",)}, "--export (the storage URL travels"),
        ({"sbatch": ("mem=1G",)}, "--sbatch takes an sbatch option"),
        ({"sbatch": ("--",)}, "--sbatch takes an sbatch option"),
        ({"sbatch": ("#SBATCH",)}, "--sbatch takes an sbatch option"),
        ({"gpus_per_task": -1}, "--gpus-per-task must be >= 0"),
    ],
)
def test_a_job_that_cannot_be_asked_for_is_refused(
    changes: dict[str, object], expected: str
) -> None:
    with pytest.raises(UsageError) as caught:
        _job(**changes)
    assert expected in str(caught.value) and "\n" not in str(caught.value)


# -- the command line, no cluster needed --------------------------------------------------------


def test_the_help_names_every_flag() -> None:
    result = sweeper("slurm", "--help")
    assert result.returncode == 0, result.stderr
    for flag in (
        "--tasks", "--max-running", "--gpus-per-task", "--cpus-per-task", "--pack",
        "--partition", "--time", "--account", "--sbatch", "--output", "--data",
        "--checkpoint-dir", "--device", "--dry-run", "--storage",
    ):  # fmt: skip
        assert flag in result.stdout, flag
    assert "%A the job id, %a the task id" in result.stdout


def test_a_dry_run_prints_the_script_and_creates_nothing(storage_url: str, tmp_path: Path) -> None:
    url, secret = _with_password(storage_url)
    spec = _spec(tmp_path, "dry run", budget=5, epochs=1)
    result = sweeper(
        "slurm", str(spec), "--tasks", "3", "--gpus-per-task", "0", "--partition", "cpu",
        "--time", "30:00", "--account", "lab", "--sbatch=--mem=2G", "--storage", url,
        "--dry-run", env=NO_SLURM,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    script = result.stdout
    assert "sweeper worker --study 'dry run'" in script
    options = _options(script)
    for wanted in ("--array=0-2", "--partition=cpu", "--time=30:00", "--account=lab", "--mem=2G"):
        assert wanted in options, (wanted, options)
    home = Path(os.environ["SWEEPER_HOME"])
    assert _exec_argv(script) == [
        str(SCRIPT), "worker", "--study", "dry run",
        "--checkpoint-dir", str(home / "checkpoints"), "--device", "cpu",
    ]  # fmt: skip
    host = f"{make_url(url).host}:{make_url(url).port}"
    for text in (result.stdout, result.stderr):
        assert secret not in text and host not in text
    assert _tables(storage_url) == 0, "a dry run must not even open the storage"
    assert not home.exists(), "nor create the sweeper home (or its checkpoint folder)"


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (("--tasks", "0"), "--tasks: must be an integer in 1..1000 (got '0')"),
        (("--tasks", "3", "--sbatch=--mem=1G\n--array=0-99"), "--sbatch must be one line"),
        (("--tasks", "3", "--sbatch=--array=0-99"), "the script sets --array (use --tasks)"),
        (("--tasks", "3", "--sbatch=--export=NONE"), "--export (the storage URL travels"),
        (("--tasks", "3", "--gpus-per-task", "0", "--device", "cuda"), "needs a GPU per task"),
        (("--tasks", "3", "--device", "cpu"), "the GPUs would sit idle"),
        (("--tasks", "3", "--device", "cuda:1"), "each task sees only its own 1 GPUs"),
        (("--gpus-per-task", "0"), "the following arguments are required: --tasks"),
        (("--tasks", "3", "--gpus-per-task", "0"), "sbatch is not on PATH"),
    ],
)
def test_bad_input_is_one_line_and_creates_nothing(
    flags: tuple[str, ...], expected: str, storage_url: str, tmp_path: Path
) -> None:
    url, secret = _with_password(storage_url)
    spec = _spec(tmp_path, "bad", budget=2, epochs=1)
    result = sweeper("slurm", str(spec), *flags, "--storage", url, env=NO_SLURM)
    assert result.returncode == 2, result.stderr
    line = one_line_error(result)
    assert expected in line and secret not in line, line
    assert _tables(storage_url) == 0


def test_a_missing_spec_or_a_bad_url_is_one_line_without_the_password(
    storage_url: str, tmp_path: Path
) -> None:
    url, secret = _with_password(storage_url)
    missing = sweeper("slurm", str(tmp_path / "nope.toml"), "--tasks", "2", "--storage", url)
    assert missing.returncode == 2 and "no such spec file" in one_line_error(missing)
    spec = _spec(tmp_path, "bad-url", budget=2, epochs=1)
    bad = f"postgresql://sweeper:{secret}@db:notaport/sweeper"
    for extra in ((), ("--dry-run",)):
        result = sweeper("slurm", str(spec), "--tasks", "2", "--storage", bad, *extra)
        assert result.returncode == 2, result.stderr
        line = one_line_error(result)
        assert "port" in line and secret not in line, line
    assert _tables(storage_url) == 0


def test_data_missing_on_the_submit_host_is_refused_and_never_made(
    storage_url: str, tmp_path: Path
) -> None:
    url, _ = _with_password(storage_url)
    spec = _spec(tmp_path, "no-data", budget=2, epochs=1)
    missing = tmp_path / "shared" / "cifar10"
    for extra in ((), ("--dry-run",)):
        result = sweeper(
            "slurm", str(spec), "--tasks", "2", "--gpus-per-task", "0", "--data", str(missing),
            "--storage", url, *extra, env=NO_SLURM,
        )  # fmt: skip
        assert result.returncode == 2, result.stdout + result.stderr
        assert f"--data {missing}: no such file or folder on this host" in one_line_error(result)
    assert not (tmp_path / "shared").exists()
    assert _tables(storage_url) == 0


@pytest.mark.parametrize(
    ("line", "gpus"),
    [
        ("(null)", 0),
        ("gpu:4", 4),
        ("gpu:a100:2(S:0-1)", 2),
        ("gpu:1,mps:100", 1),
        ("gpu:a100:2(S:0,1),gpu:v100:1(S:0)", 3),
    ],
)
def test_sinfo_gres_lines_are_read_as_gpus_per_node(line: str, gpus: int) -> None:
    assert _gpus_per_node(line) == gpus


# -- a real cluster ----------------------------------------------------------------------------


def test_gpus_a_cpu_only_cluster_lacks_are_refused_before_the_study_exists(
    slurm_cluster: Cluster, storage_url: str, tmp_path: Path
) -> None:
    url, secret = _with_password(storage_url)
    spec = _spec(tmp_path, "no-gpus", budget=2, epochs=1)
    result = sweeper(
        "slurm", str(spec), "--tasks", "2", "--partition", PARTITION, "--storage", url,
        env={"SLURM_CONF": str(slurm_cluster.conf)},
    )  # fmt: skip
    assert result.returncode == 2, result.stdout + result.stderr
    line = one_line_error(result)
    assert f"partition {PARTITION} offers no GPUs" in line and "--gpus-per-task 0" in line, line
    assert secret not in line
    assert _tables(storage_url) == 0
    assert slurm_cluster.run("squeue", "--noheader").strip() == ""


def _submit(cluster: Cluster, spec: Path, url: str, *flags: str, **env: str) -> str:
    result = sweeper(
        "slurm", str(spec), "--gpus-per-task", "0", "--partition", PARTITION, "--storage", url,
        *flags, env={"SLURM_CONF": str(cluster.conf), **env},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    job_id = result.stdout.strip()
    assert job_id.isdigit(), result.stdout
    assert f"submitted job array {job_id}" in result.stderr
    assert f"squeue -j {job_id}" in result.stderr
    # The test servers listen on this host only, so the command warns (one line).
    assert "reachable from this host only" in result.stderr
    assert make_url(url).password not in result.stdout + result.stderr
    return job_id


def _logs(folder: Path) -> dict[str, str]:
    return {log.stem: log.read_text(errors="replace") for log in sorted(folder.glob("*.log"))}


@pytest.mark.slow
def test_an_array_runs_the_study_to_exactly_its_budget(
    slurm_cluster: Cluster, storage_url: str, tiny_official: Path, tmp_path: Path
) -> None:
    url, secret = _with_password(storage_url)
    spec = _spec(tmp_path, "slurm-array", budget=6, epochs=2, data="train_size = 60\nval_size = 30")
    logs = tmp_path / "logs"
    logs.mkdir()
    # A site's SBATCH_EXPORT=NONE would leave the tasks without the URL: sweeper drops it.
    job_id = _submit(
        slurm_cluster, spec, url, "--tasks", "3", "--time", "10",
        "--data", str(tiny_official), "--output", f"{logs}/task-%A_%a.log",
        SBATCH_EXPORT="NONE",
    )  # fmt: skip
    stored = slurm_cluster.run("scontrol", "write", "batch_script", job_id, "-")
    assert "worker --study slurm-array" in stored and secret not in stored, stored
    assert "--array=0-2" in stored

    states = slurm_cluster.wait_for_array(job_id, timeout=300)
    tasks = [f"{job_id}_{i}" for i in range(3)]
    written = _logs(logs)
    assert states == dict.fromkeys(tasks, "COMPLETED"), (states, written)
    assert sorted(written) == [f"task-{task}" for task in tasks]
    for name, text in written.items():
        assert "this worker ran" in text and "Traceback" not in text, (name, text)
        assert secret not in text, name

    study = optuna.load_study(study_name="slurm-array", storage=url)
    trials = study.get_trials(deepcopy=False)
    assert sorted(t.number for t in trials) == list(range(6)), [t.state for t in trials]
    assert all(t.state == TrialState.COMPLETE for t in trials), [t.state for t in trials]
    assert len({(t.params["lr"], t.params["weight_decay"]) for t in trials}) == 6
    for t in trials:
        # Which task ran each trial, so its log can be found.
        assert t.user_attrs["cluster_task"] in {f"slurm {task}" for task in tasks}, t.user_attrs
        assert t.user_attrs["worker"].startswith(f"{slurm_cluster.node}:")
        assert t.user_attrs["device"].startswith("cpu")


@pytest.fixture(scope="module")
def slower_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """1,500 training images: an epoch takes ~2 s on one loaded core, long enough to cancel
    a task between two epochs of its trial."""
    from tinydata import write_official

    return write_official(tmp_path_factory.mktemp("slower"), per_class_train=150, per_class_test=20)


EPOCHS = 5


def _running_trial(study: optuna.Study, deadline: float) -> tuple[int, str]:
    """(number, cluster task) of a running trial that reported an epoch and has at least two
    left, so that it is still mid-trial when the cancel arrives."""
    while time.monotonic() < deadline:
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            task = t.user_attrs.get("cluster_task")
            if task and 1 <= len(t.intermediate_values) <= EPOCHS - 2:
                return t.number, task.removeprefix("slurm ")
        time.sleep(0.25)
    pytest.fail("no trial reported its first epoch in time")


@pytest.mark.slow
def test_a_cancelled_task_s_trial_is_resumed_by_another_task(
    slurm_cluster: Cluster, storage_url: str, slower_data: Path, tmp_path: Path
) -> None:
    url, secret = _with_password(storage_url)
    spec = _spec(tmp_path, "slurm-cancel", budget=4, epochs=EPOCHS)
    logs = tmp_path / "logs"
    logs.mkdir()
    job_id = _submit(
        slurm_cluster, spec, url, "--tasks", "3", "--data", str(slower_data),
        "--output", f"{logs}/task-%A_%a.log",
    )  # fmt: skip
    study = optuna.load_study(study_name="slurm-cancel", storage=url)  # the command made it
    number, task = _running_trial(study, time.monotonic() + 240)
    slurm_cluster.run("scancel", task)

    states = slurm_cluster.wait_for_array(job_id, timeout=300)
    written = _logs(logs)
    assert states.pop(task) == "CANCELLED", (states, written)
    assert set(states.values()) == {"COMPLETED"}, (states, written)
    # The worker got SLURM's SIGTERM itself (exec) and re-queued its trial before exiting.
    stopped = written[f"task-{task}"]
    assert f"trials [{number}] were re-queued" in stopped, stopped
    assert all(secret not in text for text in written.values())

    trials = {t.number: t for t in study.trials}
    original = trials[number]
    assert original.state == TrialState.FAIL
    reason = original.user_attrs["fail_reason"]
    copy = trials[original.user_attrs["requeued_as"]]
    assert "stopped by SIGTERM" in reason and f"re-queued as trial {copy.number}" in reason
    # Resumed from its checkpoint by another task: after the epochs the original reported
    # (or one more, when SIGTERM came between an epoch's checkpoint and its report).
    assert copy.state == TrialState.COMPLETE
    assert copy.user_attrs["cluster_task"] != f"slurm {task}"
    assert copy.params == original.params
    assert copy.user_attrs["seed"] == original.user_attrs["seed"]
    resumed = copy.user_attrs["resumed_from_epoch"]
    reported = len(original.intermediate_values)
    assert reported <= resumed <= reported + 1, (reported, resumed)
    assert sorted(copy.intermediate_values) == list(range(1, EPOCHS + 1))
    for epoch, value in original.intermediate_values.items():
        assert copy.intermediate_values[epoch] == value
    resumer = written[f"task-{copy.user_attrs['cluster_task'].removeprefix('slurm ')}"]
    assert re.search(rf"trial +{copy.number} \| resumed after epoch {resumed}", resumer), resumer
    # Exactly the budget: the failed original does not count, its copy does.
    finished = [t for t in trials.values() if t.state == TrialState.COMPLETE]
    assert len(finished) == 4 and len(trials) == 5, {n: t.state for n, t in trials.items()}
    assert not list((Path(os.environ["SWEEPER_HOME"]) / "checkpoints").rglob("*.pt"))
