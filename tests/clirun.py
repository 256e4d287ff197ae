"""Run the real ``sweeper`` console script in a subprocess, as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

SCRIPT = Path(sys.executable).with_name("sweeper")


def sweeper(
    *args: str, timeout: float = 300, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``sweeper ARGS`` with the test's environment; output captured as text."""
    return subprocess.run(
        [str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    """The single ``sweeper: error:`` line of a failed run (asserts there is nothing else)."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got:\n{result.stderr}"
    assert lines[0].startswith("sweeper: error: "), lines[0]
    assert "Traceback" not in result.stderr
    return lines[0]


def start_and_wait_for(args: list[str], marker: str, timeout: float = 240) -> subprocess.Popen[str]:
    """Start ``sweeper ARGS``; return once a line containing ``marker`` is on its stderr."""
    proc = subprocess.Popen(
        [str(SCRIPT), *args],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env=dict(os.environ),
    )
    assert proc.stderr is not None
    deadline = time.monotonic() + timeout
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if marker in line:
            return proc
        if time.monotonic() > deadline:
            break
    proc.kill()
    pytest.fail(f"never saw {marker!r}; stderr was:\n{''.join(seen)}")


def finish(proc: subprocess.Popen[str]) -> tuple[int, str]:
    """Wait for a process ``start_and_wait_for`` started: its exit code and the rest of stderr."""
    _, rest = proc.communicate(timeout=120)
    return proc.returncode, rest
