"""A real one-node SLURM cluster for tests: Debian's munged, slurmctld and slurmd (22.05).

``one_node_cluster()`` generates a MUNGE key, starts ``munged`` on its own socket, writes a
``slurm.conf`` (free ports, state and spool in a temporary folder, ``proctrack/linuxproc``
and ``task/none`` so that no cgroup is needed, the machine as one node, its CPUs as slurmd
detects them), starts
``slurmctld`` and ``slurmd`` in the foreground, and waits until the node is idle. Commands
reach this cluster through ``SLURM_CONF`` (``Cluster.env``). On exit every job is cancelled
and waited for, and the daemons are stopped and their folder removed: nothing is left
running. The daemons run as the current user, which must be root (slurmd starts jobs as
their owner).

A missing program is an error, never a skip: CI installs them
(``scripts/ensure-cluster-tools.sh``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

PROGRAMS = (
    "mungekey", "munged", "slurmctld", "slurmd", "sbatch", "squeue", "scancel", "sinfo",
    "scontrol",
)  # fmt: skip
PARTITION = "sweeper"
# Seconds between the SIGTERM of a cancelled job and its SIGKILL. SLURM's default is 30;
# a worker re-queues its trial within a second or two, and a short wait keeps teardown quick.
KILL_WAIT_S = 10


@dataclass
class Cluster:
    """A running one-node cluster: its config, environment, folder and daemons."""

    folder: Path
    conf: Path
    node: str
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        """The environment SLURM's commands need to reach this cluster."""
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def run(self, *argv: str, timeout: float = 60) -> str:
        """Run a SLURM command against this cluster; its stdout (an error if it fails)."""
        result = subprocess.run(
            argv, env=self.env, capture_output=True, text=True, timeout=timeout, check=False
        )
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed: {result.stderr.strip()}")
        return result.stdout

    def tasks(self, job_id: str) -> dict[str, str]:
        """``{"JOB_TASK": STATE}`` for every task of an array, finished ones included (SLURM
        keeps finished jobs for MinJobAge, 300 s by default)."""
        out = subprocess.run(
            ["scontrol", "-o", "show", "job", job_id],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        ).stdout
        states = {}
        for line in out.splitlines():
            fields = dict(part.split("=", 1) for part in line.split() if "=" in part)
            if "ArrayTaskId" in fields:
                states[f"{fields['ArrayJobId']}_{fields['ArrayTaskId']}"] = fields["JobState"]
        return states

    def wait_for_array(self, job_id: str, timeout: float) -> dict[str, str]:
        """Wait until no task of the array is pending or running; their final states."""
        deadline = time.monotonic() + timeout
        states: dict[str, str] = {}
        while time.monotonic() < deadline:
            pending = self.run("squeue", "-h", "-j", job_id, "-o", "%i %T").strip()
            if not pending:
                return self.tasks(job_id)
            states = dict(line.split() for line in pending.splitlines())
            time.sleep(1)
        raise TimeoutError(f"job array {job_id} still had tasks after {timeout:g} s: {states}")

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of the daemons' logs, for a failure message."""
        parts = []
        for log in sorted((self.folder / "log").glob("*")):
            text = log.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"--- {log.name}\n" + "\n".join(text))
        return "\n".join(parts)


def missing_programs() -> list[str]:
    """The programs this module needs that are not on PATH."""
    return [name for name in PROGRAMS if shutil.which(name) is None]


def _free_ports(count: int) -> list[int]:
    """Ports nobody listens on now (the OS picks them; held open together so they differ)."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]


def _hardware() -> tuple[str, str]:
    """This machine's node name and CPU layout as slurmd itself detects them (``slurmd -C``),
    so the node's configuration matches what slurmd reports when it registers."""
    first = subprocess.run(
        ["slurmd", "-C"], capture_output=True, text=True, timeout=60, check=True
    ).stdout.splitlines()[0]
    fields = dict(part.split("=", 1) for part in first.split())
    layout = ("CPUs", "Boards", "SocketsPerBoard", "CoresPerSocket", "ThreadsPerCore")
    return fields["NodeName"], " ".join(f"{key}={fields[key]}" for key in layout if key in fields)


def _config(folder: Path, node: str, hardware: str) -> str:
    ctld_port, slurmd_port = _free_ports(2)
    return "\n".join(
        [
            "ClusterName=sweepertest",
            f"SlurmctldHost={node}(127.0.0.1)",
            f"SlurmctldPort={ctld_port}",
            f"SlurmdPort={slurmd_port}",
            "SlurmUser=root",
            "SlurmdUser=root",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={folder / 'munge' / 'socket'}",
            "MpiDefault=none",
            # No cgroups: processes are tracked through their parents, tasks are not bound.
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            "JobCompType=jobcomp/none",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core",
            "SchedulerType=sched/backfill",
            "ReturnToService=2",
            f"KillWait={KILL_WAIT_S}",
            f"StateSaveLocation={folder / 'state'}",
            f"SlurmdSpoolDir={folder / 'spool'}",
            f"SlurmctldPidFile={folder / 'slurmctld.pid'}",
            f"SlurmdPidFile={folder / 'slurmd.pid'}",
            f"SlurmctldLogFile={folder / 'log' / 'slurmctld.log'}",
            f"SlurmdLogFile={folder / 'log' / 'slurmd.log'}",
            # RealMemory is a floor slurmd checks against the machine; memory is not
            # scheduled (CR_Core), so a small floor fits any test machine.
            f"NodeName={node} NodeAddr=127.0.0.1 {hardware} RealMemory=500 State=UNKNOWN",
            f"PartitionName={PARTITION} Nodes={node} Default=YES MaxTime=INFINITE State=UP",
            "",
        ]
    )


def _start(cluster: Cluster, name: str, argv: list[str]) -> None:
    log = (cluster.folder / "log" / f"{name}.out").open("wb")
    cluster.processes[name] = subprocess.Popen(
        argv, env=cluster.env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
    )
    log.close()  # the child holds its own copy


def _wait(what: str, ready: Callable[[], bool], cluster: Cluster, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name, process in cluster.processes.items():
            if process.poll() is not None:
                raise RuntimeError(
                    f"{name} exited with code {process.returncode} while waiting for {what}\n"
                    + cluster.log_tail()
                )
        if ready():
            return
        time.sleep(0.5)
    raise RuntimeError(f"{what} not ready after {timeout:g} s\n" + cluster.log_tail())


def _node_idle(cluster: Cluster) -> bool:
    result = subprocess.run(
        ["sinfo", "-h", "-N", "-o", "%T"],
        env=cluster.env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return result.returncode == 0 and result.stdout.strip() == "idle"


def _stop(cluster: Cluster) -> None:
    """Cancel every job, wait for them, then stop the daemons (newest first)."""
    if "slurmd" in cluster.processes and cluster.processes["slurmd"].poll() is None:
        with contextlib.suppress(Exception):
            cluster.run("scancel", "--partition", PARTITION)
            deadline = time.monotonic() + KILL_WAIT_S + 30
            while time.monotonic() < deadline and cluster.run("squeue", "-h").strip():
                time.sleep(0.5)
    for process in reversed(list(cluster.processes.values())):
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextlib.contextmanager
def one_node_cluster() -> Iterator[Cluster]:
    """A running one-node cluster (see the module docstring), torn down afterwards."""
    missing = missing_programs()
    if missing:
        raise RuntimeError(
            f"SLURM tests need {', '.join(missing)} on PATH: install Debian's slurmctld, "
            "slurmd and munge (scripts/ensure-cluster-tools.sh)"
        )
    if os.geteuid() != 0:
        raise RuntimeError("SLURM tests start slurmd, which must run as root")
    # Not under pytest's tmp_path: another pytest session may prune old base folders while
    # this one runs, and munged's socket path must stay short (108 bytes at most).
    node, hardware = _hardware()
    folder = Path(tempfile.mkdtemp(prefix="sweeper-slurm-"))
    for sub in ("munge", "state", "spool", "log"):
        (folder / sub).mkdir(mode=0o700)
    conf = folder / "slurm.conf"
    conf.write_text(_config(folder, node, hardware))
    cluster = Cluster(folder, conf, node)
    try:
        munge = folder / "munge"
        subprocess.run(
            ["mungekey", "--create", f"--keyfile={munge / 'key'}"],
            check=True,
            capture_output=True,
        )
        _start(cluster, "munged", [
            "munged", "--foreground", "--force", f"--socket={munge / 'socket'}",
            f"--key-file={munge / 'key'}", f"--pid-file={munge / 'pid'}",
            f"--seed-file={munge / 'seed'}", f"--log-file={folder / 'log' / 'munged.log'}",
        ])  # fmt: skip
        _wait("munged's socket", (munge / "socket").exists, cluster)
        _start(cluster, "slurmctld", ["slurmctld", "-D", "-f", str(conf)])
        _start(cluster, "slurmd", ["slurmd", "-D", "-f", str(conf)])
        _wait("the node", lambda: _node_idle(cluster), cluster)
        yield cluster
    finally:
        _stop(cluster)
        shutil.rmtree(folder, ignore_errors=True)
