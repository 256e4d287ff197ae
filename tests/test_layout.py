"""The house rules that a reader checks by eye, checked by the suite.

- The floors: a module imports only from its own floor or below (``FLOORS``, lowest first,
  as docs/ARCHITECTURE.md draws them), and no chain of imports comes back to where it
  started. Every import counts, also one inside a function or under ``TYPE_CHECKING``.
- Optuna's internals are reached from one place only, the door ``sweeper/_optuna/``: no
  other module imports an underscore module of Optuna or reads a private attribute of an
  Optuna object (``_storage``, ``_trial_id``, ``_study_id``, ``_backend``).
- Every SQL statement against Optuna's tables is in the door too: no other module names one
  of Optuna's tables in SQL or uses Optuna's table models (``*Model``, ``rdb_models``).
- One room per view: each module under ``sweeper/views/`` stays under 600 lines.
- A trial's life is written once: one worker module and one trainer module.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "sweeper"
DOOR = PACKAGE / "_optuna"
# Lowest first. A name is a top-level module or package of sweeper ("sweeper" itself: the
# package's __init__, which holds only the version).
FLOORS: tuple[tuple[str, ...], ...] = (
    ("sweeper", "errors", "attrs"),
    ("_optuna",),
    ("optim",),
    ("spec", "embedded"),
    ("storage",),
    ("snapshot",),
    ("analysis",),
    ("train",),
    ("pruners",),
    ("study",),
    ("work",),
    ("flags",),
    ("views",),
    ("dashboard",),
    ("cluster",),
    ("cli",),
)
MAX_VIEW_LINES = 600
# Optuna's RDB schema (optuna/storages/_rdb/models.py), named after a SQL keyword.
OPTUNA_TABLES = re.compile(
    r"\b(?:from|join|into|update|table|exists)\s*\(?\s*"
    r"(?:studies|study_directions|study_user_attributes|study_system_attributes|trials"
    r"|trial_params|trial_values|trial_intermediate_values|trial_user_attributes"
    r"|trial_system_attributes|trial_heartbeats|version_info|alembic_version)\b",
    re.IGNORECASE,
)
OPTUNA_MODEL = re.compile(r"^(?:Study|Trial|Version)\w*Model$|^rdb_models$")


def _modules() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its ``__init__``)."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]) -> Iterator[tuple[int, str]]:
    """``(line, module)`` for every import of a sweeper module in ``path``."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            # ``from sweeper.views import landscape`` imports the submodule, not the package.
            targets = [
                f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names
            ]
        else:
            continue
        for target in targets:
            if target == "sweeper" or target.startswith("sweeper."):
                yield node.lineno, target


def _floor(module: str) -> int:
    top = module.split(".")[1] if "." in module else module
    for level, names in enumerate(FLOORS):
        if top in names:
            return level
    raise AssertionError(f"{module} is on no floor: add it to FLOORS (and to the picture)")


def _graph() -> dict[str, dict[str, int]]:
    modules = _modules()
    return {
        name: {target: line for line, target in _imports(name, path, modules)}
        for name, path in modules.items()
    }


def test_no_module_imports_from_a_higher_floor() -> None:
    upward = [
        f"{name}:{line} imports {target} (floor {_floor(target)} above {_floor(name)})"
        for name, targets in _graph().items()
        for target, line in targets.items()
        if _floor(target) > _floor(name)
    ]
    assert not upward, "imports that run up a floor:\n" + "\n".join(upward)


def test_no_import_circle() -> None:
    graph = _graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    circles: list[str] = []

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for target in graph.get(name, {}):
            if target == name or target not in graph:
                continue
            if state.get(target) == 1:
                circles.append(" -> ".join([*path[path.index(target) :], target]))
            elif state.get(target) is None:
                visit(target, [*path, target])
        state[name] = 2

    for name in graph:
        if name not in state:
            visit(name, [name])
    assert not circles, "import circles:\n" + "\n".join(circles)


def _names_optuna_tables(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            found += [
                f"{path.name}:{node.lineno} SQL on {m.group(0)!r}"
                for m in OPTUNA_TABLES.finditer(node.value)
            ]
        name = node.attr if isinstance(node, ast.Attribute) else getattr(node, "id", None)
        if isinstance(name, str) and OPTUNA_MODEL.match(name):
            found.append(f"{path.name}:{node.lineno} uses Optuna's table model {name}")
    return found


def test_only_the_door_names_optuna_s_tables() -> None:
    outside = [
        hit
        for path in sorted(PACKAGE.rglob("*.py"))
        if DOOR not in path.parents
        for hit in _names_optuna_tables(path)
    ]
    assert not outside, "state these through sweeper/_optuna/:\n" + "\n".join(outside)
    inside = [hit for path in sorted(DOOR.glob("*.py")) for hit in _names_optuna_tables(path)]
    assert len(inside) >= 10, inside  # the door's own statements are what this test looks for


def test_each_view_is_one_room_of_bounded_size() -> None:
    views = sorted((PACKAGE / "views").glob("*.py"))
    assert len(views) >= 10, [p.name for p in views]
    too_long = {
        p.name: n for p in views if (n := len(p.read_text().splitlines())) >= MAX_VIEW_LINES
    }
    assert not too_long, too_long
    for gone in ("dashboard/data.py", "dashboard/figures.py", "dashboard/views.py"):
        assert not (PACKAGE / gone).exists(), gone


OPTUNA_PRIVATE_ATTRS = {"_storage", "_trial_id", "_study_id", "_backend", "_cached_frozen_trial"}


def _optuna_reaches(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        for name in names:
            parts = name.split(".")
            if parts[0] == "optuna" and any(p.startswith("_") for p in parts[1:]):
                found.append(f"{path.name}:{node.lineno} imports {name}")
        if (
            isinstance(node, ast.Attribute)
            and node.attr in OPTUNA_PRIVATE_ATTRS
            and ast.unparse(node.value) != "self"  # a class's own attribute of that name
        ):
            found.append(f"{path.name}:{node.lineno} reads .{node.attr}")
        if isinstance(node, ast.Call) and ast.unparse(node.func) == "optuna.Study":
            found.append(f"{path.name}:{node.lineno} calls the optuna.Study constructor")
    return found


def test_optuna_internals_are_reached_only_through_the_door() -> None:
    reaches = [
        reach
        for path in sorted(PACKAGE.rglob("*.py"))
        if DOOR not in path.parents
        for reach in _optuna_reaches(path)
    ]
    assert not reaches, "reach Optuna's internals through sweeper/_optuna/:\n" + "\n".join(reaches)
    door = [reach for path in sorted(DOOR.glob("*.py")) for reach in _optuna_reaches(path)]
    assert door, "the door itself should hold the reaches this test looks for"


def test_a_trial_s_life_is_written_once() -> None:
    workers = sorted(p.name for p in PACKAGE.rglob("*worker*.py"))
    assert workers == ["worker.py"], workers
    assert (PACKAGE / "work" / "worker.py").exists()
    trainers = [p for p in (PACKAGE / "train").glob("*.py") if "class Trainer" in p.read_text()]
    assert [p.name for p in trainers] == ["trainer.py"]
    for gone in ("train/loop.py", "train/packed.py", "packed_worker.py", "worker.py"):
        assert not (PACKAGE / gone).exists(), gone
