"""``make gpu-check`` on a machine without CUDA: exit 2 and one line that says so."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(torch.cuda.is_available(), reason="here it would run the whole GPU check")
def test_without_cuda_the_gpu_check_exits_2_with_one_line() -> None:
    done = subprocess.run(
        [sys.executable, "bench/gpu_check.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert lines == ["gpu-check: error: no CUDA GPU is visible here; run it on a machine with one"]
