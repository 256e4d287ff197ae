"""Checkpoints as real workers write and read them: bound to the one retry series that wrote
them, never trained on otherwise, and never the end of a trial when the disk is full.

- Two studies of one name in two databases, sharing a checkpoint folder: the second's retry
  does not resume the first's checkpoint, and a copy of it placed where the second's would be
  is ignored with a one-line warning (the trial starts over).
- A checkpoint with the wrong keys, or a history as long as the trial or longer: the retry
  starts over with a one-line warning and completes its budget's epochs, no more.
- A checkpoint folder that fills up (a real tmpfs of 10 MiB, in a mount namespace of the
  worker's own: a checkpoint of the SimpleCNN with its two AdamW moments is ~6.6 MB, so the
  first fits and the second, written beside it before the rename, does not): one line
  "checkpoint folder full: ...", the epoch still reported, the trial completes.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch
from clirun import SCRIPT, finish, start_and_wait_for, sweeper
from optuna.trial import TrialState

SPEC = """
[study]
name = "same"
n_trials = {budget}
[sampler]
kind = "random"
seed = {seed}
[pruner]
kind = "none"
[training]
epochs = {epochs}
"""


def _spec(tmp_path: Path, *, budget: int = 1, epochs: int = 3, seed: int = 1) -> Path:
    path = tmp_path / f"same-{budget}-{epochs}-{seed}.toml"
    path.write_text(SPEC.format(budget=budget, epochs=epochs, seed=seed))
    return path


def _root() -> Path:
    return Path(os.environ["SWEEPER_HOME"]) / "checkpoints"


def _interrupted_after_epoch_1(spec: Path, url: str, data: Path) -> Path:
    """Run a worker, stop it (SIGTERM) after its trial's first epoch: the trial is re-queued
    and its checkpoint stays. The checkpoint's path."""
    args = ["run", str(spec), "--storage", url, "--data", str(data)]
    proc = start_and_wait_for(args, "trial   0 | epoch 1/")
    proc.send_signal(signal.SIGTERM)
    code, rest = finish(proc)
    assert code == 130 and "re-queued" in rest, rest
    (checkpoint,) = _root().rglob("trial-0.pt")
    return checkpoint


def _requeue_a_fresh_trial(url: str) -> int:
    """Start a trial of study "same" in ``url`` and interrupt it before any checkpoint, as a
    signal would: the number of its WAITING copy (same series, nothing to resume from)."""
    from sweeper.study import stored_spec
    from sweeper.work import requeue

    storage = optuna.storages.RDBStorage(url)
    study = optuna.load_study(study_name="same", storage=storage)
    space = stored_spec(study).space
    trial = study.ask()
    trial.suggest_float("lr", space.lr.low, space.lr.high, log=space.lr.log)
    wd = space.weight_decay
    trial.suggest_float("weight_decay", wd.low, wd.high, log=wd.log)
    copy = requeue.interrupt(study, storage, trial, "stopped by the test", None)
    storage.engine.dispose()
    assert copy is not None
    return copy


def test_a_checkpoint_never_resumes_a_study_of_the_same_name_in_another_database(
    pg_server: str, tiny_official: Path, tmp_path: Path
) -> None:
    from pgtools import fresh_database

    with fresh_database(pg_server) as url_a, fresh_database(pg_server) as url_b:
        a_checkpoint = _interrupted_after_epoch_1(_spec(tmp_path), url_a, tiny_official)
        a_bytes = a_checkpoint.read_bytes()

        # Study B: same name, same checkpoint folder, its trial 0 re-queued before any epoch.
        made = sweeper("run", str(_spec(tmp_path, budget=2)), "--storage", url_b,
                       "--data", str(tiny_official), "--max-trials", "0")  # fmt: skip
        assert made.returncode == 0, made.stderr
        copy = _requeue_a_fresh_trial(url_b)
        worker = ["worker", "--study", "same", "--storage", url_b, "--data", str(tiny_official)]
        first = sweeper(*worker, "--max-trials", "1")
        assert first.returncode == 0, first.stderr
        assert "resumed" not in first.stderr and "ignored" not in first.stderr, first.stderr
        b_trial = optuna.load_study(study_name="same", storage=url_b).trials[copy]
        assert b_trial.state == TrialState.COMPLETE and b_trial.system_attrs["failed_trial"] == 0
        assert "resumed_from_epoch" not in b_trial.user_attrs
        assert sorted(b_trial.intermediate_values) == [1, 2, 3]
        assert a_checkpoint.read_bytes() == a_bytes, "study B touched study A's checkpoint"

        # A copy of A's checkpoint where B's next retry looks (a copied file, or a folder an
        # earlier layout shared): ignored with one warning, never trained on.
        from sweeper.work.checkpoints import CheckpointStore, Owner, study_identity

        copy = _requeue_a_fresh_trial(url_b)
        storage = optuna.storages.RDBStorage(url_b)
        series = optuna.load_study(study_name="same", storage=storage).trials[copy]
        owner = Owner("same", study_identity(storage, "same"), series.system_attrs["failed_trial"])
        storage.engine.dispose()
        planted = CheckpointStore(_root()).path(owner)
        planted.parent.mkdir(parents=True, exist_ok=True)
        planted.write_bytes(a_bytes)
        second = sweeper(*worker, "--max-trials", "1")
        assert second.returncode == 0, second.stderr
        warnings = [line for line in second.stderr.splitlines() if "ignored" in line]
        assert len(warnings) == 1, second.stderr
        assert f"checkpoint {planted} ignored (written by trial 0 of study 'same'" in warnings[0]
        assert warnings[0].endswith("starting over from epoch 1"), warnings[0]
        assert "resumed" not in second.stderr, second.stderr
        b_trial = optuna.load_study(study_name="same", storage=url_b).trials[copy]
        assert b_trial.state == TrialState.COMPLETE
        assert "resumed_from_epoch" not in b_trial.user_attrs

        # A's own retry still resumes from its checkpoint.
        resumed = sweeper("run", str(_spec(tmp_path)), "--storage", url_a,
                          "--data", str(tiny_official))  # fmt: skip
        assert resumed.returncode == 0 and "resumed after epoch 1" in resumed.stderr, resumed


def _malformed_keys(data: dict[str, Any]) -> None:
    data["trainer"] = {"weights": data["trainer"]["model"]}


def _long_history(data: dict[str, Any]) -> None:
    data["history"] = [0.5] * 11


def _wrong_shape(data: dict[str, Any]) -> None:
    model = data["trainer"]["model"]
    name = next(iter(model))
    model[name] = torch.zeros(1)


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (_malformed_keys, "malformed trainer state"),
        (_long_history, "holds 11 epochs of a trial of 3"),
        (_wrong_shape, "has the wrong shape"),
    ],
    ids=["wrong-keys", "history-longer-than-the-trial", "wrong-shape"],
)
def test_a_damaged_checkpoint_starts_the_trial_over(
    damage: Callable[[dict[str, Any]], None],
    reason: str,
    storage_url: str,
    tiny_official: Path,
    tmp_path: Path,
) -> None:
    spec = _spec(tmp_path)
    checkpoint = _interrupted_after_epoch_1(spec, storage_url, tiny_official)
    data = torch.load(checkpoint, weights_only=True)
    damage(data)
    torch.save(data, checkpoint)

    rerun = sweeper("run", str(spec), "--storage", storage_url, "--data", str(tiny_official))
    assert rerun.returncode == 0, rerun.stderr
    warnings = [line for line in rerun.stderr.splitlines() if "ignored" in line]
    assert len(warnings) == 1 and reason in warnings[0], rerun.stderr
    assert warnings[0].startswith("trial   1 | warning: checkpoint "), warnings[0]
    assert "resumed" not in rerun.stderr and "epoch 4/" not in rerun.stderr, rerun.stderr
    original, retry = optuna.load_study(study_name="same", storage=storage_url).trials
    assert original.state == TrialState.FAIL and retry.state == TrialState.COMPLETE
    assert sorted(retry.intermediate_values) == [1, 2, 3]
    assert "resumed_from_epoch" not in retry.user_attrs


def test_a_full_checkpoint_folder_is_one_line_and_the_trial_goes_on(
    storage_url: str, tiny_official: Path, tmp_path: Path
) -> None:
    assert shutil.which("unshare"), "util-linux's unshare makes the worker's own tmpfs"
    folder = tmp_path / "small"
    folder.mkdir()
    run = ["run", str(_spec(tmp_path, epochs=4)), "--storage", storage_url,
           "--data", str(tiny_official), "--checkpoint-dir", str(folder)]  # fmt: skip
    # A mount namespace of the worker's own (user namespace: no root needed, nothing left
    # mounted): the tmpfs exists only while the worker runs.
    script = 'mount -t tmpfs -o size=10M tmpfs "$1" && shift && exec "$@"'
    result = subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script, "sh",
         str(folder), str(SCRIPT), *run],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    full = [line for line in result.stderr.splitlines() if "checkpoint folder full" in line]
    assert len(full) == 1, result.stderr
    assert full[0].startswith("trial   0 | warning: checkpoint folder full: "), full[0]
    assert "MiB free" in full[0] and full[0].endswith("goes on without checkpointing")
    assert "Traceback" not in result.stderr and "unexpected" not in result.stderr
    assert "trial   0 | epoch 2/4" in result.stderr, "the epoch whose save failed is reported"
    (trial,) = optuna.load_study(study_name="same", storage=storage_url).trials
    assert trial.state == TrialState.COMPLETE, result.stderr
    assert sorted(trial.intermediate_values) == [1, 2, 3, 4]
