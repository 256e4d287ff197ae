"""The embedded PostgreSQL lets in its owner only, and upgrades data dirs made with trust."""

from __future__ import annotations

import os
import pwd
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from clirun import one_line_error, sweeper
from pgtools import embedded_postgres, passable_folder

from sweeper.embedded import EmbeddedPostgres, _bin_dir

# A second local account: it shares the host with the server's owner and must not get in.
STRANGER = "sweeper_stranger"

# The stranger's attempt, with programs any account may run (the venv's python may sit in a
# private home): connect as the superuser with no password, as any local account could, with
# the server's own psql; then read the password file.
ATTEMPT = """
said=$("$PSQL" -h 127.0.0.1 -p "$PORT" -U postgres -d sweeper -w -c 'SELECT 1' 2>&1) \
  && echo connected || echo "refused: $(echo "$said" | tail -n 1)"
cat "$PASSWORD_FILE" >/dev/null 2>&1 && echo read-password || echo no-password
"""


def _stranger() -> dict[str, object]:
    """Run-as arguments for the second local user (created here; root only can)."""
    if os.geteuid() != 0:  # the same attempt from this account, without the password
        return {}
    try:
        entry = pwd.getpwnam(STRANGER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", STRANGER], check=True, capture_output=True
        )
        entry = pwd.getpwnam(STRANGER)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def _attempt(server: EmbeddedPostgres) -> list[str]:
    env = {
        "PSQL": str(_bin_dir() / "psql"),
        "PORT": str(server.port()),
        "PASSWORD_FILE": str(server.data_dir / "password"),  # where the owner keeps it
        "PATH": "/usr/bin:/bin",
    }
    result = subprocess.run(  # type: ignore[call-overload]  # run-as keywords
        ["/bin/sh", "-c", ATTEMPT],
        capture_output=True,
        text=True,
        cwd="/",
        env=env,
        timeout=120,
        check=False,
        **_stranger(),
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


@pytest.fixture(scope="module")
def server() -> Iterator[EmbeddedPostgres]:
    with embedded_postgres() as running:
        yield running


def _owner_gets_in(server: EmbeddedPostgres) -> None:
    import psycopg2
    from sqlalchemy.engine import make_url

    url = make_url(server.url())
    with (
        psycopg2.connect(
            host=url.host, port=url.port, user=url.username, password=url.password, dbname="sweeper"
        ) as conn,
        conn.cursor() as cur,
    ):
        cur.execute("SELECT current_user")
        assert cur.fetchone() == ("postgres",)


def test_another_local_user_is_refused_and_the_owner_gets_in(
    server: EmbeddedPostgres,
) -> None:
    said = _attempt(server)
    assert said[0].startswith("refused:") and "no password supplied" in said[0], said
    assert said[1] == "no-password", said
    mode = server.password_file.stat()
    assert stat.S_IMODE(mode.st_mode) == 0o600 and mode.st_uid == os.geteuid()
    _owner_gets_in(server)


def test_a_data_dir_made_with_trust_is_upgraded_at_its_next_start(
    server: EmbeddedPostgres,
) -> None:
    # An older sweeper's data dir: trust in pg_hba.conf, no password file.
    server.stop()
    hba = server.pgdata / "pg_hba.conf"
    hba.write_text(
        "local all all trust\nhost all all 127.0.0.1/32 trust\nhost all all ::1/128 trust\n"
    )
    server.password_file.unlink()
    server.start()
    assert "trust" not in hba.read_text()
    said = _attempt(server)
    assert said[0].startswith("refused:") and "no password supplied" in said[0], said
    _owner_gets_in(server)


@pytest.mark.parametrize("shaped", ["$(touch {canary})", 'a"b', "`touch {canary}`"])
def test_a_home_the_shell_would_act_on_is_refused(tmp_path: Path, shaped: str) -> None:
    canary = tmp_path / "ran"
    home = tmp_path / shaped.format(canary=canary)
    result = sweeper("db", "start", env={"SWEEPER_HOME": str(home)})
    assert result.returncode == 2, result.stdout + result.stderr
    assert "pg_ctl's shell" in one_line_error(result)
    assert not canary.exists()
    assert sorted(tmp_path.iterdir()) == []  # checked before anything was made


@pytest.mark.skipif(
    os.geteuid() != 0, reason="only root runs the server as another user, who must pass"
)
def test_root_never_widens_a_private_parent_folder() -> None:
    with passable_folder() as scratch:
        private = scratch / "private"
        private.mkdir(mode=0o700)
        env = {"SWEEPER_HOME": str(private / "home")}
        try:
            result = sweeper("db", "start", env=env)
        finally:
            sweeper("db", "stop", env=env)
        assert result.returncode == 2, result.stdout + result.stderr
        line = one_line_error(result)
        assert f"cannot pass {private} (mode 0700)" in line and f"chmod o+x {private}" in line
        assert stat.S_IMODE(private.stat().st_mode) == 0o700
        assert not (private / "home").exists()
