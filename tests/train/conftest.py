"""Fixtures for the training tests: one data set per module, one ATen thread per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from sweeper.spec import DataSpec
from sweeper.train.data import Dataset, load_dataset


@pytest.fixture(scope="module")
def data(tiny_official: Path) -> Dataset:
    return load_dataset(DataSpec(), str(tiny_official))


@pytest.fixture(autouse=True)
def one_intra_op_thread() -> Iterator[None]:
    """Every training test runs with one ATen thread, so its float results are deterministic
    by construction.

    With several threads, oneDNN's convolution backward splits its weight-gradient reduction
    across threads, and which partial sums meet first depends on scheduling: on a loaded
    2-core machine two runs of the same step differed by ~1e-7, compounded by Adam's division
    by sqrt(v) to 2.3e-5 after three epochs (the flaky pack-equivalence failure of issue 13).
    One thread fixes the summation order.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
