"""Study specs: a TOML file in, a validated, immutable ``StudySpec`` out.

Contract: ``load_spec(path)`` either returns a spec in which every value has been checked
(types, ranges, known keys, known sampler/pruner kinds and their parameters) or raises
``UsageError`` with one line that names the file and the offending key. Nothing downstream
re-validates. Defaults live here, each with its reason.

A spec also travels inside the study (``spec_to_dict`` into the study's user attributes,
``spec_from_dict`` back out) so that ``sweeper worker --study NAME`` on any host needs only
the storage URL.
"""

from __future__ import annotations

import dataclasses
import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sweeper.errors import UsageError

OPTIMIZERS = ("adamw", "adam")
SCHEDULES = ("none", "cosine", "step")
PRECISIONS = ("fp32", "bf16")
DATA_SOURCES = ("auto", "cifar10", "imagefolder")
METRICS = ("val_accuracy",)
DEVICE_PATTERN = re.compile(r"auto|cpu|cuda(:[0-9]+)?")
# The largest integer any key takes: PostgreSQL's integer columns (trial numbers, counts)
# and torch's seed arithmetic stay exact below it. Larger values are typos.
MAX_INT = 2**31 - 1
# Trials one worker trains at once: each member of a pack holds ~9 MB of parameters,
# gradients and Adam state, so 1,024 already need ~9 GB; more is a typo, not a plan.
MAX_PACK = 1024
# A study name also names its checkpoint folder (one path component: 255 bytes on common
# file systems) and appears in every message; 128 characters leave room for both.
MAX_NAME_LENGTH = 128
# A spec is a few hundred bytes; a grid of 10,000 points is ~100 kB. A larger file is the
# wrong file (or an attack): refused before it is parsed, never echoed.
MAX_SPEC_BYTES = 2**20
# The longest string a spec holds is a data path: Linux's PATH_MAX.
MAX_STRING = 4096
# The deepest a valid spec nests is 4 ([sampler.points] lr = [...] inside the document);
# deeper is refused before any recursive code (validation, JSON, Optuna) walks it.
MAX_DEPTH = 8
# Parameters each sampler and pruner accepts, with their types; a spec naming any other is
# rejected up front rather than failing inside Optuna half-way through a sweep.
SAMPLER_PARAMS: dict[str, dict[str, type]] = {
    "tpe": {"seed": int, "n_startup_trials": int, "multivariate": bool, "constant_liar": bool},
    "random": {"seed": int},
    "qmc": {"seed": int, "qmc_type": str, "scramble": bool},
    "grid": {"seed": int, "points": dict},
}
PRUNER_PARAMS: dict[str, dict[str, type]] = {
    "median": {"n_startup_trials": int, "n_warmup_steps": int, "interval_steps": int},
    "successive_halving": {
        "min_resource": int,
        "reduction_factor": int,
        "min_early_stopping_rate": int,
    },
    "hyperband": {"min_resource": int, "max_resource": int, "reduction_factor": int},
    # sweeper.pruners: the learning-curve pruner and the one-epoch top-k baseline.
    "curve": {"threshold": float, "min_epochs": int, "within_noise": bool},
    "top_k": {"k": int},
    "none": {},
}


@dataclass(frozen=True)
class FloatRange:
    """A search range for one float hyperparameter."""

    low: float
    high: float
    log: bool = True


@dataclass(frozen=True)
class SpaceSpec:
    """What each trial samples."""

    # The tutorial's range for Adam-family learning rates on this CNN.
    lr: FloatRange = FloatRange(1e-4, 1e-3)
    # Two decades around AdamW's default 1e-2.
    weight_decay: FloatRange = FloatRange(1e-4, 1e-2)
    # Decoupled weight decay by default; add "adam" to test the AdamW paper's claim.
    optimizer: tuple[str, ...] = ("adamw",)


@dataclass(frozen=True)
class SamplerSpec:
    kind: str = "tpe"
    seed: int | None = 0  # reproducible by default
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PrunerSpec:
    # The learning-curve pruner: README's replay table (bench/pruning_replay.py) found it
    # cheaper than the median pruner with no worse an answer.
    kind: str = "curve"
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TrainingSpec:
    epochs: int = 10  # the tutorial trains for 10 epochs
    batch_size: int = 32  # the tutorial's batch size
    schedule: str = "none"
    step_size: int = 5  # StepLR: epochs between decays
    gamma: float = 0.1  # StepLR: decay factor
    seed: int = 0  # trial seed = seed + trial number (kept across retries)
    device: str = "auto"  # cuda when available, else cpu
    eval_batch_size: int = 1000  # evaluation is memory-bound, not accuracy-relevant
    # Trials a worker trains at once as one stacked model: one SimpleCNN cannot keep a GPU
    # busy. 1 keeps the single-trial worker. Per worker, so it may differ between hosts.
    pack: int = 1
    # How steps execute (sweeper.train.execution). bf16 changes results, so it is the
    # study's; the two layout/launch options only change speed. All off until measured to
    # help on the device at hand (bench/trial_throughput.py --execution ...).
    precision: str = "fp32"  # or "bf16": forward and loss under bf16 autocast
    channels_last: bool = False  # NHWC inputs for the convolutions
    # Each training step one CUDA graph replay (CUDA only; ignored elsewhere). On by default:
    # on an NVIDIA H200 one trial's epoch ran 6.1x faster with it (1.04 -> 0.17 s for 20,000
    # images, bench/trial_throughput.py, 2026-12-01); a capture that fails falls back to eager.
    cuda_graphs: bool = True


@dataclass(frozen=True)
class DataSpec:
    source: str = "auto"  # detect official batches or an ImageFolder tree under path
    path: str = ""  # empty: the per-user cache dir (torchvision downloads there)
    train_size: int | None = None  # None: all 50,000 training images
    val_size: int | None = None  # None: all 10,000 test images
    subset_seed: int = 0  # the same subset for every trial and every worker


@dataclass(frozen=True)
class StorageSpec:
    heartbeat_interval: int = 30
    grace_period: int = 120
    max_retry: int = 3


@dataclass(frozen=True)
class ConfirmSpec:
    """Seed replicates of the best configurations, run after the search budget."""

    top_k: int = 0  # configurations to replicate; 0: none (a study opts in: they cost trials)
    seeds: int = 3  # new seeds per configuration: 3 give a mean and a usable interval


@dataclass(frozen=True)
class StudySpec:
    name: str
    metric: str = "val_accuracy"
    direction: str = "maximize"
    n_trials: int | None = None  # global budget over all workers; None runs until stopped
    space: SpaceSpec = SpaceSpec()
    sampler: SamplerSpec = SamplerSpec()
    pruner: PrunerSpec = PrunerSpec()
    training: TrainingSpec = TrainingSpec()
    data: DataSpec = DataSpec()
    storage: StorageSpec = StorageSpec()
    confirm: ConfirmSpec = ConfirmSpec()

    @property
    def budget(self) -> int | None:
        """Trials to run in all: ``n_trials``, or a grid's size when a grid sets none."""
        if self.n_trials is not None:
            return self.n_trials
        if self.sampler.kind == "grid":
            return grid_size(self)
        return None


def grid_size(spec: StudySpec) -> int:
    """Number of points in a grid sampler's search space."""
    points = grid_points(spec)
    return math.prod(len(values) for values in points.values())


def grid_points(spec: StudySpec) -> dict[str, list[Any]]:
    """The grid's points per parameter; a single optimizer is not a grid axis."""
    points = dict(spec.sampler.params.get("points", {}))
    if len(spec.space.optimizer) > 1:
        points.setdefault("optimizer", list(spec.space.optimizer))
    return points


def study_name_problem(name: str) -> str | None:
    """Why ``name`` cannot name a study, or None when it can.

    A study name is 1 to ``MAX_NAME_LENGTH`` printable characters with no leading or
    trailing space: no newline, tab, NUL or other control character, so that every message
    that quotes it stays one line and PostgreSQL can store it.
    """
    if not name or not name.strip():
        return "must not be empty"
    if len(name) > MAX_NAME_LENGTH:
        return f"must be at most {MAX_NAME_LENGTH} characters (got {len(name)})"
    if not name.isprintable():
        bad = next(c for c in name if not c.isprintable())
        return f"must hold printable characters only (got {bad!r} in {name!r})"
    if name != name.strip():
        return f"must not start or end with a space (got {name!r})"
    return None


def check_study_name(name: str, where: str) -> str:
    """``name`` if it may name a study, else ``UsageError`` naming ``where`` it came from."""
    problem = study_name_problem(name)
    if problem:
        raise UsageError(f"{where} {problem}")
    return name


# -- validation ------------------------------------------------------------------------------


class _Checker:
    """Reads one TOML table, naming the file and key in every error."""

    def __init__(self, source: str, table: Mapping[str, Any], where: str) -> None:
        self.source = source
        self.table = table
        self.where = where

    def fail(self, key: str, message: str) -> UsageError:
        location = f"[{self.where}] {key}" if self.where else key
        return UsageError(f"{self.source}: {location} {message}")

    def no_unknown(self, known: set[str]) -> None:
        for key in self.table:
            if key not in known:
                listed = ", ".join(sorted(known))
                raise self.fail(key, f"is not a known key (known: {listed})")

    def get(self, key: str, kind: type, default: Any) -> Any:
        if key not in self.table:
            return default
        value = self.table[key]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            try:
                value = float(value)
            except OverflowError:  # an integer beyond any float: caught as non-finite below
                value = math.inf
        ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
        if not ok:
            raise self.fail(key, f"must be {_type_name(kind)} (got {value!r})")
        if kind is float and not math.isfinite(value):
            raise self.fail(key, f"must be a finite number (got {self.table[key]!r})")
        if kind is int and abs(value) > MAX_INT:
            raise self.fail(key, f"must be at most {MAX_INT} in size (got {value!r})")
        if kind is str and "\x00" in value:
            raise self.fail(key, f"must not contain NUL characters (got {value!r})")
        return value

    def at_least(self, key: str, value: float | None, low: float) -> None:
        if value is not None and value < low:
            raise self.fail(key, f"must be >= {low:g} (got {value!r})")

    def at_most(self, key: str, value: float | None, high: float) -> None:
        if value is not None and value > high:
            raise self.fail(key, f"must be <= {high:g} (got {value!r})")

    def one_of(self, key: str, value: str, choices: tuple[str, ...]) -> None:
        if value not in choices:
            raise self.fail(key, f"must be one of {', '.join(choices)} (got {value!r})")

    def sub(self, key: str) -> _Checker:
        value = self.table.get(key, {})
        if not isinstance(value, dict):
            raise self.fail(key, f"must be a table (got {value!r})")
        where = f"{self.where}.{key}" if self.where else key
        return _Checker(self.source, value, where)


def _type_name(kind: type) -> str:
    return {
        int: "an integer",
        float: "a number",
        bool: "true or false",
        str: "a string",
        dict: "a table",
        list: "a list",
    }[kind]


def _range(parent: _Checker, key: str, default: FloatRange, positive: bool) -> FloatRange:
    """A float range; ``positive``: the value must be > 0 even on a linear scale (lr)."""
    table = parent.sub(key)
    table.no_unknown({"low", "high", "log"})
    low = table.get("low", float, default.low)
    high = table.get("high", float, default.high)
    log = table.get("log", bool, default.log)
    if log and low <= 0:
        raise table.fail("low", f"must be > 0 on a log scale (got {low!r})")
    if positive and low <= 0:
        raise table.fail("low", f"must be > 0 (got {low!r})")
    if low < 0:
        raise table.fail("low", f"must be >= 0 (got {low!r})")
    if low > high:
        raise table.fail("low", f"({low!r}) must be <= high ({high!r})")
    return FloatRange(low, high, log)


def _space(root: _Checker) -> SpaceSpec:
    table = root.sub("space")
    table.no_unknown({"lr", "weight_decay", "optimizer"})
    default = SpaceSpec()
    optimizer = table.get("optimizer", list, list(default.optimizer))
    if not optimizer:
        raise table.fail("optimizer", "must name at least one optimizer")
    for name in optimizer:
        if not isinstance(name, str):
            raise table.fail("optimizer", f"must list strings (got {name!r})")
        table.one_of("optimizer", name, OPTIMIZERS)
    return SpaceSpec(
        lr=_range(table, "lr", default.lr, positive=True),
        weight_decay=_range(table, "weight_decay", default.weight_decay, positive=False),
        optimizer=tuple(dict.fromkeys(optimizer)),
    )


def _params(table: _Checker, allowed: dict[str, type], skip: set[str]) -> dict[str, Any]:
    table.no_unknown(set(allowed) | skip)
    return {
        key: table.get(key, kind, None)
        for key, kind in allowed.items()
        if key in table.table and key not in skip
    }


def _sampler(root: _Checker, space: SpaceSpec) -> SamplerSpec:
    table = root.sub("sampler")
    kind = table.get("kind", str, "tpe")
    table.one_of("kind", kind, tuple(SAMPLER_PARAMS))
    params = _params(table, SAMPLER_PARAMS[kind], {"kind"})
    seed = params.pop("seed", 0)
    table.at_least("seed", seed, 0)  # numpy's RandomState (grid, QMC) takes no negative seed
    for key in ("n_startup_trials",):
        table.at_least(key, params.get(key), 0)
    if kind == "qmc" and "qmc_type" in params:
        table.one_of("qmc_type", params["qmc_type"], ("sobol", "halton"))
    if kind == "grid":
        params["points"] = _grid(table, space)
    return SamplerSpec(kind=kind, seed=seed, params=params)


def _grid(sampler: _Checker, space: SpaceSpec) -> dict[str, list[Any]]:
    if "points" not in sampler.table:
        raise sampler.fail("points", "is required by the grid sampler (lr = [...], ...)")
    table = sampler.sub("points")
    table.no_unknown({"lr", "weight_decay", "optimizer"})
    points: dict[str, list[Any]] = {}
    for key, bounds in (("lr", space.lr), ("weight_decay", space.weight_decay)):
        values = table.get(key, list, None)
        if not values:
            raise table.fail(key, "must list at least one value")
        for value in values:
            ok = isinstance(value, int | float) and not isinstance(value, bool)
            if not ok or not bounds.low <= value <= bounds.high:
                raise table.fail(
                    key, f"has {value!r}, outside [space.{key}] [{bounds.low:g}, {bounds.high:g}]"
                )
        points[key] = [float(v) for v in values]
    if "optimizer" in table.table:
        names = table.get("optimizer", list, None)
        for name in names:
            if name not in space.optimizer:
                raise table.fail("optimizer", f"has {name!r}, not in [space] optimizer")
        points["optimizer"] = names
    return points


def _pruner(root: _Checker) -> PrunerSpec:
    table = root.sub("pruner")
    kind = table.get("kind", str, PrunerSpec.kind)
    table.one_of("kind", kind, tuple(PRUNER_PARAMS))
    params = _params(table, PRUNER_PARAMS[kind], {"kind"})
    for key, value in params.items():
        table.at_least(key, value, PRUNER_MINIMUM.get(key, 0))
    threshold = params.get("threshold")
    if threshold is not None and not 0.0 < threshold < 1.0:
        raise table.fail("threshold", f"must lie strictly between 0 and 1 (got {threshold!r})")
    return PrunerSpec(kind=kind, params=params)


# Smallest value each pruner parameter takes (Optuna raises on less, or never prunes).
PRUNER_MINIMUM = {
    "interval_steps": 1, "min_resource": 1, "max_resource": 1, "reduction_factor": 2,
    "min_epochs": 1, "k": 1,
}  # fmt: skip


def _check_resources(root: _Checker, pruner: PrunerSpec, epochs: int) -> None:
    """Hyperband's ``min_resource`` must not exceed its ``max_resource`` (default: epochs)."""
    low = pruner.params.get("min_resource")
    high = pruner.params.get("max_resource", epochs)
    if pruner.kind == "hyperband" and low is not None and low > high:
        raise root.sub("pruner").fail(
            "min_resource", f"({low}) must be <= max_resource ({high}; default: epochs)"
        )


def _training(root: _Checker) -> TrainingSpec:
    table = root.sub("training")
    d = TrainingSpec()
    table.no_unknown({f.name for f in dataclasses.fields(TrainingSpec)})
    spec = TrainingSpec(
        epochs=table.get("epochs", int, d.epochs),
        batch_size=table.get("batch_size", int, d.batch_size),
        schedule=table.get("schedule", str, d.schedule),
        step_size=table.get("step_size", int, d.step_size),
        gamma=table.get("gamma", float, d.gamma),
        seed=table.get("seed", int, d.seed),
        device=table.get("device", str, d.device),
        eval_batch_size=table.get("eval_batch_size", int, d.eval_batch_size),
        pack=table.get("pack", int, d.pack),
        precision=table.get("precision", str, d.precision),
        channels_last=table.get("channels_last", bool, d.channels_last),
        cuda_graphs=table.get("cuda_graphs", bool, d.cuda_graphs),
    )
    table.at_least("epochs", spec.epochs, 1)
    table.at_least("batch_size", spec.batch_size, 1)
    table.at_least("step_size", spec.step_size, 1)
    table.at_least("eval_batch_size", spec.eval_batch_size, 1)
    table.at_least("pack", spec.pack, 1)
    table.at_most("pack", spec.pack, MAX_PACK)
    table.one_of("schedule", spec.schedule, SCHEDULES)
    table.one_of("precision", spec.precision, PRECISIONS)
    if not 0 < spec.gamma <= 1:
        raise table.fail("gamma", f"must be in (0, 1] (got {spec.gamma!r})")
    if not DEVICE_PATTERN.fullmatch(spec.device):
        raise table.fail("device", f"must be auto, cpu, cuda or cuda:N (got {spec.device!r})")
    return spec


def _data(root: _Checker) -> DataSpec:
    table = root.sub("data")
    d = DataSpec()
    table.no_unknown({f.name for f in dataclasses.fields(DataSpec)})
    spec = DataSpec(
        source=table.get("source", str, d.source),
        path=table.get("path", str, d.path),
        train_size=table.get("train_size", int, d.train_size),
        val_size=table.get("val_size", int, d.val_size),
        subset_seed=table.get("subset_seed", int, d.subset_seed),
    )
    table.one_of("source", spec.source, DATA_SOURCES)
    table.at_least("train_size", spec.train_size, 1)
    table.at_least("val_size", spec.val_size, 1)
    return spec


def _storage(root: _Checker) -> StorageSpec:
    table = root.sub("storage")
    d = StorageSpec()
    table.no_unknown({f.name for f in dataclasses.fields(StorageSpec)})
    spec = StorageSpec(
        heartbeat_interval=table.get("heartbeat_interval", int, d.heartbeat_interval),
        grace_period=table.get("grace_period", int, d.grace_period),
        max_retry=table.get("max_retry", int, d.max_retry),
    )
    table.at_least("heartbeat_interval", spec.heartbeat_interval, 1)
    table.at_least("max_retry", spec.max_retry, 0)
    if spec.grace_period <= spec.heartbeat_interval:
        raise table.fail(
            "grace_period",
            f"({spec.grace_period}) must exceed heartbeat_interval ({spec.heartbeat_interval})",
        )
    return spec


def _confirm(root: _Checker) -> ConfirmSpec:
    table = root.sub("confirm")
    d = ConfirmSpec()
    table.no_unknown({f.name for f in dataclasses.fields(ConfirmSpec)})
    spec = ConfirmSpec(
        top_k=table.get("top_k", int, d.top_k), seeds=table.get("seeds", int, d.seeds)
    )
    table.at_least("top_k", spec.top_k, 0)
    table.at_least("seeds", spec.seeds, 1)
    return spec


def _study(root: _Checker) -> dict[str, Any]:
    table = root.sub("study")
    table.no_unknown({"name", "metric", "direction", "n_trials"})
    name = table.get("name", str, None)
    if not name or not name.strip():
        raise table.fail("name", "is required (a study name such as 'cifar10-adamw')")
    problem = study_name_problem(name.strip())
    if problem:
        raise table.fail("name", problem)
    metric = table.get("metric", str, "val_accuracy")
    table.one_of("metric", metric, METRICS)
    direction = table.get("direction", str, "maximize")
    table.one_of("direction", direction, ("maximize",))
    n_trials = table.get("n_trials", int, None)
    table.at_least("n_trials", n_trials, 1)
    return {"name": name.strip(), "metric": metric, "direction": direction, "n_trials": n_trials}


TABLES = ("study", "space", "sampler", "pruner", "training", "data", "storage", "confirm")


def _check_shape(document: Mapping[str, Any], source: str) -> None:
    """``UsageError`` for a document nested deeper than ``MAX_DEPTH`` or holding a string
    (key or value) longer than ``MAX_STRING``; walked without recursion, nothing echoed."""
    stack: list[tuple[Any, int, str]] = [(document, 1, "")]
    while stack:
        value, depth, where = stack.pop()
        if isinstance(value, Mapping):
            children = list(value.items())
        elif isinstance(value, list):
            children = [(f"{where}[{i}]", v) for i, v in enumerate(value)]
        else:
            if isinstance(value, str) and len(value) > MAX_STRING:
                raise UsageError(
                    f"{source}: {where} is a string of {len(value)} characters "
                    f"(at most {MAX_STRING})"
                )
            continue
        if depth > MAX_DEPTH:
            raise UsageError(f"{source}: {where} is nested deeper than {MAX_DEPTH} levels")
        for key, child in children:
            if isinstance(value, Mapping):
                if isinstance(key, str) and len(key) > MAX_STRING:
                    raise UsageError(
                        f"{source}: a key of {len(key)} characters (at most {MAX_STRING})"
                    )
                key = f"{where}.{key}" if where else str(key)
            stack.append((child, depth + 1, key))


def parse_spec(document: Mapping[str, Any], source: str) -> StudySpec:
    """Validate a parsed TOML document; ``source`` names it in errors."""
    _check_shape(document, source)
    root = _Checker(source, document, "")
    for key, value in document.items():
        if key not in TABLES:
            raise root.fail(key, f"is not a known table (known: {', '.join(TABLES)})")
        if not isinstance(value, dict):
            raise root.fail(key, f"must be a table [{key}]")
    study = _study(root)
    space = _space(root)
    pruner = _pruner(root)
    training = _training(root)
    _check_resources(root, pruner, training.epochs)
    return StudySpec(
        **study,
        space=space,
        sampler=_sampler(root, space),
        pruner=pruner,
        training=training,
        data=_data(root),
        storage=_storage(root),
        confirm=_confirm(root),
    )


def load_spec(path: str | Path) -> StudySpec:
    """Read and validate a study spec file."""
    file = Path(path)
    if file.is_dir():
        raise UsageError(f"{file}: is a directory, not a spec file")
    if file.exists() and not file.is_file():
        raise UsageError(f"{file}: not a regular file (a spec is a TOML file)")
    try:
        size = file.stat().st_size
        if size > MAX_SPEC_BYTES:
            raise UsageError(
                f"{file}: {size / 2**20:.1f} MiB is no study spec (at most "
                f"{MAX_SPEC_BYTES // 2**20} MiB)"
            )
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"{file}: no such spec file") from None
    except UnicodeDecodeError as err:
        raise UsageError(
            f"{file}: not a TOML text file (byte 0x{err.object[err.start]:02x} at offset "
            f"{err.start} is not UTF-8)"
        ) from None
    except OSError as err:
        raise UsageError(f"{file}: cannot read spec ({err.strerror or err})") from None
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise UsageError(f"{file}: not valid TOML ({err})") from None
    except RecursionError:  # tomllib parses nested arrays and tables recursively
        raise UsageError(f"{file}: nested deeper than {MAX_DEPTH} levels") from None
    return parse_spec(document, str(file))


def spec_to_dict(spec: StudySpec) -> dict[str, Any]:
    """A JSON-able form of ``spec`` (kept in the study's user attributes)."""
    return dataclasses.asdict(spec)


def spec_from_dict(data: Mapping[str, Any], source: str = "stored spec") -> StudySpec:
    """Rebuild a spec from ``spec_to_dict``'s output, validating it again."""
    try:
        document = _document_from_dict(data)
    except (KeyError, TypeError, AttributeError) as err:
        raise UsageError(f"{source} is malformed ({type(err).__name__}: {err})") from None
    return parse_spec(document, source)


def _document_from_dict(data: Mapping[str, Any]) -> dict[str, Any]:
    document: dict[str, Any] = {
        "study": {k: data[k] for k in ("name", "metric", "direction") if data.get(k) is not None},
        "space": {
            "lr": dict(data["space"]["lr"]),
            "weight_decay": dict(data["space"]["weight_decay"]),
            "optimizer": list(data["space"]["optimizer"]),
        },
        "sampler": {
            "kind": data["sampler"]["kind"],
            **({"seed": data["sampler"]["seed"]} if data["sampler"]["seed"] is not None else {}),
            **data["sampler"]["params"],
        },
        "pruner": {"kind": data["pruner"]["kind"], **data["pruner"]["params"]},
        "training": dict(data["training"]),
        "data": {k: v for k, v in data["data"].items() if v is not None},
        "storage": dict(data["storage"]),
        # Studies made before [confirm] existed store none: the default.
        "confirm": dict(data.get("confirm") or {}),
    }
    if data.get("n_trials") is not None:
        document["study"]["n_trials"] = data["n_trials"]
    return document
