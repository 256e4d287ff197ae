"""The lines a worker prints: one per event, on stderr, each naming its trial."""

from __future__ import annotations

import sys
from typing import TextIO

from sweeper.train.trainer import EpochResult


class Progress:
    """One line per event on ``stream``: starts, epochs, ends, the budget."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr

    def say(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def trial(self, number: int, text: str) -> None:
        """A line about trial ``number``."""
        self.say(f"trial {number:>3} | {text}")

    def epoch(self, number: int, r: EpochResult, epochs: int) -> None:
        self.trial(
            number,
            f"epoch {r.epoch}/{epochs} | loss {r.train_loss:.4f} | "
            f"val_acc {r.val_accuracy:6.2%} | {r.seconds:.1f} s",
        )
