"""What pruning saved: epochs trained against the epochs the same trials would have trained
without it.

A counterfactual count, not an estimate: every stopped trial would have run the study's
``epochs``; the trials are the study's finished and stopped ones (failed trials are left out:
their epochs were not the pruner's doing). Whether the answer suffered for it is what
``bench/pruning_replay.py`` measures, per pruner, on recorded curves.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from optuna.trial import TrialState

from sweeper.snapshot import Run


class EpochsSaved(NamedTuple):
    """Epochs of the study's COMPLETE and PRUNED trials."""

    trained: int  # the epochs they trained
    full: int  # the epochs they would have trained unpruned
    n_stopped: int  # PRUNED trials
    pruner: str  # how the study prunes, as its spec says ("median", "curve (threshold 0.05)")

    @property
    def saved(self) -> int:
        """Epochs not trained."""
        return self.full - self.trained

    @property
    def sentence(self) -> str:
        """One line for ``sweeper best``."""
        share = self.saved / self.full if self.full else 0.0
        return (
            f"pruning ({self.pruner}) stopped {self.n_stopped} trial"
            f"{'s' if self.n_stopped != 1 else ''} early: {self.saved} of {self.full} epochs "
            f"saved ({100 * share:.0f}%)"
        )


def epochs_saved(rows: Sequence[Run], epochs: int | None, pruner: str | None) -> EpochsSaved | None:
    """The count over ``rows`` for trials of ``epochs`` epochs; None when the study's length
    or a run's recorded epochs (``attrs.EPOCHS_RUN``) is unknown."""
    ended = [r for r in rows if r.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    if not epochs or not ended or any(r.epochs_run is None for r in ended):
        return None
    trained = sum(min(r.epochs_run or 0, epochs) for r in ended)
    stopped = sum(1 for r in ended if r.state == TrialState.PRUNED)
    return EpochsSaved(trained, epochs * len(ended), stopped, pruner or "unknown")
