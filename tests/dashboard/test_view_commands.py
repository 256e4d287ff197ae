"""The views' commands (``sweeper best``, ``report``, ``importance``) through the console script."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from clirun import one_line_error, sweeper

from sweeper.dashboard.view_commands import POOLED_NOT_RUN


def test_report_command_writes_the_report(shared_url: str, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    result = sweeper("report", "--study", "adam-vs-adamw", "-o", str(out), "--storage", shared_url)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"wrote {out} (32 trials)"
    text = out.read_text(encoding="utf-8")
    assert "<h2>Adam vs AdamW</h2>" in text and 'id="fig-comparison"' in text


def test_importance_command_table_json_and_html_plot(shared_url: str, tmp_path: Path) -> None:
    common = ("--study", "cifar10-adamw", "--storage", shared_url)
    table = sweeper("importance", *common)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].startswith("study 'cifar10-adamw': ")
    assert lines[2].startswith("Per optimizer: share of the fitted surface's variance")
    assert lines[3].startswith("adamw (") and "lr " in lines[3]  # per optimizer, intervals
    assert "ped_anova" not in table.stdout  # Optuna's pooled evaluators are opt-in
    assert lines[-1] == f"note: {POOLED_NOT_RUN}"

    plot = tmp_path / "importance.html"
    result = sweeper("importance", *common, "--format", "json", "--plot", str(plot))
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["study"] == "cifar10-adamw" and doc["params"] == ["lr", "weight_decay"]
    assert doc["ped_anova"] is None and doc["fanova"] is None and doc["per_epoch"] == []
    assert doc["pooled_evaluators"] == {"run": [], "note": POOLED_NOT_RUN}
    assert doc["by_optimizer"]["adamw"]["shares"]["lr"]["shown"] is True
    assert [e["epoch"] for e in doc["per_epoch_by_optimizer"]] == [1, 2, 3, 4, 5, 6]
    html = plot.read_text(encoding="utf-8")
    assert "plotly.js v" in html and "per epoch (pruned trials count)" in html
    assert "Optuna's evaluators" not in html
    assert result.stderr.strip().endswith(f"wrote {plot}")


def test_importance_command_with_the_pooled_evaluators(shared_url: str, tmp_path: Path) -> None:
    common = ("--study", "cifar10-adamw", "--storage", shared_url)
    asked = ("--evaluators", "ped-anova,fanova")
    table = sweeper("importance", *common, *asked)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[1].split() == ["parameter", "ped_anova", "fanova"]
    assert {lines[2].split()[0], lines[3].split()[0]} == {"lr", "weight_decay"}
    assert "PED-ANOVA per epoch (every trial that reported the epoch, pruned included):" in lines
    assert f"note: {POOLED_NOT_RUN}" not in lines

    plot = tmp_path / "importance.html"
    result = sweeper("importance", *common, *asked, "--format", "json", "--plot", str(plot))
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert sum(doc["ped_anova"].values()) == pytest.approx(1.0)
    assert sum(doc["fanova"].values()) == pytest.approx(1.0)
    assert [e["epoch"] for e in doc["per_epoch"]] == [1, 2, 3, 4, 5, 6]
    assert doc["per_epoch"][0]["n_pruned"] > 0  # pruned trials were counted
    assert doc["settings"]["fanova_trees"] == 16
    assert doc["pooled_evaluators"] == {"run": ["ped-anova", "fanova"], "note": ""}
    assert "Optuna's evaluators" in plot.read_text(encoding="utf-8")

    only = json.loads(
        sweeper("importance", *common, "--evaluators", "fanova", "--format", "json").stdout
    )
    assert only["ped_anova"] is None and only["fanova"] is not None and only["per_epoch"] == []
    out = tmp_path / "report.html"
    report = sweeper("report", *common, *asked, "-o", str(out))
    assert report.returncode == 0, report.stderr
    assert "Optuna's evaluators" in out.read_text(encoding="utf-8")


@pytest.mark.slow
def test_importance_png_through_kaleido_and_chromium(shared_url: str, tmp_path: Path) -> None:
    png = tmp_path / "importance.png"
    result = sweeper(
        "importance", "--study", "cifar10-adamw", "--storage", shared_url, "--plot", str(png)
    )
    assert result.returncode == 0, result.stderr
    head = png.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    assert (width, height) == (1300, 500)  # the importance figure's own height


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("report", "--study", "nope", "-o", "{tmp}/r.html"), "no study named 'nope'"),
        (
            ("report", "--study", "cifar10-adamw", "-o", "{tmp}/r.pdf"),
            "the output must end in .html or .htm",
        ),
        (("report", "--study", "cifar10-adamw", "-o", "{tmp}/no/r.html"), "does not exist"),
        (("report", "--study", "cifar10-adamw", "-o", "{tmp}"), "the output must end in"),
        (
            ("importance", "--study", "cifar10-adamw", "--plot", "{tmp}/p.jpg"),
            "must end in .html or .htm or .png",
        ),
        (("importance", "--study", "cifar10-adamw", "--format", "xml"), "invalid choice: 'xml'"),
        (
            ("importance", "--study", "cifar10-adamw", "--evaluators", "ped-anova,forest"),
            "unknown evaluator forest (choose from ped-anova, fanova)",
        ),
        (("dashboard", "--port", "70000"), "--port 70000 is not a port number"),
        (("dashboard", "--refresh", "0"), "--refresh 0 must be a number of seconds in (0, 86400]"),
        (("dashboard", "--study", "nope", "--port", "0"), "no study named 'nope'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    shared_url: str,
    tmp_path: Path,
    args: tuple[str, ...],
    expected: str,
) -> None:
    argv = [a.format(tmp=tmp_path) for a in args]
    result = sweeper(*argv, "--storage", shared_url)
    assert result.returncode == 2, (result.returncode, result.stderr)
    line = one_line_error(result)
    assert expected in line, line
    assert not list(tmp_path.glob("*.html"))


def test_best_answers_with_its_noise_json_and_table(storage_url: str) -> None:
    """A replicated study: the best configuration's mean over 3 seeds with its interval, the
    configurations within noise, and the old keys (value, params, number, seed, provenance)."""
    from analysis.truths import replicated, split_grid

    from .factory import create_study

    trials, spec = replicated()
    create_study(storage_url, "rep", trials, spec=spec)
    result = sweeper("best", "--study", "rep", "--storage", storage_url, "--format", "json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    # The top level is the best configuration: its first trial, its parameters, and its value
    # from its two replicates (0.72, 0.71), the search run that chose it left out.
    assert doc["number"] == 0 and doc["params"] == {"lr": 4.6e-4, "weight_decay": 1e-3}
    assert doc["value"] == pytest.approx(0.715) and doc["optimizer"] == "adamw"
    low, high = doc["ci95"]
    assert low < 0.715 < high and doc["estimate"]["basis"] == "its 2 seed replicates"
    # The best single run keeps its own name and its old keys.
    run = doc["best_run"]
    assert run["number"] == 1 and run["value"] == pytest.approx(0.72)
    assert run["params"] == {"lr": 4.6e-4, "weight_decay": 1e-3} and run["seed"] == 1001
    assert "provenance" in run and run["epochs_run"] == 2
    conf = doc["configuration"]
    assert conf["n_seeds"] == 3 and conf["seeds"] == [1000, 1001, 1002]
    assert conf["mean"] == pytest.approx(0.71)
    assert conf["ci95"] == [pytest.approx(0.6963, abs=1e-4), pytest.approx(0.7237, abs=1e-4)]
    assert doc["noise"]["sd_per_run"] == pytest.approx(0.01118, abs=1e-5)
    assert doc["noise"]["replicated_configurations"] == 3 and doc["noise"]["n_val"] == 5000
    assert [c["mean"] for c in doc["within_noise"]] == [
        pytest.approx(0.71),
        pytest.approx(0.705),
        pytest.approx(0.69),
    ]
    assert doc["within_noise_ranges"]["lr"] == [4.6e-4, 1e-3]
    assert doc["verdict"].endswith("3 configurations within noise of the best")
    assert {c["kind"] for c in doc["claims"]} == {"untestable"}  # six configurations
    assert doc["warnings"] and "shrinks weights by 1.2%" in doc["warnings"][0]

    trials, spec = split_grid()
    create_study(storage_url, "split", trials, spec=spec)
    table = sweeper("best", "--study", "split", "--storage", storage_url, "--margin", "2")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].startswith("best configuration: adamw lr ") and "95% CI" in lines[0]
    assert "corrected for being chosen as the best of 32" in lines[0]
    assert "claims (margin ±2 points, 95% each):" in table.stdout
    assert any(line.split()[:3] == ["matters", "lr", "matters"] for line in lines)
    assert "within noise of the best: 15 configurations" in table.stdout
    assert "best single run" in table.stdout
    assert "optimizer_impl" in table.stdout  # provenance still listed


def test_importance_and_report_on_equal_values_exit_0(storage_url: str, tmp_path: Path) -> None:
    """>= 8 trials with one value made fANOVA raise and both commands exit 1."""
    from analysis.truths import split_grid, uniform

    from .factory import create_study

    trials, spec = uniform()
    create_study(storage_url, "uniform", trials, spec=spec)
    common = ("--study", "uniform", "--storage", storage_url)
    result = sweeper("importance", *common, "--format", "json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["fanova"] is None and doc["notes"][0].startswith("every completed trial scored")
    assert doc["by_optimizer"]["adamw"]["shares"] is None
    report = sweeper("report", *common, "-o", str(tmp_path / "r.html"))
    assert report.returncode == 0, report.stderr

    trials, spec = split_grid()
    create_study(storage_url, "split", trials, spec=spec)
    doc = json.loads(
        sweeper(
            "importance", "--study", "split", "--storage", storage_url, "--format", "json"
        ).stdout
    )
    wd = doc["by_optimizer"]["adam"]["shares"]["weight_decay"]
    assert wd["share"] > 0.95 and wd["ci95"][0] > 0.95 and wd["shown"] is True
    assert doc["by_optimizer"]["adamw"]["shares"]["weight_decay"]["share"] < 0.01
    assert doc["optimizer_interaction"]["shares"]["optimizer x weight_decay"]["shown"] is True
    table = sweeper("importance", "--study", "split", "--storage", storage_url).stdout
    assert "adam (16 runs): lr " in table and "across optimizers" in table


@pytest.mark.parametrize("command", ["best", "importance", "report"])
def test_read_only_commands_skip_optuna_s_schema_set_up(
    command: str, shared_url: str, tmp_path: Path
) -> None:
    """On a database that holds this Optuna's schema, the commands that only read open it
    without table creation and alembic's schema check (``_optuna.reader``): alembic is
    never imported. Checked in a fresh interpreter, through the console script's ``main``."""
    code = (
        "import sys\n"
        "from sweeper.cli import main\n"
        "code = main(sys.argv[1:])\n"
        "assert 'alembic' not in sys.modules, 'alembic was imported'\n"
        "sys.exit(code)\n"
    )
    args = [command, "--study", "adam-vs-adamw", "--storage", shared_url]
    if command == "report":
        args += ["-o", str(tmp_path / "r.html")]
    result = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    "command",
    [
        ["report", "--study", "adam-vs-adamw", "-o"],
        ["importance", "--study", "cifar10-adamw", "--plot"],
    ],
    ids=["report", "importance-plot"],
)
def test_a_full_disk_leaves_no_partial_file(
    command: list[str], shared_url: str, tmp_path: Path
) -> None:
    """The output folder is a real 1 MiB tmpfs (mounted in a mount namespace of the command's
    own, so nothing stays mounted): either HTML inlines plotly.js (~4.6 MB) and cannot fit.
    One line, exit 1, and the folder holds nothing afterwards."""
    import os
    import shutil
    import subprocess

    from clirun import SCRIPT

    assert shutil.which("unshare"), "util-linux's unshare makes the command's own tmpfs"
    folder = tmp_path / "small"
    folder.mkdir()
    out = folder / "out.html"
    # Run the command on the tmpfs, then list what it left there (still inside the namespace).
    listing = tmp_path / "left.txt"
    script = 'mount -t tmpfs -o size=1M tmpfs "$0" && "$@"; c=$?; ls -A "$0" > "$LEFT"; exit $c'
    result = subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script, str(folder),
         str(SCRIPT), *command, str(out), "--storage", shared_url],
        capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "LEFT": str(listing)},
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    line = one_line_error(result)
    assert line == f"sweeper: error: cannot write {out}: No space left on device", line
    assert listing.read_text() == "", f"left in the full folder: {listing.read_text()!r}"
