"""Long waits show: ``Progress.waiting`` speaks only for a slow block, ``every`` repeats a
line at most that often."""

from __future__ import annotations

import io
import time

from sweeper.work.progress import Progress


def test_a_slow_block_says_what_it_waits_for_and_a_quick_one_stays_quiet() -> None:
    out = io.StringIO()
    progress = Progress(out)
    with progress.waiting("quick", after=0.5):
        pass
    with progress.waiting("slow", after=0.05):
        time.sleep(0.5)
    time.sleep(0.6)  # the quick block's timer would have fired by now
    assert out.getvalue() == "slow\n"


def test_a_failing_quick_block_adds_no_line_to_its_error() -> None:
    out = io.StringIO()
    try:
        with Progress(out).waiting("loading", after=0.3):
            raise ValueError("bad data")
    except ValueError:
        pass
    time.sleep(0.5)
    assert out.getvalue() == ""


def test_every_repeats_a_line_at_most_once_per_interval() -> None:
    out = io.StringIO()
    say = Progress(out).every(0.3)
    for i in range(5):
        say(f"waiting {i}")  # only the first of this burst is said
    time.sleep(0.4)
    say("waiting 5")
    assert out.getvalue().splitlines() == ["waiting 0", "waiting 5"]
    later = io.StringIO()
    quiet_first = Progress(later).every(0.3, at_once=False)
    quiet_first("too soon")
    time.sleep(0.4)
    quiet_first("now")
    assert later.getvalue() == "now\n"
