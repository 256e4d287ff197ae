"""The decay axis: how much AdamW's weight decay can do over a study's training run.

Decoupled weight decay multiplies every weight by (1 - lr * wd) per step, so after T steps
the decay alone has shrunk weights by 1 - (1 - lr * wd)^T. Its memory, 1 / (lr * wd) steps
(Wang & Aitchison, ICML 2025: AdamW's weights are an exponential moving average with that
timescale), is what the weight decay axis really sets. When the memory exceeds the whole run
for every (lr, wd) a study tries, weight decay cannot have done much there, and a flat wd
axis is what the study should find: the tool says so rather than let structure be read into
noise.

Promises: pure arithmetic on the spec's numbers; ``decay_check`` returns a warning line (or
None) and the wd range that would matter; only decoupled decay (AdamW) is judged, since
Adam's coupled L2 acts through the gradient's normalisation, not as (1 - lr * wd).
"""

from __future__ import annotations

import math
from typing import NamedTuple

# Training set size when the spec sets none: CIFAR-10's 50,000 training images.
DEFAULT_TRAIN_SIZE = 50_000
# The warning's threshold: the largest decay the study tries shrinks weights by less than
# this over the whole run, i.e. its memory 1 / (lr * wd) is longer than the run (1 - 1/e).
SHRINK_THRESHOLD = 1.0 - math.exp(-1.0)


class Schedule(NamedTuple):
    """How many steps a trial takes."""

    epochs: int
    steps_per_epoch: int  # ceil(train_size / batch_size)

    @property
    def steps(self) -> int:
        return self.epochs * self.steps_per_epoch


def schedule(epochs: int, batch_size: int, train_size: int | None) -> Schedule:
    """Steps of a run: ``epochs`` x ceil(``train_size`` / ``batch_size``)."""
    n = train_size or DEFAULT_TRAIN_SIZE
    return Schedule(epochs, math.ceil(n / batch_size))


def shrink(lr: float, wd: float, steps: int) -> float:
    """Fraction by which decoupled decay alone shrinks a weight over ``steps`` steps (1: all
    of it; with lr x wd >= 1 one step already wipes it, and the power would overflow)."""
    return 1.0 - max(0.0, 1.0 - lr * wd) ** steps


def memory_epochs(lr: float, wd: float, steps_per_epoch: int) -> float:
    """The decay's memory 1 / (lr * wd), in epochs."""
    return 1.0 / (lr * wd * steps_per_epoch)


class DecayCheck(NamedTuple):
    """Whether the study's wd range can matter over its runs."""

    max_shrink: float  # at the largest lr and wd tried
    min_memory_epochs: float  # the shortest memory tried
    epochs: int
    steps_per_epoch: int
    warning: str | None  # one line, or None when the decay can matter
    # wd whose memory equals the run at the largest lr .. at the smallest lr: below the first
    # the decay is weak everywhere, above the second it is strong everywhere.
    wd_that_matters: tuple[float, float]


def decay_check(
    lr_range: tuple[float, float], wd_range: tuple[float, float], sched: Schedule
) -> DecayCheck:
    """Judge the wd range ``wd_range`` at learning rates ``lr_range`` over ``sched``."""
    lr_lo, lr_hi = lr_range
    wd_lo, wd_hi = wd_range
    total = sched.steps
    most = shrink(lr_hi, wd_hi, total)
    memory = memory_epochs(lr_hi, wd_hi, sched.steps_per_epoch)
    # Decay starts to matter where its memory equals the run at the largest lr, and does at
    # every lr tried once it equals the run at the smallest.
    matters = (1.0 / (lr_hi * total), 1.0 / (lr_lo * total))
    warning = None
    if most < SHRINK_THRESHOLD:
        warning = (
            f"weight decay cannot do much here: at the largest lr {lr_hi:.3g} and wd "
            f"{wd_hi:.3g}, decoupled decay shrinks weights by {100 * most:.1f}% over the "
            f"whole run ({sched.epochs} epochs x {sched.steps_per_epoch} steps; memory "
            f"1/(lr*wd) = {memory:.3g} epochs, longer than the run). A flat wd axis is "
            f"expected in [{wd_lo:.3g}, {wd_hi:.3g}]; wd starts to matter from "
            f"~{matters[0]:.2g} (memory = the run at lr {lr_hi:.3g}) and at every lr tried from "
            f"~{matters[1]:.2g} (at lr {lr_lo:.3g})"
        )
    return DecayCheck(most, memory, sched.epochs, sched.steps_per_epoch, warning, matters)
