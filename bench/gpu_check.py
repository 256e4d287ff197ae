"""The whole GPU check in one command: tests, optimizer step, trial throughput, one full epoch.

Run from the repository root on a machine with a CUDA GPU (``make gpu-check`` does this):

    python3 bench/gpu_check.py              # writes artifacts/gpu-check/report.{md,json}
    python3 bench/gpu_check.py --out DIR --data PATH/cifar10-jpeg.tar.gz

It needs only torch (with CUDA), triton, torchvision, numpy and pytest: no optuna, database
or network. CIFAR-10 comes from ``--data``, else ``.data/cifar10-jpeg.tar.gz`` inside the
checkout (``make gpu-check`` copies ``../shared/data/cifar10-jpeg.tar.gz`` there), else
``../shared/data/cifar10-jpeg.tar.gz``. Sized from one H200 probe's timings to finish in
about 5 minutes there (not yet run end to end on a GPU).

What it measures, in order (each step has its own time limit, and a failed step is reported
in the table without stopping the others):

1. the CUDA-only tests (``pytest -m cuda``: optimizer, execution, trainer) with the compiled
   Triton kernel;
2. ``bench/adamw_step.py``: FusedAdamW's step time against ``torch.optim.AdamW(fused=True)``
   at K = 1, 8, 64 packed SimpleCNNs, and its bandwidth as a fraction of the copy bandwidth
   measured in the same run (goals: 2x at K = 1, 80% at K = 64), with three other kernel
   shapes (block x warps) beside the default;
3. ``bench/trial_throughput.py``: the tutorial loop vs one trial vs K = 4, 16, 64 packed
   trials, for each execution option (fp32, channels_last, bf16, CUDA graphs, and all
   three), on a 20,000 / 5,000 image subset of CIFAR-10 (epoch time scaled to the full set:
   the full set for every variant does not fit the time limit); trials per GPU-hour of the
   10-epoch study (goal: 200x the tutorial loop);
4. one full-data epoch (50,000 / 10,000 images) of one trial at lr 1e-3 / wd 1e-2, seed 0,
   on the GPU with CUDA graphs and on this machine's CPU, accuracies side by side (same
   seed and batch order: they differ only by float rounding, so by about the binomial
   test-set noise sqrt(p(1-p)/10000) ~ 0.5 points at most);
5. with ``--curves``, the learning-curve corpus on the full data set (``bench/record_curves.py
   --device cuda``: 48 configurations x 3 seeds x 10 epochs, 50,000 / 10,000 images) into
   ``curves-gpu-full.json`` beside the report, for the curve pruner's prior and replay.

Without CUDA it exits with status 2 and one line.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CANDIDATE_DATA = (
    ROOT / ".data" / "cifar10-jpeg.tar.gz",
    ROOT.parent / "shared" / "data" / "cifar10-jpeg.tar.gz",
)


def _run(name: str, command: list[str], limit: float, log: Path) -> dict[str, Any]:
    """Run one step as a subprocess under a time limit; its log goes to ``log``."""
    print(f"== {name}: {' '.join(command)} (limit {limit:.0f} s)", flush=True)
    started = time.perf_counter()
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    try:
        done = subprocess.run(
            command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=limit, check=False
        )
        code, output = done.returncode, done.stdout + done.stderr
    except subprocess.TimeoutExpired as err:
        code = 124
        output = (
            (err.stdout or b"").decode() if isinstance(err.stdout, bytes) else (err.stdout or "")
        )
        output += f"\n(timed out after {limit:.0f} s)"
    seconds = time.perf_counter() - started
    log.write_text(output)
    tail = "\n".join(output.strip().splitlines()[-25:])
    print(tail, flush=True)
    print(f"-- {name}: exit {code} in {seconds:.0f} s", flush=True)
    return {"step": name, "exit": code, "seconds": round(seconds, 1), "log": log.name}


def full_epoch(data_path: Path, out: Path) -> dict[str, Any]:
    """One full-data epoch of one trial on the GPU (CUDA graphs) and on the CPU."""
    import torch

    from sweeper.spec import DataSpec, TrainingSpec
    from sweeper.train.data import load_dataset
    from sweeper.train.model import SimpleCNN
    from sweeper.train.trainer import Trainer

    data = load_dataset(DataSpec(), str(data_path))
    results: dict[str, Any] = {"train_images": len(data.train_y), "val_images": len(data.test_y)}
    for name, device, spec in (
        ("gpu", torch.device("cuda"), TrainingSpec(cuda_graphs=True)),
        ("cpu", torch.device("cpu"), TrainingSpec()),
    ):
        torch.manual_seed(0)
        trainer = Trainer(data.to(device), spec, order_seed=0)
        trainer.add(SimpleCNN().to(device), optimizer_name="adamw", lr=1e-3, weight_decay=1e-2)
        started = time.perf_counter()
        (result,) = trainer.run_epoch()
        if device.type == "cuda":
            torch.cuda.synchronize()
        results[name] = {
            "device": torch.cuda.get_device_name(device)
            if device.type == "cuda"
            else platform.processor() or platform.machine(),
            "threads": torch.get_num_threads(),
            "execution": trainer.execution.describe(),
            "val_accuracy": result.val_accuracy,
            "train_loss": result.train_loss,
            "seconds": time.perf_counter() - started,
        }
        print(f"   full epoch on {name}: {results[name]}", flush=True)
    p = results["gpu"]["val_accuracy"]
    results["binomial_sd"] = (p * (1 - p) / results["val_images"]) ** 0.5
    results["difference"] = results["gpu"]["val_accuracy"] - results["cpu"]["val_accuracy"]
    (out / "full_epoch.json").write_text(json.dumps(results, indent=2))
    return results


def _section(title: str, columns: list[str], rows: list[list[str]]) -> list[str]:
    """A markdown table under a heading."""
    return [
        "",
        f"## {title}",
        "",
        "| " + " | ".join(columns) + " |",
        "| " + " | ".join("---" for _ in columns) + " |",
        *["| " + " | ".join(row) + " |" for row in rows],
    ]


def markdown(report: dict[str, Any]) -> str:
    lines = [
        f"# GPU check: {report['gpu']}",
        "",
        f"torch {report['torch']}, triton {report['triton']}, python {report['python']}, "
        f"{report['started']}",
        *_section(
            "Steps",
            ["step", "exit", "seconds"],
            [[s["step"], str(s["exit"]), str(s["seconds"])] for s in report["steps"]],
        ),
    ]
    step = report.get("adamw_step")
    if step:
        rows = [
            [
                str(r["K"]),
                f"{r['params']:,}",
                r["variant"],
                f"{r['median_ms']:.3f}",
                f"{r['speedup']:.2f}x",
                f"{r['vs_fused']:.2f}x" if r.get("vs_fused") else "?",
                f"{r['gb_per_s'] or 0:.0f}",
                f"{r['of_copy_bw'] or 0:.0%}",
            ]
            for device in step.get("devices", [])
            for r in device.get("rows", [])
        ]
        columns = [
            *("K", "params", "variant", "median ms", "speedup", "vs fused"),
            *("GB/s", "of copy bw"),
        ]
        lines += _section("FusedAdamW step vs torch.optim.AdamW(fused=True)", columns, rows)
    throughput = report.get("throughput")
    if throughput:
        rows = [
            [
                r["configuration"],
                f"{r['median_s_per_epoch']:.2f}",
                f"{r['trial_epochs_per_s']:.2f}",
                f"{r['vs_tutorial']:.1f}x",
                f"{r['trials_per_hour_10_epochs_full_set']:.0f}",
            ]
            for r in throughput["rows"]
        ]
        columns = ["configuration", "s/epoch", "trial-epochs/s", "vs tutorial", "trials/h (10 ep)"]
        lines += _section("Trial throughput (subset, scaled to the full set)", columns, rows)
    full = report.get("full_epoch")
    if full:
        rows = [
            [
                f"{name}: {full[name]['device']} ({full[name]['threads']} threads)",
                full[name]["execution"],
                f"{full[name]['val_accuracy']:.4f}",
                f"{full[name]['train_loss']:.4f}",
                f"{full[name]['seconds']:.1f}",
            ]
            for name in ("gpu", "cpu")
        ]
        columns = ["where", "execution", "val accuracy", "train loss", "seconds"]
        lines += _section("One full-data epoch (lr 1e-3, wd 1e-2, seed 0)", columns, rows)
        lines.append(
            f"\nGPU - CPU accuracy: {full['difference']:+.4f} (binomial test-set sd "
            f"{full['binomial_sd']:.4f})"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "artifacts" / "gpu-check"))
    parser.add_argument("--data", default=None, help="cifar10-jpeg.tar.gz (see the docstring)")
    parser.add_argument("--curves", action="store_true", help="also record the full-data corpus")
    args = parser.parse_args()
    try:
        import torch
        import triton
    except ImportError as err:
        print(f"gpu-check: error: {err.name} is not installed; it needs torch with CUDA and triton")
        return 2
    if not torch.cuda.is_available():
        print("gpu-check: error: no CUDA GPU is visible here; run it on a machine with one")
        return 2
    data = Path(args.data) if args.data else next((p for p in CANDIDATE_DATA if p.exists()), None)
    if data is None or not data.exists():
        looked = ", ".join(map(str, CANDIDATE_DATA))
        print(f"gpu-check: error: CIFAR-10 not found (looked for {looked}); pass --data PATH")
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("SWEEPER_CACHE", str(out / "cache"))
    sys.path.insert(0, str(ROOT))
    print(__doc__.split("What it measures")[1].split("Without CUDA")[0], flush=True)
    report: dict[str, Any] = {
        "gpu": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "triton": triton.__version__,
        "python": platform.python_version(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "steps": [],
    }
    py = sys.executable
    tests = [py, "-m", "pytest", "-m", "cuda", "tests/optim", "tests/train", "-q"]
    step = [
        *(py, "bench/adamw_step.py", "--device", "cuda", "--json", str(out / "adamw_step.json")),
        *("--kernel-shapes", "1024x8", "2048x8", "4096x8"),
    ]
    throughput = [
        *(py, "bench/trial_throughput.py", "--device", "cuda", "--data", str(data)),
        *("--train-size", "20000", "--val-size", "5000", "--repeats", "1"),
        *("--packs", "4,16,64", "--no-stacking", "--json", str(out / "throughput.json")),
        *("--execution", "fp32,channels_last,bf16,cuda_graphs,bf16+channels_last+cuda_graphs"),
    ]
    report["steps"].append(_run("cuda tests", tests, 240, out / "tests.log"))
    report["steps"].append(_run("adamw step", step, 90, out / "adamw_step.log"))
    report["steps"].append(_run("trial throughput", throughput, 300, out / "throughput.log"))
    started = time.perf_counter()
    try:
        report["full_epoch"] = full_epoch(data, out)
        code = 0
    except Exception as err:  # reported in the table; the other steps' figures still count
        print(f"full epoch failed: {type(err).__name__}: {err}", flush=True)
        code = 1
    report["steps"].append(
        {
            "step": "full-data epoch",
            "exit": code,
            "seconds": round(time.perf_counter() - started, 1),
            "log": "-",
        }
    )
    if args.curves:
        corpus = [
            *(py, "bench/record_curves.py", "--device", "cuda", "--data", str(data)),
            *("--train-size", "0", "--val-size", "0", "--out", str(out / "curves-gpu-full.json")),
        ]
        report["steps"].append(_run("curve corpus", corpus, 540, out / "curves.log"))
    for key, name in (("adamw_step", "adamw_step.json"), ("throughput", "throughput.json")):
        if (out / name).exists():
            report[key] = json.loads((out / name).read_text())
    (out / "report.json").write_text(json.dumps(report, indent=2))
    (out / "report.md").write_text(markdown(report))
    print(markdown(report), flush=True)
    return 0 if all(s["exit"] == 0 for s in report["steps"]) else 1


if __name__ == "__main__":
    sys.exit(main())
