"""Data: both formats decode to the same tensors, cached once; bad data get one-line errors."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import torch
from tinydata import make_images, write_imagefolder

from sweeper.errors import SweeperError
from sweeper.spec import DataSpec
from sweeper.train.data import cache_dir, load_dataset, normalise


def test_official_batches_decode_exactly(tiny_official: Path) -> None:
    data = load_dataset(DataSpec(), str(tiny_official))
    train_x, train_y = make_images(20, seed=1)
    assert data.train_x.dtype == torch.uint8 and data.train_x.shape == (200, 3, 32, 32)
    assert torch.equal(data.train_x, train_x) and torch.equal(data.train_y, train_y)
    assert data.test_x.shape == (100, 3, 32, 32)
    assert data.classes[0] == "class0"


def test_png_imagefolder_is_lossless(tmp_path: Path) -> None:
    root = write_imagefolder(tmp_path / "png", per_class_train=3, per_class_test=2, fmt="png")
    data = load_dataset(DataSpec(source="imagefolder"), str(root))
    expected, labels = make_images(3, seed=1)
    assert torch.equal(data.train_x, expected) and torch.equal(data.train_y, labels)


def test_jpeg_imagefolder_matches_an_independent_decoder(tiny_imagefolder: Path) -> None:
    """Files in class order, RGB, 32x32: the same pixels PIL decodes, within 1 grey level."""
    import numpy as np
    from PIL import Image

    data = load_dataset(DataSpec(), str(tiny_imagefolder))
    _, labels = make_images(20, seed=1)
    assert torch.equal(data.train_y, labels)
    files = sorted((tiny_imagefolder / "train").rglob("*.jpg"))
    assert len(files) == len(data.train_x)
    for index in (0, 57, 199):
        with Image.open(files[index]) as image:
            reference = torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1)
        error = (data.train_x[index].int() - reference.int()).abs().max().item()
        assert error <= 1, f"{files[index]}: max difference {error} grey levels"


def test_decoded_once_then_cached(tiny_official: Path) -> None:
    load_dataset(DataSpec(), str(tiny_official))
    cached = list(cache_dir().glob("cifar10-*.pt"))
    assert len(cached) == 1
    stamp = cached[0].stat().st_mtime_ns
    load_dataset(DataSpec(train_size=50), str(tiny_official))
    assert cached[0].stat().st_mtime_ns == stamp


def test_tar_gz_of_an_imagefolder(tiny_imagefolder: Path, tmp_path: Path) -> None:
    archive = tmp_path / "cifar.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tiny_imagefolder, arcname="cifar10")
    from_archive = load_dataset(DataSpec(), str(archive))
    direct = load_dataset(DataSpec(), str(tiny_imagefolder))
    assert torch.equal(from_archive.train_x, direct.train_x)


def test_subsets_are_seeded_and_shared(tiny_official: Path) -> None:
    a = load_dataset(DataSpec(train_size=30, val_size=10, subset_seed=7), str(tiny_official))
    b = load_dataset(DataSpec(train_size=30, val_size=10, subset_seed=7), str(tiny_official))
    c = load_dataset(DataSpec(train_size=30, val_size=10, subset_seed=8), str(tiny_official))
    assert a.train_x.shape[0] == 30 and a.test_x.shape[0] == 10
    assert torch.equal(a.train_x, b.train_x) and not torch.equal(a.train_x, c.train_x)


def test_env_var_points_at_the_data(tiny_official: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWEEPER_DATA", str(tiny_official))
    assert load_dataset(DataSpec(path="/nonexistent")).train_x.shape[0] == 200


def test_normalise_is_mean_half_std_half() -> None:
    x = torch.tensor([0, 127, 255], dtype=torch.uint8)
    torch.testing.assert_close(normalise(x), (x.float() / 255 - 0.5) / 0.5, atol=1e-6, rtol=0)


def test_missing_data_without_network_says_how_to_fix(tmp_path: Path) -> None:
    with pytest.raises(SweeperError) as caught:
        load_dataset(DataSpec(source="imagefolder"), str(tmp_path / "empty"))
    message = str(caught.value)
    assert "\n" not in message
    assert "expected train/<class>/ and test/<class>/" in message and "--data" in message


def test_corrupt_image_names_the_file(tiny_imagefolder: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(tiny_imagefolder, broken)
    victim = sorted((broken / "train" / "class3").iterdir())[0]
    victim.write_bytes(b"not a jpeg at all")
    with pytest.raises(SweeperError, match=f"cannot decode {victim}"):
        load_dataset(DataSpec(), str(broken))


def test_corrupt_batch_names_the_file(tiny_official: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(tiny_official, broken)
    (broken / "cifar-10-batches-py" / "data_batch_2").write_bytes(b"\x80garbage")
    with pytest.raises(SweeperError, match="data_batch_2 is not a CIFAR-10 python batch"):
        load_dataset(DataSpec(), str(broken))


def test_wrong_image_size(tmp_path: Path) -> None:
    root = write_imagefolder(tmp_path / "d", per_class_train=1, per_class_test=1, fmt="png")
    from torchvision.io import encode_png

    odd = next((root / "train" / "class0").iterdir())
    odd.write_bytes(encode_png(torch.zeros(3, 16, 16, dtype=torch.uint8)).numpy().tobytes())
    with pytest.raises(SweeperError, match="is 16x16 pixels; CIFAR-10 images are 32x32"):
        load_dataset(DataSpec(), str(root))


# Each process loads the archive once the test says "go" and prints what it did.
STAGE = """
import sys
from sweeper.spec import DataSpec
from sweeper.train.data import load_dataset
print("ready", flush=True)
sys.stdin.readline()
data = load_dataset(DataSpec(), sys.argv[1], say=print)
print("sum", int(data.train_x.sum()), len(data.train_y), flush=True)
"""
PROCESSES = 4  # tasks of one array that start together on one host


def test_an_archive_is_unpacked_and_decoded_once_by_workers_starting_together(
    tmp_path: Path,
) -> None:
    # Large enough that a decode outlasts the others' start (1,000 JPEGs: about a second).
    root = write_imagefolder(tmp_path / "tree", per_class_train=80, per_class_test=20)
    archive = tmp_path / "cifar.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(root, arcname="cifar10")
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", STAGE, str(archive)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(PROCESSES)
    ]
    for proc in procs:  # every one imported and waits: the start is simultaneous
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    said = [proc.communicate(timeout=600)[0] for proc in procs]
    assert all(proc.returncode == 0 for proc in procs), said
    lines = [line for text in said for line in text.splitlines()]
    assert sum(line.startswith("data: unpacking") for line in lines) == 1, said
    assert sum(line.startswith("data: decoding") for line in lines) == 1, said
    assert len({line for line in lines if line.startswith("sum ")}) == 1, said  # same data
    assert len(list((cache_dir() / "unpacked").iterdir())) == 1  # no staging left behind
    assert len(list(cache_dir().glob("cifar10-*.pt"))) == 1


@pytest.mark.parametrize("protocol", [0, 2, 4, 5, "numpy 1 names"])
def test_python_batches_of_every_pickle_protocol_load(
    protocol: int | str, tiny_official: Path, tmp_path: Path
) -> None:
    """The restricted unpickler reads what the format holds however it was pickled (the
    official files are Python 2 pickles that name numpy.core.multiarray, as numpy 1 did)."""
    import pickle

    images, labels = make_images(2, seed=3)
    batch = {
        b"data": images.reshape(len(images), -1).numpy(),
        b"labels": labels.tolist(),
        b"batch_label": b"tiny",
        b"filenames": [b"a.png"] * len(labels),
    }
    raw = pickle.dumps(batch, protocol=2 if isinstance(protocol, str) else protocol)
    if isinstance(protocol, str):
        assert b"numpy._core.multiarray\n" in raw
        raw = raw.replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n")
    root = tmp_path / "data"
    shutil.copytree(tiny_official, root)
    (root / "cifar-10-batches-py" / "test_batch").write_bytes(raw)
    data = load_dataset(DataSpec(), str(root))
    assert torch.equal(data.test_x, images) and torch.equal(data.test_y, labels)
