"""Studies: a spec becomes an Optuna study in PostgreSQL, and studies answer queries.

Contract:

- ``create_or_load(storage, spec)`` creates the study with the spec stored in its user
  attributes (``spec``), or loads the existing one after checking that the stored spec
  agrees with the given one on everything that shapes results (search space, sampler,
  pruner, training, subsets). Data paths, storage knobs and the pack size may differ per
  host.
- ``load_study(storage, name)`` rebuilds the sampler and pruner from the stored spec, so a
  worker anywhere needs only the URL and the name.
- Sampling is a function of (the spec's sampler seed, the trial number, the study's history):
  a study replays for one worker, and any number of processes, however started, draw from
  different random streams because they never share a trial number (``TrialSeededSampler``).
  TPE runs with its constant liar, so concurrent trials also keep apart in what they model.
  The grid keeps Optuna's own behaviour: grid point = trial number, one shuffle per study.
- ``Budget(study, storage, limit).claim(k)`` is the only way workers start trials: in one
  transaction, serialised with every creator of trials in the study, it counts the trials
  that use up the budget, starts queued (WAITING) trials (always served), and creates new
  ones only while fewer than ``limit`` exist. The budget is global to the study.
- Queries (``best_trial_row``, ``trial_rows``, ``study_rows``, ``describe_study``) return
  plain dicts or lines for the CLI.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import optuna
import sqlalchemy
from optuna.trial import FrozenTrial, TrialState

from sweeper import _optuna, attrs
from sweeper.errors import SweeperError, UsageError, one_line
from sweeper.pruners import CurvePruner, FirstEpochTopK
from sweeper.spec import StudySpec, grid_points, spec_from_dict, spec_to_dict
from sweeper.storage import exclusive, redact

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


def trial_seed(seed: int, number: int) -> int:
    """The sampler seed of trial ``number``: one stream per trial, fixed by the spec's seed.

    Distinct trial numbers give distinct seeds (the number is added to a hash of ``seed``,
    modulo 2**32, numpy's seed range), so concurrent workers never draw alike.
    """
    base = int.from_bytes(hashlib.sha256(f"sweeper-sampler:{seed}".encode()).digest()[:4], "big")
    return (base + number) % 2**32


class TrialSeededSampler(optuna.samplers.BaseSampler):
    """Each trial sampled by its own sampler, seeded with ``trial_seed(seed, trial.number)``.

    Optuna's samplers keep one random stream per process, so two processes built with one
    seed propose the same points in lockstep. Here the stream belongs to the trial, and trial
    numbers are unique in a study. ``make(seed)`` builds the sampler for one trial (with the
    public constructor: no private state is reseeded); a seed of None seeds it from entropy.
    The per-trial samplers live from ``before_trial`` to ``after_trial`` (the most recent
    ``KEEP`` are kept for trials that never report back, such as those of a killed worker).
    """

    KEEP = 1024  # far above any number of trials one process has open at once (a pack)

    def __init__(self, make: Callable[[int | None], optuna.samplers.BaseSampler], seed: int | None):
        self._make = make
        self._seed = seed
        self._open: OrderedDict[int, optuna.samplers.BaseSampler] = OrderedDict()

    def _for(self, trial: FrozenTrial) -> optuna.samplers.BaseSampler:
        sampler = self._open.get(trial.number)
        if sampler is None:
            seed = None if self._seed is None else trial_seed(self._seed, trial.number)
            sampler = self._open[trial.number] = self._make(seed)
            while len(self._open) > self.KEEP:
                self._open.popitem(last=False)
        return sampler

    def infer_relative_search_space(
        self, study: optuna.Study, trial: FrozenTrial
    ) -> dict[str, optuna.distributions.BaseDistribution]:
        return self._for(trial).infer_relative_search_space(study, trial)

    def sample_relative(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        search_space: dict[str, optuna.distributions.BaseDistribution],
    ) -> dict[str, Any]:
        return self._for(trial).sample_relative(study, trial, search_space)

    def sample_independent(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: optuna.distributions.BaseDistribution,
    ) -> Any:
        return self._for(trial).sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self._for(trial).before_trial(study, trial)

    def after_trial(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        sampler = self._open.pop(trial.number, None) or self._make(None)
        sampler.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        return None  # the streams are the trials': nothing is shared to reseed


def make_sampler(spec: StudySpec) -> optuna.samplers.BaseSampler:
    """The spec's sampler, the same in every process (see the module docstring)."""
    s = spec.sampler
    params = dict(s.params)
    if s.kind == "tpe":
        # Concurrent trials count as already observed at the worst value while they run,
        # so a second worker does not propose the first one's point (Optuna 5's default;
        # named here so that an older default cannot turn it off).
        params.setdefault("constant_liar", True)
        return TrialSeededSampler(
            lambda seed: optuna.samplers.TPESampler(seed=seed, **params), s.seed
        )
    if s.kind == "random":
        return TrialSeededSampler(lambda seed: optuna.samplers.RandomSampler(seed=seed), s.seed)
    if s.kind == "qmc":
        # Every worker walks the same low-discrepancy sequence (its index is stored in the
        # study); only the parameters QMC leaves to an independent sampler (a categorical
        # optimizer) are drawn per trial.
        return optuna.samplers.QMCSampler(
            seed=s.seed,
            independent_sampler=TrialSeededSampler(
                lambda seed: optuna.samplers.RandomSampler(seed=seed), s.seed
            ),
            warn_independent_sampling=False,
            **params,
        )
    if s.kind == "grid":
        # Grid point = trial number, and the grid's shuffle must be one per study: the
        # spec's seed, unchanged, in every process.
        return GridSampler(grid_points(spec), seed=s.seed)
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
    if p.kind == "curve":
        return CurvePruner(spec.training.epochs, n_val=spec.data.val_size, **params)
    if p.kind == "top_k":
        return FirstEpochTopK(**params)
    if p.kind == "none":
        return optuna.pruners.NopPruner()
    raise UsageError(f"unknown pruner kind {p.kind!r}")


def stored_spec(study: optuna.Study) -> StudySpec:
    """The spec kept in the study (``SweeperError`` if the study was not made by sweeper)."""
    data = study.user_attrs.get(SPEC_ATTR)
    if data is None:
        raise UsageError(
            f"study '{one_line(study.study_name)}' was not created by sweeper (it has no stored "
            "spec); start it with 'sweeper run SPEC'"
        )
    return spec_from_dict(data, f"the spec stored in study '{one_line(study.study_name)}'")


def _differences(a: Any, b: Any, path: tuple[str, ...] = ()) -> list[str]:
    if any(path[: len(local)] == local for local in HOST_LOCAL_FIELDS):
        return []
    if isinstance(a, dict) and isinstance(b, dict):
        keys = sorted(set(a) | set(b))
        return [d for k in keys for d in _differences(a.get(k), b.get(k), (*path, k))]
    return [] if a == b else [".".join(path)]


def create_or_load(storage: optuna.storages.BaseStorage, spec: StudySpec) -> optuna.Study:
    """Create the spec's study, or load it if it exists with a compatible spec."""
    try:
        sampler, pruner = make_sampler(spec), make_pruner(spec)
    except (ValueError, TypeError) as err:  # a combination spec.py let through
        reason = one_line(str(err)).split(". ")[0]
        raise UsageError(
            f"study '{spec.name}': Optuna rejects [sampler] or [pruner]: {reason}"
        ) from None
    study = optuna.create_study(
        storage=storage,
        study_name=spec.name,
        direction="maximize",  # the only metric, validation accuracy, is maximised
        sampler=sampler,
        pruner=pruner,
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


# How many study names a "no study named ..." error lists before it says how many more.
LISTED_NAMES = 20


def load_study(storage: optuna.storages.BaseStorage, name: str) -> optuna.Study:
    """Load study ``name`` with the sampler and pruner of its stored spec, when it has one."""
    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        known = [one_line(n) for n in optuna.get_all_study_names(storage)]
        more = f" and {len(known) - LISTED_NAMES} more" if len(known) > LISTED_NAMES else ""
        listed = ", ".join(known[:LISTED_NAMES]) + more
        hint = f" (studies here: {listed})" if known else " (there are none yet)"
        url = getattr(storage, "url", None)
        where = f" in {redact(url)}" if url else ""
        raise UsageError(f"no study named '{one_line(name)}'{where}{hint}") from None
    if SPEC_ATTR not in study.user_attrs:
        return study
    spec = stored_spec(study)
    return optuna.load_study(
        study_name=name,
        storage=storage,
        sampler=make_sampler(spec),
        pruner=make_pruner(spec),
    )


# -- the global budget -----------------------------------------------------------------------


def _lock_key(study_name: str) -> int:
    digest = hashlib.sha256(f"sweeper:{study_name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@contextlib.contextmanager
def advisory_lock(engine: sqlalchemy.Engine, study_name: str) -> Iterator[sqlalchemy.Connection]:
    """Hold the study's advisory lock for the block (one transaction; ``storage.exclusive``):
    planning seed replicates is serialised through it."""
    with exclusive(engine, _lock_key(study_name)) as conn:
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
        # A trial uses up the budget when it ran or will run; one failed through no fault of
        # its own names the copy that runs in its place; seed replicates have their own.
        keys = {
            "reason": attrs.FAIL_REASON,
            "requeued": attrs.REQUEUED_AS,
            "replicate": attrs.REPLICATE_OF,
        }
        return _optuna.budget_used(conn, self.study_id, keys)

    def claim(self, wanted: int = 1) -> list[optuna.Trial]:
        """Start up to ``wanted`` trials: queued ones first, then new ones while the budget
        allows; an empty list when nothing is left to run.

        One transaction on one connection (4 round trips for any ``wanted``), serialised
        with every other creator of trials in the study (``_optuna.lock_trial_creation``):
        the count and the new trials can never interleave with another worker's.
        """
        with self.engine.connect() as conn, conn.begin():
            _optuna.lock_trial_creation(conn, self.study_id)
            room = None if self.limit is None else self.limit - self._count(conn)
            started = _optuna.start_trials(conn, self.study_id, wanted, room)
        return _optuna.live_trials(self.study, started)


# -- queries ---------------------------------------------------------------------------------


def _duration(trial: FrozenTrial) -> float | None:
    if trial.datetime_start and trial.datetime_complete:
        return (trial.datetime_complete - trial.datetime_start).total_seconds()
    return None


# Optuna's reader of a re-queued copy's retry history (sweeper.work.requeue writes it).
_RETRIES = optuna.storages.RetryHeartbeatStaleTrialCallback

# The columns of `sweeper trials`, in order: the keys of ``trial_row``.
TRIAL_COLUMNS = (
    "number",
    "state",
    "value",
    "lr",
    "weight_decay",
    "optimizer",
    "seed",
    "epochs_run",
    "duration_s",
    "worker",
    "task",
    "copy_of",
    "fail_reason",
)


def trial_row(trial: FrozenTrial) -> dict[str, Any]:
    """One trial as a flat dict: number, state, value, params, seed, epochs, duration,
    worker, cluster task, the trial a re-queued copy copies, and why it failed."""
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
        # The scheduler's task that ran it (its log), and for a re-queued copy the trial
        # it copies (the last of its retry history).
        "task": trial.user_attrs.get(attrs.CLUSTER_TASK),
        "copy_of": next(reversed(_RETRIES.retry_history(trial)), None),
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
            f"study '{one_line(study.study_name)}' has no completed trial yet ({summary})"
        ) from None
    row = trial_row(best)
    row["params"] = dict(best.params)
    row["provenance"] = {
        k: v
        for k, v in best.user_attrs.items()
        if k not in (attrs.SEED, attrs.EPOCHS_RUN, attrs.WORKER, attrs.CLUSTER_TASK)
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
