"""Fixtures of the dashboard tests: studies in a real PostgreSQL, built by ``factory``.

Most dashboard tests only read a study, so they share one database per test session holding
the studies below (``shared_url``); a test that writes to a study uses the root conftest's
function-scoped ``storage_url`` instead.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pgtools import fresh_database

from .factory import add_grid, add_sweep


@pytest.fixture(scope="session")
def shared_url(pg_server: str) -> Iterator[str]:
    """A fresh database, read-only for the tests, holding the sweep and the Adam-vs-AdamW grid."""
    with fresh_database(pg_server, prefix="dash") as url:
        add_sweep(url)
        add_grid(url)
        yield url
