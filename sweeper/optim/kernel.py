"""The Triton kernel behind ``FusedAdamW``: one launch steps every tensor of one dtype.

Multi-tensor apply, as apex's and torch's fused optimizers do it, written in Triton. The
kernel owns no memory: it reads the optimizer's own tensors (each parameter, its gradient and
its ``state[p]`` tensors) through a device table of their addresses.

Contract between the launcher (``launch``) and the kernel:

- ``tensors`` is an int64 table, one row per parameter (``TENSOR_COLUMNS``): the addresses of
  the parameter, its gradient, ``exp_avg``, ``exp_avg_sq``, ``max_exp_avg_sq`` (0 when its
  group has no AMSGrad) and its float32 ``step`` (a 0-dim tensor), then its element count and
  its parameter group. The parameter, gradient and moments of a row have the dtype ``DTYPE``
  and one memory layout: each is dense (no gaps, no overlap) with the same strides, so element
  ``i`` of the memory block of each belongs to the same index. ``tensor_table`` builds a row.
- ``blocks`` is an int64 table, one row per program (``BLOCK_COLUMNS``): the tensor's row and
  the first element of the program's ``[start, start + BLOCK)`` span. Every tensor, even an
  empty one, owns at least one block (its step count is written by one of them).
- ``counters`` is an int32 scratch tensor with one zero per tensor row. The blocks of a
  tensor all read its step count before any of them writes it: each block increments its
  tensor's counter after reading (an acquire-release atomic), and the last block to arrive
  writes the new step and puts the counter back to zero. So one step per parameter, no
  second launch, and the scratch is zero again after every launch.
- ``hyper[group, :]`` holds the group's hyperparameters as float64 in the ``HYPER_*``
  columns (``hyper_row`` fills one). Nothing is baked into the compiled kernel, so an LR
  schedule never recompiles it.
- ``grad_scale`` / ``found_inf`` (float32, one element each, on the device; ``HAS_*`` say
  whether they are given) are what ``torch._fused_adamw_`` takes from ``GradScaler``: when
  ``found_inf != 0`` nothing is read or written (step counts included); otherwise every
  gradient is divided by ``grad_scale`` and the quotient is written back to the gradient, as
  ATen's fused kernels do.
- With ``ALIGNED``, every address in the table is a multiple of 16 bytes (the launcher checks)
  and blocks that lie wholly inside their tensor move memory in 16-byte vectors; the last,
  partial block of a tensor is masked element by element.

The kernel promises torch's math in torch's order (``sweeper.optim.reference`` is the same
math in plain torch, one comment per numeric choice): scalars that torch computes in Python
double are computed in float64 on the device and rounded to float32 once, as ATen rounds a
Python scalar; element math is float32 with IEEE-rounded ``sqrt`` and division (``sqrt_rn``,
``div_rn``), where Triton's defaults would be approximate. bfloat16 and float16 tensors are
loaded into float32, updated in float32 and rounded back once per store, as ATen's fused
kernels do (its "opmath"). Bias corrections come from the step count on the device, so a
step needs no host synchronisation and can be captured in a CUDA graph.

On CUDA the kernel is compiled; on the CPU the same function runs under Triton's
interpreter (what ``TRITON_INTERPRET=1`` does), which is how the tests exercise it on every
machine. ``adamw_kernel(interpret=...)`` builds either, in any order, in one process.
"""

from __future__ import annotations

import math
import types
from collections.abc import Sequence
from typing import Any

import torch
import triton
import triton.language as tl
from triton import knobs

# Elements per program. 1024 with 4 warps is 8 elements per thread per tensor: two 16-byte
# vectors of float32, one of bfloat16/float16. Measured for the previous (flat-buffer) kernel
# of the same per-element work (NVIDIA H200, torch 2.11, triton 3.6, bench/adamw_step.py
# --quick): K=64 packed SimpleCNNs step in 0.298 ms, 78% of the copy bandwidth measured in the
# same run. This table-driven kernel is not yet measured on a GPU: ``bench/adamw_step.py
# --kernel-shapes`` does it. ptxas (triton 3.8's, -v) reports no spills for sm_80/sm_90 in
# every specialisation the test compiles (tests/optim/test_kernel.py).
BLOCK = 1024
NUM_WARPS = 4
# Byte alignment every address needs for the vector path (one 16-byte vector).
ALIGN_BYTES = 16

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

# Columns of the int64 tensor table and of the int64 block table.
TENSOR_COLUMNS: tl.constexpr = tl.constexpr(8)
T_PARAM: tl.constexpr = tl.constexpr(0)
T_GRAD: tl.constexpr = tl.constexpr(1)
T_EXP_AVG: tl.constexpr = tl.constexpr(2)
T_EXP_AVG_SQ: tl.constexpr = tl.constexpr(3)
T_MAX_EXP_AVG_SQ: tl.constexpr = tl.constexpr(4)
T_STEP: tl.constexpr = tl.constexpr(5)
T_NUMEL: tl.constexpr = tl.constexpr(6)
T_GROUP: tl.constexpr = tl.constexpr(7)
BLOCK_COLUMNS: tl.constexpr = tl.constexpr(2)  # tensor row, start

# The dtypes the kernel updates, and Triton's name for each.
DTYPES: dict[torch.dtype, Any] = {
    torch.float32: tl.float32,
    torch.bfloat16: tl.bfloat16,
    torch.float16: tl.float16,
}


def _address(
    row: tl.tensor, column: tl.tensor, dtype: tl.constexpr, ALIGNED: tl.constexpr
) -> tl.tensor:
    """The pointer in ``row[column]``, typed; with ``ALIGNED``, known to be 16-byte aligned."""
    pointer = tl.load(row + column).to(tl.pointer_type(dtype))
    if ALIGNED:
        pointer = tl.multiple_of(pointer, 16)
    return pointer


def _to_dtype(x: tl.tensor, DTYPE: tl.constexpr) -> tl.tensor:
    """float32 ``x`` rounded to ``DTYPE`` to nearest, ties to even, as torch rounds.

    bfloat16 is rounded by hand, as c10::BFloat16 does (add 0x7FFF plus the lowest kept
    bit, keep the upper half; NaN stays a quiet NaN): the same bits compiled and under
    Triton's interpreter, whose own float32 -> bfloat16 conversion truncates.
    """
    if DTYPE == tl.bfloat16:  # noqa: SIM300 (DTYPE is the variable)
        bits = x.to(tl.uint32, bitcast=True)
        rounded = bits + (((bits >> 16) & 1) + 0x7FFF)
        rounded = tl.where(x != x, bits | 0x400000, rounded)
        return (rounded >> 16).to(tl.uint16).to(tl.bfloat16, bitcast=True)
    else:
        return x.to(DTYPE)


def _update(
    param_ptr: tl.tensor,
    grad_ptr: tl.tensor,
    exp_avg_ptr: tl.tensor,
    exp_avg_sq_ptr: tl.tensor,
    max_exp_avg_sq_ptr: tl.tensor,
    offs: tl.tensor,
    mask: tl.tensor,
    grad_scale: tl.tensor,
    lerp_weight: tl.tensor,
    beta2: tl.tensor,
    one_minus_beta2: tl.tensor,
    eps: tl.tensor,
    weight_decay: tl.tensor,
    decay_factor: tl.tensor,
    decoupled: tl.tensor,
    coupled: tl.tensor,
    maximize: tl.tensor,
    amsgrad: tl.tensor,
    neg_step_size: tl.tensor,
    bias_correction2_sqrt: tl.tensor,
    DTYPE: tl.constexpr,
    MASKED: tl.constexpr,
    HAS_AMSGRAD: tl.constexpr,
    HAS_GRAD_SCALE: tl.constexpr,
) -> None:
    """``reference.adam_step`` on the elements ``offs`` (``mask`` them when ``MASKED``)."""
    if MASKED:
        p_in = tl.load(param_ptr + offs, mask=mask, other=0.0)
        g_in = tl.load(grad_ptr + offs, mask=mask, other=0.0)
        m_in = tl.load(exp_avg_ptr + offs, mask=mask, other=0.0)
        v_in = tl.load(exp_avg_sq_ptr + offs, mask=mask, other=0.0)
    else:
        p_in = tl.load(param_ptr + offs)
        g_in = tl.load(grad_ptr + offs)
        m_in = tl.load(exp_avg_ptr + offs)
        v_in = tl.load(exp_avg_sq_ptr + offs)
    # ATen's opmath: low-precision tensors are updated in float32 (exact widening).
    p = p_in.to(tl.float32)
    g = g_in.to(tl.float32)
    m = m_in.to(tl.float32)
    v = v_in.to(tl.float32)
    if HAS_GRAD_SCALE:
        # ATen: grad /= grad_scale (a float divided in double and rounded to float: the same
        # as IEEE float32 division), and the unscaled gradient is stored back.
        g = tl.div_rn(g, grad_scale)
        if MASKED:
            tl.store(grad_ptr + offs, _to_dtype(g, DTYPE), mask=mask)
        else:
            tl.store(grad_ptr + offs, _to_dtype(g, DTYPE))
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
    v_hat = v_new
    # Nested, not `and`: the outer test is resolved at compile time, the inner at run time.
    if HAS_AMSGRAD:  # noqa: SIM102
        if amsgrad:
            if MASKED:
                v_max = tl.load(max_exp_avg_sq_ptr + offs, mask=mask, other=0.0).to(tl.float32)
            else:
                v_max = tl.load(max_exp_avg_sq_ptr + offs).to(tl.float32)
            # torch.maximum propagates NaN; so does this.
            v_hat = tl.maximum(v_max, v_new, propagate_nan=tl.PropagateNan.ALL)
            if MASKED:
                tl.store(max_exp_avg_sq_ptr + offs, _to_dtype(v_hat, DTYPE), mask=mask)
            else:
                tl.store(max_exp_avg_sq_ptr + offs, _to_dtype(v_hat, DTYPE))
    # denom = (v.sqrt() / bias_correction2_sqrt).add_(eps), IEEE sqrt and division.
    denom = tl.div_rn(tl.sqrt_rn(v_hat), bias_correction2_sqrt) + eps
    # param.addcdiv_(exp_avg, denom, value=-step_size): param + (value * exp_avg) / denom.
    p_new = p_decayed + tl.div_rn(neg_step_size * m_new, denom)
    if MASKED:
        tl.store(param_ptr + offs, _to_dtype(p_new, DTYPE), mask=mask)
        tl.store(exp_avg_ptr + offs, _to_dtype(m_new, DTYPE), mask=mask)
        tl.store(exp_avg_sq_ptr + offs, _to_dtype(v_new, DTYPE), mask=mask)
    else:
        tl.store(param_ptr + offs, _to_dtype(p_new, DTYPE))
        tl.store(exp_avg_ptr + offs, _to_dtype(m_new, DTYPE))
        tl.store(exp_avg_sq_ptr + offs, _to_dtype(v_new, DTYPE))


def _adamw_kernel(
    blocks_ptr: tl.tensor,  # *i64, [n_blocks, BLOCK_COLUMNS]
    tensors_ptr: tl.tensor,  # *i64, [n_tensors, TENSOR_COLUMNS]
    counters_ptr: tl.tensor,  # *i32, [n_tensors], zeros
    hyper_ptr: tl.tensor,  # *fp64, [n_groups, HYPER_WIDTH]
    grad_scale_ptr: tl.tensor,  # *fp32, [1]; not read unless HAS_GRAD_SCALE
    found_inf_ptr: tl.tensor,  # *fp32, [1]; not read unless HAS_FOUND_INF
    DTYPE: tl.constexpr,
    HAS_AMSGRAD: tl.constexpr,
    HAS_GRAD_SCALE: tl.constexpr,
    HAS_FOUND_INF: tl.constexpr,
    ALIGNED: tl.constexpr,
    BLOCK: tl.constexpr,
) -> None:
    """One block of one tensor: the update of ``reference.adam_step``."""
    pid = tl.program_id(0).to(tl.int64)
    tensor = tl.load(blocks_ptr + pid * BLOCK_COLUMNS)
    start = tl.multiple_of(tl.load(blocks_ptr + pid * BLOCK_COLUMNS + 1), BLOCK)
    row = tensors_ptr + tensor * TENSOR_COLUMNS
    run = True
    if HAS_FOUND_INF:
        run = tl.load(found_inf_ptr) == 0.0
    if run:
        param_ptr = _address(row, T_PARAM, DTYPE, ALIGNED)
        grad_ptr = _address(row, T_GRAD, DTYPE, ALIGNED)
        exp_avg_ptr = _address(row, T_EXP_AVG, DTYPE, ALIGNED)
        exp_avg_sq_ptr = _address(row, T_EXP_AVG_SQ, DTYPE, ALIGNED)
        max_exp_avg_sq_ptr = _address(row, T_MAX_EXP_AVG_SQ, DTYPE, ALIGNED)
        step_ptr = tl.load(row + T_STEP).to(tl.pointer_type(tl.float32))
        numel = tl.load(row + T_NUMEL)
        group = tl.load(row + T_GROUP)

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
        grad_scale = 1.0
        if HAS_GRAD_SCALE:
            grad_scale = tl.load(grad_scale_ptr)

        # torch: step_t += 1 on a float32 tensor (exact below 2**24 steps).
        step = tl.load(step_ptr) + 1.0
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
        if start + BLOCK <= numel:
            # A whole block: no mask, so the compiler may use 16-byte vectors.
            _update(
                param_ptr, grad_ptr, exp_avg_ptr, exp_avg_sq_ptr, max_exp_avg_sq_ptr,
                offs, None, grad_scale, lerp_weight, beta2, one_minus_beta2, eps,
                weight_decay, decay_factor, decoupled, coupled, maximize, amsgrad,
                neg_step_size, bias_correction2_sqrt,
                DTYPE=DTYPE, MASKED=False, HAS_AMSGRAD=HAS_AMSGRAD, HAS_GRAD_SCALE=HAS_GRAD_SCALE,
            )  # fmt: skip
        else:
            _update(
                param_ptr, grad_ptr, exp_avg_ptr, exp_avg_sq_ptr, max_exp_avg_sq_ptr,
                offs, offs < numel, grad_scale, lerp_weight, beta2, one_minus_beta2, eps,
                weight_decay, decay_factor, decoupled, coupled, maximize, amsgrad,
                neg_step_size, bias_correction2_sqrt,
                DTYPE=DTYPE, MASKED=True, HAS_AMSGRAD=HAS_AMSGRAD, HAS_GRAD_SCALE=HAS_GRAD_SCALE,
            )  # fmt: skip

        # One writer per step count: the last of the tensor's blocks to get here.
        n_blocks = tl.maximum((numel + BLOCK - 1) // BLOCK, 1)
        if n_blocks == 1:
            tl.store(step_ptr, step)
        else:
            arrived = tl.atomic_add(counters_ptr + tensor, 1, sem="acq_rel")
            if arrived == n_blocks - 1:
                tl.store(step_ptr, step)
                tl.atomic_xchg(counters_ptr + tensor, 0, sem="relaxed")


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
            # The kernel finds its helpers through its globals when it is compiled or
            # interpreted: each flavour gets copies of the functions whose globals hold
            # helpers decorated under its own setting.
            scope: dict[str, Any] = dict(_adamw_kernel.__globals__)
            for fn in (_address, _to_dtype, _update):
                scope[fn.__name__] = triton.jit(_rebound(fn, scope))
            _KERNELS[interpret] = triton.jit(_rebound(_adamw_kernel, scope))
    return _KERNELS[interpret]


def _rebound(fn: Any, scope: dict[str, Any]) -> Any:
    """A copy of the function ``fn`` that resolves global names in ``scope``."""
    copy = types.FunctionType(fn.__code__, scope, fn.__name__, fn.__defaults__, fn.__closure__)
    copy.__qualname__ = fn.__qualname__
    copy.__module__ = fn.__module__
    copy.__doc__ = fn.__doc__
    copy.__annotations__ = fn.__annotations__
    return copy


def interpret_by_default() -> bool:
    """True when ``TRITON_INTERPRET=1`` asks for the interpreter even on a GPU."""
    return bool(knobs.runtime.interpret)


def tensor_row(
    param: int,
    grad: int,
    exp_avg: int,
    exp_avg_sq: int,
    max_exp_avg_sq: int,
    step: int,
    numel: int,
    group: int,
) -> list[int]:
    """One tensor-table row: the six addresses, the element count and the group index."""
    return [param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, step, numel, group]


def block_rows(numels: Sequence[int]) -> list[int]:
    """The block table of tensors of ``numels`` elements, flattened: ``[tensor, start]`` per
    program; ``max(1, ceil(numel / BLOCK))`` programs per tensor."""
    rows: list[int] = []
    for tensor, n in enumerate(numels):
        for start in range(0, max(n, 1), BLOCK):
            rows += (tensor, start)
    return rows


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

    The offline GPU compile test (tests/optim/test_kernel.py) compiles a subset that covers
    every flag and dtype (all 24 would take minutes on a small CI machine).
    """
    return [
        {
            "DTYPE": dtype,
            "HAS_AMSGRAD": has_amsgrad,
            "HAS_GRAD_SCALE": has_scaler,
            "HAS_FOUND_INF": has_scaler,
            "ALIGNED": aligned,
            "BLOCK": BLOCK,
            "num_warps": NUM_WARPS,
        }
        for dtype in DTYPES.values()
        for has_amsgrad in (False, True)
        for has_scaler in (False, True)
        for aligned in (True, False)
    ]


def launch(
    kernel: Any,
    *,
    blocks: torch.Tensor,
    tensors: torch.Tensor,
    counters: torch.Tensor,
    hyper: torch.Tensor,
    dtype: torch.dtype,
    has_amsgrad: bool,
    aligned: bool,
    grad_scale: torch.Tensor | None = None,
    found_inf: torch.Tensor | None = None,
) -> None:
    """Run one AdamW step over every tensor in the tables: a single launch, no host sync.

    ``has_amsgrad`` False compiles the kernel without the AMSGrad branch (no table row may
    then name a group with AMSGrad on); ``aligned`` may be True only when every address in
    ``tensors`` is a multiple of ``ALIGN_BYTES``.
    """
    n_blocks = blocks.shape[0]
    kernel[(n_blocks,)](
        blocks,
        tensors,
        counters,
        hyper,
        grad_scale if grad_scale is not None else hyper,  # never read when absent
        found_inf if found_inf is not None else hyper,
        DTYPE=DTYPES[dtype],
        HAS_AMSGRAD=has_amsgrad,
        HAS_GRAD_SCALE=grad_scale is not None,
        HAS_FOUND_INF=found_inf is not None,
        ALIGNED=aligned,
        BLOCK=BLOCK,
        num_warps=NUM_WARPS,
    )
