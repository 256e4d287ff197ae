"""Read all of a study's trials from PostgreSQL in one consistent, fast pass.

Promises:

- ``read_trials(storage, name)`` returns the same ``FrozenTrial`` list, in the same order,
  as ``optuna.load_study(...).get_trials(deepcopy=False)`` on the same storage (tests check
  it field by field), in a few plain SELECTs inside one REPEATABLE READ transaction, so the
  trials are one consistent snapshot even while workers write.
- It reads Optuna's tables through Optuna's own table definitions and value decoders
  (``rdb_models``, inside the one door to Optuna's internals): a schema change in
  a new Optuna release changes them too, and the equality test fails loudly rather than the
  views showing wrong numbers.

Why: Optuna's RDBStorage builds an ORM object per row; for a 1,000-trial study of 8 epochs
(~20,000 rows) that took 0.7-0.9 s of a report's 3 s budget on a 2-core machine. Plain rows
take a fraction of that.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from collections import defaultdict
from collections.abc import Collection, Sequence
from typing import Any

import optuna
import sqlalchemy as sa
from optuna.distributions import BaseDistribution, json_to_distribution
from optuna.trial import FrozenTrial, TrialState

from sweeper.errors import UsageError


def rdb_models() -> Any:
    """Optuna's SQLAlchemy table models, for one-query reads of a whole study.

    Why: the ORM path (``get_trials``) issues several queries per call and builds every
    ``FrozenTrial``; the dashboard reads tens of thousands of trials at once
    (``sweeper._optuna.read``). The schema is versioned by Optuna
    (``version_info``); a new release that changes it fails that module's equality test.
    """
    from optuna.storages._rdb import models

    return models


@functools.lru_cache(maxsize=256)
def _distribution(text: str) -> BaseDistribution:
    # Every trial of a study repeats the same few distributions: parse each text once.
    return json_to_distribution(text)


def _local(utc: dt.datetime | None) -> dt.datetime | None:
    """Naive UTC as stored -> naive local time, as Optuna's ``TrialModel`` returns it."""
    if utc is None:
        return None
    return utc + _offset(utc.replace(second=0, microsecond=0))


@functools.lru_cache(maxsize=4096)
def _offset(minute: dt.datetime) -> dt.timedelta:
    # The local clock's offset from UTC at a whole minute, asked of the time zone once per
    # minute seen: astimezone() per timestamp was 0.5 s of reading 100,000 trials. Offsets
    # change at whole minutes in every zone since 1970.
    local = minute.replace(tzinfo=dt.UTC).astimezone().replace(tzinfo=None)
    return local - minute


def _fetch(conn: sa.Connection, statement: sa.Select[Any]) -> list[tuple[Any, ...]]:
    """The rows of ``statement`` as plain tuples, through the driver's own cursor.

    SQLAlchemy's result rows and type processors cost ~40% of reading a large study (1.3 s
    of 100,000 trials); the statement is still built from Optuna's tables, compiled with its
    values inlined (integers and Optuna's enum names only), and runs inside the caller's
    transaction. Enum columns come back as their names: the caller decodes them.
    """
    sql = str(statement.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(sql)
        return list(cursor.fetchall())
    finally:
        cursor.close()


MISSING: Any = object()  # an attribute a trial does not have (``read_runs``)


class _JsonValues:
    """``json.loads`` that decodes each distinct immutable value once.

    Most attribute texts repeat across a study's trials (the optimizer, the worker, the
    versions): at 10,000 trials, 90,000 decodes took 0.4 s of a report. Lists and dicts are
    decoded afresh each time, so no two trials share a mutable value.
    """

    def __init__(self) -> None:
        self._seen: dict[str, Any] = {}

    def __call__(self, text: str) -> Any:
        try:
            return self._seen[text]
        except KeyError:
            value = json.loads(text)
            if not isinstance(value, list | dict):
                self._seen[text] = value
            return value


def _study_id(storage: optuna.storages.RDBStorage, name: str) -> int:
    """The study's id (``UsageError`` when the storage has no such study)."""
    try:
        return storage.get_study_id_from_name(name)
    except KeyError:
        raise UsageError(f"no study named '{name}'") from None


def read_trials(
    storage: optuna.storages.RDBStorage,
    name: str,
    *,
    states: Collection[TrialState] | None = None,
    intermediate_values: bool = True,
    system_attrs: bool = True,
    user_keys: Collection[str] | None = None,
) -> list[FrozenTrial]:
    """Every trial of study ``name`` (or those in ``states``), ordered by trial id (Optuna's
    order). With the defaults, equal to Optuna's ``get_trials``.

    A caller that needs less reads less: ``intermediate_values=False`` and
    ``system_attrs=False`` leave those dicts empty, ``user_keys`` keeps only those user
    attributes. Raises ``UsageError`` when the storage has no such study.
    """
    study_id, models = _study_id(storage, name), rdb_models()
    trials_t = models.TrialModel.__table__
    params_t = models.TrialParamModel.__table__
    values_t = models.TrialValueModel.__table__
    inter_t = models.TrialIntermediateValueModel.__table__
    user_t = models.TrialUserAttributeModel.__table__
    system_t = models.TrialSystemAttributeModel.__table__
    chosen = trials_t.c.study_id == study_id
    if states is not None:
        chosen = sa.and_(chosen, trials_t.c.state.in_(list(states)))
    ids = sa.select(trials_t.c.trial_id).where(chosen)
    user_where = user_t.c.trial_id.in_(ids)
    if user_keys is not None:
        user_where = sa.and_(user_where, user_t.c.key.in_(list(user_keys)))
    inter: Sequence[Any] = ()
    system: Sequence[Any] = ()

    with storage.engine.connect() as conn:
        conn = conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            rows = _fetch(
                conn,
                sa.select(
                    trials_t.c.trial_id,
                    trials_t.c.number,
                    trials_t.c.state,
                    trials_t.c.datetime_start,
                    trials_t.c.datetime_complete,
                )
                .where(chosen)
                .order_by(trials_t.c.trial_id),
            )
            params = _fetch(
                conn,
                sa.select(
                    params_t.c.trial_id,
                    params_t.c.param_name,
                    params_t.c.param_value,
                    params_t.c.distribution_json,
                )
                .where(params_t.c.trial_id.in_(ids))
                .order_by(params_t.c.param_id),
            )
            values = _fetch(
                conn,
                sa.select(
                    values_t.c.trial_id,
                    values_t.c.objective,
                    values_t.c.value,
                    values_t.c.value_type,
                ).where(values_t.c.trial_id.in_(ids)),
            )
            if intermediate_values:
                inter = _fetch(
                    conn,
                    sa.select(
                        inter_t.c.trial_id,
                        inter_t.c.step,
                        inter_t.c.intermediate_value,
                        inter_t.c.intermediate_value_type,
                    ).where(inter_t.c.trial_id.in_(ids)),
                )
            user = _fetch(
                conn,
                sa.select(user_t.c.trial_id, user_t.c.key, user_t.c.value_json).where(user_where),
            )
            if system_attrs:
                system = _fetch(
                    conn,
                    sa.select(system_t.c.trial_id, system_t.c.key, system_t.c.value_json).where(
                        system_t.c.trial_id.in_(ids)
                    ),
                )
    loads = _JsonValues()

    by_params: dict[int, list[tuple[str, float, str]]] = defaultdict(list)
    for tid, pname, pvalue, djson in params:
        by_params[tid].append((pname, pvalue, djson))
    by_values: dict[int, dict[int, float]] = defaultdict(dict)
    value_type = models.TrialValueModel.TrialValueType
    for tid, objective, value, vtype in values:
        by_values[tid][objective] = models.TrialValueModel.stored_repr_to_value(
            value, value_type[vtype]
        )
    by_inter: dict[int, dict[int, float]] = defaultdict(dict)
    decode = models.TrialIntermediateValueModel.stored_repr_to_intermediate_value
    inter_type = models.TrialIntermediateValueModel.TrialIntermediateValueType
    for tid, step, ivalue, itype in inter:
        by_inter[tid][step] = decode(ivalue, inter_type[itype])
    by_user: dict[int, dict[str, Any]] = defaultdict(dict)
    for tid, key, text in user:
        by_user[tid][key] = loads(text)
    by_system: dict[int, dict[str, Any]] = defaultdict(dict)
    for tid, key, text in system:
        by_system[tid][key] = loads(text)

    trials = []
    for tid, number, state, start, complete in rows:
        dists = {p: _distribution(d) for p, _, d in by_params.get(tid, ())}
        objectives = by_values.get(tid)
        trials.append(
            FrozenTrial(
                number=number,
                state=TrialState[state],
                value=None,
                values=[objectives[k] for k in sorted(objectives)] if objectives else None,
                datetime_start=_local(start),
                datetime_complete=_local(complete),
                params={p: dists[p].to_external_repr(v) for p, v, _ in by_params.get(tid, ())},
                distributions=dists,
                user_attrs=by_user.get(tid, {}),
                system_attrs=by_system.get(tid, {}),
                intermediate_values=by_inter.get(tid, {}),
                trial_id=tid,
            )
        )
    return trials


def fingerprint(storage: optuna.storages.RDBStorage, name: str) -> tuple[Any, ...]:
    """A value that changes whenever the views of study ``name`` could: a trial added or
    changing state, finishing, a running trial reporting an epoch, a user attribute written.

    Two aggregate queries on indexed columns (a few ms at 50,000 trials, against seconds for
    reading every trial): the live page polls with this and re-reads only on a change.
    Raises ``UsageError`` when the storage has no such study.
    """
    study_id, models = _study_id(storage, name), rdb_models()
    trials_t = models.TrialModel.__table__
    inter_t = models.TrialIntermediateValueModel.__table__
    user_t = models.TrialUserAttributeModel.__table__
    mine = trials_t.c.study_id == study_id
    with storage.engine.connect() as conn:
        conn = conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            states = _fetch(
                conn,
                sa.select(
                    trials_t.c.state,
                    sa.func.count(),
                    sa.func.max(trials_t.c.trial_id),
                    sa.func.max(trials_t.c.datetime_complete),
                )
                .where(mine)
                .group_by(trials_t.c.state)
                .order_by(trials_t.c.state),
            )
            running = sa.select(trials_t.c.trial_id).where(
                sa.and_(mine, trials_t.c.state == TrialState.RUNNING)
            )
            counts = _fetch(
                conn,
                sa.select(
                    sa.select(sa.func.count())
                    .where(inter_t.c.trial_id.in_(running))
                    .scalar_subquery(),
                    # Attribute rows only ever get new ids (Optuna's writes and
                    # sweeper's annotations insert; an overwrite of the same key is rare and
                    # comes with a state change): the newest id, over the whole table, by its
                    # primary key. Counting the study's rows took 0.2 s at 50,000 trials.
                    sa.select(sa.func.max(user_t.c.trial_user_attribute_id)).scalar_subquery(),
                ),
            )
    return tuple(states), tuple(counts)


def read_runs(
    storage: optuna.storages.RDBStorage, name: str, params: Sequence[str], user_keys: Sequence[str]
) -> list[tuple[Any, ...]]:
    """One row per COMPLETE or PRUNED trial of study ``name``, in trial-id order:
    ``(number, state, value, *params' values, *user attributes)``, decoded as Optuna decodes
    them (a parameter in its external representation, an attribute from its JSON); a
    missing parameter is None, a missing attribute ``MISSING``, a PRUNED trial's value None.

    One query, each column found through a unique index ((trial_id, param_name),
    (trial_id, key)): what ``sweeper best`` needs of 100,000 trials without building a
    ``FrozenTrial`` for each. Raises ``UsageError`` when the storage has no such study.
    """
    study_id, models = _study_id(storage, name), rdb_models()
    trials_t = models.TrialModel.__table__
    values_t = models.TrialValueModel.__table__
    params_t = models.TrialParamModel.__table__
    user_t = models.TrialUserAttributeModel.__table__
    value = values_t.alias("v")
    joined: Any = trials_t.outerjoin(
        value, sa.and_(value.c.trial_id == trials_t.c.trial_id, value.c.objective == 0)
    )
    columns: list[Any] = [trials_t.c.number, trials_t.c.state, value.c.value, value.c.value_type]
    for k, param in enumerate(params):
        p = params_t.alias(f"p{k}")
        joined = joined.outerjoin(
            p, sa.and_(p.c.trial_id == trials_t.c.trial_id, p.c.param_name == param)
        )
        columns += [p.c.param_value, p.c.distribution_json]
    for k, key in enumerate(user_keys):
        u = user_t.alias(f"u{k}")
        joined = joined.outerjoin(u, sa.and_(u.c.trial_id == trials_t.c.trial_id, u.c.key == key))
        columns.append(u.c.value_json)
    statement = (
        sa.select(*columns)
        .select_from(joined)
        .where(
            sa.and_(
                trials_t.c.study_id == study_id,
                trials_t.c.state.in_([TrialState.COMPLETE, TrialState.PRUNED]),
            )
        )
        .order_by(trials_t.c.trial_id)
    )
    with storage.engine.connect() as conn, conn.begin():
        # PostgreSQL compiles this six-join plan with its JIT (0.12 s of a 0.9 s query at
        # 100,000 trials) for no gain on one execution; off for this transaction only.
        conn.exec_driver_sql("SET LOCAL jit = off")
        rows = _fetch(conn, statement)
    loads = _JsonValues()
    value_type = models.TrialValueModel.TrialValueType
    n_params = len(params)
    out = []
    for row in rows:
        number, state, stored, vtype = row[:4]
        final = (
            models.TrialValueModel.stored_repr_to_value(stored, value_type[vtype])
            if vtype is not None
            else None
        )
        decoded = [
            None
            if row[4 + 2 * k] is None
            else _distribution(row[5 + 2 * k]).to_external_repr(row[4 + 2 * k])
            for k in range(n_params)
        ]
        attrs = [MISSING if text is None else loads(text) for text in row[4 + 2 * n_params :]]
        out.append((number, TrialState[state], final, *decoded, *attrs))
    return out
