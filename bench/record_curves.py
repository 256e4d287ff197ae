"""Record a corpus of real learning curves: the tutorial CNN on CIFAR-10, AdamW and Adam.

Run (CPU, about an hour in the background on two cores):

    .venv/bin/python bench/record_curves.py                    # 5,000 / 2,000 images
    .venv/bin/python bench/record_curves.py --device cuda --train-size 0 --val-size 0
                                                               # the whole data set (GPU)

What it trains: per optimizer (``adamw`` decoupled, ``adam`` coupled L2), a grid of
``--lrs`` learning rates log-spaced over [1e-4, 3e-3] times ``--wds`` weight decays
log-spaced over [1e-4, 1] (wide enough that weight decay matters somewhere), each with
``--seeds`` seeds, ``--epochs`` epochs, batch 32, constant lr: by default 2 x 6 x 4 = 48
configurations x 3 seeds x 10 epochs. Every run of one seed trains in one packed
``sweeper.train.trainer.Trainer`` (the worker's own training code; each member's gradient
is its own), with that seed's batch order and per-run initial weights seeded by
(seed, configuration). A run whose loss becomes non-finite leaves the pack at that epoch;
its curve ends there and says so.

What it writes (``--out``, JSON, a few hundred kB): the settings, the machine and the
versions, and per run its optimizer, lr, wd, seed and per-epoch validation accuracy,
validation loss and training loss. The file is rewritten atomically after every seed, and a
run with the same settings resumes after the last seed it holds: an interruption loses at
most one seed's work. Progress goes to stderr, one line per pack epoch.

Subnormal floats are flushed to zero (``torch.set_flush_denormal``): Adam's coupled L2 at
wd 1 drives gradients and second moments below 1e-38, where x86 CPUs compute many times
slower; flushing changes only those values. ``--optimizers adamw`` and ``--optimizers adam``
in two processes (``--threads 1`` each) use two cores fully; ``--merge A B`` then joins
their files into ``--out`` (the same settings but the configurations).

``--write-prior`` instead fits the learning-curve pruner's prior on a recorded corpus (every
full-length curve) and writes it where the package reads it
(``sweeper/analysis/curve_prior.json``, ``sweeper.analysis.curves.fit_prior``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sweeper.spec import DataSpec, TrainingSpec
from sweeper.train.data import load_dataset
from sweeper.train.model import SimpleCNN
from sweeper.train.trainer import Trainer

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-jpeg.tar.gz"
DEFAULT_OUT = Path(__file__).resolve().parent / "data" / "curves-cpu-5k.json"
PRIOR = Path(__file__).resolve().parents[1] / "sweeper" / "analysis" / "curve_prior.json"
LR_RANGE = (1e-4, 3e-3)
WD_RANGE = (1e-4, 1.0)


def grid(n_lr: int, n_wd: int, optimizers: list[str]) -> list[dict[str, Any]]:
    """The configurations, in a fixed order: optimizer, then lr, then wd."""
    lrs = np.geomspace(*LR_RANGE, n_lr)
    wds = np.geomspace(*WD_RANGE, n_wd)
    return [
        {"optimizer": name, "lr": float(f"{lr:.4g}"), "weight_decay": float(f"{wd:.4g}")}
        for name in optimizers
        for lr in lrs
        for wd in wds
    ]


def settings_of(args: argparse.Namespace) -> dict[str, Any]:
    """What makes two corpora the same recording (resume only onto equal settings)."""
    return {
        "train_size": args.train_size or None,
        "val_size": args.val_size or None,
        "subset_seed": 0,
        "epochs": args.epochs,
        "batch_size": 32,
        "schedule": "none",
        "seeds": args.seeds,
        "configurations": grid(args.lrs, args.wds, args.optimizers.split(",")),
    }


def machine(device: torch.device) -> dict[str, str]:
    import triton

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    return {
        "device": f"{device.type}: {name or platform.machine()}",
        "cpus": str(os.cpu_count()),
        "threads": str(torch.get_num_threads()),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "triton": triton.__version__,
    }


def record_seed(
    data: Any, spec: TrainingSpec, configurations: list[dict[str, Any]], seed: int
) -> list[dict[str, Any]]:
    """Train every configuration with ``seed`` in one pack; their runs with curves."""
    trainer = Trainer(data, spec, order_seed=seed)
    runs, members = [], []
    for config in configurations:
        # Per-run initial weights, a function of (seed, configuration) alone: the same run
        # whichever recording (or split of one) trains it.
        key = f"{config['optimizer']} {config['lr']} {config['weight_decay']}"
        torch.manual_seed(seed * 2**32 + zlib.crc32(key.encode()))
        model = SimpleCNN().to(data.train_x.device)
        member = trainer.add(
            model,
            optimizer_name=config["optimizer"],
            lr=config["lr"],
            weight_decay=config["weight_decay"],
        )
        run = {**config, "seed": seed, "val_accuracy": [], "val_loss": [], "train_loss": []}
        run["diverged_at"] = None
        runs.append(run)
        members.append(member)
    live = dict(zip(map(id, members), runs, strict=True))
    for epoch in range(1, spec.epochs + 1):
        started = time.perf_counter()
        results = trainer.run_epoch()
        for member, result in zip(list(trainer.members), results, strict=True):
            run = live[id(member)]
            if not result.finite:
                run["diverged_at"] = epoch
                trainer.remove(member)
                continue
            run["val_accuracy"].append(round(result.val_accuracy, 6))
            run["val_loss"].append(round(result.val_loss, 6))
            run["train_loss"].append(round(result.train_loss, 6))
        best = max((r["val_accuracy"][-1] for r in runs if r["val_accuracy"]), default=math.nan)
        print(
            f"seed {seed} epoch {epoch}/{spec.epochs}: {len(trainer.members)} runs in the pack, "
            f"{time.perf_counter() - started:.0f} s, best val accuracy {best:.3f}",
            file=sys.stderr,
            flush=True,
        )
        if not trainer.members:
            break
    return runs


def write_atomically(path: Path, document: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(document, separators=(",", ":")) + "\n")
    tmp.replace(path)


def merge(parts: list[Path], out: Path) -> None:
    """Join recordings that differ only in their configurations into one corpus."""
    documents = [json.loads(p.read_text()) for p in parts]
    settings = dict(documents[0]["settings"])
    for d in documents[1:]:
        other = {k: v for k, v in d["settings"].items() if k != "configurations"}
        if other != {k: v for k, v in settings.items() if k != "configurations"}:
            raise SystemExit(f"record_curves: error: {parts[0]} and the others differ in settings")
    settings["configurations"] = [c for d in documents for c in d["settings"]["configurations"]]
    document = {
        "settings": settings,
        "machine": {**documents[0]["machine"], "processes": str(len(parts))},
        "recorded": documents[0]["recorded"],
        "seconds": max(d["seconds"] for d in documents),
        "runs": [r for d in documents for r in d["runs"]],
    }
    write_atomically(out, document)
    print(f"{len(document['runs'])} runs from {len(parts)} recordings in {out}", file=sys.stderr)


def write_prior(corpus: Path, out: Path = PRIOR) -> None:
    """Fit the curve prior on ``corpus``'s full-length curves and write it to ``out``."""
    from sweeper.analysis.curves import fit_prior  # here: the GPU check's machine has no optuna

    document = json.loads(corpus.read_text())
    settings, epochs = document["settings"], document["settings"]["epochs"]
    full = [r["val_accuracy"] for r in document["runs"] if len(r["val_accuracy"]) == epochs]
    source = (
        f"{corpus.name}: {len(full)} curves of {epochs} epochs, "
        f"{settings['train_size'] or 50_000} training / {settings['val_size'] or 10_000} test "
        f"images, {document['machine']['device']}"
    )
    prior = fit_prior(full, source)
    out.write_text(json.dumps(prior.to_json(), indent=1) + "\n")
    print(f"prior written to {out}: {source}", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--train-size", type=int, default=5000, help="0: all 50,000 images")
    parser.add_argument("--val-size", type=int, default=2000, help="0: all 10,000 images")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--lrs", type=int, default=6)
    parser.add_argument("--wds", type=int, default=4)
    parser.add_argument("--optimizers", default="adamw,adam")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's)")
    parser.add_argument("--write-prior", action="store_true", help="fit the prior on --out")
    parser.add_argument("--merge", nargs="+", type=Path, help="join these recordings into --out")
    args = parser.parse_args()
    if args.write_prior:
        write_prior(args.out)
        return
    if args.merge:
        merge(args.merge, args.out)
        return
    torch.set_flush_denormal(True)
    if args.threads:
        torch.set_num_threads(args.threads)

    settings = settings_of(args)
    runs: list[dict[str, Any]] = []
    if args.out.exists():
        previous = json.loads(args.out.read_text())
        if previous.get("settings") == settings:
            runs = previous["runs"]
            print(f"resuming {args.out}: {len(runs)} runs already recorded", file=sys.stderr)
    device = torch.device(args.device)
    data = load_dataset(
        DataSpec(train_size=settings["train_size"], val_size=settings["val_size"]),
        args.data,
        say=lambda line: print(line, file=sys.stderr, flush=True),
    ).to(device)
    spec = TrainingSpec(epochs=args.epochs, device=args.device)
    started = time.perf_counter()
    done = {run["seed"] for run in runs}
    for seed in range(args.seeds):
        if seed in done:
            continue
        runs += record_seed(data, spec, settings["configurations"], seed)
        document = {
            "settings": settings,
            "machine": machine(device),
            "recorded": time.strftime("%Y-%m-%d"),
            "seconds": round(time.perf_counter() - started),
            "runs": runs,
        }
        write_atomically(args.out, document)
        print(f"seed {seed} written to {args.out}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
