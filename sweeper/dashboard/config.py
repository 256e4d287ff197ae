"""The live page's settings and their defaults, importable without the page's dependencies.

The CLI builds its ``dashboard`` flags from these defaults before it knows which command
runs, so this module imports nothing heavy: ``sweeper run`` must not pay for Plotly.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DashboardConfig:
    """How the page is served. Flags override these defaults (see view_commands.py)."""

    # Loopback only: the page has no authentication, so exposing it is a deliberate choice.
    host: str = "127.0.0.1"
    # optuna-dashboard's default port, so users find the page where they expect it; 0 asks
    # the OS for a free port (tests).
    port: int = 8080
    # The study whose page "/" opens; None lists the studies instead.
    study: str | None = None
    # Seconds between polls: a trial's epoch takes tens of seconds, so 5 s looks live while
    # keeping each open page's load on PostgreSQL to one trial read per 5 s.
    refresh_s: float = 5.0
