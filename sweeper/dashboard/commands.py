"""The views' subcommands: ``sweeper report``, ``sweeper importance``, ``sweeper dashboard``.

``register(subparsers, parents)`` adds them to the CLI's parser; each handler takes the
parsed arguments, returns the exit code, and raises ``UsageError`` (bad input, exit 2) or
``SweeperError`` (runtime failure, exit 1) with a one-line message. Every flag's default
is in the parser (or in ``DashboardConfig``), with its reason beside it.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from sweeper.dashboard.config import DashboardConfig
from sweeper.errors import SweeperError, UsageError

if TYPE_CHECKING:  # the heavy modules load only when a command runs, not for `sweeper --help`
    from sweeper.dashboard.importance import ImportanceInfo


def register(subparsers: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Add ``report``, ``importance`` and ``dashboard`` to the CLI's ``subparsers``."""
    report = subparsers.add_parser(
        "report",
        parents=parents,
        help="write a self-contained HTML report of a study",
        description="Write one HTML file with every view and a summary table; it opens "
        "with no network (plotly.js is inlined).",
    )
    report.add_argument("--study", required=True, metavar="NAME")
    report.add_argument("-o", "--output", required=True, metavar="FILE.html", type=Path)
    report.set_defaults(handler=cmd_report)

    importance = subparsers.add_parser(
        "importance",
        parents=parents,
        help="hyperparameter importance (PED-ANOVA and fANOVA, and per epoch)",
        description="PED-ANOVA and fANOVA over completed trials, and PED-ANOVA per epoch "
        "over every trial that reported the epoch (pruned trials count).",
    )
    importance.add_argument("--study", required=True, metavar="NAME")
    importance.add_argument("--format", choices=("table", "json"), default="table")
    importance.add_argument(
        "--plot",
        metavar="OUT.html|OUT.png",
        type=Path,
        help="also draw the importance figure (.png needs the kaleido package and Chromium)",
    )
    importance.set_defaults(handler=cmd_importance)

    dashboard = subparsers.add_parser(
        "dashboard",
        parents=parents,
        help="serve a live page that refreshes while workers run",
        description="Serve the views on a local web page that refreshes from PostgreSQL. "
        "Without --study the page lists the studies.",
    )
    defaults = DashboardConfig()
    dashboard.add_argument("--study", metavar="NAME", help="open this study's page at /")
    dashboard.add_argument(
        "--host",
        default=defaults.host,
        help=f"address to bind (default {defaults.host}: the page has no authentication)",
    )
    dashboard.add_argument(
        "--port",
        type=int,
        default=defaults.port,
        metavar="N",
        help=f"port (default {defaults.port}; 0 picks a free one)",
    )
    dashboard.add_argument(
        "--refresh",
        type=float,
        default=defaults.refresh_s,
        metavar="SECONDS",
        help=f"seconds between page refreshes (default {defaults.refresh_s:g})",
    )
    dashboard.set_defaults(handler=cmd_dashboard)


# -------------------------------------------------------------------------------- helpers


def _open(args: argparse.Namespace) -> Any:
    from sweeper.storage import open_storage

    return open_storage(args.storage)


def _load(storage: Any, name: str) -> Any:
    from sweeper.study import load_study

    return load_study(storage, name)


def _snapshot(args: argparse.Namespace) -> Any:
    from sweeper.dashboard.data import snapshot

    storage = _open(args)
    return snapshot(_load(storage, args.study), storage)


def _check_output(path: Path, suffixes: tuple[str, ...]) -> None:
    """Fail before any work when ``path`` cannot be written as one of ``suffixes``."""
    if path.suffix.lower() not in suffixes:
        raise UsageError(f"{path}: the output must end in {' or '.join(suffixes)}")
    if path.is_dir():
        raise UsageError(f"{path} is a directory; give a file name")
    if not path.parent.exists():
        raise UsageError(f"cannot write {path}: the directory {path.parent} does not exist")


def _write_failed(path: Path, err: OSError) -> SweeperError:
    return SweeperError(f"cannot write {path}: {err.strerror or err}")


# -------------------------------------------------------------------------------- report


def cmd_report(args: argparse.Namespace) -> int:
    """Write the study's report to ``args.output``."""
    from sweeper.dashboard.report import write_report

    _check_output(args.output, (".html", ".htm"))
    snap = _snapshot(args)
    try:
        write_report(snap, args.output)
    except OSError as err:
        raise _write_failed(args.output, err) from None
    print(f"wrote {args.output} ({len(snap.trials)} trials)")
    return 0


# -------------------------------------------------------------------------------- importance


def importance_rows(info: ImportanceInfo) -> dict[str, Any]:
    """The importance result as plain JSON-ready data (the ``--format json`` output)."""
    from sweeper.dashboard import importance as imp

    return {
        "params": list(info.params),
        "n_complete": info.n_complete,
        "ped_anova": info.ped_anova,
        "fanova": info.fanova,
        "per_epoch": [
            {
                "epoch": e.epoch,
                "n_trials": e.n_trials,
                "n_pruned": e.n_pruned,
                "ped_anova": e.importances,
            }
            for e in info.per_epoch
        ],
        "notes": list(info.notes),
        "settings": {
            "ped_anova_top_quantile": imp.PED_TOP_QUANTILE,
            "fanova_trees": imp.FANOVA_TREES,
            "fanova_max_depth": imp.FANOVA_DEPTH,
            "fanova_seed": imp.FANOVA_SEED,
            "log10_params": ["lr", "weight_decay"],
        },
    }


def importance_table(study: str, info: ImportanceInfo) -> str:
    """The importance result as aligned text."""

    def num(d: dict[str, float] | None, p: str) -> str:
        return "-" if d is None else f"{d.get(p, 0.0):.3f}"

    lines = [f"study '{study}': {info.n_complete} completed trials"]
    width = max([len("parameter"), *(len(p) for p in info.params)])
    lines.append(f"{'parameter'.ljust(width)}  ped_anova  fanova")
    lines += [
        f"{p.ljust(width)}  {num(info.ped_anova, p).rjust(9)}  {num(info.fanova, p).rjust(6)}"
        for p in info.params
    ]
    if any(e.importances for e in info.per_epoch):
        lines.append("")
        lines.append("PED-ANOVA per epoch (every trial that reported the epoch, pruned included):")
        cols = [p.rjust(max(len(p), 5)) for p in info.params]
        lines.append("epoch  trials  pruned  " + "  ".join(cols))
        for e in info.per_epoch:
            vals = "  ".join(
                num(e.importances, p).rjust(len(c)) for p, c in zip(info.params, cols, strict=True)
            )
            lines.append(f"{e.epoch:5d}  {e.n_trials:6d}  {e.n_pruned:6d}  {vals}")
    lines += [f"note: {n}" for n in info.notes]
    return "\n".join(lines)


def write_importance_plot(figure: Any, path: Path) -> None:
    """Write the importance figure as offline HTML, or as PNG through kaleido + Chromium."""
    if path.suffix.lower() in (".html", ".htm"):
        try:
            figure.write_html(path, include_plotlyjs=True, full_html=True)
        except OSError as err:
            raise _write_failed(path, err) from None
        return
    try:
        import kaleido  # noqa: F401 - only its presence is checked here
    except ImportError:
        raise UsageError(
            "a .png plot needs the kaleido package and Chrome/Chromium "
            "(pip install kaleido; apt-get install chromium), or write --plot out.html"
        ) from None
    try:
        figure.write_image(path, width=1300, height=figure.layout.height or 440, scale=1)
    except OSError as err:
        raise _write_failed(path, err) from None
    except Exception as err:  # kaleido reports a missing or broken browser as its own types
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise SweeperError(
            f"cannot render {path} with kaleido ({reason}); install Chromium "
            "(apt-get install chromium) or write --plot out.html"
        ) from None


def cmd_importance(args: argparse.Namespace) -> int:
    """Print importances as a table or JSON, and optionally draw them."""
    from sweeper.dashboard.importance import importance_info

    if args.plot is not None:
        _check_output(args.plot, (".html", ".htm", ".png"))
    snap = _snapshot(args)
    info = importance_info(snap)
    if args.format == "json":
        print(json.dumps({"study": snap.name, **importance_rows(info)}, indent=2))
    else:
        print(importance_table(snap.name, info))
    if args.plot is not None:
        from sweeper.dashboard.figures import importance_figure

        write_importance_plot(importance_figure(info), args.plot)
        print(f"wrote {args.plot}", file=sys.stderr)
    return 0


# -------------------------------------------------------------------------------- dashboard


def cmd_dashboard(args: argparse.Namespace) -> int:
    """Serve the live page until interrupted (Ctrl-C or SIGTERM: exit 0)."""
    from sweeper.dashboard.app import DashboardServer, StudySource, serve
    from sweeper.storage import redact

    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port {args.port} is not a port number (0-65535)")
    if not 0 < args.refresh <= 86400:  # also refuses nan and inf; a day is the page's limit
        raise UsageError(f"--refresh {args.refresh:g} must be a number of seconds in (0, 86400]")
    storage = _open(args)
    config = DashboardConfig(
        host=args.host, port=args.port, study=args.study, refresh_s=args.refresh
    )
    source = StudySource(storage, _load)
    if args.study:
        _load(storage, args.study)  # an unknown study is a usage error now, not a 404 later
    else:
        rows = source.names()
        print(f"{len(rows)} studies: " + (", ".join(r["study"] for r in rows) or "(none yet)"))
    url = getattr(storage, "url", "")
    server = DashboardServer(
        config, source, scrub=lambda s: s.replace(url, redact(url)) if url else s
    )
    stop = threading.Event()

    def on_term(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = signal.signal(signal.SIGTERM, on_term)
    where = f"study '{args.study}'" if args.study else "the list of studies"
    print(f"serving {where} at {server.url} (Ctrl-C to stop)", flush=True)
    if config.host not in ("127.0.0.1", "localhost", "::1"):
        print(
            f"warning: {config.host} exposes the page beyond this machine, without a password",
            file=sys.stderr,
        )
    try:
        serve(server, stop)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
    print("dashboard stopped", flush=True)
    return 0
