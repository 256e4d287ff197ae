"""``views.effective_decay`` on studies of known truth: configurations at their memory, Adam
left out and named, an assumed schedule said so.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from analysis.truths import random_study, replicated, split_grid

from sweeper.analysis.study_model import best_of
from sweeper.snapshot import from_trials
from sweeper.views.effective_decay import effective_decay_figure, effective_decay_info
from views.support import snap


def test_effective_decay_places_configurations_at_their_memory() -> None:
    s = snap(replicated)
    info = effective_decay_info(s)
    # The spec: 10,000 training images, batch 32 -> 313 steps per epoch, 4 epochs.
    assert (info.steps_per_epoch, info.epochs, info.assumed) == (313, 4, "")
    assert len(info.configs) == 6 and info.left_out == ()
    top = next(i for i, c in enumerate(info.configs) if (c.lr, c.weight_decay) == (4.6e-4, 1e-3))
    assert math.isclose(info.memory[top], 1 / (4.6e-4 * 1e-3 * 313))  # 6,945 epochs
    # The check is the one `sweeper best` prints, on the same box: not written twice.
    assert info.check == best_of(s).decay
    assert info.check is not None and info.check.warning is not None
    assert math.isclose(info.check.max_shrink, 1 - (1 - 1e-3 * 1e-2) ** (4 * 313))  # 1.2%
    fig = effective_decay_figure(info)
    assert fig.layout.yaxis.type == "log" and fig.layout.xaxis.type == "log"
    # Decade ticks only, labelled as numbers a reader says: 1, 10, 100, 1k, 10k, 100k.
    assert list(fig.layout.yaxis.ticktext) == ["1", "10", "100", "1k", "10k", "100k"]
    assert np.allclose(np.log10(fig.layout.yaxis.tickvals), np.arange(6))
    (note,) = fig.layout.annotations
    assert note.text.startswith("⚠ weight decay cannot do much here")
    band = next(t for t in fig.data if t.name.startswith("memory < the run"))
    assert max(band.y) == 4.0


def test_effective_decay_leaves_adam_out_and_says_why() -> None:
    info = effective_decay_info(snap(split_grid))
    assert info.left_out == ("adam",)
    assert len(info.configs) == 16 and {c.optimizer for c in info.configs} == {"adamw"}
    assert info.wd_bounds == (1e-4, 1e-1)
    fig = effective_decay_figure(info)
    assert "Adam left out" in fig.layout.annotations[0].text
    trials, spec = split_grid()
    adam_only = [t for t in trials if t.user_attrs["optimizer"] == "adam"]
    empty = effective_decay_figure(
        effective_decay_info(from_trials(adam_only)._replace(user_attrs={"spec": spec}))
    )
    assert len(empty.data) == 0
    assert "coupled L2" in empty.layout.annotations[0].text


def test_effective_decay_without_a_spec_assumes_and_says_so() -> None:
    trials, _ = random_study()
    info = effective_decay_info(from_trials(trials))
    # CIFAR-10's 50,000 images at batch 32; epochs from the trials (each reported 2).
    assert (info.steps_per_epoch, info.epochs) == (1563, 2)
    assert info.assumed.startswith("ASSUMED: neither the study's spec nor its trials")
    assert info.check is None
    fig = effective_decay_figure(info)
    assert "steps per epoch ASSUMED" in fig.layout.title.text
    assert "ASSUMED: neither" in fig.layout.annotations[0].text


def test_effective_decay_without_a_spec_reads_the_steps_its_trials_recorded() -> None:
    """A 10,000-image study made without a spec: its trials' 313 steps per epoch, not 1,563
    (memories 5x too short before), and nothing assumed."""
    trials, _ = random_study()
    for t in trials:
        t.user_attrs["steps_per_epoch"] = 313
    info = effective_decay_info(from_trials(trials))
    assert (info.steps_per_epoch, info.epochs, info.assumed) == (313, 2, "")
    c = info.configs[0]
    assert info.memory[0] == pytest.approx(1 / (c.lr * c.weight_decay * 313))  # type: ignore[operator]
    assert "ASSUMED" not in effective_decay_figure(info).layout.title.text
