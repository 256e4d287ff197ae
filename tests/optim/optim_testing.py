"""Helpers shared by the optimizer tests: float32 comparison with the measured error reported.

Not a conftest.py: the suite's root conftest is imported by name (``from conftest import``),
which a second conftest module would shadow.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

# Float32 tolerances for an optimizer against torch (bitsandbytes and optimi use the same):
# the implementations differ only in rounding (fused multiply-adds, float64 exp vs pow).
ATOL = 1e-6
RTOL = 1e-5


def max_errors(actual: torch.Tensor, expected: torch.Tensor) -> tuple[float, float]:
    """(max absolute error, max relative error) of ``actual`` against ``expected``."""
    if actual.numel() == 0:
        return 0.0, 0.0
    a = actual.detach().double().cpu()
    e = expected.detach().double().cpu()
    diff = (a - e).abs()
    # Relative error where the expected value is not tiny; elsewhere the absolute term rules.
    rel = diff / e.abs().clamp_min(1e-30)
    return float(diff.max()), float(rel.max())


def assert_close_fp32(actual: torch.Tensor, expected: torch.Tensor, label: str) -> None:
    """``torch.testing.assert_close`` at atol 1e-6, rtol 1e-5, naming the measured error."""
    assert actual.shape == expected.shape, f"{label}: shape {actual.shape} != {expected.shape}"
    max_abs, max_rel = max_errors(actual, expected)
    torch.testing.assert_close(
        actual.detach().cpu(),
        expected.detach().cpu(),
        atol=ATOL,
        rtol=RTOL,
        msg=lambda default: (
            f"{label}: max abs error {max_abs:.3e}, max rel error {max_rel:.3e} "
            f"(atol {ATOL}, rtol {RTOL})\n{default}"
        ),
    )


def assert_equal_bits(actual: torch.Tensor, expected: torch.Tensor, label: str) -> None:
    """Bit-for-bit equality (NaNs included), naming the measured error if it fails."""
    max_abs, _ = max_errors(actual, expected)
    assert actual.shape == expected.shape, f"{label}: shape {actual.shape} != {expected.shape}"
    assert torch.equal(actual.detach().cpu(), expected.detach().cpu()), (
        f"{label}: not bit-identical, max abs error {max_abs:.3e}"
    )


@pytest.fixture(autouse=True)
def one_intra_op_thread() -> Iterator[None]:
    """Run each optimizer test with one ATen thread, restoring the setting afterwards.

    Import it into a test module to apply it there. These tests check numbers, not speed: on
    a busy 2-core CI machine OpenMP's worker threads get descheduled and a 65k-element op can
    take 100x its time; elementwise results do not depend on the thread count.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
