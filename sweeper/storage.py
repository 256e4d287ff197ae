"""Where studies live: Optuna's RDBStorage on PostgreSQL.

Promises:

- The URL comes from ``--storage``, else ``SWEEPER_STORAGE``, else the embedded PostgreSQL
  (started or reused; see ``sweeper.embedded``). One precedence, resolved in ``resolve_url``.
- Only PostgreSQL through psycopg2 is accepted. ``postgres://`` and bare ``postgresql://``
  are read as ``postgresql+psycopg2://`` (SQLAlchemy 2.1 would otherwise pick psycopg 3).
  Anything else (a file path, sqlite, another driver) is a ``UsageError`` that says what to
  write instead.
- Every message and log line shows URLs through ``redact``: a password never leaves here.
- Engines use ``pool_pre_ping`` (a worker survives a PostgreSQL restart) and a small bounded
  pool; heartbeats are on with the spec's interval and grace period. Optuna's own stale-trial
  callback is not installed: workers reap silent trials and re-queue them themselves
  (``sweeper.work.requeue``), which also catches trials that never sent a heartbeat.
"""

from __future__ import annotations

import os

import optuna
import sqlalchemy
from sqlalchemy.engine import URL, make_url

from sweeper.errors import SweeperError, UsageError
from sweeper.spec import StorageSpec

ENV_VAR = "SWEEPER_STORAGE"
DRIVER = "postgresql+psycopg2"
# Each worker holds at most POOL_SIZE + MAX_OVERFLOW connections: keep
# workers x (POOL_SIZE + MAX_OVERFLOW) <= the server's max_connections.
POOL_SIZE = 2
MAX_OVERFLOW = 2


def redact(url: str | URL) -> str:
    """``url`` with its password replaced by ``***``; unparsable input is hidden whole."""
    try:
        parsed = make_url(url) if isinstance(url, str) else url
    except sqlalchemy.exc.ArgumentError:
        return "<unparsable storage URL>" if "@" in str(url) else str(url)
    return parsed.render_as_string(hide_password=True)


def normalise_url(url: str) -> str:
    """Validate ``url`` as a PostgreSQL URL and return it with the psycopg2 driver named."""
    text = url.strip()
    if not text:
        raise UsageError("the storage URL is empty; give postgresql+psycopg2://USER@HOST/DB")
    if "://" not in text:
        raise UsageError(
            f"storage '{text}' looks like a file path; sweeper stores studies in PostgreSQL: "
            "give postgresql+psycopg2://USER:PASSWORD@HOST:PORT/DB, or omit --storage "
            "to use the embedded server"
        )
    try:
        parsed = make_url(text)
    except sqlalchemy.exc.ArgumentError:
        raise UsageError(f"cannot parse storage URL {redact(text)}") from None
    backend, _, driver = parsed.drivername.partition("+")
    if backend not in ("postgresql", "postgres"):
        raise UsageError(
            f"storage {redact(parsed)} uses '{backend}'; sweeper stores studies in PostgreSQL "
            "only: give postgresql+psycopg2://USER:PASSWORD@HOST:PORT/DB"
        )
    if driver not in ("", "psycopg2"):
        raise UsageError(
            f"storage {redact(parsed)} asks for the driver '{driver}', which sweeper does not "
            "install; write postgresql+psycopg2:// instead"
        )
    if not parsed.database:
        raise UsageError(f"storage {redact(parsed)} names no database: add /DBNAME at the end")
    return parsed.set(drivername=DRIVER).render_as_string(hide_password=False)


def resolve_url(flag: str | None) -> str:
    """The storage URL by precedence: ``flag`` > ``$SWEEPER_STORAGE`` > embedded server."""
    if flag:
        return normalise_url(flag)
    env = os.environ.get(ENV_VAR)
    if env:
        return normalise_url(env)
    from sweeper.embedded import EmbeddedPostgres

    return EmbeddedPostgres().start()


def _first_line(err: BaseException) -> str:
    """The driver's own message, first line only (psycopg2 adds hints on later lines)."""
    orig = getattr(err, "orig", None) or err
    lines = [line.strip() for line in str(orig).strip().splitlines() if line.strip()]
    return lines[0] if lines else type(orig).__name__


def _scrub(message: str, url: str) -> str:
    password = make_url(url).password
    return message.replace(str(password), "***") if password else message


def open_storage(url: str | None, options: StorageSpec | None = None) -> optuna.storages.RDBStorage:
    """Resolve, validate and connect; return the RDBStorage all of sweeper works through.

    ``options`` (a study spec's ``[storage]`` table) sets the heartbeat interval and the
    grace period.
    """
    resolved = resolve_url(url)
    opts = options or StorageSpec()
    try:
        return optuna.storages.RDBStorage(
            resolved,
            engine_kwargs={
                "pool_pre_ping": True,
                "pool_size": POOL_SIZE,
                "max_overflow": MAX_OVERFLOW,
            },
            heartbeat_interval=opts.heartbeat_interval,
            grace_period=opts.grace_period,
        )
    except sqlalchemy.exc.SQLAlchemyError as err:
        # RDBStorage connects at once (schema check): an unreachable server, a wrong
        # password or a missing database surface here as OperationalError.
        reason = _scrub(_first_line(err), resolved)
        what = (
            "connect to" if isinstance(err, sqlalchemy.exc.OperationalError) else "open studies in"
        )
        raise SweeperError(f"cannot {what} {redact(resolved)}: {reason}") from None
