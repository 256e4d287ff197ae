# ruff: noqa: E501 - one case per line, however long, so that a new case is one line
"""Bad input through the real console script: exit 2 (1 where the world, not the input, is at
fault), one ``sweeper: error:`` line naming what to fix, no traceback, no password, and the
study already stored left exactly as it was.

A new case is one line in ``CASES``: (id, argv, spec text, environment, exit code, words).
``{storage}``, ``{spec}``, ``{data}``, ``{file}``, ``{garbage}`` and ``{tmp}`` in argv and
environment values are filled in per case; ``SECRET`` is a password every check looks for.
"""

from __future__ import annotations

import os
import pickle
import shlex
import shutil
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch
from clirun import one_line_error, sweeper
from optuna.trial import TrialState
from pgtools import fresh_database

from sweeper.spec import parse_spec
from sweeper.study import create_or_load

SECRET = "s3cret-Pa55word"
LEAK = "Pa55word"  # any fragment of the password that must never be printed
NAME = "kept"  # the stored study every case must leave as it was
HEAD = f'[study]\nname = "{NAME}"\nn_trials = 8\n'
DATA = "[data]\ntrain_size = 60\nval_size = 30\n"
NO_GPU = pytest.mark.skipif(torch.cuda.is_available(), reason="needs a host without CUDA")


def spec(extra: str = "", head: str = HEAD) -> str:
    """The stored study's spec plus ``extra``: keys of its last table, ``[training]``, or
    further tables."""
    return head + DATA + "[training]\nepochs = 1\n" + extra


RUN = ("run", "{spec}", "--storage", "{storage}", "--data", "{data}")
P = pytest.param
CASES: list[Any] = [
    # -- storage strings: typos of URLs hide the password whatever their shape (issue item 5)
    P(["studies", "--storage", f"postgresql//u:{SECRET}@127.0.0.1/db"], None, {}, 2, "is not a URL", id="url-no-colon"),
    P(["studies", "--storage", f"postgresql:/u:{SECRET}@127.0.0.1/db"], None, {}, 2, "is not a URL", id="url-one-slash"),
    P(["studies", "--storage", f"u:{SECRET}@127.0.0.1/db"], None, {}, 2, "'u:***@127.0.0.1/db' is not a URL", id="url-no-scheme"),
    P(["studies", "--storage", f"postgresql://u:{SECRET}/db"], None, {}, 2, "port that is not a number", id="url-no-host"),
    P(["studies", "--storage", f"postgresql://u:{SECRET}@127.0.0.1:abc/db"], None, {}, 2, "port that is not a number", id="url-port-word"),
    P(["studies", "--storage", f"postgresql://u:{SECRET}@127.0.0.1:99999/db"], None, {}, 2, "port 99999, outside 1-65535", id="url-port-range"),
    P(["studies", "--storage", f"postgresql://u:{SECRET}@ho st/db"], None, {}, 2, "space in its host", id="url-host-space"),
    P(["studies", "--storage", f"postgresql://u:{SECRET[:6]}@{SECRET[6:]}@127.0.0.1/db"], None, {}, 2, "write it as %40", id="url-at-in-password"),
    P(["studies", "--storage", f"postgresql://u:{SECRET}@127.0.0.1/db?sslmode=bogus"], None, {}, 2, 'invalid sslmode value: "bogus"', id="url-bad-option"),
    P(["studies", "--storage", f"postgresql://u:my {SECRET}@127.0.0.1:1/db"], None, {}, 1, "cannot connect to", id="url-space-in-password"),
    P(["studies", "--storage", f"postgresql://u {SECRET}@127.0.0.1:1/db"], None, {}, 1, "***@127.0.0.1:1/db", id="url-space-for-colon"),
    P(["studies", "--storage", f"postgresql://127.0.0.1:1/db?password={SECRET}"], None, {}, 1, "password=***", id="url-query-password"),
    P(["studies", "--storage", f"postgresql://u%3A{SECRET}@127.0.0.1:1/db"], None, {}, 1, "u%3A***@127.0.0.1", id="url-escaped-colon"),
    P(["studies"], None, {"SWEEPER_STORAGE": f"postgresql//u:{SECRET}@127.0.0.1/db"}, 2, "is not a URL", id="env-url-typo"),
    P(["run", f"postgresql://u:{SECRET}@127.0.0.1/db"], None, {}, 2, "no such spec file", id="url-as-spec"),
    # -- spec files (items 6, 7, 8, 10 and beyond)
    P(RUN, spec("[space.lr]\nlow = nan\n"), {}, 2, "[space.lr] low must be a finite number (got nan)", id="lr-nan"),
    P(RUN, spec("[space.lr]\nhigh = inf\n"), {}, 2, "[space.lr] high must be a finite number (got inf)", id="lr-inf"),
    P(RUN, spec("[space.weight_decay]\nhigh = -inf\n"), {}, 2, "[space.weight_decay] high must be a finite", id="wd-inf"),
    P(RUN, spec("schedule = 'step'\ngamma = nan\n"), {}, 2, "gamma must be a finite", id="gamma-nan"),
    P(RUN, spec("[space.lr]\nlog = false\nlow = 0.0\n"), {}, 2, "[space.lr] low must be > 0", id="lr-zero-linear"),
    P(RUN, spec("[space.weight_decay]\nlog = false\nlow = -1e-3\n"), {}, 2, "[space.weight_decay] low must be >= 0", id="wd-negative"),
    P(RUN, spec(head=HEAD.replace("n_trials = 8", "n_trials = " + "9" * 30)), {}, 2, "[study] n_trials must be at most 2147483647", id="n-trials-huge"),
    P(RUN, spec(head=HEAD.replace(f'"{NAME}"', '"a\\nb"')), {}, 2, "[study] name must hold printable characters only", id="name-newline"),
    P(RUN, spec(head=HEAD.replace(f'"{NAME}"', '"a\\u0000b"')), {}, 2, "[study] name must not contain NUL", id="name-nul"),
    P(RUN, spec(head=HEAD.replace(f'"{NAME}"', '"' + "n" * 513 + '"')), {}, 2, "[study] name must be at most 128 characters", id="name-long"),
    P(RUN, spec(head=HEAD.replace(f'"{NAME}"', "5")), {}, 2, "[study] name must be a string", id="name-number"),
    P(RUN, spec("[sampler]\nseed = -1\n"), {}, 2, "[sampler] seed must be >= 0", id="sampler-seed-negative"),
    P(RUN, spec("[pruner]\nkind = 'successive_halving'\nmin_resource = 0\n"), {}, 2, "[pruner] min_resource must be >= 1", id="pruner-min-resource"),
    P(RUN, spec("[pruner]\nkind = 'hyperband'\nmin_resource = 5\n"), {}, 2, "[pruner] min_resource (5) must be <= max_resource (1", id="hyperband-resources"),
    P(RUN, spec("[pruner]\nkind = 'median'\ninterval_steps = 0\n"), {}, 2, "[pruner] interval_steps must be >= 1", id="pruner-interval"),
    P(RUN, spec("device = 'tpu'\n"), {}, 2, "[training] device must be auto, cpu, cuda", id="spec-device"),
    P(RUN, spec("pack = 5000\n"), {}, 2, "[training] pack must be <= 1024", id="spec-pack-huge"),
    P(RUN, spec().replace("[data]\n", '[data]\npath = "a\\u0000b"\n'), {}, 2, "[data] path must not contain NUL", id="data-path-nul"),
    P(RUN, b"\xff\xfe\x00[study]\n", {}, 2, "not a TOML text file (byte 0xff at offset 0", id="spec-binary"),
    P(["run", "{tmp}", "--storage", "{storage}"], None, {}, 2, "is a directory, not a spec file", id="spec-directory"),
    P(["run", "/dev/null", "--storage", "{storage}"], None, {}, 2, "not a regular file", id="spec-device-file"),
    # -- flags (items 7 and 10)
    P([*RUN, "--device", "tpu"], spec(), {}, 2, "argument --device: must be auto, cpu, cuda or cuda:N (got 'tpu')", id="flag-device-tpu"),
    P([*RUN, "--device", "cuda"], spec(), {}, 2, "--device cuda: no CUDA GPU is visible on this host", id="flag-device-no-gpu", marks=NO_GPU),
    P([*RUN, "--max-trials", "-1"], spec(), {}, 2, "argument --max-trials: must be an integer in 0..", id="max-trials-negative"),
    P([*RUN, "--checkpoint-dir", "{file}"], spec(), {}, 2, "--checkpoint-dir", id="checkpoint-dir-file"),
    P([*RUN, "--checkpoint-dir", "{file}/sub"], spec(), {}, 2, "is a file, not a folder", id="checkpoint-dir-under-file"),
    P(RUN, spec(), {"SWEEPER_CHECKPOINTS": "{file}"}, 2, "($SWEEPER_CHECKPOINTS)", id="env-checkpoints-file"),
    P(RUN, spec(), {"SWEEPER_CACHE": "{file}"}, 2, "the data cache ($SWEEPER_CACHE)", id="env-cache-file"),
    P(["studies"], None, {"SWEEPER_HOME": "{file}"}, 2, "($SWEEPER_HOME)", id="env-home-file"),
    P([*RUN, "--workers", "100000"], spec(), {}, 2, "--workers 100000 is more than 256", id="workers-huge"),
    P([*RUN, "--pack", "0"], spec(), {}, 2, "argument --pack: must be an integer in 1..1024", id="pack-zero"),
    P(["worker", "--study", "a\nb", "--storage", "{storage}"], None, {}, 2, "--study must hold printable characters only", id="study-flag-newline"),
    P(["best", "--study", "x" * 600, "--storage", "{storage}"], None, {}, 2, "--study must be at most 128 characters", id="study-flag-long"),
    P(["report", "--study", " ", "-o", "{tmp}/r.html", "--storage", "{storage}"], None, {}, 2, "--study must not be empty", id="study-flag-empty"),
    P(["dashboard", "--refresh", "nan", "--storage", "{storage}"], None, {}, 2, "--refresh nan must be", id="refresh-nan"),
    P(["best", "--study", "x", "--margin", "0", "--storage", "{storage}"], None, {}, 2, "argument --margin: must be a number of points in (0, 100] (got '0')", id="margin-zero"),
    P(["best", "--study", "x", "--margin", "nan", "--storage", "{storage}"], None, {}, 2, "argument --margin: must be a number of points", id="margin-nan"),
    P(["best", "--study", "x", "--margin", "1pt", "--storage", "{storage}"], None, {}, 2, "argument --margin: must be a number of points", id="margin-word"),
    # -- data (items 9 and 10)
    P(["run", "{spec}", "--storage", "{storage}", "--data", "{garbage}"], spec(), {}, 1, "cannot unpack", id="data-garbage-archive"),
    P(["run", "{spec}", "--storage", "{storage}", "--data", "{file}"], spec(), {}, 2, "is a file, not a folder or a .tar.gz archive", id="data-plain-file"),
    P(RUN, spec().replace("train_size = 60", "train_size = 100000"), {}, 2, "[data] train_size is 100000 but", id="train-size-too-large"),
    P(RUN, spec().replace("val_size = 30", "val_size = 5000"), {}, 2, "set val_size <= 100", id="val-size-too-large"),
]  # fmt: skip


@pytest.fixture(scope="module")
def stored(pg_server: str) -> Iterator[tuple[str, optuna.storages.RDBStorage]]:
    """A database holding study ``kept`` (this file's spec) with three finished trials."""
    with fresh_database(pg_server, prefix="inputs") as url:
        storage = optuna.storages.RDBStorage(url)
        study = create_or_load(storage, parse_spec(_toml(spec()), "kept.toml"))
        for value in (0.3, 0.5, 0.4):
            trial = study.ask()
            trial.suggest_float("lr", 1e-4, 1e-3, log=True)
            study.tell(trial, value)
        yield url, storage
        storage.remove_session()
        storage.engine.dispose()


def _toml(text: str) -> dict[str, Any]:
    import tomllib

    return tomllib.loads(text)


def _snapshot(storage: optuna.storages.RDBStorage) -> list[tuple[Any, ...]]:
    trials = storage.get_all_trials(storage.get_study_id_from_name(NAME))
    return [(t.number, t.state, t.value, t.params, t.user_attrs) for t in trials]


@pytest.mark.parametrize(("argv", "text", "env", "code", "words"), CASES)
def test_bad_input_is_one_line(
    argv: list[str],
    text: str | bytes | None,
    env: dict[str, str],
    code: int,
    words: str,
    stored: tuple[str, optuna.storages.RDBStorage],
    tiny_official: Path,
    tmp_path: Path,
) -> None:
    url, storage = stored
    before = _snapshot(storage)
    spec_file = tmp_path / "spec.toml"
    if isinstance(text, bytes):
        spec_file.write_bytes(text)
    elif text is not None:
        spec_file.write_text(text)
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    garbage = tmp_path / "data.tar.gz"
    garbage.write_bytes(b"\x1f\x8b\x08\x00 this is no archive" * 50)
    fill = {
        "storage": url,
        "spec": str(spec_file),
        "data": str(tiny_official),
        "file": str(a_file),
        "garbage": str(garbage),
        "tmp": str(tmp_path),
    }
    result = sweeper(
        *(arg.format(**fill) for arg in argv),
        env={key: value.format(**fill) for key, value in env.items()},
    )
    assert result.returncode == code, result.stderr
    line = one_line_error(result)
    assert words in line, line
    assert LEAK not in result.stderr + result.stdout
    assert _snapshot(storage) == before, "a bad invocation changed the stored study"


def test_stored_names_with_newlines_keep_errors_on_one_line(storage_url: str) -> None:
    """Names that only Optuna's API could store still print escaped, on one line."""
    optuna.create_study(study_name="made\nelsewhere", storage=storage_url)
    missing = sweeper("best", "--study", "nope", "--storage", storage_url)
    assert missing.returncode == 2
    assert "(studies here: made\\nelsewhere)" in one_line_error(missing)
    listing = sweeper("studies", "--storage", storage_url)
    assert listing.returncode == 0, listing.stderr
    rows = listing.stdout.strip().splitlines()
    assert len(rows) == 2 and rows[1].startswith("made\\nelsewhere ")


def test_a_tar_of_the_wrong_shape_is_one_line(
    storage_url: str, tmp_path: Path, tiny_official: Path
) -> None:
    """A readable archive without train/ and test/ folders (item 9's neighbour)."""
    archive = tmp_path / "wrong.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tiny_official / "cifar-10-batches-py" / "batches.meta", arcname="x/meta")
    path = tmp_path / "s.toml"
    path.write_text(spec())
    result = sweeper("run", str(path), "--storage", storage_url, "--data", str(archive))
    assert result.returncode == 1
    assert "holds no train/ and test/ folders" in one_line_error(result)
    assert optuna.get_all_study_names(storage_url) == [], "no study before the data are good"


class _Payload:
    """Unpickling this runs ``touch <marker>``: what a crafted python batch could do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {shlex.quote(str(self.marker))}",))


@pytest.mark.parametrize("file", ["data_batch_1", "batches.meta"])
def test_a_malicious_python_batch_is_refused_without_running(
    file: str, storage_url: str, tmp_path: Path, tiny_official: Path
) -> None:
    """A pickle that names a callable beyond numpy's array reconstructors is exit 2, one line,
    before any study exists, and its payload never runs."""
    data = tmp_path / "evil"
    shutil.copytree(tiny_official, data)
    marker = tmp_path / "payload-ran"
    batch = data / "cifar-10-batches-py" / file
    batch.write_bytes(pickle.dumps({b"data": _Payload(marker), b"label_names": _Payload(marker)}))
    path = tmp_path / "s.toml"
    path.write_text(spec())
    result = sweeper("run", str(path), "--storage", storage_url, "--data", str(data))
    assert result.returncode == 2, result.stderr
    line = one_line_error(result)
    assert f"refusing {batch}: not a plain CIFAR-10 python batch (it asks for " in line, line
    assert "system" in line, line
    assert not marker.exists(), "the pickle's payload ran"
    assert optuna.get_all_study_names(storage_url) == [], "no study before the data are good"


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        ("x = " + "[" * 5000 + "]" * 5000 + "\n", "nested deeper than 8 levels"),
        ("x = " + "{a = " * 3000 + "1" + "}" * 3000 + "\n", "nested deeper than 8 levels"),
        ("[sampler.points]\nlr = " + "[" * 20 + "]" * 20 + "\n", "is nested deeper than 8"),
        (f'[data]\npath = "{"A" * 10_000_000}"\n', "9.5 MiB is no study spec (at most 1 MiB)"),
        (f'[data]\npath = "{"A" * 100_000}"\n', "path is a string of 100000 characters"),
        (f"{'k' * 100_000} = 1\n", "a key of 100000 characters (at most 4096)"),
    ],
    ids=["deep-arrays", "deep-tables", "deep-grid", "10-MB-string", "long-string", "long-key"],
)
def test_deep_or_huge_specs_are_refused_short(
    extra: str, words: str, stored: tuple[str, optuna.storages.RDBStorage], tmp_path: Path
) -> None:
    """Nesting that would exhaust the parser's recursion and strings of any size: exit 2,
    one short line that never echoes the input, nothing stored."""
    url, storage = stored
    before = _snapshot(storage)
    path = tmp_path / "spec.toml"
    path.write_text(spec().replace(DATA, "").replace("[training]", extra + "[training]", 1))
    result = sweeper("run", str(path), "--storage", url)
    assert result.returncode == 2, result.stderr[:2000]
    line = one_line_error(result)
    assert words in line and len(line) < 300, line[:2000]
    assert _snapshot(storage) == before


def test_terminal_codes_and_newlines_stored_by_others_print_escaped_in_every_listing(
    storage_url: str,
) -> None:
    """Study names and trial attributes that only Optuna's API could store (an ANSI escape
    that would clear the screen, a newline): every listing prints them escaped."""
    import re

    from sweeper.storage import open_storage

    clear, red = "\x1b[2J", "\x1b[31m"
    optuna.create_study(study_name=f"paint{red}ed", storage=storage_url)
    optuna.create_study(study_name="two\nlines", storage=storage_url)
    stored = parse_spec(_toml(spec()), "kept.toml")
    study = create_or_load(open_storage(storage_url, stored.storage), stored)
    for state in (TrialState.COMPLETE, TrialState.FAIL, TrialState.RUNNING):
        trial = study.ask()
        trial.suggest_float("lr", stored.space.lr.low, stored.space.lr.high, log=True)
        trial.set_user_attr("worker", f"host{clear}:1")
        trial.set_user_attr("fail_reason", f"a{red}\nb")
        if state != TrialState.RUNNING:
            study.tell(trial, 0.5 if state == TrialState.COMPLETE else None, state=state)
    common = ["--storage", storage_url]
    runs = {
        "studies": sweeper("studies", *common),
        "studies json": sweeper("studies", "--format", "json", *common),
        "trials": sweeper("trials", "--study", NAME, *common),
        "trials csv": sweeper("trials", "--study", NAME, "--format", "csv", *common),
        "best": sweeper("best", "--study", NAME, *common),
        "status": sweeper("status", "--study", NAME, *common),
        "unknown study": sweeper("best", "--study", "nope", *common),
    }
    for what, result in runs.items():
        out = result.stdout + result.stderr
        assert "\x1b" not in out, (what, out)
        assert result.returncode == (2 if what == "unknown study" else 0), (what, out)
    assert "paint\\x1b[31med" in runs["studies"].stdout and "two\\nlines" in runs["studies"].stdout
    assert "paint\\u001b[31med" in runs["studies json"].stdout  # JSON's own escape
    for what in ("trials", "trials csv", "best", "status"):
        assert "host\\x1b[2J" in runs[what].stdout, (what, runs[what].stdout)
    for what in ("trials", "trials csv"):
        assert "a\\x1b[31m\\nb" in runs[what].stdout, (what, runs[what].stdout)
        assert len(re.findall("host", runs[what].stdout)) == 3  # one row each, none split
    assert "paint\\x1b[31med" in one_line_error(runs["unknown study"])

    from dashboard.live import dashboard

    with dashboard(*common) as live:
        assert live.first_lines[0].startswith("3 studies: "), live.first_lines
        assert "\x1b" not in live.first_lines[0] and "two\\nlines" in live.first_lines[0]
