"""Files the commands write for people (``report -o``, ``importance --plot``): whole or absent.

Contract: ``write_atomically(path, write)`` calls ``write(tmp)`` on a fresh name beside
``path`` (same folder, so the rename cannot cross file systems; same suffix, for writers that
choose a format by it), then renames it to ``path``. When ``write`` fails (a full disk above
all) the temporary file is removed and the error raised: ``path`` is either the new file
whole or what it was before, and nothing partial is left beside it.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from pathlib import Path


def write_atomically(path: Path, write: Callable[[Path], object]) -> None:
    """Write ``path`` through ``write`` on a temporary name; see the module docstring."""
    tmp = path.with_name(f".{path.stem}.{secrets.token_hex(4)}.tmp{path.suffix}")
    try:
        write(tmp)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
