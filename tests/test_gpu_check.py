"""``make gpu-check`` without CUDA: exit 2 and one line; its report reads the step benchmark."""

from __future__ import annotations

import json
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


def test_the_reports_optimizer_table_reads_what_the_step_benchmark_writes(tmp_path: Path) -> None:
    """The CPU side of the check: bench/adamw_step.py's JSON (a short CPU run here) becomes the
    report's table, with each variant's ratio to torch's fused AdamW."""
    out = tmp_path / "adamw_step.json"
    done = subprocess.run(
        [
            *(sys.executable, "bench/adamw_step.py", "--device", "cpu", "--ks", "1"),
            *("--repeats", "2", "--warmup", "1", "--threads", "1", "--json", str(out)),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import gpu_check
    finally:
        sys.path.remove(str(ROOT / "bench"))
    report = {
        "gpu": "none",
        "torch": torch.__version__,
        "triton": "-",
        "python": "-",
        "started": "-",
        "steps": [],
        "adamw_step": json.loads(out.read_text()),
    }
    text = gpu_check.markdown(report)
    header = next(line for line in text.splitlines() if line.startswith("| K |"))
    assert "vs fused" in header, text
    fused_row = next(line for line in text.splitlines() if "torch AdamW fused=True" in line)
    assert "| 1.00x |" in fused_row, text  # the reference's ratio to itself
    assert any("| FusedAdamW |" in line for line in text.splitlines()), text
