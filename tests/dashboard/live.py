"""Run ``sweeper dashboard`` as a real process and find the URL it serves."""

from __future__ import annotations

import contextlib
import re
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

from clirun import SCRIPT


@dataclass
class Live:
    url: str
    process: subprocess.Popen[str]
    first_lines: list[str]


@contextlib.contextmanager
def dashboard(*args: str) -> Iterator[Live]:
    """``sweeper dashboard ARGS --port 0``; yields once it says where it serves (waiting on
    its output lines, however slowly a loaded machine starts it; its exit ends the wait).

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
        url = None
        while url is None:
            line = proc.stdout.readline()
            if not line:  # its output ended: it exited without serving
                proc.wait()
                err = proc.stderr.read() if proc.stderr else ""
                raise AssertionError(f"dashboard did not start: {lines} {err}")
            lines.append(line.rstrip("\n"))
            found = re.search(r"at (http://\S+/) \(Ctrl-C to stop\)", line)
            url = found.group(1) if found else None
        yield Live(url, proc, lines)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            # A bound on failure only, far past a loaded machine's shutdown (seconds).
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise AssertionError("dashboard ignored SIGTERM") from None
    rest = proc.stdout.read() if proc.stdout else ""
    assert proc.returncode == 0, (proc.returncode, proc.stderr.read() if proc.stderr else "")
    assert "dashboard stopped" in rest
