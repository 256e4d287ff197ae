"""End to end through the real console script: ``sweeper run SPEC --pack 3``.

One study, a budget of 7 on a grid of 7 learning rates, run as packs of 3: one fast lr that
learns, one (1e7) that diverges to NaN, slow ones that the median rule prunes. The pack must
finish exactly the budget, refill slots freed by pruning and failure, fail the NaN trial
alone with its reason, and record each trial like a single trial plus its pack facts.
"""

from __future__ import annotations

import os
import signal
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


def test_packed_run_fills_the_budget_refills_and_fails_nan_alone(
    storage_url: str, tiny_official: Path, tmp_path: Path
) -> None:
    spec = tmp_path / "packed.toml"
    spec.write_text(SPEC)
    run = sweeper(
        "run", str(spec), "--storage", storage_url, "--data", str(tiny_official), "--pack", "3"
    )
    assert run.returncode == 0, run.stderr
    assert "3 at a time" in run.stderr
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

    # Slots were refilled: some trial joined a pack that had already trained (offset > 0),
    # sharing the batch order of the pack it joined.
    offsets = {t.number: t.user_attrs["order_epoch_offset"] for t in trials}
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
        assert 1 <= attrs["pack_size"] <= 3
        if t.state != TrialState.FAIL:
            assert sorted(t.intermediate_values) == list(range(1, attrs["epochs_run"] + 1))
    assert max(t.user_attrs["pack_size"] for t in trials) == 3

    again = sweeper(
        "run", str(spec), "--storage", storage_url, "--data", str(tiny_official), "--pack", "3"
    )
    assert again.returncode == 0 and "this worker ran 0 trials" in again.stderr, again.stderr


RESUME_SPEC = """
[study]
name = "packed-resume"
n_trials = 2
[sampler]
kind = "random"
seed = 1
[pruner]
kind = "none"
[training]
epochs = 3
"""


@pytest.mark.parametrize("resume_pack", ["2", "1"])
def test_a_stopped_pack_resumes_from_its_checkpoints(
    resume_pack: str, storage_url: str, tiny_official: Path, tmp_path: Path
) -> None:
    """SIGTERM after epoch 1 of both packed trials; a packed or a single worker resumes both."""
    spec = tmp_path / "resume.toml"
    spec.write_text(RESUME_SPEC)
    args = ["run", str(spec), "--storage", storage_url, "--data", str(tiny_official)]
    proc = start_and_wait_for([*args, "--pack", "2"], "trial   1 | epoch 1/3")
    proc.send_signal(signal.SIGTERM)
    code, rest = finish(proc)
    assert code == 130 and "re-queued" in rest, rest

    rerun = sweeper(*args, "--pack", resume_pack)
    assert rerun.returncode == 0, rerun.stderr
    assert rerun.stderr.count("resumed after epoch 1") == 2, rerun.stderr

    trials = optuna.load_study(study_name="packed-resume", storage=storage_url).trials
    assert [t.state for t in trials] == [TrialState.FAIL] * 2 + [TrialState.COMPLETE] * 2
    for original, retry in zip(trials[:2], trials[2:], strict=True):
        assert retry.system_attrs["failed_trial"] == original.number
        assert retry.params == original.params
        assert retry.user_attrs["seed"] == original.user_attrs["seed"]
        assert retry.user_attrs["resumed_from_epoch"] == 1
        assert sorted(retry.intermediate_values) == [1, 2, 3]
        assert retry.intermediate_values[1] == original.intermediate_values[1]
        # Epoch 2 ran in the new pack's first epoch, epoch_order(order_seed, -1 + 2), or
        # alone, epoch_order(seed, 0 + 2).
        offset = -1 if resume_pack == "2" else 0
        assert retry.user_attrs["order_epoch_offset"] == offset
        assert 1 <= retry.user_attrs["pack_size"] <= int(resume_pack)
    assert not list((Path(os.environ["SWEEPER_HOME"]) / "checkpoints").rglob("*.pt"))
