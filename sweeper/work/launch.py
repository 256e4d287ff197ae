"""Many workers on one host: one per GPU, or CPU slots, supervised as one command.

Contract:

- ``Launcher(study_name, storage_url, n_workers, gpus).run()`` starts ``sweeper worker``
  processes.
  With GPUs, worker i sees only its GPU (``CUDA_VISIBLE_DEVICES``); on a CPU-only host the
  cores are divided between the workers (``OMP_NUM_THREADS``). The storage URL travels in
  the environment, never on a command line another user could read.
- Every worker's lines reach our stderr prefixed with ``[wN]``: one combined display.
- SIGINT/SIGTERM are forwarded; each worker re-queues its running trial and exits; we exit
  130. A worker that dies for another reason is restarted, at most ``max_restarts`` times
  per slot and after a growing delay (2, 4, 8 s), while the study's budget is not met.
- ``run`` returns when every worker has exited: the budget is global to the study, so a
  worker exits once no trial is left to claim.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from types import FrameType
from typing import TextIO

from sweeper.errors import SweeperError, UsageError

# The first restart of a worker waits this long, each later one twice as long (2, 4, 8 s).
RESTART_BACKOFF_S = 2.0
STOPPED = 130  # a worker's exit code after SIGINT/SIGTERM (sweeper.work.worker.WorkerStopped)


def parse_gpus(text: str | None) -> list[str]:
    """``all`` -> every visible CUDA device; ``0,2`` -> those; None -> none (CPU slots)."""
    if not text:
        return []
    if text == "all":
        import torch

        count = torch.cuda.device_count()
        if count == 0:
            raise UsageError("--gpus all: no CUDA device is visible on this host")
        return [str(i) for i in range(count)]
    ids = [part.strip() for part in text.split(",") if part.strip()]
    if not ids or not all(i.isdigit() for i in ids):
        raise UsageError(f"--gpus must be 'all' or GPU indices like 0,1 (got {text!r})")
    return ids


@dataclass
class WorkerProcess:
    """One worker position: its index, GPU, process and restart count."""

    index: int
    gpu: str | None
    process: subprocess.Popen[str] | None = None
    restarts: int = 0
    restart_at: float | None = None  # monotonic time of a scheduled restart


class Launcher:
    """Starts, watches and restarts the workers of one study on this host."""

    def __init__(
        self,
        study_name: str,
        storage_url: str,
        n_workers: int,
        gpus: list[str],
        extra_args: list[str] | None = None,
        max_restarts: int = 3,
        stream: TextIO | None = None,
    ) -> None:
        if n_workers < 1:
            raise UsageError(f"--workers must be >= 1 (got {n_workers})")
        self.study_name = study_name
        self.storage_url = storage_url
        self.extra_args = extra_args or []
        self.max_restarts = max_restarts
        self.stream = stream or sys.stderr
        self.slots = [
            WorkerProcess(i, gpus[i % len(gpus)] if gpus else None) for i in range(n_workers)
        ]
        self.threads_per_worker = max(1, (os.cpu_count() or 1) // n_workers)
        self._stopping = False
        # Re-entrant: the signal handler (_forward) may print while the main thread prints.
        self._lock = threading.RLock()

    def _env(self, slot: WorkerProcess) -> dict[str, str]:
        env = dict(os.environ)
        env["SWEEPER_STORAGE"] = self.storage_url
        env["PYTHONUNBUFFERED"] = "1"
        if slot.gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = slot.gpu
        else:
            env["OMP_NUM_THREADS"] = str(self.threads_per_worker)
        return env

    def _start(self, slot: WorkerProcess) -> None:
        command = [
            sys.executable, "-m", "sweeper.cli", "worker", "--study", self.study_name,
            *self.extra_args,
        ]  # fmt: skip
        slot.process = subprocess.Popen(
            command,
            env=self._env(slot),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        threading.Thread(target=self._relay, args=(slot, slot.process), daemon=True).start()

    def _relay(self, slot: WorkerProcess, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            with self._lock:
                print(f"[w{slot.index}] {line}", end="", file=self.stream, flush=True)

    def _forward(self, signum: int, frame: FrameType | None) -> None:
        if not self._stopping:  # the wait for workers to re-queue their trials shows
            alive = sum(1 for s in self.slots if s.process is not None and s.process.poll() is None)
            self._say(f"stopping: {alive} workers re-queue their running trials and exit")
        self._stopping = True
        for slot in self.slots:
            if slot.process is not None and slot.process.poll() is None:
                slot.process.send_signal(signal.SIGTERM)

    def run(self) -> int:
        """Run the workers to the end; return the exit code for the CLI."""
        previous = {
            sig: signal.signal(sig, self._forward) for sig in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            for slot in self.slots:
                self._start(slot)
            return self._supervise()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _supervise(self) -> int:
        failed: list[str] = []
        running = set(range(len(self.slots)))
        while running:
            time.sleep(0.2)
            for index in sorted(running):
                slot = self.slots[index]
                if slot.restart_at is not None:
                    if self._stopping:
                        running.discard(index)
                    elif time.monotonic() >= slot.restart_at:
                        slot.restart_at = None
                        self._start(slot)
                    continue
                assert slot.process is not None
                code = slot.process.poll()
                if code is None:
                    continue
                slot.process.wait()
                if code == 0 or self._stopping or code == STOPPED:
                    running.discard(index)
                elif slot.restarts < self.max_restarts:
                    slot.restarts += 1
                    # Backing off: a worker that died with the database (it cannot even
                    # connect while the server restarts) must not burn its restarts in a
                    # second.
                    delay = RESTART_BACKOFF_S * 2 ** (slot.restarts - 1)
                    self._say(
                        f"[w{index}] exited with code {code}; restart {slot.restarts}"
                        f"/{self.max_restarts} in {delay:g} s"
                    )
                    slot.restart_at = time.monotonic() + delay
                else:
                    self._say(f"[w{index}] exited with code {code}; no restarts left")
                    failed.append(f"w{index} (code {code})")
                    running.discard(index)
        if self._stopping:
            return STOPPED
        if failed:
            raise SweeperError(f"workers failed: {', '.join(failed)}; see their lines above")
        return 0

    def _say(self, text: str) -> None:
        with self._lock:
            print(text, file=self.stream, flush=True)
