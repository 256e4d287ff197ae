"""Workers as real processes through the real console script, at ``--pack 1`` and more.

- One study, a budget of 7 on a grid of 7 learning rates: one fast lr that learns, one (1e7)
  that diverges to NaN, slow ones that the median rule prunes. A worker of any pack size
  finishes exactly the budget, refills slots freed by pruning and failure, fails the NaN
  trial alone with its reason, and records each trial with the same attributes.
- A worker stopped (SIGTERM) or killed (SIGKILL) mid-trial: its trials are re-run with the
  same parameters and seed by a worker of any pack size, resume from their last epoch
  checkpoints on their original batch order, and the failed originals say what happened.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import optuna
import pytest
from clirun import finish, start_and_wait_for, sweeper
from optuna.trial import TrialState

# `sweeper run` seeds the grid sampler with [sampler] seed, so the grid runs in one fixed
# order; with seed 0 it is (by sorted position) 4, 0, 6, 1, 5, 3, 2: the first pack holds
# 3e-3 (learns), 1e-6 (slow) and 1e7 (NaN at epoch 1, its slot refilled with 1.2e-6). When
# the first two complete after 3 epochs, the median of completed trials at epoch 2 is far
# above the slow newcomer's accuracy, so it is pruned and its slot refilled in turn. Were
# Optuna's grid order to change, the assertions below fail (with the run's log) rather than
# pass vacuously.
SPEC = """
[study]
name = "packed"
n_trials = 7

[space.lr]
low = 1e-6
high = 1e7

[sampler]
kind = "grid"
seed = 0

[sampler.points]
lr = [1e-6, 1.2e-6, 1.4e-6, 1.6e-6, 3e-3, 5e-3, 1e7]
weight_decay = [1e-3]

[pruner]
kind = "median"
n_startup_trials = 1
n_warmup_steps = 0

[training]
epochs = 3
seed = 5
"""


@pytest.mark.parametrize("pack", [1, 3])
def test_a_run_fills_the_budget_refills_and_fails_nan_alone(
    pack: int, storage_url: str, tiny_official: Path, tmp_path: Path
) -> None:
    spec = tmp_path / "packed.toml"
    spec.write_text(SPEC)
    args = ["run", str(spec), "--storage", storage_url, "--data", str(tiny_official)]
    run = sweeper(*args, "--pack", str(pack))
    assert run.returncode == 0, run.stderr
    assert ("3 at a time" in run.stderr) == (pack == 3)
    assert "this worker ran 7 trials" in run.stderr

    study = optuna.load_study(study_name="packed", storage=storage_url)
    trials = study.trials
    assert len(trials) == 7, [t.state for t in trials]
    assert all(t.state.is_finished() for t in trials)
    by_lr = {t.params["lr"]: t for t in trials}

    nan = by_lr[1e7]
    assert nan.state == TrialState.FAIL
    assert "training loss is nan" in nan.user_attrs["fail_reason"]
    for fast in (3e-3, 5e-3):
        assert by_lr[fast].state == TrialState.COMPLETE, run.stderr
        assert by_lr[fast].value is not None and by_lr[fast].value > 0.5, "a fast lr learns"
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    assert pruned, "the median rule prunes at least one slow trial\n" + run.stderr

    offsets = {t.number: t.user_attrs["order_epoch_offset"] for t in trials}
    if pack == 1:
        # Alone, each trial trains on its own order: epoch e is epoch_order(seed, e).
        assert set(offsets.values()) == {0}, offsets
        assert all(t.user_attrs["order_seed"] == t.user_attrs["seed"] for t in trials)
    else:
        # Slots were refilled: some trial joined a pack that had already trained
        # (offset > 0), sharing the batch order of the pack it joined.
        assert any(offset > 0 for offset in offsets.values()), offsets
        first = [t for t in trials if t.user_attrs["order_epoch_offset"] == 0][:3]
        assert len({t.user_attrs["order_seed"] for t in first}) == 1
        # The NaN trial's pack-mates (same pack, trained alongside it) went on to their ends.
        mates = [
            t
            for t in trials
            if t.user_attrs["order_seed"] == nan.user_attrs["order_seed"] and t is not nan
        ]
        assert mates and all(t.state != TrialState.FAIL for t in mates)

    for t in trials:
        attrs = t.user_attrs
        assert attrs["seed"] == 5 + t.number
        assert attrs["optimizer"] == "adamw" and attrs["optimizer_impl"].startswith("FusedAdamW")
        assert attrs["device"].startswith("cpu") and ":" in attrs["worker"]
        assert attrs["torch_version"] and attrs["sweeper_version"]
        assert attrs["execution"] == "fp32"
        assert 1 <= attrs["pack_size"] <= pack
        if t.state != TrialState.FAIL:
            assert sorted(t.intermediate_values) == list(range(1, attrs["epochs_run"] + 1))
    assert max(t.user_attrs["pack_size"] for t in trials) == pack

    again = sweeper(*args, "--pack", str(pack))
    assert again.returncode == 0 and "this worker ran 0 trials" in again.stderr, again.stderr


RESUME_SPEC = """
[study]
name = "resume"
n_trials = {budget}
[sampler]
kind = "random"
seed = 1
[pruner]
kind = "none"
[training]
epochs = 3
[storage]
heartbeat_interval = 1
grace_period = 3
"""


@pytest.mark.parametrize(
    ("how", "pack", "resume_pack"),
    [
        ("sigterm", 1, 1),
        ("sigkill", 1, 1),
        ("sigterm", 2, 2),
        ("sigterm", 2, 1),
        ("sigkill", 2, 2),
    ],
)
def test_an_interrupted_worker_s_trials_resume_from_their_checkpoints(
    how: str, pack: int, resume_pack: int, storage_url: str, tiny_official: Path, tmp_path: Path
) -> None:
    """Stop or kill a worker after epoch 1 of all its ``pack`` trials; a worker of
    ``resume_pack`` slots re-runs each, resumed after epoch 1 on its original batch order."""
    spec = tmp_path / "resume.toml"
    spec.write_text(RESUME_SPEC.format(budget=pack))
    args = ["run", str(spec), "--storage", storage_url, "--data", str(tiny_official)]
    proc = start_and_wait_for([*args, "--pack", str(pack)], f"trial {pack - 1:>3} | epoch 1/3")
    if how == "sigterm":
        proc.send_signal(signal.SIGTERM)
        code, rest = finish(proc)
        assert code == 130 and "re-queued to resume from their last checkpoint" in rest, rest
    else:
        proc.kill()
        proc.wait()
        time.sleep(4)  # longer than the grace period: the trials' heartbeats are stale

    rerun = sweeper(*args, "--pack", str(resume_pack))
    assert rerun.returncode == 0, rerun.stderr
    assert rerun.stderr.count("resumed after epoch 1") == pack, rerun.stderr

    trials = optuna.load_study(study_name="resume", storage=storage_url).trials
    assert [t.state for t in trials] == [TrialState.FAIL] * pack + [TrialState.COMPLETE] * pack
    for original, retry in zip(trials[:pack], trials[pack:], strict=True):
        reason = original.user_attrs["fail_reason"]
        cause = "stopped by SIGTERM" if how == "sigterm" else "heartbeat lost"
        assert cause in reason and f"re-queued as trial {retry.number}" in reason, reason
        assert original.user_attrs["requeued_as"] == retry.number
        assert retry.system_attrs["failed_trial"] == original.number
        assert retry.params == original.params
        assert retry.user_attrs["seed"] == original.user_attrs["seed"]
        assert retry.user_attrs["resumed_from_epoch"] == 1
        assert sorted(retry.intermediate_values) == [1, 2, 3]
        assert retry.intermediate_values[1] == original.intermediate_values[1]
        # The re-run continues on the original's batch order (a trainer started at its clock).
        assert retry.user_attrs["order_seed"] == original.user_attrs["order_seed"]
        assert retry.user_attrs["order_epoch_offset"] == original.user_attrs["order_epoch_offset"]
        assert 1 <= retry.user_attrs["pack_size"] <= resume_pack
    assert not list((Path(os.environ["SWEEPER_HOME"]) / "checkpoints").rglob("*.pt"))


def test_checkpoint_folders_of_different_study_names_never_collide(tmp_path: Path) -> None:
    from sweeper.work.checkpoints import CheckpointStore, Owner

    store = CheckpointStore(tmp_path)
    names = ("a/b", "a_b", "a b", "a:b", "..", ".")
    folders = {store.path(Owner(name, "s/db/1", 0)).parent.parent for name in names}
    assert len(folders) == 6 and all(f.parent == tmp_path for f in folders), folders
    path = store.path(Owner("cifar10-adamw", "s/db/1", 3))
    assert path.parent.parent == tmp_path / "cifar10-adamw" and path.name == "trial-3.pt"
    # The same name in another database (or on another server) has a folder of its own.
    assert store.path(Owner("cifar10-adamw", "s/db2/1", 3)).parent != path.parent


INHERIT_SPEC = """
[study]
name = "inherit"
n_trials = 1
[sampler]
kind = "random"
seed = 1
[pruner]
kind = "none"
[training]
epochs = 3
[storage]
heartbeat_interval = 1
grace_period = {grace}
"""


def test_a_worker_with_nothing_to_claim_stays_and_finishes_a_dead_worker_s_trial(
    storage_url: str, tiny_official: Path, tmp_path: Path
) -> None:
    """Budget 1. Worker A runs trial 0 and is frozen (SIGSTOP: no more heartbeats) after its
    first epoch; worker B starts, finds nothing to claim while trial 0 runs and waits (old
    workers left here). A is then killed: once trial 0's heartbeat is past the grace period,
    B re-queues it, resumes its copy from the checkpoint and finishes the budget."""
    # The grace period only has to outlast B's start-up (imports, data, first claim) after
    # A is frozen, so that B's first claim sees trial 0 alive; B's waiting line is the event.
    spec = tmp_path / "inherit.toml"
    spec.write_text(INHERIT_SPEC.format(grace=30))
    args = ["--storage", storage_url, "--data", str(tiny_official)]
    a = start_and_wait_for(["run", str(spec), *args], "trial   0 | epoch 1/3")
    a.send_signal(signal.SIGSTOP)
    try:
        b = start_and_wait_for(["worker", "--study", "inherit", *args], "budget used: waiting")
    finally:
        a.kill()
        a.wait()
    code, rest = finish(b)
    assert code == 0, rest
    assert "its worker went silent; failed and re-queued as trial 1" in rest, rest
    assert "resumed after epoch 1" in rest and "this worker ran 1 trials" in rest, rest
    trials = optuna.load_study(study_name="inherit", storage=storage_url).trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE]
    assert sorted(trials[1].intermediate_values) == [1, 2, 3]


CURVE_SPEC = (
    SPEC.replace('name = "packed"', 'name = "curve"').replace(
        'kind = "median"\nn_startup_trials = 1\nn_warmup_steps = 0',
        'kind = "curve"\nthreshold = 0.05',
    )
    + "[confirm]\ntop_k = 1\nseeds = 2\n"
)


def test_the_curve_pruner_stops_slow_trials_in_a_pack_and_never_a_replicate(
    storage_url: str, tiny_official: Path, tmp_path: Path
) -> None:
    """The grid above with ``[pruner] kind = "curve"`` in a pack of 3, then two seed
    replicates of the best: the slow learning rates (flat near chance) are stopped once a fast
    one has finished, each with the forecast that decided, members leaving their pack between
    epochs; the replicates run to the end; ``sweeper best`` says what pruning saved."""
    spec = tmp_path / "curve.toml"
    spec.write_text(CURVE_SPEC)
    args = ["run", str(spec), "--storage", storage_url, "--data", str(tiny_official)]
    run = sweeper(*args, "--pack", "3")
    assert run.returncode == 0, run.stderr
    trials = optuna.load_study(study_name="curve", storage=storage_url).trials
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    assert pruned, "the curve pruner stops a slow trial\n" + run.stderr
    for t in pruned:
        note = t.user_attrs["forecast"]
        assert t.params["lr"] < 1e-5, "only slow learning rates are stopped"
        assert note["epoch"] == t.user_attrs["epochs_run"] == max(t.intermediate_values) < 3
        assert note["chance"] < 0.05 and note["mean"][-1] < note["target"]
    replicates = [t for t in trials if "replicate_of" in t.user_attrs]
    assert len(replicates) == 2 and all(t.state == TrialState.COMPLETE for t in replicates)

    best = sweeper("best", "--study", "curve", "--storage", storage_url, "--format", "json")
    assert best.returncode == 0, best.stderr
    saved = json.loads(best.stdout)["pruning"]
    ended = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert saved["stopped"] == len(pruned) and saved["epochs_unpruned"] == 3 * len(ended)
    assert saved["epochs_saved"] == sum(3 - max(t.intermediate_values) for t in pruned) > 0
    assert saved["pruner"] == "curve (threshold 0.05)"
