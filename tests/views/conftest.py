"""Fixtures of the view tests."""

from __future__ import annotations

import pytest
from dashboard.factory import synthetic_trials

from sweeper.snapshot import StudySnapshot, from_trials


@pytest.fixture(scope="module")
def both() -> StudySnapshot:
    return from_trials(synthetic_trials(160, optimizers=("adamw", "adam"), epochs=4, n_failed=2))
