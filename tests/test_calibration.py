"""``bench/calibration.py``'s fast subset: the claims' goals hold on studies of known truth.

The full harness (200 studies per family, ``python bench/calibration.py``) is in the README.
Here 25 studies of each of nine families (seed 0, so the same draws every run). Each bound
below is loose enough that a tool meeting its goal fails it with probability below 1e-3
(binomial sd at n = 225 studies: 1.5 points at p = 0.95 or 0.05), and tight enough to catch
the rules this replaced, measured at 24/32 = 75% coverage for the best's interval and 22/40
false "lr does not" on such studies.
"""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
FAMILIES = (
    "flat sd1",
    "lr-only 4pt",
    "wd-only 4pt",
    "adam+adamw",
    "concentrated lr 6pt",
    "pruned lr 6pt",
    "confirm lr 4pt",
    "big wd 0pt",
    "big wd 1.5pt",
)
STUDIES = 25


@pytest.fixture(scope="module")
def harness() -> ModuleType:
    spec = importlib.util.spec_from_file_location("calibration", ROOT / "bench" / "calibration.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["calibration"] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


def test_the_fast_subset_meets_every_goal(harness: ModuleType) -> None:
    fams = [f for f in harness._families() if f.name.startswith(FAMILIES)]
    assert len(fams) == len(FAMILIES)
    results = harness.run(fams, STUDIES, 0)
    total = harness.Tally()
    for t in results.values():
        for name, value in vars(t).items():
            if isinstance(value, int):
                setattr(total, name, getattr(total, name) + value)
    table = harness.table(results)
    # Coverage goal 93%: at a true 95%, 225 studies fall below 88% with probability < 1e-5.
    assert total.covered / total.coverage_n >= 0.88, table
    # False absence and presence goals 5%: at a true 5%, above 11% has probability < 1e-3.
    assert total.false_absent_studies <= 0.11 * total.studies, table
    assert total.false_present_studies <= 0.11 * total.studies, table
    # Share and slope coverage goals 90%.
    assert total.share_in / total.share_n >= 0.85, table
    assert total.slope_in / total.slope_n >= 0.85, table
    # Not calibrated by saying nothing: a real 4-point effect is found with replicates, and
    # a flat wd is called "does not matter" where the study is large enough to bound it.
    confirm, big = results["confirm lr 4pt"], results["big wd 0pt (120x4 seeds)"]
    assert confirm.powered >= 0.7 * confirm.power_n, table
    assert big.absent_right >= 0.7 * big.absent_n > 0, table


def test_the_harness_knows_its_truths(harness: ModuleType) -> None:
    """The accounting's yardsticks, worked by hand: a 4-point lr peak at u = 0.6 drops 4
    points at u = 0, less the lattice's miss of the peak (its nearest point, 14/24, is 1/60
    away: 0.04 (1 - (1/60 / 0.6)^2) = 0.039969);
    Adam's coupled family's ridge u* = 0.6 - 0.4 (v - 1/2) has slope -0.4 x (1 decade of lr /
    2 of wd) = -0.2; a flat truth has no ridge and no shares."""
    fams = {f.name: f for f in harness._families()}
    lr4 = harness._lattice_truth(fams["lr-only 4pt"], "adamw", harness.LATTICE, False)
    effect = harness.effect_range(lr4.ravel()[None, :], "lr")[0]
    assert effect == pytest.approx(0.04 * (1 - (1 / 60 / 0.6) ** 2), abs=1e-12)
    assert harness._true_slope(fams["adam+adamw"], "adam") == pytest.approx(-0.2)
    assert harness._true_slope(fams["adam+adamw"], "adamw") == pytest.approx(0.0, abs=1e-12)
    assert harness._true_slope(fams["flat sd1"], "adamw") is None
    flat = harness._lattice_truth(fams["flat sd1"], "adamw", 24, True)
    assert harness.true_shares(flat) is None
    # A drawn study holds its search, its pruned trials and its replicates as workers would.
    study = harness.draw(fams["pruned lr 6pt"], np.random.default_rng(0))
    states = [t.state.name for t in study.snap.trials]
    assert "PRUNED" in states and len(states) == 64
    assert all(math.isfinite(v) for v in study.truth.values())
    rep = harness.draw(fams["confirm lr 4pt"], np.random.default_rng(0))
    assert sum("replicate_of" in t.user_attrs for t in rep.snap.trials) == 8
