"""Storage: URL precedence and validation, redaction, and real connection failures."""

from __future__ import annotations

import fcntl
import select
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from clirun import SCRIPT, one_line_error, sweeper
from pgtools import admin_connect, embedded_postgres, passable_folder

from sweeper.embedded import EmbeddedPostgres
from sweeper.errors import SweeperError, UsageError
from sweeper.storage import normalise_url, open_storage, redact, resolve_url, secrets_in

SECRET = "s3cret-Pa55word"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgresql://u:p@h:5/db", "postgresql+psycopg2://u:p@h:5/db"),
        ("postgres://u@h/db", "postgresql+psycopg2://u@h/db"),
        ("postgresql+psycopg2://u@h/db", "postgresql+psycopg2://u@h/db"),
    ],
)
def test_postgres_urls_are_normalised_to_psycopg2(given: str, expected: str) -> None:
    assert normalise_url(given) == expected


def test_redact_hides_the_password_only() -> None:
    url = f"postgresql+psycopg2://alice:{SECRET}@db.example:5432/sweeps"
    assert redact(url) == "postgresql+psycopg2://alice:***@db.example:5432/sweeps"
    assert SECRET not in redact(url)


@pytest.mark.parametrize(
    "text",
    [
        f"postgresql//u:{SECRET}@h/db",
        f"postgresql:/u:{SECRET}@h/db",
        f"u:{SECRET}@h/db",
        f"postgresql://u:my {SECRET}@h/db",
        f"postgresql://u {SECRET}@h/db",
        f"postgresql://u:{SECRET[:4]}@{SECRET[4:]}@h/db",
        f"postgresql://u:{SECRET}/db",
        f"postgresql://u%3A{SECRET}@h/db",
        f"postgresql://h/db?sslmode=require&password={SECRET}",
        f"postgresql:u:{SECRET}@h/db",
        f"host=127.0.0.1 user=postgres password={SECRET} dbname=x",
        f"host=h password = '{SECRET} x' user=u",
        f"postgresql://u@h/db password={SECRET}",
        f"postgresql+psycopg2://u@h/db password%3D{SECRET}",
        f"postgresql+psycopg2://u@h/db password %3D %27{SECRET} x%27",
    ],
)
def test_redact_hides_credentials_whatever_the_shape(text: str) -> None:
    assert "Pa55word" not in redact(text), redact(text)
    assert any("Pa55word" in secret for secret in secrets_in(text))


def test_redact_leaves_what_holds_no_credentials() -> None:
    for text in ("studies.db", "postgresql://h:5432/db", "postgresql://u@[::1]:5432/db"):
        assert redact(text) == text and secrets_in(text) == []


def test_precedence_flag_over_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWEEPER_STORAGE", "postgresql://env@h/db")
    assert resolve_url("postgresql://flag@h/db") == "postgresql+psycopg2://flag@h/db"
    assert resolve_url(None) == "postgresql+psycopg2://env@h/db"


# (storage argument, exit code, words the one-line error must contain)
BAD_STORAGE = [
    ("studies.db", 2, "looks like a file path"),
    (SECRET, 2, "not shown: a bare word may be a password"),
    (f"host=127.0.0.1 user=postgres password={SECRET} dbname=x", 2, "libpq keyword string"),
    (f"postgresql://u@127.0.0.1:1/db password={SECRET}", 1, "cannot connect to"),
    (f"postgresql://u@127.0.0.1:1/db password = '{SECRET} x'", 1, "cannot connect to"),
    ("/var/lib/optuna/study.sqlite3", 2, "looks like a file path"),
    ("sqlite:///studies.db", 2, "uses 'sqlite'; sweeper stores studies in PostgreSQL only"),
    (f"mysql://root:{SECRET}@127.0.0.1/x", 2, "uses 'mysql'"),
    (f"postgresql+asyncpg://u:{SECRET}@127.0.0.1/x", 2, "asks for the driver 'asyncpg'"),
    (f"postgresql+psycopg2://u:{SECRET}@127.0.0.1:5432", 2, "names no database"),
    (f"postgresql+psycopg2://u:{SECRET}@127.0.0.1:1/x", 1, "cannot connect to"),
]


@pytest.mark.parametrize(("url", "code", "expected"), BAD_STORAGE, ids=[b[0] for b in BAD_STORAGE])
def test_bad_storage_urls_through_the_console_script(url: str, code: int, expected: str) -> None:
    result = sweeper("studies", "--storage", url)
    assert result.returncode == code, result.stderr
    line = one_line_error(result)
    assert expected in line, line
    assert SECRET not in result.stderr + result.stdout


def test_bad_storage_url_from_the_environment_is_redacted() -> None:
    result = sweeper("studies", env={"SWEEPER_STORAGE": f"postgresql://u:{SECRET}@127.0.0.1:1/x"})
    assert result.returncode == 1
    line = one_line_error(result)
    assert "u:***@127.0.0.1:1/x" in line and SECRET not in result.stderr


@pytest.fixture(scope="module")
def password_server() -> Iterator[tuple[EmbeddedPostgres, str]]:
    """An embedded server with a role that must log in with a password."""
    with embedded_postgres() as server:
        _add_password_role(server)
        yield server, f"127.0.0.1:{server.port()}"


def _add_password_role(server: EmbeddedPostgres) -> None:
    conn = admin_connect(server.url())
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f"CREATE ROLE alice LOGIN PASSWORD '{SECRET}'")
        cur.execute("CREATE DATABASE alicedb OWNER alice")
    hba = server.pgdata / "pg_hba.conf"
    hba.write_text("host all alice 127.0.0.1/32 scram-sha-256\n" + hba.read_text())
    with conn.cursor() as cur:
        cur.execute("SELECT pg_reload_conf()")
    conn.close()


def test_wrong_password_is_one_redacted_line(password_server: tuple[EmbeddedPostgres, str]) -> None:
    _, hostport = password_server
    result = sweeper(
        "studies", "--storage", f"postgresql://alice:wrong-{SECRET}@{hostport}/sweeper"
    )
    assert result.returncode == 1
    line = one_line_error(result)
    assert 'password authentication failed for user "alice"' in line, line
    assert "alice:***@" in line and SECRET not in result.stderr + result.stdout


def test_right_password_connects(password_server: tuple[EmbeddedPostgres, str]) -> None:
    _, hostport = password_server
    result = sweeper("studies", "--storage", f"postgresql://alice:{SECRET}@{hostport}/alicedb")
    assert result.returncode == 0, result.stderr
    assert SECRET not in result.stderr + result.stdout


def test_open_storage_errors_are_typed(storage_url: str) -> None:
    with pytest.raises(UsageError):
        open_storage("studies.db")
    with pytest.raises(SweeperError, match="cannot connect"):
        open_storage("postgresql+psycopg2://nobody@127.0.0.1:1/x")
    assert open_storage(storage_url).get_all_studies() == []


@pytest.fixture
def passable_home(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A SWEEPER_HOME the embedded server's system user can reach (under root)."""
    with passable_folder() as folder:
        monkeypatch.setenv("SWEEPER_HOME", str(folder))
        yield folder


def test_embedded_server_lifecycle_through_the_cli(passable_home: Path) -> None:
    """`sweeper db start|status|url|stop` on a fresh per-user data dir, and reuse."""
    isolated_home = passable_home
    stopped_status = sweeper("db", "status")
    assert stopped_status.returncode == 1  # a runtime state, inside the documented codes
    assert "the embedded PostgreSQL is stopped" in one_line_error(stopped_status)
    # Another process holds the server's start lock (as a second `sweeper` started at the
    # same moment would) until the waiting start says so on stderr; stdout stays the URL.
    data_dir = isolated_home / "postgres"
    data_dir.mkdir(parents=True)
    with (data_dir / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        proc = subprocess.Popen(
            [str(SCRIPT), "db", "start"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        assert proc.stderr is not None
        readable, _, _ = select.select([proc.stderr], [], [], 60)
        said = proc.stderr.readline() if readable else ""
        fcntl.flock(lock, fcntl.LOCK_UN)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, said + err
    assert said.startswith(f"starting the embedded PostgreSQL in {data_dir.resolve()}"), said
    assert err == ""
    shown = out.strip()  # `db start` shows the URL with its password hidden
    assert shown.startswith("postgresql+psycopg2://postgres:***@127.0.0.1:"), shown
    assert shown.endswith("/sweeper")
    password = (data_dir / "password").read_text().strip()
    try:
        status = sweeper("db", "status")
        assert status.returncode == 0 and "running: pid" in status.stdout
        # `db url` alone hands out the password: its job is to give workers what they need.
        url = sweeper("db", "url").stdout.strip()
        assert url == shown.replace("***", password)
        again = sweeper("db", "start")
        assert again.stdout.strip() == shown  # reused, not a second server
        listing = sweeper("studies")  # no --storage, no env: the embedded default
        assert listing.returncode == 0, listing.stderr
        assert listing.stdout.strip() == "(none)"
        for result in (status, again, listing):
            assert password not in result.stdout + result.stderr
    finally:
        stopped = sweeper("db", "stop")
    assert stopped.returncode == 0 and stopped.stdout.strip() == "stopped"
    assert sweeper("db", "status").returncode == 1
    assert (isolated_home / "postgres" / "pgdata" / "PG_VERSION").exists()
