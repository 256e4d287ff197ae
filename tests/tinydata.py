"""Tiny CIFAR-shaped data sets that tests write to disk in both supported formats.

Each class k is a fixed random colour template of 8x8-pixel blocks (smooth enough for JPEG
to keep) plus noise, so a SimpleCNN learns the
task in a few epochs (chance is 10%), while the files are real: pickled python batches
exactly as the official CIFAR-10 ships them, or JPEG/PNG files in ImageFolder folders.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch
from torchvision.io import encode_jpeg, encode_png

CLASSES = [f"class{k}" for k in range(10)]


def make_images(per_class: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images (N, 3, 32, 32) and int64 labels: templates plus noise."""
    blocks = torch.randint(0, 256, (10, 3, 4, 4), generator=torch.Generator().manual_seed(0))
    templates = blocks.repeat_interleave(8, dim=2).repeat_interleave(8, dim=3)
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(10).repeat_interleave(per_class)
    noise = torch.randint(-24, 25, (len(labels), 3, 32, 32), generator=generator)
    images = (templates[labels].to(torch.int32) + noise).clamp(0, 255).to(torch.uint8)
    return images, labels


def write_official(root: Path, per_class_train: int = 20, per_class_test: int = 10) -> Path:
    """The official python-batch layout under ``root/cifar-10-batches-py``."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    train_x, train_y = make_images(per_class_train, seed=1)
    test_x, test_y = make_images(per_class_test, seed=2)
    chunks = torch.arange(len(train_y)).chunk(5)
    for i, index in enumerate(chunks, start=1):
        _write_batch(folder / f"data_batch_{i}", train_x[index], train_y[index])
    _write_batch(folder / "test_batch", test_x, test_y)
    with (folder / "batches.meta").open("wb") as handle:
        pickle.dump({b"label_names": [c.encode() for c in CLASSES]}, handle)
    return root


def _write_batch(file: Path, images: torch.Tensor, labels: torch.Tensor) -> None:
    batch = {
        b"data": images.reshape(len(images), -1).numpy(),
        b"labels": labels.tolist(),
        b"batch_label": b"tiny",
    }
    with file.open("wb") as handle:
        pickle.dump(batch, handle)


def write_imagefolder(
    root: Path, per_class_train: int = 20, per_class_test: int = 10, fmt: str = "jpg"
) -> Path:
    """``root/train/<class>/*.fmt`` and ``root/test/<class>/*.fmt``."""
    for split, per_class, seed in (("train", per_class_train, 1), ("test", per_class_test, 2)):
        images, labels = make_images(per_class, seed)
        for i, (image, label) in enumerate(zip(images, labels, strict=True)):
            folder = root / split / CLASSES[int(label)]
            folder.mkdir(parents=True, exist_ok=True)
            data = encode_jpeg(image, quality=95) if fmt == "jpg" else encode_png(image)
            (folder / f"{i:05d}.{fmt}").write_bytes(data.numpy().tobytes())
    return root
