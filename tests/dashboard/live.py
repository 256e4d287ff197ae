"""Run ``sweeper dashboard`` as a real process and find the URL it serves."""

from __future__ import annotations

import contextlib
import re
import selectors
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass

from clirun import SCRIPT


@dataclass
class Live:
    url: str
    process: subprocess.Popen[str]
    first_lines: list[str]


@contextlib.contextmanager
def dashboard(*args: str, timeout: float = 60.0) -> Iterator[Live]:
    """``sweeper dashboard ARGS --port 0``; yields once it says where it serves.

    On exit it sends SIGTERM and asserts the server stopped cleanly (exit 0).
    """
    proc = subprocess.Popen(
        [str(SCRIPT), "dashboard", *args, "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        url = None
        while url is None:
            if time.monotonic() > deadline or proc.poll() is not None:
                err = proc.stderr.read() if proc.poll() is not None and proc.stderr else ""
                raise AssertionError(f"dashboard did not start: {lines} {err}")
            if sel.select(timeout=0.5):
                line = proc.stdout.readline()
                lines.append(line.rstrip("\n"))
                found = re.search(r"at (http://\S+/) \(Ctrl-C to stop\)", line)
                url = found.group(1) if found else None
        sel.close()
        yield Live(url, proc, lines)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise AssertionError("dashboard ignored SIGTERM") from None
    rest = proc.stdout.read() if proc.stdout else ""
    assert proc.returncode == 0, (proc.returncode, proc.stderr.read() if proc.stderr else "")
    assert "dashboard stopped" in rest
