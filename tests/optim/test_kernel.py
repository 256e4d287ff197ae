"""The Triton kernel on its own: layout, launcher, math against the reference, GPU code.

The kernel runs under Triton's interpreter here, on any machine; the last tests compile it
for sm_80 and sm_90 without a GPU, in every specialisation the launcher uses, and read the
PTX and the report of Triton's bundled ptxas.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import torch
import triton
from optim_testing import (  # one_intra_op_thread: an autouse fixture
    assert_close_fp32,
    one_intra_op_thread,  # noqa: F401
)
from triton import knobs
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from triton.runtime.interpreter import InterpretedFunction
from triton.runtime.jit import JITFunction

from sweeper.optim import kernel
from sweeper.optim.reference import adam_step

# Sizes: a single element, a short tail, one block minus one, a block plus one (two blocks,
# the second nearly empty), an empty parameter.
NUMELS = [1, 7, 1023, 1025, 0]
GROUP_OF = [0, 0, 1, 1, 0]
GROUPS: list[dict[str, Any]] = [
    # Decoupled decay with AMSGrad.
    {
        "lr": 1e-2,
        "beta1": 0.9,
        "beta2": 0.999,
        "eps": 1e-8,
        "weight_decay": 0.1,
        "amsgrad": True,
        "maximize": False,
        "decoupled": True,
    },
    # Coupled L2, maximize, lerp weight above 0.5 (ATen's other lerp formula).
    {
        "lr": 3e-2,
        "beta1": 0.3,
        "beta2": 0.5,
        "eps": 1e-6,
        "weight_decay": 0.2,
        "amsgrad": False,
        "maximize": True,
        "decoupled": False,
    },
]


def test_layout_aligns_every_parameter_and_covers_its_padded_end() -> None:
    offsets, total = kernel.layout(NUMELS, kernel.ALIGN)
    assert offsets == [0, 32, 64, 1088, 2144]
    assert total == 2144
    assert all(o % kernel.ALIGN == 0 for o in offsets)
    assert kernel.layout([3, 5], 1) == ([0, 3], 8)


def test_block_table_gives_every_parameter_its_own_blocks() -> None:
    offsets, _ = kernel.layout(NUMELS, kernel.ALIGN)
    table, ranges = kernel.block_table(offsets, NUMELS, GROUP_OF, torch.device("cpu"))
    assert table.dtype == torch.int64
    assert table.shape == (6, kernel.BLOCK_COLUMNS)
    assert ranges == [(0, 1), (1, 2), (2, 3), (3, 5), (5, 6)]
    for param, (first, last) in enumerate(ranges):
        for start, stop, padded_stop, group, owner in table[first:last].tolist():
            assert owner == param
            assert group == GROUP_OF[param]
            assert stop == offsets[param] + NUMELS[param]
            assert padded_stop % kernel.ALIGN == 0 and stop <= padded_stop < stop + kernel.ALIGN
            assert offsets[param] <= start <= max(stop - 1, offsets[param])
    # The empty parameter's block is empty but exists: it carries the step count.
    assert table[5].tolist() == [2144, 2144, 2144, 0, 4]
    with pytest.raises(ValueError, match="offset 3 of parameter 1 is not a multiple of 32"):
        kernel.block_table([0, 3], [3, 3], [0, 0], torch.device("cpu"))


def test_interpreter_and_compiled_kernels_coexist_in_one_process() -> None:
    interpreted = kernel.adamw_kernel(interpret=True)
    compiled = kernel.adamw_kernel(interpret=False)
    assert isinstance(interpreted, InterpretedFunction)
    assert isinstance(compiled, JITFunction)
    assert kernel.adamw_kernel(interpret=True) is interpreted


def test_interpreted_kernel_matches_reference_with_groups_padding_and_skips() -> None:
    offsets, total = kernel.layout(NUMELS, kernel.ALIGN)
    blocks, ranges = kernel.block_table(offsets, NUMELS, GROUP_OF, torch.device("cpu"))
    gen = torch.Generator().manual_seed(0)
    flat = {name: torch.zeros(total) for name in ("p", "g", "m", "v", "vmax")}
    # Padding holds a marker value: the kernel must read it and write it back unchanged.
    pad_mask = torch.ones(total, dtype=torch.bool)
    for o, n in zip(offsets, NUMELS, strict=True):
        pad_mask[o : o + n] = False
    for name in flat:
        flat[name][pad_mask] = 7.0
    ref = []
    for o, n in zip(offsets, NUMELS, strict=True):
        p = torch.randn(n, generator=gen)
        flat["p"][o : o + n] = p
        ref.append(
            {
                "p": p.clone(),
                "m": torch.zeros(n),
                "v": torch.zeros(n),
                "vmax": torch.zeros(n),
                "step": torch.tensor(0.0),
            }
        )
    steps = torch.zeros(blocks.shape[0])
    hyper = torch.tensor([kernel.hyper_row(**g) for g in GROUPS], dtype=torch.float64)
    run = kernel.adamw_kernel(interpret=True)
    for step in range(20):
        # Parameter 2 gets no gradient on every third step: nothing of it may change.
        active = [not (i == 2 and step % 3 == 1) for i in range(len(NUMELS))]
        grads = [torch.randn(n, generator=gen) for n in NUMELS]
        for o, n, g in zip(offsets, NUMELS, grads, strict=True):
            flat["g"][o : o + n] = g
        grad_before = flat["g"].clone()
        kernel.launch(
            run,
            param=flat["p"],
            grad=flat["g"],
            exp_avg=flat["m"],
            exp_avg_sq=flat["v"],
            max_exp_avg_sq=flat["vmax"],
            blocks=blocks,
            steps=steps,
            active=torch.tensor(active, dtype=torch.int8),
            hyper=hyper,
        )
        assert torch.equal(flat["g"], grad_before), "the kernel wrote to the gradient"
        for name in flat:
            assert torch.all(flat[name][pad_mask] == 7.0), f"step {step}: padding of {name}"
        for i, (o, n) in enumerate(zip(offsets, NUMELS, strict=True)):
            r = ref[i]
            group = GROUPS[GROUP_OF[i]]
            if active[i]:
                adam_step(r["p"], grads[i], r["m"], r["v"], r["vmax"], r["step"], **group)
            label = f"step {step}, param {i}"
            for key in ("p", "m", "v"):
                assert_close_fp32(flat[key][o : o + n], r[key], f"{label}, {key}")
            if group["amsgrad"]:
                assert_close_fp32(flat["vmax"][o : o + n], r["vmax"], f"{label}, vmax")
            else:
                assert torch.all(flat["vmax"][o : o + n] == 0), f"{label}: vmax written"
            first, last = ranges[i]
            assert torch.all(steps[first:last] == float(r["step"])), f"{label}: step count"


# sm_80 (A100) and sm_90 (H100/H200): the GPUs the sweep runs on.
GPU_ARCHS = [80, 90]


def _compile(arch: int, variant: dict[str, Any]) -> str:
    """PTX of the kernel for ``sm_<arch>`` in one of the launcher's specialisations."""
    signature = {
        "param_ptr": "*fp32",
        "grad_ptr": "*fp32",
        "exp_avg_ptr": "*fp32",
        "exp_avg_sq_ptr": "*fp32",
        "max_exp_avg_sq_ptr": "*fp32",
        "blocks_ptr": "*i64",
        "steps_ptr": "*fp32",
        "active_ptr": "*i8",
        "hyper_ptr": "*fp64",
        "HAS_AMSGRAD": "constexpr",
        "BLOCK": "constexpr",
        "ALIGN": "constexpr",
    }
    constexprs = {k: v for k, v in variant.items() if k != "num_warps"}
    source = ASTSource(
        fn=kernel.adamw_kernel(interpret=False),
        signature=signature,
        constexprs=constexprs,
        # torch's allocations are 16-byte aligned, which Triton specialises on at launch.
        attrs={(i,): [["tt.divisibility", 16]] for i in range(9)},
    )
    compiled = triton.compile(
        source, target=GPUTarget("cuda", arch, 32), options={"num_warps": variant["num_warps"]}
    )
    return str(compiled.asm["ptx"])


def _ptxas_report(ptx: str, arch: int, tmp_path: Path) -> str:
    """``ptxas -v`` of ``ptx`` with Triton's bundled ptxas: registers, spills."""
    source = tmp_path / f"adamw_sm{arch}.ptx"
    source.write_text(ptx)
    # Triton writes the arch-specific target (sm_90a on Hopper); ptxas must be given the same.
    target = re.search(r"^\.target\s+(sm_\w+)", ptx, re.MULTILINE)
    assert target and target.group(1).startswith(f"sm_{arch}"), ptx[:500]
    result = subprocess.run(
        [knobs.nvidia.ptxas.path, f"-arch={target.group(1)}", "-v", str(source), "-o", os.devnull],
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout + result.stderr


VARIANTS = [
    pytest.param(arch, variant, id=f"sm{arch}-{'amsgrad' if variant['HAS_AMSGRAD'] else 'adamw'}")
    for arch in GPU_ARCHS
    for variant in kernel.launch_variants()
]


@pytest.mark.parametrize(("arch", "variant"), VARIANTS)
def test_kernel_compiles_offline_with_vector_memory_ops_ieee_math_and_no_spills(
    arch: int, variant: dict[str, Any], tmp_path: Path
) -> None:
    """The bandwidth and accuracy claims, read from the PTX and ptxas (no GPU needed)."""
    ptx = _compile(arch, variant)
    has_amsgrad = variant["HAS_AMSGRAD"]
    ops = Counter(re.findall(r"\b((?:ld|st)\.global[\w.]*|sqrt\.\w+|div\.\w+)\.f\d\d", ptx))
    buffers_read = 5 if has_amsgrad else 4  # p, g, m, v (+ vmax)
    buffers_written = 4 if has_amsgrad else 3
    vectors_per_thread = variant["BLOCK"] // (variant["num_warps"] * 32) // 4
    # Every element of every buffer moves in 16-byte vectors: no scalar fallback.
    v4_loads = len(re.findall(r"ld\.global(?:\.\w+)*\.v4\.b32", ptx))
    v4_stores = len(re.findall(r"st\.global(?:\.\w+)*\.v4\.b32", ptx))
    assert v4_loads == buffers_read * vectors_per_thread, ptx[:2000]
    assert v4_stores == buffers_written * vectors_per_thread, ptx[:2000]
    # IEEE-rounded sqrt and division, not Triton's approximate defaults.
    assert "sqrt.approx" not in ptx and "div.full" not in ptx and "div.approx" not in ptx
    assert "rsqrt" not in ptx and "rcp.approx" not in ptx
    assert ops["sqrt.rn"] > 0 and ops["div.rn"] > 0, ops
    assert re.search(r"\bsqrt\.rn\.f32\b", ptx) and re.search(r"\bdiv\.rn\.f32\b", ptx), ops
    # ptxas's own verdict: registers and no spilling to local memory.
    report = _ptxas_report(ptx, arch, tmp_path)
    spills = re.findall(r"(\d+) bytes spill stores, (\d+) bytes spill loads", report)
    assert spills, report
    assert all(stores == "0" and loads == "0" for stores, loads in spills), report
    assert re.search(r"Used \d+ registers", report), report
