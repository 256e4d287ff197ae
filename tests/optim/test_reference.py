"""The plain-torch reference is documentation: prove it equals torch.optim.AdamW / Adam.

The reference uses the same ATen calls in the same order as torch's single-tensor path, so
on one machine it must agree bit for bit, including parameters skipped on some steps.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from optim_testing import (  # one_intra_op_thread: an autouse fixture
    assert_equal_bits,
    one_intra_op_thread,  # noqa: F401
)

from sweeper.optim.reference import ReferenceAdam

SHAPES = [(1,), (7,), (33, 31), (65537,), (0,), (5, 0)]
STEPS = 20

CONFIGS: list[dict[str, Any]] = [
    {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 1e-2},
    {"lr": 1e-2, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0},
    {"lr": 5e-2, "betas": (0.3, 0.5), "eps": 1e-6, "weight_decay": 0.05},  # lerp weight > 0.5
    {"lr": 1e-3, "betas": (0.0, 0.99), "eps": 0.0, "weight_decay": 0.1},
    {"lr": 1e-2, "betas": (0.8, 0.95), "eps": 1e-8, "weight_decay": 0.1, "amsgrad": True},
    {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 1e-2, "maximize": True},
]


def _params(seed: int) -> list[torch.nn.Parameter]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(shape, generator=gen)) for shape in SHAPES]


@pytest.mark.parametrize("decoupled", [True, False], ids=["adamw", "adam"])
@pytest.mark.parametrize(
    "config", CONFIGS, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items())
)
def test_reference_equals_torch_bit_for_bit(config: dict[str, Any], decoupled: bool) -> None:
    ours, theirs = _params(0), _params(0)
    reference = ReferenceAdam(list(ours), decoupled=decoupled, **config)
    torch_class = torch.optim.AdamW if decoupled else torch.optim.Adam
    torch_opt = torch_class(theirs, foreach=False, **config)
    gen = torch.Generator().manual_seed(1)
    for step in range(STEPS):
        for i, (p, q) in enumerate(zip(ours, theirs, strict=True)):
            skipped = (i == 1 and step % 3 == 1) or (i == 2 and step < 4)
            g = torch.randn(p.shape, generator=gen)
            p.grad = None if skipped else g.clone()
            q.grad = None if skipped else g.clone()
        reference.step()
        torch_opt.step()
        for i, (p, q) in enumerate(zip(ours, theirs, strict=True)):
            label = f"step {step}, param {i}"
            assert_equal_bits(p, q, f"{label}, param")
            assert (i in reference.state) == (q in torch_opt.state), label
            if q in torch_opt.state:
                mine, torchs = reference.state[i], torch_opt.state[q]
                assert float(mine["step"]) == float(torchs["step"]), label
                for key in ("exp_avg", "exp_avg_sq"):
                    assert_equal_bits(mine[key], torchs[key], f"{label}, {key}")
                if config.get("amsgrad"):
                    assert_equal_bits(
                        mine["max_exp_avg_sq"], torchs["max_exp_avg_sq"], f"{label}, max"
                    )
