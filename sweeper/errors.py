"""The two kinds of failure the command line tells apart.

``UsageError``: the user asked for something that cannot work (a bad spec, a bad URL, an
unknown study); the CLI prints one line and exits 2. ``SweeperError``: a runtime failure
(the database went away, the data are corrupt); one line, exit 1. Messages are complete
sentences fragments a user can act on, and never contain a password. ``one_line`` keeps text
from outside (stored study names, file names, driver messages) from breaking a message.
"""


def one_line(text: str, limit: int | None = None) -> str:
    """``text`` on one line.

    Without ``limit``: newlines, tabs, NUL and other unprintable characters escaped
    (``\\n``), so a message shows exactly what was stored. With ``limit`` (prose shown in a
    table, such as a failure reason): runs of whitespace folded to one space and the line cut
    to at most ``limit`` characters, ending in "…" when cut.
    """
    if limit is not None:
        line = " ".join(text.split())
        return line if len(line) <= limit else line[: limit - 1] + "…"
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class SweeperError(Exception):
    """A runtime failure: the CLI prints ``sweeper: error: <message>`` and exits 1."""

    exit_code = 1


class UsageError(SweeperError):
    """Bad input from the user: the CLI prints ``sweeper: error: <message>`` and exits 2."""

    exit_code = 2


def root_cause(err: BaseException) -> str:
    """The driver's own first line under Optuna's and SQLAlchemy's wrappers (Optuna's
    StorageInternalError says "invalid data ... exceeding max length" for any failed
    commit, a lost connection included)."""
    seen: set[int] = set()
    while id(err) not in seen:
        seen.add(id(err))
        inner = getattr(err, "orig", None) or err.__cause__ or err.__context__
        if inner is None:
            break
        err = inner
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return f"{type(err).__name__}: {lines[0]}" if lines else type(err).__name__
