"""What a trial records about where and how it ran (user attributes of the trial)."""

from __future__ import annotations

import functools
import os
import platform
import socket
import subprocess
from pathlib import Path

import torch

import sweeper
from sweeper import attrs


@functools.cache
def git_revision() -> str | None:
    """The source checkout's commit, when sweeper runs from one."""
    root = Path(sweeper.__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return None
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def device_name(device: torch.device) -> str:
    """A human name for ``device``: the GPU's model, or the CPU's."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"


def worker_id() -> str:
    """``host:pid``: which worker ran a trial."""
    return f"{socket.gethostname()}:{os.getpid()}"


def cluster_task() -> str | None:
    """The SLURM job (``slurm 812``) or array task (``slurm 812_3``), or the index of a
    Kubernetes Indexed Job (``k8s index 2``), this process runs in, from the variables the
    scheduler sets in every job or container; None outside one."""
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    if array and task:
        return f"slurm {array}_{task}"
    job = os.environ.get("SLURM_JOB_ID")
    if job:
        return f"slurm {job}"
    index = os.environ.get("JOB_COMPLETION_INDEX")
    return f"k8s index {index}" if index else None


def provenance(device: torch.device, optimizer_impl: str, execution: str) -> dict[str, str]:
    """User attributes every trial carries besides its seed and results.

    ``execution`` names how steps ran (``sweeper.train.execution.Execution.describe``).
    """
    recorded = {
        attrs.SWEEPER_VERSION: sweeper.__version__,
        attrs.TORCH_VERSION: torch.__version__,
        attrs.DEVICE: device_name(device),
        attrs.OPTIMIZER_IMPL: optimizer_impl,
        attrs.EXECUTION: execution,
        attrs.WORKER: worker_id(),
    }
    revision = git_revision()
    if revision:
        recorded[attrs.GIT_REV] = revision
    task = cluster_task()
    if task:
        recorded[attrs.CLUSTER_TASK] = task
    return recorded
