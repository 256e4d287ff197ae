"""The house rules that a reader checks by eye, checked by the suite.

- Optuna's internals are reached from one module only, ``sweeper/_optuna.py``: no other
  module imports an underscore module of Optuna or reads a private attribute of an Optuna
  object (``_storage``, ``_trial_id``, ``_study_id``, ``_backend``).
- A trial's life is written once: one worker module and one trainer module.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "sweeper"
DOOR = PACKAGE / "_optuna.py"
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
        if path != DOOR
        for reach in _optuna_reaches(path)
    ]
    assert not reaches, "reach Optuna's internals through sweeper/_optuna.py:\n" + "\n".join(
        reaches
    )
    assert _optuna_reaches(DOOR), "the door itself should hold the reaches this test looks for"


def test_a_trial_s_life_is_written_once() -> None:
    workers = sorted(p.name for p in PACKAGE.rglob("*worker*.py"))
    assert workers == ["worker.py"], workers
    assert (PACKAGE / "work" / "worker.py").exists()
    trainers = [p for p in (PACKAGE / "train").glob("*.py") if "class Trainer" in p.read_text()]
    assert [p.name for p in trainers] == ["trainer.py"]
    for gone in ("train/loop.py", "train/packed.py", "packed_worker.py", "worker.py"):
        assert not (PACKAGE / gone).exists(), gone
