"""A throw-away embedded PostgreSQL for tests that need a server of their own."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg2
from sqlalchemy.engine import make_url

from sweeper.embedded import EmbeddedPostgres


@contextlib.contextmanager
def passable_folder(prefix: str = "sweeper-test-") -> Iterator[Path]:
    """A fresh folder that other users may pass through (mode 0711), removed afterwards.

    Under root the embedded server runs as its own system user, which must reach its data.
    Not under pytest's tmp_path: pytest resets its base directory to mode 0700 when any
    pytest session starts, which would lock the server's user out.
    """
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    folder.chmod(0o711)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def embedded_postgres() -> Iterator[EmbeddedPostgres]:
    """A running embedded server in a fresh directory, stopped and removed afterwards."""
    with passable_folder("sweeper-test-pg-") as data_dir:
        server = EmbeddedPostgres(data_dir)
        server.start()
        try:
            yield server
        finally:
            server.stop()


def admin_connect(url: str) -> psycopg2.extensions.connection:
    """An autocommit connection to the database ``url`` names."""
    parsed = make_url(url)
    conn = psycopg2.connect(
        host=parsed.host,
        port=parsed.port,
        user=parsed.username,
        password=parsed.password,
        dbname=parsed.database,
    )
    conn.autocommit = True
    return conn


@contextlib.contextmanager
def fresh_database(server_url: str, prefix: str = "t") -> Iterator[str]:
    """URL of a new empty database on ``server_url``'s server, dropped afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with contextlib.closing(admin_connect(server_url)) as conn, conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with contextlib.closing(admin_connect(server_url)) as conn, conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
