"""CIFAR-10 as device-resident uint8 tensors: decoded once, cached, never touched by PIL again.

Contract:

- ``load_dataset(spec, override)`` finds the data (``override`` > ``$SWEEPER_DATA`` > the
  spec's ``[data] path`` > the per-user cache dir), decodes it once into uint8 tensors and
  caches them (``$SWEEPER_CACHE`` or the user cache dir) keyed by the source's path, kind and
  file listing, so later trials and workers load a single file.
- Accepted sources: the official python batches (``cifar-10-batches-py/``; downloaded there
  through torchvision when missing and the network allows), an ImageFolder tree
  (``train/<class>/*`` and ``test/<class>/*``, JPEG or PNG, 32x32), or a ``.tar.gz`` of such
  a tree (unpacked once into the cache).
- Once per cache, not once per process: unpacking an archive and decoding a data set each
  run under a file lock in the cache folder (``flock``: one host, or every host sharing the
  cache over NFS), so of the workers that start together on a fresh cache one does the
  work and the others wait for it, then read its result. ``say`` (when given) hears one
  line when this process unpacks, decodes, or waits for another process that does.
- Missing or corrupt data raise ``SweeperError`` with one line that says what was looked
  for and how to fix it.
- Subsets (``train_size``, ``val_size``) are drawn with ``subset_seed``, so every trial and
  every worker trains and validates on the same images.
- Input at fault is a ``UsageError`` (one line, raised as the data load, before any trial):
  a subset larger than its split (naming the key and how many images there are), and a data
  path that is a plain file but no archive, and a python batch that names any callable
  beyond the numpy array reconstructors the format holds (it is never run).
- ``normalise`` maps uint8 to the tutorial's mean 0.5 / std 0.5 per channel, on the device.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import pickle
import shutil
import tarfile
import tempfile
import warnings
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from sweeper.errors import SweeperError, UsageError
from sweeper.spec import DataSpec
from sweeper.train.model import IMAGE_SHAPE, N_CLASSES

ENV_VAR = "SWEEPER_DATA"
OFFICIAL_DIR = "cifar-10-batches-py"
OFFICIAL_TRAIN = [f"data_batch_{i}" for i in range(1, 6)]
OFFICIAL_TEST = "test_batch"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}
CACHE_VERSION = 1  # bump when the cached layout changes
HOW_TO_FIX = (
    "point --data (or SWEEPER_DATA, or [data] path) at a local CIFAR-10: the official "
    "python batches, an ImageFolder tree with train/ and test/ class folders, or a .tar.gz "
    "of one"
)


@dataclass(frozen=True)
class Dataset:
    """Images as uint8 (N, 3, 32, 32) and labels as int64 (N,), for both splits."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    classes: tuple[str, ...]
    origin: str  # where it came from, for provenance

    def to(self, device: torch.device | str) -> Dataset:
        """This data set with every tensor on ``device`` (the whole set lives there)."""
        return Dataset(
            self.train_x.to(device),
            self.train_y.to(device),
            self.test_x.to(device),
            self.test_y.to(device),
            self.classes,
            self.origin,
        )


def normalise(images: torch.Tensor) -> torch.Tensor:
    """uint8 images to floats with mean 0.5 / std 0.5 per channel: (x / 255 - 0.5) / 0.5."""
    return images.float().div_(127.5).sub_(1.0)


def cache_dir() -> Path:
    """Where decoded data sets and unpacked archives are kept."""
    configured = os.environ.get("SWEEPER_CACHE")
    if configured:
        return Path(configured)
    import platformdirs  # here, not at the top: a bare GPU image may lack it (make gpu-check)

    return Path(platformdirs.user_cache_dir("sweeper"))


def resolve_data_path(spec: DataSpec, override: str | None = None) -> Path:
    """The data location by precedence: flag > ``$SWEEPER_DATA`` > spec > cache dir."""
    chosen = override or os.environ.get(ENV_VAR) or spec.path
    return Path(chosen).expanduser() if chosen else cache_dir() / "cifar10"


def load_dataset(
    spec: DataSpec, override: str | None = None, say: Callable[[str], None] | None = None
) -> Dataset:
    """Find, decode (once) and subset CIFAR-10 as described in the module docstring."""
    path = resolve_data_path(spec, override)
    full = _load_full(path, spec.source, say or (lambda text: None))
    return _subset(full, spec)


@contextlib.contextmanager
def _once(name: str, doing: str, say: Callable[[str], None]) -> Iterator[None]:
    """Hold the cache's lock ``name``: one process at a time unpacks or decodes one thing."""
    folder = cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / f".{name}.lock").open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say(f"data: waiting for another process that is {doing}")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _load_full(path: Path, source: str, say: Callable[[str], None]) -> Dataset:
    if path.exists() and not path.is_dir() and not _is_archive(path):
        raise UsageError(f"{path} is a file, not a folder or a .tar.gz archive; {HOW_TO_FIX}")
    from_archive = path.is_file() and _is_archive(path)
    if from_archive:
        path = _unpack(path, say)
    kind, root = _detect(path, source)
    if kind == "download":
        root = _download(path)
        kind = "cifar10"
    # An unpacked archive is our own immutable copy, named after the archive's size and
    # mtime: its path alone keys the cache, sparing every worker a stat of 60,000 files.
    files = [] if from_archive else _source_files(kind, root)
    key = _fingerprint(kind, root, files)
    cached = cache_dir() / f"cifar10-{key}.pt"
    data = _read_cache_or_none(cached)
    if data is not None:
        return data
    with _once(f"decode-{key}", f"decoding {root} into the cache", say):
        data = _read_cache_or_none(cached)  # decoded by the process we waited for
        if data is None:
            say(f"data: decoding {root} into the cache (once: other workers wait and reuse it)")
            data = _decode_official(root) if kind == "cifar10" else _decode_imagefolder(root)
            _write_atomic(cached, data)
    return data


def _read_cache_or_none(cached: Path) -> Dataset | None:
    if not cached.exists():
        return None
    try:
        return _read_cache(cached)
    except Exception:  # a torn or foreign file: decode again and overwrite it
        cached.unlink(missing_ok=True)
        return None


def _is_archive(path: Path) -> bool:
    return path.name.endswith((".tar.gz", ".tgz", ".tar"))


def _detect(path: Path, source: str) -> tuple[str, Path]:
    """(kind, root) of the data under ``path``; kind "download" when nothing is there yet."""
    for root in (path / OFFICIAL_DIR, path):
        if (root / OFFICIAL_TEST).exists() and source in ("auto", "cifar10"):
            return "cifar10", root
    if (path / "train").is_dir() and (path / "test").is_dir() and source != "cifar10":
        return "imagefolder", path
    if source == "imagefolder":
        raise SweeperError(
            f"no ImageFolder data in {path}: expected train/<class>/ and test/<class>/ "
            f"folders of 32x32 images; {HOW_TO_FIX}"
        )
    return "download", path


def _download(path: Path) -> Path:
    from torchvision.datasets import CIFAR10

    try:
        path.mkdir(parents=True, exist_ok=True)
        CIFAR10(str(path), train=True, download=True)
    except Exception as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise SweeperError(
            f"CIFAR-10 not found in {path} (looked for {OFFICIAL_DIR}/ and train/ + test/ "
            f"class folders) and the download failed ({reason}); {HOW_TO_FIX}"
        ) from None
    return path / OFFICIAL_DIR


def _source_files(kind: str, root: Path) -> list[Path]:
    if kind == "cifar10":
        return [root / name for name in [*OFFICIAL_TRAIN, OFFICIAL_TEST]]
    return sorted(
        p for split in ("train", "test") for p in (root / split).rglob("*") if p.is_file()
    )


def _fingerprint(kind: str, root: Path, files: list[Path]) -> str:
    digest = hashlib.sha256(f"{CACHE_VERSION}|{kind}|{root.resolve()}".encode())
    for file in files:
        try:
            st = file.stat()
        except FileNotFoundError:
            raise SweeperError(
                f"CIFAR-10 in {root} is incomplete: {file.name} is missing; {HOW_TO_FIX}"
            ) from None
        digest.update(f"|{file.relative_to(root)}|{st.st_size}|{st.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def _unpack(archive: Path, say: Callable[[str], None]) -> Path:
    """Unpack ``archive`` once into the cache; return the folder that holds train/ and test/."""
    st = archive.stat()
    key = hashlib.sha256(f"{archive.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode())
    target = cache_dir() / "unpacked" / key.hexdigest()[:16]
    if not target.exists():
        with _once(f"unpack-{target.name}", f"unpacking {archive}", say):
            if not target.exists():  # else unpacked by the process we waited for
                say(f"data: unpacking {archive} (once: other workers wait and reuse it)")
                _unpack_into(archive, target)
    candidates = [target, *sorted(p for p in target.iterdir() if p.is_dir())]
    for candidate in candidates:
        if (candidate / "train").is_dir() or (candidate / OFFICIAL_TEST).exists():
            return candidate
    raise SweeperError(f"{archive} holds no train/ and test/ folders; {HOW_TO_FIX}")


def _unpack_into(archive: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    # A staging folder renamed at the end: an interrupted unpack never looks finished.
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=".unpacking-"))
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(staging, filter="data")
    except (tarfile.TarError, OSError, EOFError, zlib.error) as err:
        shutil.rmtree(staging, ignore_errors=True)
        # tarfile lists every compression it tried, one line each: keep the first.
        reason = str(err).strip().splitlines()[0].rstrip(":") if str(err).strip() else ""
        raise SweeperError(
            f"cannot unpack {archive} ({reason or type(err).__name__}): not a readable "
            f"tar archive; {HOW_TO_FIX}"
        ) from None
    staging.rename(target)


# The only callables a CIFAR-10 python batch names: numpy's array and dtype reconstructors
# (numpy 1 and 2 spell the module differently; protocol 5 pickles use ``_frombuffer``), and
# ``_codecs.encode``, which protocol 2 uses for bytes. Each builds data and runs nothing else.
_BATCH_GLOBALS = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("_codecs", "encode"),
}


class _BatchUnpickler(pickle.Unpickler):
    """Unpickles the dicts, bytes, str, lists, ints and numpy arrays of the official format
    and refuses any other global, so a crafted batch cannot run code."""

    def find_class(self, module: str, name: str) -> object:
        if (module, name) in _BATCH_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"it asks for {module}.{name}")


def _unpickle(file: Path) -> dict[bytes, Any]:
    """A CIFAR-10 python batch (or ``batches.meta``) through ``_BatchUnpickler``; anything
    else the file asks for is a ``UsageError`` (the data given are at fault)."""
    with file.open("rb") as handle:
        try:
            data = _BatchUnpickler(handle, encoding="bytes").load()
        except pickle.UnpicklingError as err:
            if str(err).startswith("it asks for "):
                raise UsageError(
                    f"refusing {file}: not a plain CIFAR-10 python batch ({err}, which the "
                    f"format never holds); {HOW_TO_FIX}"
                ) from None
            raise
    if not isinstance(data, dict):
        raise ValueError(f"it holds a {type(data).__name__}, not a dict")
    return data


def _read_batch(file: Path) -> tuple[torch.Tensor, torch.Tensor]:
    try:
        batch = _unpickle(file)
        raw = batch[b"data"]
        labels = batch[b"labels"]
        images = torch.as_tensor(raw, dtype=torch.uint8).reshape(-1, *IMAGE_SHAPE)
        targets = torch.as_tensor(labels, dtype=torch.int64)
    except UsageError:
        raise
    except Exception as err:
        raise SweeperError(
            f"{file} is not a CIFAR-10 python batch ({type(err).__name__}: {err}); "
            "delete it to download again, or " + HOW_TO_FIX
        ) from None
    if len(images) != len(targets):
        raise SweeperError(f"{file} has {len(images)} images but {len(targets)} labels")
    return images, targets


def _decode_official(root: Path) -> Dataset:
    parts = [_read_batch(root / name) for name in OFFICIAL_TRAIN]
    test_x, test_y = _read_batch(root / OFFICIAL_TEST)
    meta = root / "batches.meta"
    classes: tuple[str, ...] = tuple(str(i) for i in range(N_CLASSES))
    if meta.exists():
        try:
            names = _unpickle(meta).get(b"label_names", [])
            classes = tuple(n.decode() for n in names) or classes
        except UsageError:
            raise
        except Exception as err:
            raise SweeperError(
                f"{meta} is not CIFAR-10's batches.meta ({type(err).__name__}: {err}); "
                + HOW_TO_FIX
            ) from None
    return Dataset(
        torch.cat([p[0] for p in parts]),
        torch.cat([p[1] for p in parts]),
        test_x,
        test_y,
        classes,
        f"cifar10-batches:{root}",
    )


def _decode_split(folder: Path, classes: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    # torchvision 0.29 deprecates its decoders in favour of torchcodec, which this pinned
    # stack does not ship; they still decode correctly, so keep users' screens quiet.
    warnings.filterwarnings("ignore", message="The image decoding and encoding capabilities")
    from torchvision.io import ImageReadMode, decode_image, read_file

    images: list[torch.Tensor] = []
    labels: list[int] = []
    for label, name in enumerate(classes):
        class_dir = folder / name
        if not class_dir.is_dir():
            raise SweeperError(f"{folder} has no folder for class '{name}'; {HOW_TO_FIX}")
        for file in sorted(class_dir.iterdir()):
            if file.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            try:
                image = decode_image(read_file(str(file)), mode=ImageReadMode.RGB)
            except Exception as err:
                raise SweeperError(
                    f"cannot decode {file} ({err}); the data dir looks corrupt: {HOW_TO_FIX}"
                ) from None
            if tuple(image.shape) != IMAGE_SHAPE:
                raise SweeperError(
                    f"{file} is {image.shape[2]}x{image.shape[1]} pixels; CIFAR-10 images are 32x32"
                )
            images.append(image)
            labels.append(label)
    if not images:
        raise SweeperError(f"no images (.jpg, .jpeg, .png) under {folder}; {HOW_TO_FIX}")
    return torch.stack(images), torch.tensor(labels, dtype=torch.int64)


def _decode_imagefolder(root: Path) -> Dataset:
    classes = sorted(p.name for p in (root / "train").iterdir() if p.is_dir())
    if not classes:
        raise SweeperError(f"{root / 'train'} has no class folders; {HOW_TO_FIX}")
    train_x, train_y = _decode_split(root / "train", classes)
    test_x, test_y = _decode_split(root / "test", classes)
    return Dataset(train_x, train_y, test_x, test_y, tuple(classes), f"imagefolder:{root}")


def _read_cache(file: Path) -> Dataset:
    saved = torch.load(file, weights_only=True)
    return Dataset(
        saved["train_x"],
        saved["train_y"],
        saved["test_x"],
        saved["test_y"],
        tuple(saved["classes"]),
        saved["origin"],
    )


def _write_atomic(file: Path, data: Dataset) -> None:
    file.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=file.parent, prefix=".tmp-", suffix=".pt")
    os.close(handle)
    try:
        torch.save(
            {
                "train_x": data.train_x,
                "train_y": data.train_y,
                "test_x": data.test_x,
                "test_y": data.test_y,
                "classes": list(data.classes),
                "origin": data.origin,
            },
            tmp,
        )
        Path(tmp).replace(file)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _subset(data: Dataset, spec: DataSpec) -> Dataset:
    generator = torch.Generator().manual_seed(spec.subset_seed)

    def pick(
        x: torch.Tensor, y: torch.Tensor, size: int | None, key: str
    ) -> tuple[torch.Tensor, ...]:
        if size is not None and size > len(y):
            raise UsageError(
                f"[data] {key} is {size} but {data.origin} has only {len(y)} images in that "
                f"split; set {key} <= {len(y)}, or remove it to use them all"
            )
        if size is None or size == len(y):
            return x, y
        index = torch.randperm(len(y), generator=generator)[:size]
        return x[index], y[index]

    train_x, train_y = pick(data.train_x, data.train_y, spec.train_size, "train_size")
    test_x, test_y = pick(data.test_x, data.test_y, spec.val_size, "val_size")
    return Dataset(train_x, train_y, test_x, test_y, data.classes, data.origin)
