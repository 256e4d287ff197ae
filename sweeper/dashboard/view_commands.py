"""The views' subcommands: ``sweeper best``, ``report``, ``importance`` and ``dashboard``.

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
from sweeper.errors import SweeperError, UsageError, one_line

if TYPE_CHECKING:  # the heavy modules load only when a command runs, not for `sweeper --help`
    from sweeper.analysis.best import BestInfo
    from sweeper.analysis.claims import Claim
    from sweeper.analysis.effects import Decomposition
    from sweeper.analysis.importance import ImportanceInfo
    from sweeper.analysis.noise import Config


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
    _evaluators_flag(report)
    report.set_defaults(handler=cmd_report)

    importance = subparsers.add_parser(
        "importance",
        parents=parents,
        help="hyperparameter importance per optimizer, with intervals, and per epoch",
        description="Per optimizer, the shares of lr, wd and their interaction with 95%% "
        "bootstrap intervals, over completed trials and at each epoch over every trial that "
        "reported it (pruned trials count). Optuna's pooled PED-ANOVA and fANOVA run only "
        "with --evaluators.",
    )
    importance.add_argument("--study", required=True, metavar="NAME")
    importance.add_argument("--format", choices=("table", "json"), default="table")
    importance.add_argument(
        "--plot",
        metavar="OUT.html|OUT.png",
        type=Path,
        help="also draw the importance figure (.png needs the kaleido package and Chromium)",
    )
    _evaluators_flag(importance)
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

# Kept in step with sweeper.analysis.importance.EVALUATORS (a test checks): importing that
# module here would load Optuna for `sweeper --help`.
EVALUATOR_NAMES = ("ped-anova", "fanova")
# What a reader is told when the pooled evaluators did not run.
POOLED_NOT_RUN = (
    "Optuna's pooled PED-ANOVA and fANOVA were not run: they pool every optimizer into one "
    "answer and cost seconds; ask for them with --evaluators ped-anova,fanova"
)


def _evaluators(text: str) -> tuple[str, ...]:
    """``--evaluators``'s value: comma-separated names from ``EVALUATOR_NAMES`` ("" for none)."""
    names = tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    unknown = [n for n in names if n not in EVALUATOR_NAMES]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown evaluator {', '.join(unknown)} (choose from {', '.join(EVALUATOR_NAMES)})"
        )
    return names


def _evaluators_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--evaluators",
        type=_evaluators,
        default=(),  # opt-in: pooled over optimizers, they mislead, and they cost 1.5-4 s
        metavar="NAMES",
        help="also run Optuna's pooled evaluators, comma-separated: ped-anova, fanova "
        "(default: none; they pool the optimizers and load scikit-learn)",
    )


def _open(args: argparse.Namespace) -> Any:
    from sweeper.storage import open_storage

    return open_storage(args.storage)


def _open_to_read(args: argparse.Namespace) -> Any:
    """The storage for a command that only reads and then exits: without Optuna's table
    creation and alembic's schema check when the database already holds this Optuna's
    schema (``_optuna.reader``), else opened as every command opens it (which creates the
    tables, or explains in one line why it cannot)."""
    from sweeper._optuna.reader import open_reader
    from sweeper.storage import resolve_url

    return open_reader(resolve_url(args.storage)) or _open(args)


def _load(storage: Any, name: str) -> Any:
    from sweeper.study import load_study

    return load_study(storage, name)


def _snapshot(args: argparse.Namespace) -> Any:
    from sweeper.snapshot import snapshot

    storage = _open_to_read(args)
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


# -------------------------------------------------------------------------------- best


def _config_row(c: Config) -> dict[str, Any]:
    return {
        "optimizer": c.optimizer,
        "lr": c.lr,
        "weight_decay": c.weight_decay,
        "mean": c.mean,
        "ci95": [c.low, c.high] if c.low is not None else None,
        "n_seeds": c.n,
        "seeds": list(c.seeds),
        "trials": list(c.numbers),
    }


def _claim_row(c: Claim) -> dict[str, Any]:
    return {
        "subject": c.subject,
        "optimizer": c.optimizer,
        "kind": c.kind,
        "effect": c.effect,
        "ci95": [c.low, c.high] if c.low is not None else None,
        "equivalence_bound": c.bound,
        "p": c.p,
        "level": c.level,
        "margin": c.margin,
        "range": list(c.span) if c.span else None,
        "sentence": c.sentence,
        "settle": c.settle or None,
    }


def best_rows(row: dict[str, Any], info: BestInfo) -> dict[str, Any]:
    """``sweeper best --format json``. The top level is the best *configuration*: ``value``
    (its selection-corrected estimate), ``ci95``, ``params``, ``number`` (its first trial),
    ``optimizer``; ``estimate`` says how it was corrected, ``configuration`` holds its plain
    mean over seeds; ``best_run`` is the best single trial's row (``value``, ``params``,
    ``number``, ``seed``, ``epochs_run``, ``provenance``...). Then ``claims`` (matters / does
    not matter / inconclusive, each with its test), ``noise``, ``within_noise`` and its
    ranges, ``verdict``, ``warnings``, and ``pruning`` (epochs trained and saved; None when
    not recorded)."""
    from sweeper.analysis.best import optimism

    m = info.model
    out: dict[str, Any] = {}
    best, est = info.best, info.estimate
    if best is not None:
        params: dict[str, Any] = {"lr": best.lr, "weight_decay": best.weight_decay}
        if "optimizer" in row.get("params", {}):
            params["optimizer"] = best.optimizer
        out["value"] = est.estimate if est is not None else best.mean
        out["ci95"] = [est.low, est.high] if est is not None else None
        out["params"] = params
        out["number"] = best.numbers[0]
        out["optimizer"] = best.optimizer
        out["estimate"] = (
            {
                "value": est.estimate,
                "ci95": [est.low, est.high],
                "raw_mean": est.raw,
                "chosen_from": est.k,
                "basis": est.basis,
                "method": "hybrid winner's-curse interval (Andrews, Kitagawa & McCloskey)",
                "optimism": optimism(info) or None,
            }
            if est is not None
            else None
        )
    out["configuration"] = _config_row(best) if best is not None else None
    out["best_run"] = dict(row)
    out["claims"] = [_claim_row(c) for c in info.claims.claims]
    out["claims_margin"] = info.claims.margin
    out["claims_note"] = info.claims.note or None
    out["pruned_left_out"] = info.claims.n_pruned
    saved = info.pruning
    out["pruning"] = (
        {
            "pruner": saved.pruner,
            "stopped": saved.n_stopped,
            "epochs_trained": saved.trained,
            "epochs_unpruned": saved.full,
            "epochs_saved": saved.saved,
            "sentence": saved.sentence,
        }
        if saved is not None
        else None
    )
    out["noise"] = {
        "sd_per_run": m.sd_run,
        "df": m.df,
        "source": m.source,
        "replicated_configurations": m.n_replicated,
        "n_val": m.n_val,
        "n_val_assumed": m.n_val_assumed,
        "test_set_floor": (
            None
            if best is None or m.n_val is None
            else (best.mean * (1 - best.mean) / m.n_val) ** 0.5
        ),
    }
    out["within_noise"] = [_config_row(c) for c in info.within]
    out["within_noise_ranges"] = {
        "lr": list(info.lr_range) if info.lr_range else None,
        "weight_decay": list(info.wd_range) if info.wd_range else None,
        "optimizers": list(info.optimizers_within),
    }
    out["verdict"] = info.verdict
    out["warnings"] = [info.decay.warning] if info.decay and info.decay.warning else []
    return out


def best_table(out: dict[str, Any]) -> str:
    """``sweeper best``'s table: the best configuration (corrected for selection) with its
    interval first, then each claim and what would settle it, then the best single run."""
    conf = out["configuration"]
    lines = []
    if conf is not None:
        ci = out["ci95"]
        where = (
            f"{conf['optimizer']} lr {conf['lr']:.4g}, wd {conf['weight_decay']:.4g}"
            if (conf["lr"] is not None and conf["weight_decay"] is not None)
            else conf["optimizer"]
        )
        interval = f" (95% CI {ci[0]:.4f}..{ci[1]:.4f})" if ci else " (noise unknown)"
        seeds = ", ".join(str(s) for s in conf["seeds"]) or "not recorded"
        est = out["estimate"]
        basis = f", from {est['basis']}" if est and est["basis"] != "every run" else ""
        lines.append(
            f"best configuration: {where}: {out['value']:.4f}{interval}, corrected for being "
            f"chosen as the best of {est['chosen_from'] if est else 1}{basis}; its mean "
            f"{conf['mean']:.4f} over {conf['n_seeds']} seed{'s' if conf['n_seeds'] != 1 else ''}"
            f" ({seeds})"
        )
        if est and est["optimism"]:
            lines.append(f"  {est['optimism']}")
    lines.append(f"claims (margin ±{100 * out['claims_margin']:g} points, 95% each):")
    for c in out["claims"]:
        lines.append(f"  {c['kind']:15s} {c['sentence']}")
        if c["settle"]:
            lines.append(f"  {'':15s} to settle it: {c['settle']}")
    if out["claims_note"]:
        lines.append(f"  note: {out['claims_note']}")
    lines.append(f"noise: {out['noise']['source']}")
    within = out["within_noise"]
    if len(within) > 1:
        r = out["within_noise_ranges"]
        span = "; ".join(
            f"{k} {v[0]:.3g}..{v[1]:.3g}"
            for k, v in (("lr", r["lr"]), ("wd", r["weight_decay"]))
            if v
        )
        pruned = out["pruned_left_out"]
        lines.append(
            f"within noise of the best: {len(within)} configurations ({span})"
            + (
                f"; {pruned} pruned trials not counted (their final value is unknown)"
                if pruned
                else ""
            )
        )
        for c in within[:12]:
            ci = c["ci95"]
            lines.append(
                f"  {c['optimizer']:6s} lr {c['lr'] or 0:.3g}  wd {c['weight_decay'] or 0:.3g}  "
                f"mean {c['mean']:.4f}"
                + (f" [{ci[0]:.4f}, {ci[1]:.4f}]" if ci else "")
                + f"  n={c['n_seeds']}"
            )
        if len(within) > 12:
            lines.append(f"  ... and {len(within) - 12} more (--format json lists them all)")
    lines += [f"warning: {w}" for w in out["warnings"]]
    if out["pruning"]:
        lines.append(out["pruning"]["sentence"])
    lines.append("")
    lines.append("best single run (its value is the top of many noisy runs: see above):")
    from sweeper.study import TRIAL_COLUMNS

    # The best trial's own row, as `sweeper trials` shows it (its failure reason aside).
    run = out["best_run"]
    flat = {k: v for k, v in run.items() if k in TRIAL_COLUMNS and k != "fail_reason"}
    flat.update(run["provenance"])
    width = max(len(k) for k in flat)
    for key, value in flat.items():
        text = "-" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)
        lines.append(f"  {key.ljust(width)}  {text}")
    # Stored values (a worker's name, an optimizer's) print escaped: no terminal codes.
    return "\n".join(one_line(line) for line in lines)


def cmd_best(args: argparse.Namespace) -> int:
    """``sweeper best``: the best configuration with its uncertainty, the claims, and the best
    single run."""
    from optuna.storages import RDBStorage

    from sweeper.analysis.study_model import best_of, best_of_runs
    from sweeper.snapshot import runs_from_storage, snapshot
    from sweeper.study import best_trial_row

    storage = _open_to_read(args)
    study = _load(storage, args.study)
    row = best_trial_row(study)  # raises the one-line error when nothing completed yet
    margin = args.margin / 100.0  # points -> accuracy units
    if isinstance(storage, RDBStorage):  # only what the noise model needs, in one query
        info = best_of_runs(*runs_from_storage(study, storage), margin=margin)
    else:
        info = best_of(snapshot(study), margin=margin)
    out = best_rows(row, info)
    if args.format == "json":
        print(json.dumps(out, indent=2, default=str))
    else:
        print(best_table(out))
    return 0


# -------------------------------------------------------------------------------- report


def cmd_report(args: argparse.Namespace) -> int:
    """Write the study's report to ``args.output``."""
    from sweeper.dashboard.report import write_report

    _check_output(args.output, (".html", ".htm"))
    snap = _snapshot(args)
    try:
        write_report(snap, args.output, evaluators=args.evaluators)
    except OSError as err:
        raise _write_failed(args.output, err) from None
    print(f"wrote {args.output} ({len(snap.trials)} trials)")
    return 0


# -------------------------------------------------------------------------------- importance


def importance_rows(info: ImportanceInfo) -> dict[str, Any]:
    """The importance result as plain JSON-ready data (the ``--format json`` output).

    ``ped_anova`` and ``fanova`` are null and ``per_epoch`` empty unless the pooled
    evaluators were asked for; ``pooled_evaluators`` says which ran and how to ask.
    """
    from sweeper.analysis import importance

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
        "pooled_evaluators": {
            "run": list(info.evaluators),
            "note": "" if info.evaluators else POOLED_NOT_RUN,
        },
        "by_optimizer": {name: _decomposition(d) for name, d in info.by_optimizer},
        "optimizer_interaction": _decomposition(info.across) if info.across else None,
        "per_epoch_by_optimizer": [
            {"epoch": e.epoch, "optimizer": e.optimizer, **_decomposition(e.result)}
            for e in info.per_epoch_by_optimizer
        ],
        "settings": {
            "ped_anova_top_quantile": importance.PED_TOP_QUANTILE,
            "fanova_trees": importance.FANOVA_TREES,
            "fanova_max_depth": importance.FANOVA_DEPTH,
            "fanova_seed": importance.FANOVA_SEED,
            "log10_params": ["lr", "weight_decay"],
        },
    }


def _decomposition(d: Decomposition) -> dict[str, Any]:
    return {
        "n": d.n,
        "shares": None
        if d.shares is None
        else {
            k: {
                "share": s.share,
                "ci95": [s.low, s.high],
                "effect": s.effect,
                "shown": s.shown,
            }
            for k, s in d.shares.items()
        },
        "noise_sd": d.noise_sd,
        "note": d.note,
    }


def _shares_line(label: str, d: Decomposition) -> str:
    if d.shares is None:
        return f"{label}: {d.note}"
    cells = [
        f"{k} {s.share:.2f} [{s.low:.2f}, {s.high:.2f}]{'*' if s.shown else ''}"
        for k, s in d.shares.items()
    ]
    return f"{label} ({d.n} runs): " + "; ".join(cells) + (f" ({d.note})" if d.note else "")


def importance_table(study: str, info: ImportanceInfo) -> str:
    """The importance result as aligned text."""

    def num(d: dict[str, float] | None, p: str) -> str:
        return "-" if d is None else f"{d.get(p, 0.0):.3f}"

    lines = [f"study '{study}': {info.n_complete} completed trials"]
    if info.evaluators:
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
    if info.by_optimizer:
        lines.append("")
        lines.append(
            "Per optimizer: share of the fitted surface's variance [95% bootstrap interval]; "
            "* = more than noise alone gives"
        )
        lines += [_shares_line(name, d) for name, d in info.by_optimizer]
        if info.across is not None:
            lines.append(_shares_line("across optimizers", info.across))
    lines += [f"note: {n}" for n in info.notes]
    if not info.evaluators:
        lines.append(f"note: {POOLED_NOT_RUN}")
    return "\n".join(lines)


def write_importance_plot(figure: Any, path: Path) -> None:
    """Write the importance figure as offline HTML, or as PNG through kaleido + Chromium;
    atomically (``sweeper.dashboard.output``): a failed write leaves no partial file."""
    from sweeper.dashboard.output import write_atomically

    if path.suffix.lower() in (".html", ".htm"):
        try:
            write_atomically(
                path, lambda tmp: figure.write_html(tmp, include_plotlyjs=True, full_html=True)
            )
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
        height = figure.layout.height or 440
        write_atomically(
            path, lambda tmp: figure.write_image(tmp, width=1300, height=height, scale=1)
        )
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
    from sweeper.analysis.importance import importance_info

    if args.plot is not None:
        _check_output(args.plot, (".html", ".htm", ".png"))
    snap = _snapshot(args)
    info = importance_info(snap, args.evaluators)
    if args.format == "json":
        print(json.dumps({"study": snap.name, **importance_rows(info)}, indent=2))
    else:
        print(importance_table(snap.name, info))
    if args.plot is not None:
        from sweeper.views.importance import importance_figure

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
        names = ", ".join(one_line(r["study"]) for r in rows)
        print(f"{len(rows)} studies: " + (names or "(none yet)"))
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
