"""Many worker processes on one study: a global budget, and a PostgreSQL restart survived."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import optuna
import pytest
from clirun import SCRIPT, one_line_error, sweeper
from optuna.trial import TrialState
from pgtools import embedded_postgres

from sweeper.embedded import EmbeddedPostgres
from sweeper.spec import load_spec
from sweeper.study import create_or_load

FAST_SPEC = """
[study]
name = "{name}"
n_trials = {budget}
[sampler]
kind = "random"
[pruner]
kind = "median"
n_startup_trials = 4
[training]
epochs = {epochs}
[data]
train_size = 60
val_size = 30
[storage]
heartbeat_interval = 2
grace_period = 10
"""

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def _worker_lines(stderr: str) -> dict[str, list[str]]:
    lines: dict[str, list[str]] = {}
    for line in stderr.splitlines():
        match = re.match(r"\[(w\d+)\] (.*)", line)
        if match:
            lines.setdefault(match.group(1), []).append(match.group(2))
    return lines


def test_eight_workers_share_one_budget(
    storage_url: str, tiny_official: Path, tmp_path: Path
) -> None:
    spec = tmp_path / "many.toml"
    spec.write_text(FAST_SPEC.format(name="many", budget=40, epochs=1))
    run = sweeper(
        "run", str(spec), "--workers", "8", "--storage", storage_url,
        "--data", str(tiny_official), timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    study = optuna.load_study(study_name="many", storage=storage_url)
    trials = study.get_trials(deepcopy=False)
    assert len(trials) == 40, [t.state for t in trials]
    assert all(t.state in FINISHED for t in trials)
    assert sorted(t.number for t in trials) == list(range(40))
    workers = _worker_lines(run.stderr)
    assert sorted(workers) == [f"w{i}" for i in range(8)]
    for name, lines in workers.items():
        text = "\n".join(lines).lower()
        assert "error" not in text and "traceback" not in text, f"{name}:\n{text}"
    used = {t.user_attrs["worker"] for t in trials}
    assert len(used) >= 2, "the trials were not spread over the workers"
    # Each trial draws from its own stream (seed, trial number): no two drew the same point.
    assert len({(t.params["lr"], t.params["weight_decay"]) for t in trials}) == 40


def test_sweep_survives_a_postgresql_restart(tiny_official: Path, tmp_path: Path) -> None:
    with embedded_postgres() as server:
        _restart_mid_sweep(server, tiny_official, tmp_path)


def _restart_mid_sweep(server: EmbeddedPostgres, tiny_official: Path, tmp_path: Path) -> None:
    url = server.url()
    spec = tmp_path / "restart.toml"
    spec.write_text(FAST_SPEC.format(name="restart", budget=10, epochs=2))
    proc = subprocess.Popen(
        [str(SCRIPT), "run", str(spec), "--workers", "2", "--storage", url,
         "--data", str(tiny_official)],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    assert proc.stderr is not None
    seen = []
    try:
        for line in proc.stderr:
            seen.append(line)
            if "COMPLETE" in line:
                break
        server.stop()
        time.sleep(3)
        assert server.start() == url  # same port, same data
        rest, _ = proc.communicate(timeout=600)[1], None
    finally:
        if proc.poll() is None:
            proc.kill()
    output = "".join(seen) + (rest or "")
    assert proc.returncode == 0, output[-3000:]
    assert "database unreachable" in output and "database is back" in output
    # The driver's reason, not Optuna's "invalid data ... exceeding max length" wrapper.
    assert "exceeding max length" not in output, output[-3000:]
    study = optuna.load_study(study_name="restart", storage=url)
    finished = study.get_trials(deepcopy=False, states=FINISHED)
    assert len(finished) == 10
    # At most the in-flight trial of each worker was failed, and each was re-queued.
    failed = study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
    assert len(failed) <= 2
    for t in failed:
        assert "re-queued as trial" in t.user_attrs["fail_reason"], t.user_attrs
        assert "requeued_as" in t.user_attrs


def test_reap_fails_and_requeues_silent_trials_with_a_reason(
    storage_url: str, tmp_path: Path
) -> None:
    """A trial whose heartbeat stopped, and one claimed by a worker that died before its
    first heartbeat (Optuna's own reaper never sees that one), are both failed with a
    reason and re-queued once the grace period has passed; neither uses up the budget."""
    spec = tmp_path / "reap.toml"
    spec.write_text(FAST_SPEC.format(name="reap", budget=3, epochs=1))
    storage = optuna.storages.RDBStorage(storage_url, heartbeat_interval=2, grace_period=10)
    study = create_or_load(storage, load_spec(spec))
    lr = {"lr": optuna.distributions.FloatDistribution(1e-4, 1e-3, log=True)}
    silent, orphan = study.ask(lr), study.ask(lr)
    storage.record_heartbeat(storage.get_trial_id_from_study_id_trial_number(
        storage.get_study_id_from_name("reap"), silent.number
    ))  # fmt: skip
    fresh = sweeper("reap", "--study", "reap", "--storage", storage_url)
    assert fresh.returncode == 0 and "failed 0 stale trials" in fresh.stdout
    time.sleep(11)
    reaped = sweeper("reap", "--study", "reap", "--storage", storage_url)
    assert reaped.returncode == 0, reaped.stderr
    assert f"failed 2 stale trials [{silent.number}, {orphan.number}]; 2 trials wait" in (
        reaped.stdout
    )
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    assert "heartbeat lost (last at " in trials[silent.number].user_attrs["fail_reason"]
    assert "before its first heartbeat" in trials[orphan.number].user_attrs["fail_reason"]
    copies = [t for t in trials.values() if t.state == TrialState.WAITING]
    assert sorted(t.system_attrs["failed_trial"] for t in copies) == [0, 1]
    for t in (trials[silent.number], trials[orphan.number]):
        copy = t.user_attrs["requeued_as"]
        assert t.user_attrs["fail_reason"].endswith(f"re-queued as trial {copy}")
        assert trials[copy].params == t.params
    listed = sweeper("trials", "--study", "reap", "--storage", storage_url, "--format", "csv")
    assert "re-queued as trial" in listed.stdout, listed.stdout
    again = sweeper("reap", "--study", "reap", "--storage", storage_url)
    assert "failed 0 stale trials" in again.stdout, "each silent trial is reaped once"


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (("--workers", "0"), "--workers: must be an integer >= 1 (got '0')"),
        (("--workers", "two"), "--workers: must be an integer >= 1 (got 'two')"),
        (("--gpus", "first"), "--gpus must be 'all' or GPU indices like 0,1 (got 'first')"),
        (("--workers", "2", "--max-trials", "3"), "--max-trials applies to one worker"),
    ],
)
def test_bad_launch_flags(
    flags: tuple[str, ...], expected: str, storage_url: str, tmp_path: Path
) -> None:
    spec = tmp_path / "s.toml"
    spec.write_text(FAST_SPEC.format(name="bad", budget=1, epochs=1))
    result = sweeper("run", str(spec), *flags, "--storage", storage_url)
    assert result.returncode == 2
    assert expected in one_line_error(result)
