"""A throw-away embedded PostgreSQL for tests that need a server of their own."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from sweeper.embedded import EmbeddedPostgres


@contextlib.contextmanager
def embedded_postgres() -> Iterator[EmbeddedPostgres]:
    """A running embedded server in a fresh directory, stopped and removed afterwards.

    The directory is not under pytest's tmp_path: pytest resets its base directory to mode
    0700 when any pytest session starts, which would lock the server's own user out.
    """
    data_dir = Path(tempfile.mkdtemp(prefix="sweeper-test-pg-"))
    server = EmbeddedPostgres(data_dir)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
