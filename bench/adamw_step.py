"""Median optimizer-step time: FusedAdamW against torch.optim.AdamW, for K packed SimpleCNNs.

Run from the repository root:

    .venv/bin/python bench/adamw_step.py              # CPU always, CUDA too when present
    .venv/bin/python bench/adamw_step.py --quick      # fewer repeats (a smoke run)
    .venv/bin/python bench/adamw_step.py --device cpu --ks 1 8 --repeats 50 --threads 1
    .venv/bin/python bench/adamw_step.py --device cuda --quick --json artifacts/adamw_step.json
    .venv/bin/python bench/adamw_step.py --device cuda --kernel-shapes 1024x4 1024x8 2048x8
    .venv/bin/python bench/adamw_step.py --device cpu --baseline-rev f3a9842   # old code too

What it measures. For K = 1, 8, 64 copies of the tutorial SimpleCNN's parameters (545,098
each), packed as K parameter groups with K different (lr, weight_decay) pairs as a sweep packs
them, every variant gets the same gradients and runs ``step()`` only (no forward or backward):
torch.optim.AdamW with ``foreach=True``, with ``fused=True`` (where the device supports it)
and sweeper's FusedAdamW (its default implementation for the device). The variants are timed
in turns, after warm-up steps, so a change in machine load hits all of them; the table shows
the median per step and the ratio to the best torch variant (``speedup`` > 1 means faster than
torch's best) and to ``torch.optim.AdamW(fused=True)`` (``vs fused``). ``--baseline-rev REV``
adds sweeper's FusedAdamW as of git revision REV (its ``sweeper/optim/adamw.py`` and
``kernel.py``, loaded under other module names), so an earlier design is timed in the same
run, in turns with the others. On CUDA, each sample times a run of steps between CUDA events,
and the table adds the achieved bandwidth against the roofline of 28 bytes per parameter (read
p, g, m, v; write p, m, v) and its fraction of the GPU's peak memory bandwidth (from the
device's memory clock and bus width) and of the device-to-device copy bandwidth measured at
the start of the same run ("of copy bw": what a kernel that reads and writes memory once can
reach on this GPU). The header prints the machine, the library versions, the thread count, the
load average and the repeat counts. ``--json PATH`` also writes the header facts and every row
(K, params, variant, median ms, speedup, GB/s, fraction of peak, fraction of copy bandwidth)
for a GPU-check script. ``--kernel-shapes BLOCKxWARPS ...`` adds one FusedAdamW variant per
Triton block size and warp count (elements per program, warps per program), to measure the
kernel's tuned constants.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
import triton
from torch import nn

from sweeper.optim import FusedAdamW
from sweeper.optim import kernel as adamw_kernel
from sweeper.train.model import SimpleCNN

ROOT = Path(__file__).resolve().parent.parent
BYTES_PER_PARAM = 28  # float32: read param, grad, exp_avg, exp_avg_sq; write the three states


@dataclass
class Variant:
    name: str
    build: Callable[[list[dict[str, object]]], torch.optim.Optimizer]
    optimizer: torch.optim.Optimizer | None = None
    times: list[float] | None = None
    kernel_shape: tuple[int, int] | None = None  # (BLOCK, NUM_WARPS) while this one steps


@contextmanager
def kernel_shape(shape: tuple[int, int] | None) -> Iterator[None]:
    """Run with the Triton kernel's BLOCK and NUM_WARPS set to ``shape`` (None: as shipped).

    Both are read when the optimizer builds its block table (its first step, and whenever a
    tensor's address changes) and at every launch, so a variant built and stepped inside this
    context uses the shape throughout.
    """
    if shape is None:
        yield
        return
    saved = adamw_kernel.BLOCK, adamw_kernel.NUM_WARPS
    adamw_kernel.BLOCK, adamw_kernel.NUM_WARPS = shape
    try:
        yield
    finally:
        adamw_kernel.BLOCK, adamw_kernel.NUM_WARPS = saved


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def packed_groups(k: int, device: torch.device, seed: int) -> list[dict[str, object]]:
    """K SimpleCNN parameter sets as K groups, each with its own lr and weight decay and
    a fixed random gradient."""
    shapes = [p.shape for p in SimpleCNN().parameters()]
    gen = torch.Generator().manual_seed(seed)
    groups: list[dict[str, object]] = []
    for i in range(k):
        params = []
        for shape in shapes:
            p = nn.Parameter((torch.randn(shape, generator=gen) * 0.05).to(device))
            p.grad = torch.randn(shape, generator=gen).to(device)
            params.append(p)
        # Log-spaced over the default search space: lr in [1e-4, 1e-3], wd in [1e-4, 1e-2].
        frac = i / max(k - 1, 1)
        groups.append({"params": params, "lr": 1e-4 * 10**frac, "weight_decay": 1e-4 * 100**frac})
    return groups


def baseline_class(rev: str) -> type[torch.optim.Optimizer]:
    """``FusedAdamW`` as of git revision ``rev``: its adamw.py and kernel.py, written to a
    temporary directory as ``baseline_adamw`` / ``baseline_kernel`` (real files, so Triton can
    read the kernel's source) and imported under those names."""

    def show(path: str) -> str:
        return subprocess.run(
            ["git", "show", f"{rev}:{path}"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout

    folder = Path(tempfile.mkdtemp(prefix="adamw-baseline-"))
    (folder / "baseline_kernel.py").write_text(show("sweeper/optim/kernel.py"))
    adamw_source = show("sweeper/optim/adamw.py").replace(
        "from sweeper.optim import kernel as _kernel", "import baseline_kernel as _kernel"
    )
    (folder / "baseline_adamw.py").write_text(adamw_source)
    sys.path.insert(0, str(folder))
    try:
        spec = importlib.util.spec_from_file_location(
            "baseline_adamw", folder / "baseline_adamw.py"
        )
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["baseline_adamw"] = module
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(folder))
    cls: type[torch.optim.Optimizer] = module.FusedAdamW
    return cls


FUSED = "torch AdamW fused=True"


def variants_for(
    device: torch.device, shapes: list[tuple[int, int]], baseline_rev: str | None
) -> list[Variant]:
    variants = [
        Variant("torch AdamW foreach=True", lambda g: torch.optim.AdamW(g, foreach=True)),
        Variant(FUSED, lambda g: torch.optim.AdamW(g, fused=True)),
        Variant("FusedAdamW", lambda g: FusedAdamW(g)),
    ]
    if baseline_rev is not None:
        baseline = baseline_class(baseline_rev)
        variants.append(Variant(f"FusedAdamW @{baseline_rev}", lambda g: baseline(g)))
    if device.type == "cuda":
        for block, warps in shapes:
            variants.append(
                Variant(
                    f"FusedAdamW B{block} W{warps}",
                    lambda g: FusedAdamW(g, impl="triton"),
                    kernel_shape=(block, warps),
                )
            )
    return variants


def peak_bandwidth(device: torch.device) -> float | None:
    """Peak DRAM bandwidth in bytes/s from the memory clock (kHz, double data rate) and bus."""
    props = torch.cuda.get_device_properties(device)
    clock_khz = getattr(props, "memory_clock_rate", 0)
    bus_bits = getattr(props, "memory_bus_width", 0)
    if not clock_khz or not bus_bits:
        return None
    return 2.0 * clock_khz * 1e3 * bus_bits / 8


def copy_bandwidth(device: torch.device) -> float:
    """Achieved device-to-device copy bandwidth (read + write) in bytes/s, for reference."""
    n = 256 * 2**20  # 1 GiB of float32: far beyond any cache
    src = torch.empty(n, device=device)
    dst = torch.empty_like(src)
    for _ in range(3):
        dst.copy_(src)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    samples = []
    for _ in range(10):
        start.record()
        dst.copy_(src)
        end.record()
        end.synchronize()
        samples.append(start.elapsed_time(end) / 1e3)
    return 2 * n * 4 / statistics.median(samples)


def measure(
    device: torch.device,
    k: int,
    warmup: int,
    repeats: int,
    steps_per_sample: int,
    shapes: list[tuple[int, int]],
    baseline_rev: str | None = None,
) -> tuple[int, list[Variant]]:
    """Median seconds per step of every variant that runs on ``device``."""
    variants = []
    n_params = 0
    for v in variants_for(device, shapes, baseline_rev):
        groups = packed_groups(k, device, seed=k)
        n_params = k * sum(p.numel() for p in SimpleCNN().parameters())
        try:
            with kernel_shape(v.kernel_shape):
                v.optimizer = v.build(groups)
                v.optimizer.step()
        except (RuntimeError, ValueError) as err:  # fused=True where a device lacks it
            print(f"  skipped {v.name} on {device}: {err}")
            continue
        v.times = []
        variants.append(v)
    cuda = device.type == "cuda"
    for v in variants:
        assert v.optimizer is not None
        with kernel_shape(v.kernel_shape):
            for _ in range(warmup):
                v.optimizer.step()
    if cuda:
        torch.cuda.synchronize(device)
    for _ in range(repeats):
        for v in variants:  # in turns: load changes hit every variant alike
            assert v.optimizer is not None and v.times is not None
            with kernel_shape(v.kernel_shape):
                if cuda:
                    start = torch.cuda.Event(enable_timing=True)
                    end = torch.cuda.Event(enable_timing=True)
                    start.record()
                    for _ in range(steps_per_sample):
                        v.optimizer.step()
                    end.record()
                    end.synchronize()
                    v.times.append(start.elapsed_time(end) / 1e3 / steps_per_sample)
                else:
                    t0 = time.perf_counter()
                    v.optimizer.step()
                    v.times.append(time.perf_counter() - t0)
    return n_params, variants


def report(device: torch.device, ks: list[int], args: argparse.Namespace) -> dict[str, object]:
    """Print the table of ``device`` and return its header facts and rows (for ``--json``)."""
    cuda = device.type == "cuda"
    peak = peak_bandwidth(device) if cuda else None
    copy_bw = None
    facts: dict[str, object] = {"device": str(device)}
    if cuda:
        name = torch.cuda.get_device_name(device)
        copy_bw = copy_bandwidth(device)
        peak_text = f"{peak / 1e9:.0f} GB/s" if peak else "unknown"
        print(f"\n== {device}: {name}; peak memory bandwidth {peak_text} (memory clock x bus)")
        print(f"   measured copy bandwidth (read+write) {copy_bw / 1e9:.0f} GB/s")
        print(f"   {args.repeats} samples x {args.steps_per_sample} steps, {args.warmup} warm-up")
        facts.update(
            name=name,
            peak_bandwidth_gbs=peak / 1e9 if peak else None,
            copy_bandwidth_gbs=copy_bw / 1e9,
            samples=args.repeats,
            steps_per_sample=args.steps_per_sample,
            warmup=args.warmup,
        )
    else:
        print(f"\n== cpu: {cpu_name()}; {torch.get_num_threads()} ATen threads")
        print(f"   {args.repeats} timed steps per variant (in turns), {args.warmup} warm-up")
        facts.update(
            name=cpu_name(),
            aten_threads=torch.get_num_threads(),
            samples=args.repeats,
            steps_per_sample=1,
            warmup=args.warmup,
        )
    header = (
        f"{'K':>3} {'params':>11}  {'variant':<26} {'median ms':>10} {'speedup':>8} {'vs fused':>8}"
    )
    if cuda:
        header += f" {'GB/s':>7} {'of peak':>8} {'of copy bw':>11}"
    print(header)
    rows: list[dict[str, object]] = []
    for k in ks:
        n_params, variants = measure(
            device,
            k,
            args.warmup,
            args.repeats,
            args.steps_per_sample if cuda else 1,
            args.kernel_shapes,
            args.baseline_rev,
        )
        medians = {v.name: statistics.median(v.times or [float("nan")]) for v in variants}
        torch_best = min(t for n, t in medians.items() if n.startswith("torch"))
        fused = medians.get(FUSED)
        for v in variants:
            t = medians[v.name]
            row: dict[str, object] = {
                "K": k,
                "params": n_params,
                "variant": v.name,
                "median_ms": t * 1e3,
                "speedup": torch_best / t,
                "vs_fused": fused / t if fused else None,
                "gb_per_s": None,
                "of_peak": None,
                "of_copy_bw": None,
            }
            line = f"{k:>3} {n_params:>11,}  {v.name:<26} {t * 1e3:>10.3f} {torch_best / t:>7.2f}x"
            line += f" {fused / t:>7.2f}x" if fused else f" {'?':>8}"
            if cuda:
                assert copy_bw is not None
                bw = BYTES_PER_PARAM * n_params / t
                row.update(
                    gb_per_s=bw / 1e9, of_peak=bw / peak if peak else None, of_copy_bw=bw / copy_bw
                )
                line += f" {bw / 1e9:>7.0f}"
                line += f" {bw / peak:>7.0%}" if peak else f" {'?':>8}"
                line += f" {bw / copy_bw:>10.0%}"
            print(line)
            rows.append(row)
        for v in variants:
            v.optimizer = None  # free this K's buffers before the next
        if cuda:
            torch.cuda.empty_cache()
    return {**facts, "rows": rows}


def parse_shape(text: str) -> tuple[int, int]:
    """``"1024x8"`` -> (1024, 8): elements per program and warps per program."""
    try:
        block, warps = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not BLOCKxWARPS, e.g. 1024x8") from None
    if block < 32 or block & (block - 1) or warps & (warps - 1):
        raise argparse.ArgumentTypeError(
            f"{text!r}: BLOCK must be a power of two of at least 32, warps a power of two"
        )
    return block, warps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 8, 64])
    parser.add_argument("--repeats", type=int, default=None, help="timed samples per variant")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--steps-per-sample", type=int, default=20, help="CUDA: steps per event")
    parser.add_argument("--threads", type=int, default=None, help="ATen threads on the CPU")
    parser.add_argument("--quick", action="store_true", help="10 repeats, 2 warm-up steps")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    parser.add_argument(
        "--baseline-rev",
        default=None,
        help="also time sweeper's FusedAdamW as of this git revision (e.g. an older design)",
    )
    parser.add_argument(
        "--kernel-shapes",
        type=parse_shape,
        nargs="*",
        default=[],
        help="CUDA: extra FusedAdamW variants with these BLOCKxWARPS kernel shapes",
    )
    args = parser.parse_args()
    if args.repeats is None:
        args.repeats = 10 if args.quick else 40
    if args.quick:
        args.warmup = 2
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    print("FusedAdamW step benchmark (bench/adamw_step.py)")
    print(
        f"torch {torch.__version__}, triton {triton.__version__}, python "
        f"{platform.python_version()}, {platform.system()} {platform.machine()}"
    )
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    if load is not None:
        print(f"load average at start: {load[0]:.2f} (1 min), {os.cpu_count()} CPUs")
    print("speedup = median of the best torch variant / median of this variant")
    print("vs fused = median of torch AdamW fused=True / median of this variant")
    print(
        f"FusedAdamW kernel: BLOCK {adamw_kernel.BLOCK}, NUM_WARPS {adamw_kernel.NUM_WARPS}, "
        f"vectors of {adamw_kernel.ALIGN_BYTES} bytes"
    )

    devices = []
    if args.device in ("auto", "cpu"):
        devices.append(torch.device("cpu"))
    if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available()):
        devices.append(torch.device("cuda"))
    results = [report(device, args.ks, args) for device in devices]
    if args.json is not None:
        document = {
            "bench": "bench/adamw_step.py",
            "torch": torch.__version__,
            "triton": triton.__version__,
            "python": platform.python_version(),
            "platform": f"{platform.system()} {platform.machine()}",
            "cpus": os.cpu_count(),
            "load_average_1min": load[0] if load is not None else None,
            "bytes_per_param": BYTES_PER_PARAM,
            "kernel": {
                "BLOCK": adamw_kernel.BLOCK,
                "NUM_WARPS": adamw_kernel.NUM_WARPS,
                "ALIGN_BYTES": adamw_kernel.ALIGN_BYTES,
            },
            "speedup": "median of the best torch variant / median of this variant",
            "vs_fused": "median of torch AdamW fused=True / median of this variant",
            "devices": results,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(document, indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
