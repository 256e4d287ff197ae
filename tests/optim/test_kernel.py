"""The Triton kernel on its own: tables, launcher, math against the reference, GPU code.

The kernel runs under Triton's interpreter here, on any machine, over separate tensors named
by an address table; the last tests compile it for sm_80 and sm_90 without a GPU, in the
launcher's specialisations, and read the PTX and the report of Triton's bundled ptxas.
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
    assert_equal_bits,
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
# the second nearly empty), an empty parameter, three whole blocks (the step count is
# written by the last of three programs).
NUMELS = [1, 7, 1023, 1025, 0, 3072]
GROUP_OF = [0, 0, 1, 1, 0, 0]
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


def test_block_rows_give_every_tensor_its_own_blocks() -> None:
    rows = kernel.block_rows(NUMELS)
    table = torch.tensor(rows).view(-1, int(kernel.BLOCK_COLUMNS)).tolist()
    assert table == [
        [0, 0],
        [1, 0],
        [2, 0],
        [3, 0],
        [3, 1024],
        [4, 0],
        [5, 0],
        [5, 1024],
        [5, 2048],
    ]


def test_interpreter_and_compiled_kernels_coexist_in_one_process() -> None:
    interpreted = kernel.adamw_kernel(interpret=True)
    compiled = kernel.adamw_kernel(interpret=False)
    assert isinstance(interpreted, InterpretedFunction)
    assert isinstance(compiled, JITFunction)
    assert kernel.adamw_kernel(interpret=True) is interpreted


def _tables(
    tensors: list[dict[str, torch.Tensor]],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """blocks, tensors and counters for ``tensors`` (dicts of p, g, m, v, vmax, step)."""
    rows: list[int] = []
    for i, t in enumerate(tensors):
        amsgrad = GROUPS[GROUP_OF[i]]["amsgrad"]
        rows += kernel.tensor_row(
            t["p"].data_ptr(),
            t["g"].data_ptr(),
            t["m"].data_ptr(),
            t["v"].data_ptr(),
            t["vmax"].data_ptr() if amsgrad else 0,
            t["step"].data_ptr(),
            t["p"].numel(),
            GROUP_OF[i],
        )
    blocks = torch.tensor(kernel.block_rows([t["p"].numel() for t in tensors]))
    return (
        blocks.view(-1, int(kernel.BLOCK_COLUMNS)),
        torch.tensor(rows).view(-1, int(kernel.TENSOR_COLUMNS)),
        torch.zeros(len(tensors), dtype=torch.int32),
    )


def test_interpreted_kernel_matches_reference_through_its_address_table() -> None:
    """Separate tensors (no shared buffer), two groups, a parameter left out of some steps:
    the kernel steps exactly the tensors its table names, each step count once."""
    gen = torch.Generator().manual_seed(0)
    ours = []
    ref = []
    for n in NUMELS:
        p = torch.randn(n, generator=gen)
        ours.append(
            {
                "p": p.clone(),
                "g": torch.zeros(n),
                "m": torch.zeros(n),
                "v": torch.zeros(n),
                "vmax": torch.zeros(n),
                "step": torch.tensor(0.0),
            }
        )
        ref.append({k: v.clone() for k, v in ours[-1].items()})
    hyper = torch.tensor([kernel.hyper_row(**g) for g in GROUPS], dtype=torch.float64)
    run = kernel.adamw_kernel(interpret=True)
    for step in range(12):
        # Parameter 2 gets no gradient on every third step: it is left out of the table.
        active = [i for i in range(len(NUMELS)) if not (i == 2 and step % 3 == 1)]
        for t in ours:
            t["g"].copy_(torch.randn(t["g"].shape, generator=gen))
        blocks, tensors, counters = _tables([ours[i] for i in active])
        # The table's group column indexes GROUP_OF by position: rebuild it for the subset.
        tensors[:, int(kernel.T_GROUP)] = torch.tensor([GROUP_OF[i] for i in active])
        grads_before = [t["g"].clone() for t in ours]
        kernel.launch(
            run,
            blocks=blocks,
            tensors=tensors,
            counters=counters,
            hyper=hyper,
            dtype=torch.float32,
            has_amsgrad=True,
            aligned=False,
        )
        assert torch.all(counters == 0), "the step counters were not put back to zero"
        for i, t in enumerate(ours):
            assert torch.equal(t["g"], grads_before[i]), "the kernel wrote to a gradient"
            r = ref[i]
            group = GROUPS[GROUP_OF[i]]
            if i in active:
                adam_step(r["p"], t["g"], r["m"], r["v"], r["vmax"], r["step"], **group)
            label = f"step {step}, param {i}"
            for key in ("p", "m", "v"):
                assert_close_fp32(t[key], r[key], f"{label}, {key}")
            if group["amsgrad"]:
                assert_close_fp32(t["vmax"], r["vmax"], f"{label}, vmax")
            else:
                assert torch.all(t["vmax"] == 0), f"{label}: vmax written"
            assert float(t["step"]) == float(r["step"]), f"{label}: step count"


def test_interpreted_kernel_unscales_and_skips_like_torchs_fused_adamw() -> None:
    """grad_scale divides (and writes back) the gradient; found_inf != 0 changes nothing."""
    gen = torch.Generator().manual_seed(1)
    n = 1500
    t = {
        "p": torch.randn(n, generator=gen),
        "g": torch.randn(n, generator=gen) * 1024,
        "m": torch.zeros(n),
        "v": torch.zeros(n),
        "vmax": torch.zeros(n),
        "step": torch.tensor(0.0),
    }
    hyper = torch.tensor([kernel.hyper_row(**GROUPS[0])], dtype=torch.float64)
    blocks, tensors, counters = _tables([t])
    tensors[:, int(kernel.T_GROUP)] = 0
    run = kernel.adamw_kernel(interpret=True)
    before = {k: v.clone() for k, v in t.items()}
    scale = torch.tensor([1024.0])
    for inf, expect_change in ((1.0, False), (0.0, True)):
        kernel.launch(
            run,
            blocks=blocks,
            tensors=tensors,
            counters=counters,
            hyper=hyper,
            dtype=torch.float32,
            has_amsgrad=True,
            aligned=False,
            grad_scale=scale,
            found_inf=torch.tensor([inf]),
        )
        if not expect_change:
            for key, value in t.items():
                assert_equal_bits(value, before[key], f"found_inf: {key}")
    ref = {k: v.clone() for k, v in before.items()}
    unscaled = ref["g"] / 1024
    adam_step(ref["p"], unscaled, ref["m"], ref["v"], ref["vmax"], ref["step"], **GROUPS[0])
    assert_equal_bits(t["g"], unscaled, "gradient written back unscaled")
    for key in ("p", "m", "v", "vmax"):
        assert_close_fp32(t[key], ref[key], f"after the finite step, {key}")
    assert float(t["step"]) == 1.0


# sm_80 (A100) and sm_90 (H100/H200): the GPUs the sweep runs on.
GPU_ARCHS = [80, 90]


def _compile(arch: int, variant: dict[str, Any]) -> str:
    """PTX of the kernel for ``sm_<arch>`` in one of the launcher's specialisations."""
    signature = {
        "blocks_ptr": "*i64",
        "tensors_ptr": "*i64",
        "counters_ptr": "*i32",
        "hyper_ptr": "*fp64",
        "grad_scale_ptr": "*fp32",
        "found_inf_ptr": "*fp32",
        "DTYPE": "constexpr",
        "HAS_AMSGRAD": "constexpr",
        "HAS_GRAD_SCALE": "constexpr",
        "HAS_FOUND_INF": "constexpr",
        "ALIGNED": "constexpr",
        "BLOCK": "constexpr",
    }
    constexprs = {k: v for k, v in variant.items() if k != "num_warps"}
    source = ASTSource(
        fn=kernel.adamw_kernel(interpret=False),
        signature=signature,
        constexprs=constexprs,
        # torch's allocations are 16-byte aligned, which Triton specialises on at launch.
        attrs={(i,): [["tt.divisibility", 16]] for i in range(6)},
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


def _name(variant: dict[str, Any]) -> str:
    flags = [str(variant["DTYPE"])]
    flags += [f for f in ("HAS_AMSGRAD", "HAS_GRAD_SCALE", "ALIGNED") if variant[f]]
    return "-".join(flags).lower()


def _compiled_variants() -> list[dict[str, Any]]:
    """The launcher's specialisations that the test compiles: float32 with and without
    AMSGrad, bfloat16 and float16 with GradScaler's tensors, all aligned, and one unaligned
    (the fallback). The others combine the same flags and code paths."""
    wanted = {
        ("fp32", False, False, True),
        ("fp32", True, False, True),
        ("bf16", True, True, True),
        ("fp16", False, True, True),
        ("fp32", True, True, False),
    }
    return [
        v
        for v in kernel.launch_variants()
        if (str(v["DTYPE"]), v["HAS_AMSGRAD"], v["HAS_GRAD_SCALE"], v["ALIGNED"]) in wanted
    ]


VARIANTS = [
    pytest.param(arch, variant, id=f"sm{arch}-{_name(variant)}")
    for arch in GPU_ARCHS
    for variant in _compiled_variants()
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
    # p, m, v (+ vmax) (+ the unscaled gradient)
    buffers_written = 3 + has_amsgrad + variant["HAS_GRAD_SCALE"]
    element_bytes = variant["DTYPE"].primitive_bitwidth // 8
    elements_per_thread = variant["BLOCK"] // (variant["num_warps"] * 32)
    vectors_per_thread = elements_per_thread * element_bytes // 16
    # A whole block moves every element of every tensor in 16-byte vectors (the partial last
    # block of a tensor is masked element by element: no vectors there).
    v4_loads = len(re.findall(r"ld\.global(?:\.\w+)*\.v4\.b32", ptx))
    v4_stores = len(re.findall(r"st\.global(?:\.\w+)*\.v4\.b32", ptx))
    if variant["ALIGNED"]:
        assert v4_loads == buffers_read * vectors_per_thread, ptx[:2000]
        assert v4_stores == buffers_written * vectors_per_thread, ptx[:2000]
    else:  # addresses not known to be 16-byte aligned: no vector may be assumed
        assert v4_loads == v4_stores == 0, ptx[:2000]
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
