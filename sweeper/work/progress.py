"""The lines sweeper prints while it works: one per event, on stderr, each naming its trial.

Long waits show: ``waiting(text)`` says ``text`` once a block has run for a second (a quick
block, and a quick failure with its one-line error, stay quiet), and ``every(seconds)`` says
a repeated line at most that often (a wait that may last minutes shows it is alive). This
module imports nothing heavy, so the CLI may use it before torch is loaded.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from sweeper.train.trainer import EpochResult

# A wait shorter than this prints nothing: the user would not have wondered.
QUIET_S = 1.0
# How often a wait that goes on says so again: a log shows it is alive, and stays readable.
REPEAT_S = 60.0
# What a slow data load says (the first use of a data set decodes and caches it).
LOADING_DATA = (
    "data: loading; the first use of a data set decodes its images once and caches them "
    "(a minute for CIFAR-10), later runs read the cache"
)


class Progress:
    """One line per event on ``stream``: starts, epochs, ends, the budget, long waits."""

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

    @contextmanager
    def waiting(self, text: str, after: float = QUIET_S) -> Iterator[None]:
        """Say ``text`` if the block is still running ``after`` seconds in (from a timer
        thread; the block itself is not touched)."""
        timer = threading.Timer(after, self.say, args=(text,))
        timer.daemon = True
        timer.start()
        try:
            yield
        finally:
            timer.cancel()

    def every(self, seconds: float = REPEAT_S, *, at_once: bool = True) -> Callable[[str], None]:
        """A ``say`` that speaks (at once, or after ``seconds`` when not ``at_once``), then
        drops lines until ``seconds`` have passed since the last one it said."""
        next_at = -float("inf") if at_once else time.monotonic() + seconds

        def say(text: str) -> None:
            nonlocal next_at
            now = time.monotonic()
            if now >= next_at:
                self.say(text)
                next_at = now + seconds

        return say
