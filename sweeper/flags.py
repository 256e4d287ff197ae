"""What the commands share: flag types, the storage choice, the folder check, text tables.

``cli.py`` builds the parser and ``sweeper.cluster`` registers its own subcommands on it;
both take their flag types and their storage from here, so neither imports the other. The
storage URL has one precedence, ``sweeper.storage.resolve_url``'s.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sweeper.errors import UsageError, one_line

if TYPE_CHECKING:
    from sweeper.embedded import EmbeddedPostgres


def int_at_least(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse ``type``: an integer in ``low..high`` (no upper bound when None)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = low - 1
        if value < low or (high is not None and value > high):
            bounds = f">= {low}" if high is None else f"in {low}..{high}"
            raise argparse.ArgumentTypeError(f"must be an integer {bounds} (got {text!r})")
        return value

    return parse


def margin_points(text: str) -> float:
    """An argparse ``type``: a margin in accuracy points, a finite number in (0, 100]."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and 0 < value <= 100):
        raise argparse.ArgumentTypeError(f"must be a number of points in (0, 100] (got {text!r})")
    return value


def device_flag(text: str) -> str:
    """An argparse ``type``: ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (existence not checked)."""
    from sweeper.spec import DEVICE_PATTERN

    if not DEVICE_PATTERN.fullmatch(text):
        raise argparse.ArgumentTypeError(f"must be auto, cpu, cuda or cuda:N (got {text!r})")
    return text


def check_folder(folder: Path, where: str) -> None:
    """``folder`` is a writable directory, or can be made one (its nearest parent is)."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UsageError(f"{where} {folder}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"{where} {folder}: {existing} is not writable")


def storage_url(args: argparse.Namespace, announce: bool = False) -> str:
    """The storage URL by ``storage.resolve_url``'s precedence: ``--storage`` >
    ``$SWEEPER_STORAGE`` > the embedded server. The embedded server's folder is checked
    before it starts, a slow start says so on stderr, and with ``announce`` one line says
    which server the command uses."""
    from sweeper.storage import redact, resolve_url

    def start(server: EmbeddedPostgres) -> str:
        check_folder(server.data_dir, "the embedded PostgreSQL's folder ($SWEEPER_HOME)")
        url = start_embedded(server)
        if announce:
            print(
                f"storage: embedded PostgreSQL {redact(url)} (data in {server.data_dir})",
                file=sys.stderr,
            )
        return url

    return resolve_url(args.storage, start)


def start_embedded(server: EmbeddedPostgres) -> str:
    """Start (or reuse) the embedded server; a start that takes a while says so on stderr
    (the first one creates its database cluster: a few seconds)."""
    from sweeper.work.progress import Progress

    with Progress().waiting(
        f"starting the embedded PostgreSQL in {server.data_dir} "
        "(its first start creates the database: a few seconds)"
    ):
        return str(server.start())


def open_storage_for(args: argparse.Namespace, options: Any = None, announce: bool = False) -> Any:
    """The storage the user asked for (``storage_url``), opened with ``options``."""
    from sweeper.storage import open_storage

    return open_storage(storage_url(args, announce), options)


def table_cell(value: Any) -> str:
    """One cell of a text table: ``-`` for None, 4 significant digits, one line."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return one_line(str(value))  # a stored name with a newline must not break the table


def format_table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    """Rows of dicts as an aligned text table."""
    if not rows:
        return "(none)"
    cols = list(columns or rows[0].keys())
    cells = [[table_cell(row.get(c)) for c in cols] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(cols)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join(lines)
