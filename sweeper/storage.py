"""Where studies live: Optuna's RDBStorage on PostgreSQL.

Promises:

- The URL comes from ``--storage``, else ``SWEEPER_STORAGE``, else the embedded PostgreSQL
  (started or reused; see ``sweeper.embedded``). One precedence, resolved in ``resolve_url``.
- Only PostgreSQL through psycopg2 is accepted. ``postgres://`` and bare ``postgresql://``
  are read as ``postgresql+psycopg2://`` (SQLAlchemy 2.1 would otherwise pick psycopg 3).
  Anything else (a file path, sqlite, another driver) is a ``UsageError`` that says what to
  write instead.
- Every message and log line shows storage strings through ``redact``, which hides anything
  shaped like a credential whatever the string's shape (a URL, a typo of one, ``user:pw@host``,
  a ``password=`` query parameter): a password never leaves here. ``secrets_in`` lists those
  parts, so the CLI can scrub them from any message, including the driver's.
- A malformed URL (no ``://``, a port that is not a number in 1-65535, a space in the host,
  an option libpq rejects) is a ``UsageError``; a server that does not answer or refuses
  the login is a ``SweeperError``.
- Engines ping a pooled connection before use only when it sat idle for ``PING_AFTER_IDLE_S``
  (a worker survives a PostgreSQL restart between epochs, without a round trip in front of
  every statement of its hot loop), and keep a small bounded pool; heartbeats are on with the
  spec's interval and grace period. Optuna's own stale-trial callback is not installed:
  workers reap silent trials and re-queue them themselves (``sweeper.work.requeue``), which
  also catches trials that never sent a heartbeat.
- Everything works behind PgBouncer in transaction pooling mode: no session state is relied
  on (locks are transaction-scoped, see ``exclusive``), and a lock waiter holds no server
  connection while it waits.
- A server (or pooler) that refuses a connection because it has too many is named as such,
  with what to change, in one line (``explain_refusal``).
- A storage set-up whose statement (or new connection) waits more than ``SETUP_PATIENCE_S``
  is ended with one line that names the likely cause, a pooler that hands out too few server
  connections (PgBouncer in session mode, or a pool below ``MIN_POOLER_CONNECTIONS``), and
  the settings that work, instead of hanging until the pooler's own timeout and its
  "server closed the connection unexpectedly". A pooler passes ``SHOW pool_mode`` on to the
  server, so the mode cannot be asked for: the wait itself is the evidence.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import optuna
import sqlalchemy
from sqlalchemy import event
from sqlalchemy.engine import URL, make_url

from sweeper.errors import SweeperError, UsageError
from sweeper.spec import StorageSpec

if TYPE_CHECKING:
    from sweeper.embedded import EmbeddedPostgres

ENV_VAR = "SWEEPER_STORAGE"
DRIVER = "postgresql+psycopg2"
# Each worker holds at most POOL_SIZE + MAX_OVERFLOW connections: keep
# workers x (POOL_SIZE + MAX_OVERFLOW) <= the server's max_connections.
POOL_SIZE = 2
MAX_OVERFLOW = 2
# The fewest server connections a pooler in transaction mode must allow sweeper's (database,
# user): Optuna's storage set-up holds one connection while it opens a second, and another
# process's claim needs a third meanwhile. Below it a fleet stalls (see ``explain_pooler``).
MIN_POOLER_CONNECTIONS = 3
# How long one statement of the storage set-up may wait. A set-up is a few short statements
# (creating Optuna's tables on a fresh database took under 2 s on a 2-core VM with five busy
# loops beside it); 30 s is far past that, and well under PgBouncer's query_wait_timeout
# (120 s), after which it would close the connection with no reason a user can act on.
SETUP_PATIENCE_S = 30.0
# A pooled connection idle longer than this is pinged before use (see ``_ping_when_idle``).
PING_AFTER_IDLE_S = 2.0


# A scheme and its slashes, typos included: "postgresql://", "postgresql:/", "postgresql//".
_LEAD = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*(?:://?|//)")
# libpq takes a password as a query parameter, or as a keyword in its "key=value key=value"
# form, with spaces around "=" and a quoted value allowed; SQLAlchemy renders a "=" inside a
# database name as %3D (and a quote as %27). Any "password=" is hidden, wherever it stands.
_QUERY_SECRET = re.compile(
    r"(?i)(?:password|passwd|pwd)\s*(?:=|%3D)\s*"
    r"('(?:[^'\\]|\\.)*'?|%27(?:(?!%27).)*(?:%27)?|[^\s&]*)"
)
# libpq's own complaints about the URL's options: the URL is at fault, not the server.
_BAD_OPTION = re.compile(
    r"invalid dsn|invalid connection option|invalid \w+ value|invalid integer value"
    r"|invalid port number"
)


def _secret_spans(text: str) -> list[tuple[int, int]]:
    """Where ``text`` holds a credential, by shape alone (it need not parse as a URL).

    The userinfo before the last ``@`` (before any query) loses everything after its first
    ``:`` (or ``%3A``), or all of itself when it holds a space and no ``:``; without an
    ``@``, a non-numeric "port" after a scheme (``postgresql://u:pw/db`` forgot its
    ``@host``) is hidden; and ``password=`` values always are, as a query parameter or a
    libpq keyword (``password = 'a b'`` included).
    """
    spans = [(m.start(1), m.end(1)) for m in _QUERY_SECRET.finditer(text) if m.group(1)]
    head = text.split("?", 1)[0]
    lead = _LEAD.match(head)
    start = lead.end() if lead else 0
    at = head.rfind("@")
    if at >= start:
        userinfo = head[start:at]
        colon = re.search(r":|%3[aA]", userinfo)  # an escaped colon still splits user:password
        if colon and colon.end() < len(userinfo):
            spans.append((start + colon.end(), at))
        elif not colon and any(c.isspace() for c in userinfo):
            spans.append((start, at))
        return spans
    if not lead:  # a bare word or path: nothing in it is shaped like a credential
        return spans
    authority = re.split(r"[/?]", head[start:], maxsplit=1)[0]
    port = authority.rfind(":") + 1  # 0: no colon
    rest = authority[port:]
    if port and rest and not rest.isdigit() and "]" not in rest:  # "]": inside an IPv6 literal
        spans.append((start + port, start + len(authority)))
    return spans


def secrets_in(text: str) -> list[str]:
    """The parts of ``text`` that ``redact`` hides (passwords, whatever the string's shape),
    as written and percent-decoded (the form a driver would quote back)."""
    found = [text[a:b] for a, b in _secret_spans(text)]
    return list(dict.fromkeys([*found, *(unquote(s) for s in found)]))


def redact(url: str | URL) -> str:
    """``url`` with anything shaped like a password replaced by ``***``; see ``_secret_spans``."""
    text = url.render_as_string(hide_password=True) if isinstance(url, URL) else str(url)
    for a, b in sorted(_secret_spans(text), reverse=True):
        text = text[:a] + "***" + text[b:]
    return text


def _usage(text: str, problem: str) -> UsageError:
    return UsageError(
        f"storage '{redact(text)}' {problem}: give postgresql+psycopg2://USER:PASSWORD@HOST:PORT/DB"
    )


def normalise_url(url: str) -> str:
    """Validate ``url`` as a PostgreSQL URL and return it with the psycopg2 driver named."""
    text = url.strip()
    if not text:
        raise UsageError("the storage URL is empty; give postgresql+psycopg2://USER@HOST/DB")
    if "://" not in text:
        if "=" in text and not _LEAD.match(text):
            raise _usage(text, "is a libpq keyword string, not a URL")
        if "@" in text or ":" in text or text.lower().startswith("postgres"):
            raise _usage(text, "is not a URL (no '://' after the scheme)")
        # A bare word is not echoed: it may be a password given in the wrong place.
        raise UsageError(
            "storage (not shown: a bare word may be a password) looks like a file path; "
            "sweeper stores studies in PostgreSQL: give "
            "postgresql+psycopg2://USER:PASSWORD@HOST:PORT/DB, or omit --storage to use the "
            "embedded server"
        )
    try:
        parsed = make_url(text)
    except sqlalchemy.exc.ArgumentError:
        raise _usage(text, "cannot be parsed as a URL") from None
    except ValueError:  # SQLAlchemy's int() of the port
        raise _usage(text, "has a port that is not a number (or an unclosed '[' host)") from None
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
    if parsed.port is not None and not 1 <= parsed.port <= 65535:
        raise _usage(text, f"has port {parsed.port}, outside 1-65535")
    if parsed.host and "@" in parsed.host:
        raise _usage(text, "has an '@' in its password or user name: write it as %40")
    if parsed.host and any(c.isspace() for c in parsed.host):
        raise _usage(text, f"has a space in its host {parsed.host!r}")
    if not parsed.database:
        raise UsageError(f"storage {redact(parsed)} names no database: add /DBNAME at the end")
    return parsed.set(drivername=DRIVER).render_as_string(hide_password=False)


def resolve_url(
    flag: str | None, start_embedded: Callable[[EmbeddedPostgres], str] | None = None
) -> str:
    """The storage URL by precedence: ``flag`` > ``$SWEEPER_STORAGE`` > embedded server,
    started by ``start_embedded`` when given (the CLI checks its folder and reports first)."""
    if flag:
        return normalise_url(flag)
    env = os.environ.get(ENV_VAR)
    if env:
        return normalise_url(env)
    from sweeper.embedded import EmbeddedPostgres

    server = EmbeddedPostgres()
    return start_embedded(server) if start_embedded is not None else server.start()


def _first_line(err: BaseException) -> str:
    """The driver's own message, first line only (psycopg2 adds hints on later lines)."""
    orig = getattr(err, "orig", None) or err
    lines = [line.strip() for line in str(orig).strip().splitlines() if line.strip()]
    return lines[0] if lines else type(orig).__name__


def _scrub(message: str, url: str) -> str:
    password = make_url(url).password
    secrets = [str(password)] if password else []
    for secret in [*secrets, *secrets_in(url)]:
        message = message.replace(secret, "***")
    return message


# Refusals for want of connections: PostgreSQL's own (max_connections, per role, per
# database) and PgBouncer's (max_client_conn, max_db_connections reached with no wait).
_TOO_MANY = re.compile(
    r"too many clients already|remaining connection slots are reserved"
    r"|too many connections for (?:role|database)|no more connections allowed"
    r"|max_client_conn|max_db_connections",
    re.IGNORECASE,
)


def explain_refusal(reason: str) -> str | None:
    """What to do about a connection refused for want of connections (None: not that).

    ``reason`` is the driver's message; the answer is one line that keeps it.
    """
    if not _TOO_MANY.search(reason):
        return None
    per_process = POOL_SIZE + MAX_OVERFLOW
    return (
        f"the database refused a connection: too many connections ({reason}); each sweeper "
        f"process holds up to {per_process}: run fewer workers, raise the server's "
        "max_connections, or put PgBouncer in transaction mode in front (README: Run on a "
        "cluster)"
    )


# Any fixed 64-bit key: the advisory lock that serialises storage set-up.
_SCHEMA_LOCK = 0x5357_4545_5045_5201  # "SWEEPER" + 1
# Polling a lock: the first wait, and the longest (doubling in between, with jitter).
_LOCK_POLL_S = (0.002, 0.1)


@contextlib.contextmanager
def exclusive(engine: sqlalchemy.Engine, key: int) -> Iterator[sqlalchemy.Connection]:
    """Hold PostgreSQL's transaction-scoped advisory lock ``key`` for the block, inside one
    transaction on the yielded connection (committed at the end, rolled back on error).

    The lock is polled (``pg_try_advisory_xact_lock``), and a failed try ends its
    transaction before the wait: behind PgBouncer in transaction mode a waiter then holds no
    server connection, so waiters can never starve the holder of the connection it needs
    for work it does through another one (Optuna's calls) -- the deadlock a blocking wait
    would make once waiters outnumber the pooler's server connections.
    """
    wait, longest = _LOCK_POLL_S
    try_lock = sqlalchemy.text("SELECT pg_try_advisory_xact_lock(:k)")
    with engine.connect() as conn:
        while True:
            conn.begin()
            if conn.execute(try_lock, {"k": key}).scalar_one():
                break
            conn.rollback()
            time.sleep(wait * (0.5 + random.random()))
            wait = min(2 * wait, longest)
        try:
            yield conn
        except BaseException:
            conn.rollback()
            raise
        conn.commit()


@contextlib.contextmanager
def _one_setup_at_a_time(url: str) -> Iterator[None]:
    """Hold an advisory lock while Optuna sets up its storage (creates or checks its tables).

    Two reasons. RDBStorage creates its schema when a database has none; two processes
    doing that at the same instant (two `sweeper run` on a fresh database) collide inside
    PostgreSQL's catalog ("duplicate key value violates unique constraint
    pg_type_typname_nsp_index"): under this lock the second one finds the tables made. And
    its schema check holds one connection inside a transaction while it opens a second:
    behind PgBouncer in transaction mode, a fleet of workers starting at once pins every
    server connection with the first and waits forever for the second. Under the lock only
    one set-up runs at a time (three connections at most; waiters hold none). One short
    extra connection per process start.
    """
    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
    try:
        with exclusive(engine, _SCHEMA_LOCK):
            yield
    finally:
        engine.dispose()


def explain_pooler(url: str) -> str:
    """The one line for a storage set-up that waited ``SETUP_PATIENCE_S`` on the database."""
    return (
        f"{redact(url)}: the storage set-up waited {SETUP_PATIENCE_S:g} s for the database: "
        "a pooler in front of PostgreSQL hands sweeper too few server connections. PgBouncer "
        "must run pool_mode = transaction (session mode pins a server connection to each "
        f"client, and each sweeper process holds up to {POOL_SIZE + MAX_OVERFLOW}) with "
        f"default_pool_size and max_db_connections of at least {MIN_POOLER_CONNECTIONS} "
        "(README: PgBouncer)"
    )


class _SetupWatch:
    """Ends this thread's storage set-up when one of its statements, or a new connection's
    first exchange, waits past ``SETUP_PATIENCE_S`` (see the module docstring).

    While active it makes the connections of every engine this thread uses itself (SQLAlchemy's
    ``do_connect``), so it holds their sockets, and times each statement. A stalled one has
    its connections' sockets shut down: the driver's blocked read returns, the set-up fails,
    and ``fired`` tells the caller why.
    """

    def __init__(self) -> None:
        self.thread = threading.get_ident()
        self.fired = False
        self._sockets: list[Any] = []
        self._since: float | None = None  # when the pending exchange began
        self._stop = threading.Event()
        self._watcher = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> _SetupWatch:
        event.listen(sqlalchemy.engine.Engine, "do_connect", self._connect)
        event.listen(sqlalchemy.engine.Engine, "before_cursor_execute", self._before)
        event.listen(sqlalchemy.engine.Engine, "after_cursor_execute", self._after)
        self._watcher.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._watcher.join()
        event.remove(sqlalchemy.engine.Engine, "do_connect", self._connect)
        event.remove(sqlalchemy.engine.Engine, "before_cursor_execute", self._before)
        event.remove(sqlalchemy.engine.Engine, "after_cursor_execute", self._after)

    def _connect(self, dialect: Any, record: Any, cargs: Any, cparams: Any) -> Any:
        if threading.get_ident() != self.thread:
            return None  # another thread's engine: SQLAlchemy connects as usual
        conn = dialect.connect(*cargs, **cparams)
        # Its first exchange (SQLAlchemy's dialect queries) runs before any statement event.
        self._since = time.monotonic()
        self._sockets.append(conn.fileno())
        return conn

    def _before(self, *args: Any) -> None:
        if threading.get_ident() == self.thread:
            self._since = time.monotonic()

    def _after(self, *args: Any) -> None:
        if threading.get_ident() == self.thread:
            self._since = None

    def _watch(self) -> None:
        while not self._stop.wait(0.25):
            since = self._since
            if since is not None and time.monotonic() - since > SETUP_PATIENCE_S:
                self.fired = True
                for fd in self._sockets:
                    with contextlib.suppress(OSError):  # closed meanwhile
                        socket.socket(fileno=os.dup(fd)).shutdown(socket.SHUT_RDWR)
                return


def _ping_when_idle(engine: sqlalchemy.Engine) -> None:
    """Ping a pooled connection at checkout when it sat idle past ``PING_AFTER_IDLE_S``.

    ``pool_pre_ping`` costs a round trip before every checkout, and Optuna checks one out
    for each storage call (about a sixth of a worker's round trips). A dead connection
    can only be behind a pause (a restart of the server takes longer than this), and a
    worker's pauses are its epochs: those connections are pinged, the rest are trusted.
    A failed ping makes the pool replace the connection (SQLAlchemy's documented
    pessimistic disconnect handling).
    """
    from sqlalchemy import event

    def checkin(dbapi_conn: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    def checkout(dbapi_conn: Any, record: Any, proxy: Any) -> None:
        since = record.info.pop("idle_since", None)
        if since is None or time.monotonic() - since < PING_AFTER_IDLE_S:
            return  # just connected, or used a moment ago
        try:
            alive = engine.dialect.do_ping(dbapi_conn)
        except engine.dialect.loaded_dbapi.Error as err:
            raise sqlalchemy.exc.DisconnectionError() from err
        if not alive:
            raise sqlalchemy.exc.DisconnectionError()

    event.listen(engine.pool, "checkin", checkin)
    event.listen(engine.pool, "checkout", checkout)


def open_storage(url: str | None, options: StorageSpec | None = None) -> optuna.storages.RDBStorage:
    """Resolve, validate and connect; return the RDBStorage all of sweeper works through.

    ``options`` (a study spec's ``[storage]`` table) sets the heartbeat interval and the
    grace period.
    """
    resolved = resolve_url(url)
    opts = options or StorageSpec()
    watch = _SetupWatch()
    try:
        with watch, _one_setup_at_a_time(resolved):
            storage = optuna.storages.RDBStorage(
                resolved,
                engine_kwargs={"pool_size": POOL_SIZE, "max_overflow": MAX_OVERFLOW},
                heartbeat_interval=opts.heartbeat_interval,
                grace_period=opts.grace_period,
            )
    except sqlalchemy.exc.SQLAlchemyError as err:
        if watch.fired:
            raise SweeperError(explain_pooler(resolved)) from None
        # RDBStorage connects at once (schema check): an unreachable server, a wrong
        # password or a missing database surface here as OperationalError.
        reason = _scrub(_first_line(err), resolved)
        if _BAD_OPTION.search(reason):
            raise UsageError(f"storage {redact(resolved)} is not usable: {reason}") from None
        explained = explain_refusal(reason)
        if explained:
            raise SweeperError(f"{redact(resolved)}: {explained}") from None
        what = (
            "connect to" if isinstance(err, sqlalchemy.exc.OperationalError) else "open studies in"
        )
        raise SweeperError(f"cannot {what} {redact(resolved)}: {reason}") from None
    _ping_when_idle(storage.engine)
    return storage
