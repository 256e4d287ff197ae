"""Studies: a spec becomes an Optuna study in PostgreSQL, and studies answer queries.

Contract:

- ``create_or_load(storage, spec)`` creates the study with the spec stored in its user
  attributes (``spec``), or loads the existing one after checking that the stored spec
  agrees with the given one on everything that shapes results (search space, sampler,
  pruner, training, subsets). Data paths, storage knobs and the pack size may differ per
  host.
- ``load_study(storage, name)`` rebuilds the sampler and pruner from the stored spec, so a
  worker anywhere needs only the URL and the name.
- ``Budget(study, storage, limit).claim()`` is the only way workers start trials: under a
  PostgreSQL advisory lock it counts the trials that use up the budget and asks for a new
  one only while fewer than ``limit`` exist; re-queued (WAITING) trials are always served.
  The budget is global to the study.
- Queries (``best_trial_row``, ``trial_rows``, ``study_rows``, ``describe_study``) return
  plain dicts or lines for the CLI.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import optuna
import sqlalchemy
from optuna.trial import FrozenTrial, TrialState

from sweeper.errors import SweeperError, UsageError
from sweeper.spec import StudySpec, grid_points, spec_from_dict, spec_to_dict
from sweeper.storage import redact
from sweeper.work import attrs

SPEC_ATTR = attrs.SPEC
FAIL_REASON_ATTR = attrs.FAIL_REASON
# Spec fields that may differ between the creator of a study and a later `sweeper run`: where
# the data is, storage knobs, and how a host executes steps (they change results at most by
# float rounding; workers use the stored values).
HOST_LOCAL_FIELDS = {
    ("data", "path"),
    ("storage",),
    ("training", "pack"),
    ("training", "channels_last"),
    ("training", "cuda_graphs"),
}


class GridSampler(optuna.samplers.GridSampler):
    """Optuna's grid sampler, minus its ``study.stop()`` when the grid is exhausted.

    That call only works inside ``Study.optimize``; our workers use ask/tell and stop when the
    study's budget (the grid's size, by default) is used up.
    """

    def after_trial(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        return None


def make_sampler(spec: StudySpec, seed_offset: int = 0) -> optuna.samplers.BaseSampler:
    """The spec's sampler; ``seed_offset`` keeps parallel workers from drawing alike."""
    s = spec.sampler
    seed = None if s.seed is None else s.seed + seed_offset
    params = dict(s.params)
    if s.kind == "tpe":
        return optuna.samplers.TPESampler(seed=seed, **params)
    if s.kind == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if s.kind == "qmc":
        # Every worker must walk the same low-discrepancy sequence: no per-worker offset.
        return optuna.samplers.QMCSampler(seed=s.seed, warn_independent_sampling=False, **params)
    if s.kind == "grid":
        return GridSampler(grid_points(spec), seed=seed)
    raise UsageError(f"unknown sampler kind {s.kind!r}")


def make_pruner(spec: StudySpec) -> optuna.pruners.BasePruner:
    """The spec's pruner, acting on per-epoch validation accuracy."""
    p = spec.pruner
    params = dict(p.params)
    if p.kind == "median":
        return optuna.pruners.MedianPruner(**params)
    if p.kind == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(**params)
    if p.kind == "hyperband":
        params.setdefault("max_resource", spec.training.epochs)
        return optuna.pruners.HyperbandPruner(**params)
    if p.kind == "none":
        return optuna.pruners.NopPruner()
    raise UsageError(f"unknown pruner kind {p.kind!r}")


def stored_spec(study: optuna.Study) -> StudySpec:
    """The spec kept in the study (``SweeperError`` if the study was not made by sweeper)."""
    data = study.user_attrs.get(SPEC_ATTR)
    if data is None:
        raise UsageError(
            f"study '{study.study_name}' was not created by sweeper (it has no stored spec); "
            "start it with 'sweeper run SPEC'"
        )
    return spec_from_dict(data, f"the spec stored in study '{study.study_name}'")


def _differences(a: Any, b: Any, path: tuple[str, ...] = ()) -> list[str]:
    if any(path[: len(local)] == local for local in HOST_LOCAL_FIELDS):
        return []
    if isinstance(a, dict) and isinstance(b, dict):
        keys = sorted(set(a) | set(b))
        return [d for k in keys for d in _differences(a.get(k), b.get(k), (*path, k))]
    return [] if a == b else [".".join(path)]


def create_or_load(storage: optuna.storages.BaseStorage, spec: StudySpec) -> optuna.Study:
    """Create the spec's study, or load it if it exists with a compatible spec."""
    study = optuna.create_study(
        storage=storage,
        study_name=spec.name,
        direction="maximize",  # the only metric, validation accuracy, is maximised
        sampler=make_sampler(spec),
        pruner=make_pruner(spec),
        load_if_exists=True,
    )
    existing = study.user_attrs.get(SPEC_ATTR)
    # Compare in stored (JSON) form: tuples come back as lists.
    wanted = json.loads(json.dumps(spec_to_dict(spec)))
    if existing is None:
        if study.trials:
            raise UsageError(
                f"study '{spec.name}' already exists and was not created by sweeper; "
                "choose another [study] name"
            )
        study.set_user_attr(SPEC_ATTR, wanted)
        study.set_user_attr(attrs.METRIC, spec.metric)
        return study
    # Through the spec type and back: keys added to specs since the study was made compare
    # as their defaults.
    existing = json.loads(json.dumps(spec_to_dict(spec_from_dict(existing, "the stored spec"))))
    differing = _differences(existing, wanted)
    if differing:
        raise UsageError(
            f"study '{spec.name}' already exists with a different spec "
            f"(differs in: {', '.join(differing)}); choose another [study] name"
        )
    return study


def load_study(
    storage: optuna.storages.BaseStorage, name: str, seed_offset: int = 0
) -> optuna.Study:
    """Load study ``name`` with the sampler and pruner of its stored spec, when it has one."""
    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        known = optuna.get_all_study_names(storage)
        hint = f" (studies here: {', '.join(known)})" if known else " (there are none yet)"
        url = getattr(storage, "url", None)
        where = f" in {redact(url)}" if url else ""
        raise UsageError(f"no study named '{name}'{where}{hint}") from None
    if SPEC_ATTR not in study.user_attrs:
        return study
    spec = stored_spec(study)
    return optuna.load_study(
        study_name=name,
        storage=storage,
        sampler=make_sampler(spec, seed_offset),
        pruner=make_pruner(spec),
    )


# -- the global budget -----------------------------------------------------------------------

# A trial uses up the budget when it ran or will run: finished, running, queued, or failed for
# good (the worker recorded a reason). A trial failed through no fault of its own (its worker
# died, was stopped, or lost the database) does not: it names the copy that runs in its place.
# Seed replicates (sweeper.work.confirm) have a budget of their own.
_BUDGET_SQL = sqlalchemy.text(
    """
    SELECT count(*) FROM trials t
    WHERE t.study_id = :study_id
      AND NOT EXISTS (SELECT 1 FROM trial_user_attributes r
                      WHERE r.trial_id = t.trial_id AND r.key = :replicate)
      AND (t.state IN ('COMPLETE', 'PRUNED', 'RUNNING', 'WAITING')
           OR (t.state = 'FAIL'
               AND EXISTS (SELECT 1 FROM trial_user_attributes a
                           WHERE a.trial_id = t.trial_id AND a.key = :reason)
               AND NOT EXISTS (SELECT 1 FROM trial_user_attributes a
                               WHERE a.trial_id = t.trial_id AND a.key = :requeued)))
    """
)


def _lock_key(study_name: str) -> int:
    digest = hashlib.sha256(f"sweeper:{study_name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@contextlib.contextmanager
def advisory_lock(engine: sqlalchemy.Engine, study_name: str) -> Iterator[sqlalchemy.Connection]:
    """Hold the study's PostgreSQL advisory lock for the block (one transaction): every
    worker's budget claim and replicate planning is serialised through it."""
    with engine.connect() as conn, conn.begin():
        conn.execute(
            sqlalchemy.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _lock_key(study_name)}
        )
        yield conn


class Budget:
    """A study's global trial budget; ``claim()`` starts trials within it."""

    def __init__(
        self, study: optuna.Study, storage: optuna.storages.RDBStorage, limit: int | None
    ) -> None:
        """``storage`` is the RDB storage ``study`` lives in; ``limit`` None: unlimited."""
        engine = getattr(storage, "engine", None)
        if engine is None:
            raise SweeperError("sweeper needs a PostgreSQL (RDB) storage for its trial budget")
        self.study = study
        self.limit = limit
        self.engine: sqlalchemy.Engine = engine
        self.study_id = storage.get_study_id_from_name(study.study_name)

    def used(self) -> int:
        """Trials that use up the budget now."""
        with self.engine.connect() as conn:
            return int(self._count(conn))

    def _count(self, conn: sqlalchemy.Connection) -> int:
        params = {
            "study_id": self.study_id,
            "reason": attrs.FAIL_REASON,
            "requeued": attrs.REQUEUED_AS,
            "replicate": attrs.REPLICATE_OF,
        }
        return int(conn.execute(_BUDGET_SQL, params).scalar_one())

    def claim(self) -> optuna.Trial | None:
        """Ask for the next trial unless the budget is used up (then None)."""
        if self.limit is None:
            return self.study.ask()
        # Serialises count-then-ask across every worker of this study; the lock ends with the
        # transaction, after ask() has committed the new trial.
        with advisory_lock(self.engine, self.study.study_name) as conn:
            if self._count(conn) >= self.limit:
                waiting = self.study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
                if not waiting:
                    return None
            return self.study.ask()


# -- queries ---------------------------------------------------------------------------------


def _duration(trial: FrozenTrial) -> float | None:
    if trial.datetime_start and trial.datetime_complete:
        return (trial.datetime_complete - trial.datetime_start).total_seconds()
    return None


def trial_row(trial: FrozenTrial) -> dict[str, Any]:
    """One trial as a flat dict: number, state, value, params, seed, epochs, duration."""
    return {
        "number": trial.number,
        "state": trial.state.name,
        "value": trial.value,
        "lr": trial.params.get("lr"),
        "weight_decay": trial.params.get("weight_decay"),
        "optimizer": trial.params.get("optimizer", trial.user_attrs.get(attrs.OPTIMIZER)),
        "seed": trial.user_attrs.get(attrs.SEED),
        "epochs_run": trial.user_attrs.get(attrs.EPOCHS_RUN, len(trial.intermediate_values)),
        "duration_s": _duration(trial),
        "worker": trial.user_attrs.get(attrs.WORKER),
        "fail_reason": trial.user_attrs.get(FAIL_REASON_ATTR),
    }


def best_trial_row(study: optuna.Study) -> dict[str, Any]:
    """The best completed trial, with its provenance; ``SweeperError`` if there is none."""
    try:
        best = study.best_trial  # one indexed query, fast at tens of thousands of trials
    except ValueError:
        counts = {s.name.lower(): 0 for s in TrialState}
        for t in study.get_trials(deepcopy=False):
            counts[t.state.name.lower()] += 1
        summary = ", ".join(f"{n} {state}" for state, n in counts.items() if n) or "no trials"
        raise SweeperError(
            f"study '{study.study_name}' has no completed trial yet ({summary})"
        ) from None
    row = trial_row(best)
    row["params"] = dict(best.params)
    row["provenance"] = {
        k: v
        for k, v in best.user_attrs.items()
        if k not in (attrs.SEED, attrs.EPOCHS_RUN, attrs.WORKER)
    }
    return row


def parse_states(names: Iterable[str]) -> tuple[TrialState, ...]:
    """Trial states from user words (``complete``, ``pruned``, ...)."""
    states = []
    for name in names:
        try:
            states.append(TrialState[name.strip().upper()])
        except KeyError:
            known = ", ".join(s.name.lower() for s in TrialState)
            raise UsageError(f"unknown trial state '{name}' (known: {known})") from None
    return tuple(states)


def trial_rows(
    study: optuna.Study, states: tuple[TrialState, ...] | None = None
) -> list[dict[str, Any]]:
    """Every trial (or those in ``states``) as flat dicts, by trial number."""
    return [trial_row(t) for t in study.get_trials(deepcopy=False, states=states)]


def study_rows(storage: optuna.storages.BaseStorage) -> list[dict[str, Any]]:
    """One row per study: name, trial count, best value, and when it started."""
    rows = []
    for summary in optuna.get_all_study_summaries(storage, include_best_trial=True):
        best = summary.best_trial
        rows.append(
            {
                "study": summary.study_name,
                "trials": summary.n_trials,
                "best_value": best.value if best else None,
                "best_trial": best.number if best else None,
                "started": summary.datetime_start.isoformat(timespec="seconds")
                if summary.datetime_start
                else None,
            }
        )
    return rows


def describe_study(study: optuna.Study) -> str:
    """One line: how many trials ended how, and the best one."""
    counts: dict[str, int] = {}
    for trial in study.get_trials(deepcopy=False):
        counts[trial.state.name.lower()] = counts.get(trial.state.name.lower(), 0) + 1
    parts = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
    line = f"study '{study.study_name}': {sum(counts.values())} trials ({parts or 'none'})"
    try:
        best = study.best_trial
    except ValueError:
        return line
    params = ", ".join(
        f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in best.params.items()
    )
    return line + f"; best trial {best.number}: val_acc {best.value:.2%} ({params})"
