"""Replay simulated studies over a corpus of real learning curves, once per pruner.

Run (CPU, a few minutes):

    .venv/bin/python bench/pruning_replay.py                      # 200 replays, every pruner
    .venv/bin/python bench/pruning_replay.py --replays 40 --markdown --jobs 2

The corpus: ``bench/record_curves.py``'s JSON (default ``bench/data/curves-cpu-5k.json``):
configurations on an (optimizer, lr, wd) grid, each with several seeds' full curves.

The truth, from all the corpus' seeds: each configuration's mean final accuracy, and the
full-budget indistinguishable set, the configurations not significantly worse than the best
by the project's noise model (``sweeper.analysis.noise``: seed replicates pooled, the
test-set floor, 95% intervals of differences).

One replay: a study of ``--trials`` trials over lr [1e-4, 3e-3] x wd [1e-4, 1] x {adamw,
adam}, sampled by the project's own sampler (``sweeper.study.make_sampler``: TPE with
constant liar, or random; seeded per replay) and pruned by the project's own pruner
(``make_pruner``, or the curve pruner with a held-out prior, below), with 1 or 4 workers that
advance one epoch per tick in lockstep (a free worker starts the next trial at once). A
sampled point plays the nearest grid configuration of its optimizer (in log lr, log wd); its
curve is that configuration's run with the replay's held-out seed. The curve pruner's prior
is fitted on the other seeds' curves only, so it never forecasts a curve it was fitted on.
Scenarios cycle through sampler x workers x held-out seed, so every pruner meets the same
studies (the same sampler seeds and trial streams, until pruning changes what TPE sees).

Per pruner it reports, over the replays:

- epochs: trained epochs (mean), and the ratio to the median pruner's in the same replays;
- hit: how often the study's answer (its best finished trial's configuration, as Optuna's
  ``best_trial``) lies in the full-budget indistinguishable set, with a 95% Wilson interval;
- regret: best configuration's mean minus the answer's, in points (mean and 95th percentile);
- to-hit: epochs spent when the answer first entered the set (median over replays that hit);
- wrong stops: of the trials it stopped, how many would have ended within noise of the
  study's answer (the curve pruner's within-noise margin), in percent.

Then the curve forecast's calibration on held-out curves (how often its 95% interval holds
the last epoch, from each epoch seen), and the cost of one curve-pruner decision (median of
repeated ``prune`` calls in a study of 1,000 finished trials, in-memory storage). Finally the
goals of issue 22, each with whether this run met it.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import math
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import optuna
from optuna.trial import TrialState

from sweeper.analysis import curves
from sweeper.analysis.noise import PRIOR_SD, Observation, floor_sd, indistinguishable, noise_model
from sweeper.pruners import CurvePruner
from sweeper.spec import FloatRange, PrunerSpec, SamplerSpec, SpaceSpec, StudySpec, TrainingSpec
from sweeper.study import make_pruner, make_sampler

DEFAULT_CORPUS = Path(__file__).resolve().parent / "data" / "curves-cpu-5k.json"
Key = tuple[str, float, float]  # optimizer, lr, weight decay


class Corpus(NamedTuple):
    """Curves by (configuration, seed); the truth computed from all seeds."""

    epochs: int
    n_val: int
    seeds: tuple[int, ...]
    configs: tuple[Key, ...]
    curves: dict[tuple[Key, int], tuple[float, ...]]  # a diverged run's curve is shorter
    means: dict[Key, float]  # mean final accuracy over the seeds that finished
    best_set: frozenset[Key]  # the full-budget indistinguishable set
    sd_run: float  # the noise model's per-run sd
    source: str


def corpus_from(document: dict[str, Any]) -> Corpus:
    """A corpus from ``record_curves.py``'s JSON document (already parsed)."""
    settings = document["settings"]
    epochs = int(settings["epochs"])
    n_val = int(settings["val_size"] or 10_000)
    table: dict[tuple[Key, int], tuple[float, ...]] = {}
    for run in document["runs"]:
        key = (run["optimizer"], float(run["lr"]), float(run["weight_decay"]))
        table[key, int(run["seed"])] = tuple(float(v) for v in run["val_accuracy"])
    configs = tuple(dict.fromkeys(k for k, _ in table))
    seeds = tuple(sorted({s for _, s in table}))
    obs = [
        Observation(i, k[0], k[1], k[2], c[-1], seed=s)
        for i, ((k, s), c) in enumerate(table.items())
        if len(c) == epochs
    ]
    model = noise_model(obs, n_val=n_val)
    means = {(c.optimizer, c.lr, c.weight_decay): c.mean for c in model.configs}
    best = frozenset((c.optimizer, c.lr, c.weight_decay) for c in indistinguishable(model))
    machine = document.get("machine", {})
    source = (
        f"{len(configs)} configurations x {len(seeds)} seeds x {epochs} epochs, "
        f"{settings['train_size'] or 50_000} training / {n_val} test images, "
        f"{machine.get('device', '?')}"
    )
    return Corpus(
        epochs, n_val, seeds, configs, table, means, best, model.sd_run or PRIOR_SD, source
    )


def prior_without(corpus: Corpus, seed: int | None) -> curves.CurvePrior:
    """The curve prior of the corpus' full-length curves, leaving out seed ``seed``."""
    kept = [c for (_, s), c in corpus.curves.items() if s != seed and len(c) == corpus.epochs]
    return curves.fit_prior(kept, f"{corpus.source}; seed {seed} held out")


class Scenario(NamedTuple):
    """What one replay is: the same for every pruner."""

    index: int
    sampler: str  # tpe | random
    workers: int
    held_out: int  # the corpus seed whose curves the study plays


class Outcome(NamedTuple):
    """What one replay of one pruner did."""

    epochs: int
    answer: Key | None
    hit: bool
    regret: float  # points
    epochs_to_hit: int | None
    stopped: int
    wrong_stops: int
    # Each trial as it ended, in that order: (number, configuration, epochs trained, state).
    log: tuple[tuple[int, Key, int, str], ...] = ()


def scenarios(corpus: Corpus, n: int) -> list[Scenario]:
    """``n`` scenarios cycling sampler x workers x held-out seed."""
    out = []
    for i in range(n):
        sampler = ("tpe", "random")[i % 2]
        workers = (1, 4)[(i // 2) % 2]
        out.append(Scenario(i, sampler, workers, corpus.seeds[(i // 4) % len(corpus.seeds)]))
    return out


def study_spec(corpus: Corpus, scenario: Scenario, pruner: PrunerSpec) -> StudySpec:
    """The spec a replay's study is made from (the sampler seeded by the scenario)."""
    return StudySpec(
        name=f"replay-{scenario.index}",
        space=SpaceSpec(
            lr=FloatRange(1e-4, 3e-3),
            weight_decay=FloatRange(1e-4, 1.0),
            optimizer=("adamw", "adam"),
        ),
        sampler=SamplerSpec(kind=scenario.sampler, seed=scenario.index),
        pruner=pruner,
        training=TrainingSpec(epochs=corpus.epochs),
    )


def nearest(corpus: Corpus, optimizer: str, lr: float, wd: float) -> Key:
    """The grid configuration of ``optimizer`` nearest (lr, wd) in log10 space."""
    return min(
        (k for k in corpus.configs if k[0] == optimizer),
        key=lambda k: (math.log10(k[1] / lr)) ** 2 + (math.log10(k[2] / wd)) ** 2,
    )


def margin_below(corpus: Corpus, best: float) -> float:
    """How far below ``best`` a run may end and be within noise of it (the curve pruner's
    within-noise margin: the noise model's prior sd, never below the test-set floor)."""
    return curves.within_noise_margin(max(PRIOR_SD, floor_sd(best, corpus.n_val)))


def replay(
    corpus: Corpus,
    scenario: Scenario,
    pruner: optuna.pruners.BasePruner,
    spec: StudySpec,
    n_trials: int,
) -> Outcome:
    """One study over the corpus, trial by trial, epoch by epoch (module docstring)."""
    study = optuna.create_study(
        direction="maximize", sampler=make_sampler(spec), pruner=pruner,
        storage=optuna.storages.InMemoryStorage(),
    )  # fmt: skip
    space = spec.space
    running: list[list[Any]] = []  # [trial, key, curve, epochs done]
    asked = spent = 0
    first_hit: int | None = None
    answer: tuple[float, int, Key] | None = None  # (value, -number, key)
    stopped: list[tuple[float, ...]] = []
    log: list[tuple[int, Key, int, str]] = []

    def start() -> None:
        nonlocal asked
        trial = study.ask()
        lr = trial.suggest_float("lr", space.lr.low, space.lr.high, log=True)
        wd = trial.suggest_float(
            "weight_decay", space.weight_decay.low, space.weight_decay.high, log=True
        )
        optimizer = str(trial.suggest_categorical("optimizer", list(space.optimizer)))
        key = nearest(corpus, optimizer, lr, wd)
        running.append([trial, key, corpus.curves[key, scenario.held_out], 0])
        asked += 1

    while asked < n_trials and len(running) < scenario.workers:
        start()
    while running:
        for item in list(running):
            trial, key, curve, done = item
            if done == len(curve):  # the run diverged here: its trial fails
                study.tell(trial, state=TrialState.FAIL)
                log.append((trial.number, key, done, "fail"))
            else:
                value = curve[done]
                done = item[3] = done + 1
                spent += 1
                trial.report(value, done)
                if done == corpus.epochs:
                    study.tell(trial, value)
                    if answer is None or (value, -trial.number) > answer[:2]:
                        answer = (value, -trial.number, key)
                    if first_hit is None and answer[2] in corpus.best_set:
                        first_hit = spent
                    log.append((trial.number, key, done, "complete"))
                elif trial.should_prune():
                    study.tell(trial, state=TrialState.PRUNED)
                    stopped.append(curve)
                    log.append((trial.number, key, done, "pruned"))
                else:
                    continue
            running.remove(item)
            if asked < n_trials:
                start()
    best_mean = max(corpus.means.values())
    if answer is None:
        return Outcome(spent, None, False, math.nan, None, len(stopped), 0, tuple(log))
    key = answer[2]
    line = answer[0] - margin_below(corpus, answer[0])
    wrong = sum(1 for c in stopped if len(c) == corpus.epochs and c[-1] >= line)
    regret = 100.0 * (best_mean - corpus.means.get(key, math.nan))
    hit = key in corpus.best_set
    return Outcome(spent, key, hit, regret, first_hit, len(stopped), wrong, tuple(log))


def pruner_kinds(thresholds: Sequence[float], ks: Sequence[int]) -> list[tuple[str, PrunerSpec]]:
    """The pruners compared: Optuna's the spec can name, top-k, and the curve pruner."""
    kinds = [
        ("none", PrunerSpec("none")),
        ("median (default until now)", PrunerSpec("median")),
        ("successive halving", PrunerSpec("successive_halving")),
        ("hyperband", PrunerSpec("hyperband")),
    ]
    kinds += [(f"top-{k} after epoch 1", PrunerSpec("top_k", {"k": k})) for k in ks]
    kinds += [
        (f"curve, threshold {t:g}", PrunerSpec("curve", {"threshold": t})) for t in thresholds
    ]
    # The literal rule: keep every trial that may end within noise of the best.
    kinds.append(
        ("curve within noise, threshold 0.05",
         PrunerSpec("curve", {"threshold": 0.05, "within_noise": True}))
    )  # fmt: skip
    return kinds


def build_pruner(
    corpus: Corpus, spec: StudySpec, priors: dict[int, curves.CurvePrior], held_out: int
) -> optuna.pruners.BasePruner:
    """The spec's pruner; the curve pruner with the prior that leaves ``held_out`` out."""
    if spec.pruner.kind == "curve":
        return CurvePruner(
            corpus.epochs, n_val=corpus.n_val, prior=priors[held_out], record=False,
            **spec.pruner.params,
        )  # fmt: skip
    return make_pruner(spec)


def wilson(hits: int, n: int) -> tuple[float, float]:
    """The 95% Wilson interval of a proportion."""
    if n == 0:
        return (0.0, 1.0)
    z = 1.959964
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (centre - half, centre + half)


class Row(NamedTuple):
    """One pruner's line of the table."""

    name: str
    spec: PrunerSpec
    epochs: float
    ratio: float  # to the median pruner's epochs
    hit: float
    hit_ci: tuple[float, float]
    regret: float
    regret_p95: float
    to_hit: float
    wrong: float  # percent of stopped trials
    stopped: int


def summarise(name: str, spec: PrunerSpec, outs: Sequence[Outcome], median_epochs: float) -> Row:
    n = len(outs)
    hits = sum(o.hit for o in outs)
    regrets = [o.regret for o in outs if math.isfinite(o.regret)]
    to_hit = [o.epochs_to_hit for o in outs if o.epochs_to_hit is not None]
    stopped = sum(o.stopped for o in outs)
    epochs = statistics.fmean(o.epochs for o in outs)
    return Row(
        name, spec, epochs, epochs / median_epochs if median_epochs else math.nan, hits / n,
        wilson(hits, n), statistics.fmean(regrets) if regrets else math.nan,
        float(np.percentile(regrets, 95)) if regrets else math.nan,
        statistics.median(to_hit) if to_hit else math.nan,
        100.0 * sum(o.wrong_stops for o in outs) / stopped if stopped else 0.0, stopped,
    )  # fmt: skip


def coverage(corpus: Corpus, priors: dict[int, curves.CurvePrior]) -> list[tuple[int, float, int]]:
    """Per epoch seen t: how often the held-out forecast's 95% interval held the last epoch."""
    out = []
    for t in range(1, corpus.epochs):
        held = total = 0
        for (_, seed), curve in corpus.curves.items():
            if len(curve) != corpus.epochs:
                continue
            pop = curves.population(priors[seed], [], corpus.epochs)
            f = curves.forecast(pop, curve[:t])
            low, high = f.band()
            held += low[-1] <= curve[-1] <= high[-1]
            total += 1
        out.append((t, held / total, total))
    return out


def decision_cost(corpus: Corpus, repeats: int = 200) -> float:
    """Median seconds of one ``CurvePruner.prune`` call in a study of 1,000 finished trials
    (the population cached, as between two trials' ends in a real study)."""
    study = optuna.create_study(direction="maximize", storage=optuna.storages.InMemoryStorage())
    rng = np.random.default_rng(0)
    full = [c for c in corpus.curves.values() if len(c) == corpus.epochs]
    for _ in range(1000):
        curve = full[int(rng.integers(len(full)))]
        trial = study.ask()
        for e, v in enumerate(curve, start=1):
            trial.report(v, e)
        study.tell(trial, curve[-1])
    pruner = CurvePruner(corpus.epochs, n_val=corpus.n_val, prior=prior_without(corpus, None),
                         record=False)  # fmt: skip
    trial = study.ask()
    for e, v in enumerate(full[0][:3], start=1):
        trial.report(v, e)
    frozen = study.get_trials(deepcopy=False)[-1]
    pruner.prune(study, frozen)  # the population, built once per finished trial
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        pruner.prune(study, frozen)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def replays(
    corpus: Corpus, n_replays: int, n_trials: int, pspec: PrunerSpec
) -> tuple[list[Outcome], float]:
    """One pruner over the ``n_replays`` scenarios; the outcomes and the seconds they took."""
    started = time.perf_counter()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    priors = {s: prior_without(corpus, s) for s in corpus.seeds}
    outs = []
    for scenario in scenarios(corpus, n_replays):
        spec = study_spec(corpus, scenario, pspec)
        pruner = build_pruner(corpus, spec, priors, scenario.held_out)
        outs.append(replay(corpus, scenario, pruner, spec, n_trials))
    return outs, time.perf_counter() - started


def run(
    corpus: Corpus,
    n_replays: int,
    n_trials: int,
    kinds: list[tuple[str, PrunerSpec]],
    progress: Callable[[str], None] = lambda line: None,
    jobs: int = 1,
) -> tuple[list[Row], dict[str, list[Outcome]]]:
    """Every pruner over the same ``n_replays`` scenarios (``jobs`` pruners at a time, each
    in a process of its own); the table's rows and outcomes."""
    outcomes: dict[str, list[Outcome]] = {}
    with concurrent.futures.ProcessPoolExecutor(jobs) if jobs > 1 else _Here() as pool:
        futures = {
            pool.submit(replays, corpus, n_replays, n_trials, pspec): name for name, pspec in kinds
        }
        for future in concurrent.futures.as_completed(futures):
            name = futures[future]
            outcomes[name], seconds = future.result()
            progress(f"{name}: {n_replays} replays in {seconds:.0f} s")
    median_name = next(n for n, s in kinds if s.kind == "median")
    median_epochs = statistics.fmean(o.epochs for o in outcomes[median_name])
    rows = [summarise(n, s, outcomes[n], median_epochs) for n, s in kinds]
    return rows, outcomes


class _Here(concurrent.futures.Executor):
    """An executor that runs each call at once, in this process (``jobs`` = 1)."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        future.set_result(fn(*args, **kwargs))
        return future


def table(rows: Sequence[Row], markdown: bool) -> str:
    head = ("pruner", "epochs", "vs median", "hit (95% CI)", "regret pts (p95)", "to-hit",
            "wrong stops")  # fmt: skip
    body = [
        (
            r.name,
            f"{r.epochs:.0f}",
            f"{r.ratio:.2f}",
            f"{100 * r.hit:.1f}% [{100 * r.hit_ci[0]:.1f}, {100 * r.hit_ci[1]:.1f}]",
            f"{r.regret:.2f} ({r.regret_p95:.2f})",
            f"{r.to_hit:.0f}",
            f"{r.wrong:.1f}% of {r.stopped}",
        )
        for r in rows
    ]
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(cells) + " |" for cells in body]
        return "\n".join(lines)
    widths = [max(len(x[i]) for x in [head, *body]) for i in range(len(head))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) for cells in [head, *body]
    )


def supported(rows: Sequence[Row]) -> Row:
    """The pruner the table supports as the default: the fewest epochs among those whose
    answer lands in the indistinguishable set in at least 95% of the replays and whose mean
    regret is no worse than the median pruner's (today's default): cheaper, and no worse an
    answer. The median pruner itself when none is."""
    median = next(r for r in rows if r.spec.kind == "median")
    good = [r for r in rows if r.hit >= 0.95 and r.hit >= median.hit and r.regret <= median.regret]
    return min(good or [median], key=lambda r: (r.epochs, r.regret))


def goals(rows: Sequence[Row], cost: float, default: str) -> list[str]:
    """Issue 22's goals, each with whether this run met it, for the pruner named ``default``."""
    by = {r.name: r for r in rows}
    curve = by[default]
    top = [r for r in rows if r.spec.kind == "top_k"]
    lines = [
        f"hit >= 95%: {100 * curve.hit:.1f}% -> {'met' if curve.hit >= 0.95 else 'NOT met'}",
        f"epochs <= 1/3 of median's: {curve.ratio:.2f} -> "
        f"{'met' if curve.ratio <= 1 / 3 else 'NOT met'}",
    ]
    for r in top:
        ok = curve.epochs <= r.epochs and curve.hit >= r.hit
        lines.append(
            f"vs {r.name}: epochs {curve.epochs:.0f} vs {r.epochs:.0f}, hit "
            f"{100 * curve.hit:.1f}% vs {100 * r.hit:.1f}% -> {'met' if ok else 'NOT met'}"
        )
    lines.append(f"decision < 10 ms: {1e3 * cost:.2f} ms -> {'met' if cost < 0.01 else 'NOT met'}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--replays", type=int, default=200)
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--thresholds", default="0.05,0.1,0.2,0.4")
    parser.add_argument("--k", default="3,5")
    parser.add_argument("--default", default="0.2", help="the curve threshold the goals judge")
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--jobs", type=int, default=1, help="pruners replayed at a time")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    corpus = corpus_from(json.loads(args.corpus.read_text()))
    thresholds = [float(x) for x in args.thresholds.split(",")]
    kinds = pruner_kinds(thresholds, [int(k) for k in args.k.split(",")])
    say = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    say(f"corpus: {corpus.source}")
    started = time.perf_counter()
    rows, _ = run(corpus, args.replays, args.trials, kinds, say, jobs=args.jobs)
    cost = decision_cost(corpus)
    print(f"# pruning replay: {args.replays} studies x {args.trials} trials per pruner")
    print(
        f"corpus: {corpus.source}; per-run sd {100 * corpus.sd_run:.2f} points; indistinguishable"
        f" set: {len(corpus.best_set)} of {len(corpus.configs)} configurations"
    )
    print(f"machine: {platform.machine()}, Python {platform.python_version()}, "
          f"Optuna {optuna.__version__}; {time.perf_counter() - started:.0f} s in all")  # fmt: skip
    print(table(rows, args.markdown))
    print("\nforecast calibration on held-out curves (95% interval of the last epoch):")
    for t, held, total in coverage(corpus, {s: prior_without(corpus, s) for s in corpus.seeds}):
        print(f"  after epoch {t}: {100 * held:.1f}% of {total} curves")
    print(f"\ncurve pruner decision: {1e6 * cost:.0f} us (median of 200, 1,000 finished trials)")
    best = supported(rows)
    print(
        f"the table supports as the default: {best.name} "
        f"([pruner] kind {best.spec.kind!r} {dict(best.spec.params)})"
    )
    print("goals:")
    for line in goals(rows, cost, f"curve, threshold {float(args.default):g}"):
        print(f"  {line}")


if __name__ == "__main__":
    main()
