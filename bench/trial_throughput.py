"""Trial-epochs per second: the tutorial's loop vs our single-trial loop vs packed trials.

Run:

    .venv/bin/python bench/trial_throughput.py                       # CPU: K = 2, 4, 8
    .venv/bin/python bench/trial_throughput.py --device cuda         # CUDA: K = 4, 16, 64
    .venv/bin/python bench/trial_throughput.py --train-size 2000 --repeats 5
    .venv/bin/python bench/trial_throughput.py --execution fp32,bf16+channels_last

Data: the JPEG export of CIFAR-10 (``--data``, default ../shared/data/cifar10-jpeg.tar.gz),
decoded and cached by ``sweeper.train.data.load_dataset``; a seeded subset of
``--train-size`` training and ``--val-size`` test images keeps the CPU run to a few minutes.

Each configuration trains one epoch (batch 32, AdamW lr 1e-3, wd 1e-2) and evaluates on the
validation subset; that is timed ``--repeats`` times and the median is reported:

- (a) tutorial: torchvision ImageFolder + PIL transforms (ToTensor, Normalize), DataLoader
  batch 32 with shuffling (2 loader workers, as the tutorial), torch.optim.AdamW, the model
  and each batch on ``--device`` (the tutorial's GPU variant);
- (b) single: ``sweeper.train.trainer.Trainer`` with one member (device-resident uint8
  data, FusedAdamW, the tutorial's forward);
- (c) packed K: the same ``Trainer`` with K members (K trial-epochs, the grouped forward).

(b) and (c) run once per ``--execution`` variant: ``+``-joined options of
``sweeper.train.execution`` (``fp32`` | ``bf16``, ``channels_last``, ``cuda_graphs``). The
default is ``fp32`` on the CPU and ``fp32,cuda_graphs,bf16+channels_last+cuda_graphs`` on
CUDA, so one GPU run says which options help there.

It prints the machine, versions, repeats, each median, trial-epochs per second, the ratio to
(a) measured in the same run, and the projected trials per hour for a 10-epoch study on the
full 50,000 / 10,000 images (epoch time scaled linearly with the number of images). Finally
it times one training step of the pack's two stacking options (grouped convolutions +
batched matmuls, which the pack uses, vs ``torch.func.vmap``).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torchvision
from torch.func import functional_call, vmap
from torch.nn import functional as F  # noqa: N812 (torch's own convention)
from torch.utils.data import DataLoader, Subset
from torchvision import transforms

from sweeper.spec import DataSpec, TrainingSpec
from sweeper.train.data import Dataset, _unpack, load_dataset
from sweeper.train.grouped import grouped_forward
from sweeper.train.model import SimpleCNN
from sweeper.train.trainer import Trainer

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-jpeg.tar.gz"
FULL_TRAIN, FULL_VAL, STUDY_EPOCHS = 50_000, 10_000, 10
LR, WD = 1e-3, 1e-2


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_seconds(run: Callable[[], None], repeats: int, device: torch.device) -> float:
    """Median wall time of ``run()`` over ``repeats`` calls, after one warm-up call."""
    run()
    times = []
    for _ in range(repeats):
        _sync(device)
        started = time.perf_counter()
        run()
        _sync(device)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def tutorial_epoch(
    root: Path, train_size: int, val_size: int, device: torch.device
) -> Callable[[], None]:
    """The tutorial's loop over a seeded subset of the ImageFolder tree, on ``device``."""
    tf = transforms.Compose(
        [transforms.ToTensor(), transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))]
    )
    train = torchvision.datasets.ImageFolder(str(root / "train"), transform=tf)
    test = torchvision.datasets.ImageFolder(str(root / "test"), transform=tf)
    g = torch.Generator().manual_seed(0)
    train = Subset(train, torch.randperm(len(train), generator=g)[:train_size].tolist())
    test = Subset(test, torch.randperm(len(test), generator=g)[:val_size].tolist())
    train_loader = DataLoader(train, batch_size=32, shuffle=True, num_workers=2)
    test_loader = DataLoader(test, batch_size=32, shuffle=False, num_workers=2)
    model = SimpleCNN().to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=WD)
    criterion = torch.nn.CrossEntropyLoss()

    def epoch() -> None:
        model.train()
        for inputs, labels in train_loader:
            inputs, labels = inputs.to(device), labels.to(device)
            optimizer.zero_grad()
            loss = criterion(model(inputs), labels)
            loss.backward()
            optimizer.step()
        model.eval()
        correct = 0
        with torch.no_grad():
            for inputs, labels in test_loader:
                inputs, labels = inputs.to(device), labels.to(device)
                correct += int((model(inputs).argmax(1) == labels).sum())

    return epoch


def single_epoch(data: Dataset, spec: TrainingSpec) -> Callable[[], None]:
    """One trial: a trainer with one member (the worker's ``--pack 1``)."""
    return packed_epoch(data, spec, 1)


def packed_epoch(data: Dataset, spec: TrainingSpec, k: int) -> Callable[[], None]:
    pack = Trainer(data, spec, order_seed=0)
    for i in range(k):
        torch.manual_seed(i)
        # Spread lr a little so that the members are different trials, as in a sweep.
        lr = LR * (1 + i / k)
        pack.add(
            SimpleCNN().to(data.train_x.device),
            optimizer_name="adamw",
            lr=lr,
            weight_decay=WD,
        )
    return lambda: pack.run_epoch() and None


def stacking_step_ms(k: int, device: torch.device, repeats: int) -> tuple[float, float]:
    """Median ms of one forward+backward of K SimpleCNNs on batch 32: grouped vs vmap."""
    models = [SimpleCNN().to(device) for _ in range(k)]
    x = torch.randn(32, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (32,), device=device).repeat(k)
    names = [name for name, _ in models[0].named_parameters()]

    def vmapped(inputs: torch.Tensor) -> torch.Tensor:
        stacked = {n: torch.stack([m.get_parameter(n) for m in models]) for n in names}
        one = lambda p, xs: functional_call(models[0], p, (xs,))  # noqa: E731
        out: torch.Tensor = vmap(one, in_dims=(0, None))(stacked, inputs)
        return out

    def step(forward: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[], None]:
        return lambda: F.cross_entropy(forward(x).reshape(-1, 10), y).backward()

    grouped = median_seconds(step(lambda v: grouped_forward(models, v)), repeats, device)
    mapped = median_seconds(step(vmapped), repeats, device)
    return grouped * 1e3, mapped * 1e3


def execution_spec(variant: str) -> TrainingSpec:
    """A 10-epoch training spec with ``variant``'s execution options (see the docstring)."""
    options = set(variant.split("+"))
    unknown = options - {"fp32", "bf16", "channels_last", "cuda_graphs"}
    if unknown or {"fp32", "bf16"} <= options:
        raise SystemExit(f"bad --execution variant {variant!r}")
    return TrainingSpec(
        epochs=STUDY_EPOCHS,
        precision="bf16" if "bf16" in options else "fp32",
        channels_last="channels_last" in options,
        cuda_graphs="cuda_graphs" in options,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--train-size", type=int, default=1000)
    parser.add_argument("--val-size", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--packs", default=None, help="comma-separated K (default by device)")
    parser.add_argument(
        "--execution", default=None, help="comma-separated variants (default by device)"
    )
    parser.add_argument("--json", default=None, help="also write every measured row here")
    parser.add_argument(
        "--no-stacking", action="store_true", help="skip the grouped-vs-vmap step timing"
    )
    args = parser.parse_args()
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    default_packs = "4,16,64" if cuda else "2,4,8"
    packs = [int(k) for k in (args.packs or default_packs).split(",")]
    default_variants = "fp32,cuda_graphs,bf16+channels_last+cuda_graphs" if cuda else "fp32"
    variants = (args.execution or default_variants).split(",")

    print(
        f"machine: {platform.node()} | {platform.processor() or platform.machine()} | "
        f"{torch.get_num_threads()} torch threads | device {device}"
        + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "")
    )
    print(
        f"versions: python {platform.python_version()} | torch {torch.__version__} | "
        f"torchvision {torchvision.__version__}"
    )
    print(
        f"data: {args.data} | subset {args.train_size} train / {args.val_size} val | "
        f"batch 32 | median of {args.repeats} epochs after 1 warm-up"
    )

    subset = DataSpec(train_size=args.train_size, val_size=args.val_size)
    data = load_dataset(subset, args.data).to(device)
    root = _unpack(Path(args.data))
    configs: list[tuple[str, int, Callable[[], None]]] = [
        ("(a) tutorial loop", 1, tutorial_epoch(root, args.train_size, args.val_size, device))
    ]
    for variant in variants:
        spec = execution_spec(variant)
        configs.append((f"(b) single [{variant}]", 1, single_epoch(data, spec)))
        configs += [(f"(c) K={k} [{variant}]", k, packed_epoch(data, spec, k)) for k in packs]

    scale = FULL_TRAIN / args.train_size  # epoch time ~ images (validation is the smaller part)
    rows = []
    for name, k, run in configs:
        seconds = median_seconds(run, args.repeats, device)
        rows.append((name, k, seconds, k / seconds))
        print(f"  measured {name}: {seconds:.2f} s per epoch", flush=True)
    base = rows[0][3]
    print()
    print(
        f"{'configuration':<44}{'median s/epoch':>15}{'trial-epochs/s':>16}{'vs (a)':>9}"
        f"{'trials/h (10 ep, full set)':>29}"
    )
    table = []
    for name, k, seconds, rate in rows:
        per_hour = 3600 * rate / (STUDY_EPOCHS * scale)
        print(f"{name:<44}{seconds:>15.2f}{rate:>16.3f}{rate / base:>8.2f}x{per_hour:>29.1f}")
        table.append(
            {
                "configuration": name,
                "trials": k,
                "median_s_per_epoch": seconds,
                "trial_epochs_per_s": rate,
                "vs_tutorial": rate / base,
                "trials_per_hour_10_epochs_full_set": per_hour,
            }
        )
    if args.json:
        facts = {
            "device": torch.cuda.get_device_name(device) if cuda else platform.processor(),
            "torch": torch.__version__,
            "train_size": args.train_size,
            "val_size": args.val_size,
            "repeats": args.repeats,
            "scaled_to_full_set_by": scale,
        }
        Path(args.json).write_text(json.dumps({"facts": facts, "rows": table}, indent=2))
    if args.no_stacking:
        return
    print("\none training step (forward+backward, batch 32), median ms: grouped vs vmap")
    for k in packs:
        grouped, mapped = stacking_step_ms(k, device, max(args.repeats, 5))
        print(f"  K={k:<3} grouped {grouped:8.1f} ms   vmap {mapped:8.1f} ms")


if __name__ == "__main__":
    main()
