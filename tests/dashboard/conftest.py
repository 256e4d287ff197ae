"""Fixtures of the dashboard tests: studies in a real PostgreSQL, built by ``factory``.

Most dashboard tests only read a study, so they share one database per test session holding
the studies below (``shared_url``); a test that writes to a study uses the root conftest's
function-scoped ``storage_url`` instead.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg2
import pytest
from sqlalchemy.engine import make_url

from .factory import add_grid, add_sweep


def _admin(url: str) -> psycopg2.extensions.connection:
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


@pytest.fixture(scope="session")
def shared_url(pg_server: str) -> Iterator[str]:
    """A fresh database, read-only for the tests, holding the sweep and the Adam-vs-AdamW grid."""
    name = f"dash_{uuid.uuid4().hex[:12]}"
    conn = _admin(pg_server)
    with conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    url = make_url(pg_server).set(database=name).render_as_string(hide_password=False)
    try:
        add_sweep(url)
        add_grid(url)
        yield url
    finally:
        with conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.close()
