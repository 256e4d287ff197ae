"""The Triton kernel behind ``FusedAdamW``: one launch updates every parameter of every group.

Contract between the launcher (``launch``) and the kernel:

- ``param``, ``grad``, ``exp_avg``, ``exp_avg_sq`` (and ``max_exp_avg_sq`` when any group uses
  AMSGrad) are flat, contiguous float32 buffers of one length. Parameter ``i`` occupies
  ``[offset_i, offset_i + numel_i)``; every ``offset_i`` is a multiple of ``ALIGN`` and the
  buffers reach every parameter's padded end (``offset_i + round_up(numel_i, ALIGN)``).
  ``layout`` computes such offsets.
- ``blocks`` is an int64 table with one row per program (``block_table`` builds it):
  ``(start, stop, padded_stop, group, param)``. A program owns ``[start, start + BLOCK)``
  clipped to ``padded_stop``; no block spans two parameters, and every parameter, even an
  empty one, owns at least one block (its step count lives there). Elements in
  ``[stop, padded_stop)`` are padding: read, and written back unchanged.
- ``steps[b]`` is block ``b``'s copy of its parameter's step count (float32, like torch's
  ``state["step"]``). All blocks of a parameter hold the same value, so each program updates
  its own copy and no two programs ever write one address.
- ``active[param] != 0`` means the parameter got a gradient this step. Blocks of an inactive
  parameter read nothing and write nothing, its step count included (torch skips a parameter
  whose ``.grad`` is None).
- ``hyper[group, :]`` holds the group's hyperparameters as float64 in the ``HYPER_*``
  columns (``hyper_row`` fills one). Changing a value there changes the next step: nothing is
  baked into the compiled kernel, so an LR schedule never recompiles it.

The kernel promises torch's math in torch's order (``sweeper.optim.reference`` is the same
math in plain torch, one comment per numeric choice): scalars that torch computes in Python
double are computed in float64 on the device and rounded to float32 once, as ATen rounds a
Python scalar; element math is float32 with IEEE-rounded ``sqrt`` and division (``sqrt_rn``,
``div_rn``), where Triton's defaults would be approximate. Bias corrections come from the
step count on the device, so a step needs no host synchronisation and can be captured in a
CUDA graph.

On CUDA the kernel is compiled; on the CPU the same function runs under Triton's
interpreter (what ``TRITON_INTERPRET=1`` does), which is how the tests exercise it on every
machine. ``adamw_kernel(interpret=...)`` builds either, in any order, in one process.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import triton
import triton.language as tl
from triton import knobs

# Elements per program. 1024 float32 with 4 warps is 8 elements (two 16-byte vectors) per
# thread per buffer. Measured with these values (issue 12, NVIDIA H200, torch 2.11, triton
# 3.6, bench/adamw_step.py --quick): K=64 packed SimpleCNNs (34.9M params) step in 0.298 ms,
# 3274 GB/s, 78% of the copy bandwidth measured in the same run. ptxas (triton 3.8's, -v)
# reports 92-124 registers per thread and no spills for sm_80/sm_90 (tests/optim/test_kernel.py);
# other shapes are not yet measured on a GPU: ``bench/adamw_step.py --kernel-shapes`` does it.
BLOCK = 1024
NUM_WARPS = 4
# Parameter offsets are multiples of 32 elements (128 bytes, one cache line), so every block
# starts aligned and the compiler may use 16-byte vector loads and stores; ``padded_stop`` is
# a multiple of 32 too, so the load/store mask is constant over each vector.
ALIGN = 32

# Columns of the float64 hyperparameter table, one row per parameter group. The kernel reads
# them as constexpr globals; ``hyper_row`` writes them. Width 16 = one 128-byte line per row.
HYPER_WIDTH: tl.constexpr = tl.constexpr(16)
HYPER_LR: tl.constexpr = tl.constexpr(0)
HYPER_ONE_MINUS_BETA1: tl.constexpr = tl.constexpr(1)  # the lerp weight of exp_avg
HYPER_BETA2: tl.constexpr = tl.constexpr(2)
HYPER_ONE_MINUS_BETA2: tl.constexpr = tl.constexpr(3)
HYPER_EPS: tl.constexpr = tl.constexpr(4)
HYPER_WEIGHT_DECAY: tl.constexpr = tl.constexpr(5)  # coupled L2 coefficient (mode "adam")
HYPER_DECAY_FACTOR: tl.constexpr = tl.constexpr(6)  # 1 - lr * weight_decay (mode "adamw")
HYPER_LOG_BETA1: tl.constexpr = tl.constexpr(7)
HYPER_LOG_BETA2: tl.constexpr = tl.constexpr(8)
HYPER_DECOUPLED: tl.constexpr = tl.constexpr(9)  # 1.0: multiply param by the decay factor
HYPER_COUPLED: tl.constexpr = tl.constexpr(10)  # 1.0: add weight_decay * param to the grad
HYPER_MAXIMIZE: tl.constexpr = tl.constexpr(11)
HYPER_AMSGRAD: tl.constexpr = tl.constexpr(12)

# Columns of the int64 block table.
BLOCK_COLUMNS = 5  # start, stop, padded_stop, group, param


def _adamw_kernel(
    param_ptr: tl.tensor,  # *fp32, flat
    grad_ptr: tl.tensor,  # *fp32, flat
    exp_avg_ptr: tl.tensor,  # *fp32, flat
    exp_avg_sq_ptr: tl.tensor,  # *fp32, flat
    max_exp_avg_sq_ptr: tl.tensor,  # *fp32, flat; not read unless HAS_AMSGRAD
    blocks_ptr: tl.tensor,  # *i64, [n_blocks, 5]
    steps_ptr: tl.tensor,  # *fp32, [n_blocks]
    active_ptr: tl.tensor,  # *i8, [n_params]
    hyper_ptr: tl.tensor,  # *fp64, [n_groups, HYPER_WIDTH]
    HAS_AMSGRAD: tl.constexpr,
    BLOCK: tl.constexpr,
    ALIGN: tl.constexpr,
) -> None:
    """One block of one parameter: the update of ``reference.adam_step``."""
    pid = tl.program_id(0).to(tl.int64)
    row = blocks_ptr + pid * 5
    start = tl.multiple_of(tl.load(row), ALIGN)
    stop = tl.load(row + 1)
    padded_stop = tl.multiple_of(tl.load(row + 2), ALIGN)
    group = tl.load(row + 3)
    param = tl.load(row + 4)
    active = tl.load(active_ptr + param) != 0

    h = hyper_ptr + group * HYPER_WIDTH
    lr = tl.load(h + HYPER_LR)
    log_beta1 = tl.load(h + HYPER_LOG_BETA1)
    log_beta2 = tl.load(h + HYPER_LOG_BETA2)
    # Scalars torch passes to ATen as Python floats are rounded to float32 once, here.
    lerp_weight = tl.load(h + HYPER_ONE_MINUS_BETA1).to(tl.float32)
    beta2 = tl.load(h + HYPER_BETA2).to(tl.float32)
    one_minus_beta2 = tl.load(h + HYPER_ONE_MINUS_BETA2).to(tl.float32)
    eps = tl.load(h + HYPER_EPS).to(tl.float32)
    weight_decay = tl.load(h + HYPER_WEIGHT_DECAY).to(tl.float32)
    decay_factor = tl.load(h + HYPER_DECAY_FACTOR).to(tl.float32)
    decoupled = tl.load(h + HYPER_DECOUPLED) != 0.0
    coupled = tl.load(h + HYPER_COUPLED) != 0.0
    maximize = tl.load(h + HYPER_MAXIMIZE) != 0.0
    amsgrad = tl.load(h + HYPER_AMSGRAD) != 0.0

    # torch: step_t += 1 on a float32 tensor (exact below 2**24 steps).
    step = tl.load(steps_ptr + pid) + 1.0
    t = step.to(tl.float64)
    # torch: 1 - beta ** step in Python double. beta ** t = exp(t * log(beta)) in float64
    # (the interpreter has no float64 pow); the two differ by ~1e-15 relative, which the
    # rounding to float32 below erases. log(0) = -inf gives beta ** t = 0 for beta = 0.
    bias_correction1 = 1.0 - tl.exp(t * log_beta1)
    bias_correction2 = 1.0 - tl.exp(t * log_beta2)
    # torch: value=-step_size with step_size = lr / bias_correction1 (double), and
    # bias_correction2 ** 0.5 (double); each rounded to float32 where ATen uses it.
    neg_step_size = (-(lr / bias_correction1)).to(tl.float32)
    bias_correction2_sqrt = tl.sqrt(bias_correction2).to(tl.float32)

    offs = start + tl.arange(0, BLOCK)
    # An inactive parameter's blocks get an empty range. Selecting between two multiples of
    # ALIGN (rather than and-ing masks) keeps the mask provably constant per 16-byte vector.
    limit = tl.multiple_of(tl.where(active, padded_stop, start), ALIGN)
    mask = offs < limit
    real = offs < stop
    p = tl.load(param_ptr + offs, mask=mask, other=0.0)
    g = tl.load(grad_ptr + offs, mask=mask, other=0.0)
    m = tl.load(exp_avg_ptr + offs, mask=mask, other=0.0)
    v = tl.load(exp_avg_sq_ptr + offs, mask=mask, other=0.0)

    # maximize: grad = -grad (exact).
    g = tl.where(maximize, -g, g)
    # mode "adamw" (decoupled, only when weight_decay != 0): param.mul_(1 - lr * wd).
    p_decayed = tl.where(decoupled, p * decay_factor, p)
    # mode "adam" (coupled L2, only when weight_decay != 0): grad = grad.add(param, alpha=wd),
    # with the parameter before this step's update.
    g = tl.where(coupled, g + weight_decay * p, g)
    # exp_avg.lerp_(grad, 1 - beta1): ATen's lerp takes the form that is exact at its end
    # point: start + w * (end - start) for |w| < 0.5, else end - (end - start) * (1 - w).
    diff = g - m
    m_new = tl.where(lerp_weight < 0.5, m + lerp_weight * diff, g - diff * (1.0 - lerp_weight))
    # exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2): (value * g) * g, as ATen.
    v_new = v * beta2 + one_minus_beta2 * g * g
    if HAS_AMSGRAD:
        v_max = tl.load(max_exp_avg_sq_ptr + offs, mask=mask, other=0.0)
        # torch.maximum propagates NaN; so does this.
        v_max_new = tl.maximum(v_max, v_new, propagate_nan=tl.PropagateNan.ALL)
        v_hat = tl.where(amsgrad, v_max_new, v_new)
    else:
        v_hat = v_new
    # denom = (v.sqrt() / bias_correction2_sqrt).add_(eps), IEEE sqrt and division.
    denom = tl.div_rn(tl.sqrt_rn(v_hat), bias_correction2_sqrt) + eps
    # param.addcdiv_(exp_avg, denom, value=-step_size): param + (value * exp_avg) / denom.
    p_new = p_decayed + tl.div_rn(neg_step_size * m_new, denom)

    # Padding stays as it was.
    tl.store(param_ptr + offs, tl.where(real, p_new, p), mask=mask)
    tl.store(exp_avg_ptr + offs, tl.where(real, m_new, m), mask=mask)
    tl.store(exp_avg_sq_ptr + offs, tl.where(real, v_new, v), mask=mask)
    if HAS_AMSGRAD:
        ams_limit = tl.multiple_of(tl.where(amsgrad, limit, start), ALIGN)
        tl.store(max_exp_avg_sq_ptr + offs, tl.where(real, v_max_new, v_max), mask=offs < ams_limit)
    tl.store(steps_ptr + pid, step, mask=active)


_KERNELS: dict[bool, Any] = {}


def adamw_kernel(interpret: bool) -> Any:
    """The kernel, compiled for the GPU (``interpret=False``) or run by Triton's interpreter.

    Triton decides between the two when a function is decorated, from ``TRITON_INTERPRET``;
    decorating here, under an explicit setting, lets one process hold both and makes the
    choice independent of when triton was first imported.
    """
    if interpret not in _KERNELS:
        with knobs.runtime.scope():
            knobs.runtime.interpret = interpret
            _KERNELS[interpret] = triton.jit(_adamw_kernel)
    return _KERNELS[interpret]


def interpret_by_default() -> bool:
    """True when ``TRITON_INTERPRET=1`` asks for the interpreter even on a GPU."""
    return bool(knobs.runtime.interpret)


def layout(numels: Sequence[int], align: int) -> tuple[list[int], int]:
    """Offsets of tensors of ``numels`` elements packed in order, each a multiple of ``align``.

    Returns ``(offsets, total)`` where ``total`` covers the last tensor's padded end.
    """
    offsets = []
    cursor = 0
    for n in numels:
        offsets.append(cursor)
        cursor += _round_up(n, align)
    return offsets, cursor


def block_table(
    offsets: Sequence[int], numels: Sequence[int], groups: Sequence[int], device: torch.device
) -> tuple[torch.Tensor, list[tuple[int, int]]]:
    """The kernel's block table and, per parameter, its ``[first, last + 1)`` block range.

    Every parameter gets ``max(1, ceil(numel / BLOCK))`` blocks, so an empty parameter still
    has a block that carries its step count.
    """
    rows: list[tuple[int, int, int, int, int]] = []
    ranges: list[tuple[int, int]] = []
    for param, (offset, n, group) in enumerate(zip(offsets, numels, groups, strict=True)):
        if offset % ALIGN:
            raise ValueError(f"offset {offset} of parameter {param} is not a multiple of {ALIGN}")
        stop = offset + n
        padded_stop = offset + _round_up(n, ALIGN)
        first = len(rows)
        for start in range(offset, offset + max(n, 1), BLOCK):
            rows.append((start, stop, padded_stop, group, param))
        ranges.append((first, len(rows)))
    table = torch.tensor(rows, dtype=torch.int64).reshape(-1, BLOCK_COLUMNS)
    return table.to(device), ranges


def hyper_row(
    *,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    amsgrad: bool,
    maximize: bool,
    decoupled: bool,
) -> list[float]:
    """One group's row of the hyperparameter table, every value computed in Python double.

    The expressions are torch's own (``1 - beta1``, ``1 - lr * weight_decay``, ...), so after
    the kernel rounds them to float32 they equal the scalars ATen receives from torch.
    """
    row = [0.0] * int(HYPER_WIDTH)
    row[int(HYPER_LR)] = lr
    row[int(HYPER_ONE_MINUS_BETA1)] = 1 - beta1
    row[int(HYPER_BETA2)] = beta2
    row[int(HYPER_ONE_MINUS_BETA2)] = 1 - beta2
    row[int(HYPER_EPS)] = eps
    row[int(HYPER_WEIGHT_DECAY)] = weight_decay
    row[int(HYPER_DECAY_FACTOR)] = 1 - lr * weight_decay
    row[int(HYPER_LOG_BETA1)] = math.log(beta1) if beta1 > 0 else -math.inf
    row[int(HYPER_LOG_BETA2)] = math.log(beta2) if beta2 > 0 else -math.inf
    # torch applies weight decay only when weight_decay != 0 (multiplying by 1.0 or adding
    # 0 * param would still turn an inf parameter into NaN).
    row[int(HYPER_DECOUPLED)] = float(decoupled and weight_decay != 0)
    row[int(HYPER_COUPLED)] = float(not decoupled and weight_decay != 0)
    row[int(HYPER_MAXIMIZE)] = float(maximize)
    row[int(HYPER_AMSGRAD)] = float(amsgrad)
    return row


def launch_variants() -> list[dict[str, Any]]:
    """Every specialisation ``launch`` can ask for: its constexpr arguments and ``num_warps``.

    The offline GPU compile test (tests/optim/test_kernel.py) compiles each of these.
    """
    return [
        {"HAS_AMSGRAD": has_amsgrad, "BLOCK": BLOCK, "ALIGN": ALIGN, "num_warps": NUM_WARPS}
        for has_amsgrad in (False, True)
    ]


def launch(
    kernel: Any,
    *,
    param: torch.Tensor,
    grad: torch.Tensor,
    exp_avg: torch.Tensor,
    exp_avg_sq: torch.Tensor,
    max_exp_avg_sq: torch.Tensor | None,
    blocks: torch.Tensor,
    steps: torch.Tensor,
    active: torch.Tensor,
    hyper: torch.Tensor,
) -> None:
    """Run one AdamW step over the flat buffers: a single kernel launch, no host sync.

    ``max_exp_avg_sq`` is None when no group uses AMSGrad; the kernel is then specialised
    without it (one extra compile the first time a group turns AMSGrad on).
    """
    has_amsgrad = max_exp_avg_sq is not None
    kernel[(blocks.shape[0],)](
        param,
        grad,
        exp_avg,
        exp_avg_sq,
        max_exp_avg_sq if has_amsgrad else exp_avg_sq,  # never read without AMSGrad
        blocks,
        steps,
        active,
        hyper,
        HAS_AMSGRAD=has_amsgrad,
        BLOCK=BLOCK,
        ALIGN=ALIGN,
        num_warps=NUM_WARPS,
    )


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple
