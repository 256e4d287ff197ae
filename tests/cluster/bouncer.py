"""A real PgBouncer (Debian's ``pgbouncer``) in transaction pooling mode, for tests.

``pgbouncer(server_url, server_connections=8)`` starts one in front of ``server_url``'s
server on a free port, with its config, log and pid file in a temporary folder, and yields the
URL clients use (same user and database, the pooler's port). PgBouncer refuses to run as
root: under root it runs as the embedded server's system user, as PostgreSQL does.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg2
from sqlalchemy.engine import make_url

from sweeper.embedded import SYSTEM_USER


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def binary() -> str:
    """The pgbouncer program; fails loudly when it is missing (CI installs it)."""
    found = shutil.which("pgbouncer") or (
        "/usr/sbin/pgbouncer" if Path("/usr/sbin/pgbouncer").exists() else None
    )
    if found is None:
        raise RuntimeError(
            "pgbouncer is not installed: run scripts/ensure-cluster-tools.sh (Debian package "
            "pgbouncer)"
        )
    return found


@contextlib.contextmanager
def pgbouncer(
    server_url: str, server_connections: int = 8, pool_mode: str = "transaction"
) -> Iterator[str]:
    """A PgBouncer in ``pool_mode`` (transaction, the mode sweeper needs, unless a test
    wants another) with at most ``server_connections`` to the server."""
    server = make_url(server_url)
    folder = Path(tempfile.mkdtemp(prefix="sweeper-pgbouncer-"))
    port = _free_port()
    config = folder / "pgbouncer.ini"
    config.write_text(
        "[databases]\n"
        f"* = host={server.host} port={server.port} user={server.username}"
        + (f" password={server.password}" if server.password else "")
        + "\n"
        "[pgbouncer]\n"
        "listen_addr = 127.0.0.1\n"
        f"listen_port = {port}\n"
        "unix_socket_dir =\n"
        # The pooler logs in to the server with the password above; its own clients (the
        # test's, on 127.0.0.1) give none.
        "auth_type = any\n"
        f"pool_mode = {pool_mode}\n"
        f"default_pool_size = {server_connections}\n"
        f"max_db_connections = {server_connections}\n"
        "max_client_conn = 1000\n"
        "ignore_startup_parameters = extra_float_digits,options\n"
        f"logfile = {folder / 'pgbouncer.log'}\n"
        f"pidfile = {folder / 'pgbouncer.pid'}\n"
    )
    config.chmod(0o600)  # it holds the server's password
    user: dict[str, object] = {}
    if os.geteuid() == 0:
        entry = pwd.getpwnam(SYSTEM_USER)  # made by the embedded server under root
        os.chown(folder, entry.pw_uid, entry.pw_gid)
        os.chown(config, entry.pw_uid, entry.pw_gid)
        user = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
    proc = subprocess.Popen(
        [binary(), str(config)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        **user,  # type: ignore[arg-type]
    )
    url = server.set(port=port).render_as_string(hide_password=False)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                psycopg2.connect(
                    host="127.0.0.1", port=port, user=server.username, dbname=server.database
                ).close()
                break
            except psycopg2.OperationalError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    log = (folder / "pgbouncer.log").read_text(errors="replace")
                    raise RuntimeError(f"pgbouncer did not start:\n{log}") from None
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(folder, ignore_errors=True)
