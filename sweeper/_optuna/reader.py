"""A storage for commands that only read, opened without Optuna's set-up work.

``RDBStorage(url)`` creates any missing table, imports alembic (0.17 s on a 2-core machine)
and asks it whether the database's schema revision is the one this Optuna writes. A command
that only reads (``sweeper best``, ``report``, ``importance``) needs none of that once the
database holds exactly that schema. ``open_reader`` checks it with one query: the
``alembic_version`` row against the head revision named in Optuna's bundled migration scripts
(read as text, without alembic). Otherwise it returns None and the caller opens the usual
way, which creates the tables, or says what is wrong, in its own words.

``tests/test_optuna_door.py`` checks that the head found here is the one ``RDBStorage``
finds, that an older or missing schema gets None, and that a study read through this
storage equals the same study read through ``RDBStorage``.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

import optuna
import sqlalchemy
from sqlalchemy import orm

_REVISION = re.compile(r"^(down_)?revision\s*(?::[^=]*)?=\s*[\"']([^\"']+)[\"']", re.MULTILINE)
_CURRENT_SQL = sqlalchemy.text("SELECT version_num FROM alembic_version")


@functools.cache
def head_revision() -> str | None:
    """The schema revision this Optuna writes: the one migration no other revises (its
    ``alembic/versions`` scripts, as ``RDBStorage.get_head_version`` finds it through
    alembic); None when that is not exactly one (then no reader is opened)."""
    versions = Path(optuna.storages.__file__).parent / "_rdb" / "alembic" / "versions"
    revisions: set[str] = set()
    revised: set[str] = set()
    for script in versions.glob("*.py"):
        for down, name in _REVISION.findall(script.read_text()):
            (revised if down else revisions).add(name)
    heads = revisions - revised
    return next(iter(heads)) if len(heads) == 1 else None


def open_reader(url: str) -> optuna.storages.RDBStorage | None:
    """An ``RDBStorage`` on ``url`` for reading studies, or None when the database does not
    answer, or does not hold exactly the schema this Optuna writes."""
    head = head_revision()
    if head is None:
        return None
    try:
        engine = sqlalchemy.create_engine(url)
    except sqlalchemy.exc.SQLAlchemyError:  # a URL the caller's own opener will explain
        return None
    try:
        with engine.connect() as conn:
            current = conn.execute(_CURRENT_SQL).scalar_one_or_none()
    except sqlalchemy.exc.SQLAlchemyError:
        current = None
    if current != head:
        engine.dispose()
        return None
    # What RDBStorage.__init__ sets for a URL without options (optuna/storages/_rdb/storage.py,
    # the same in 5.0.0 and 5.1.0), less the steps it takes before a write: create_all, and
    # the alembic version manager, which only ``upgrade`` and the version getters use.
    storage = optuna.storages.RDBStorage.__new__(optuna.storages.RDBStorage)
    storage.engine_kwargs = {}
    storage.url = url
    storage.skip_compatibility_check = True
    storage.heartbeat_interval = None
    storage.grace_period = None
    storage.heartbeat_stale_trial_callback = None
    storage.failed_trial_callback = None
    storage.engine = engine
    storage.scoped_session = orm.scoped_session(orm.sessionmaker(bind=engine))
    return storage
