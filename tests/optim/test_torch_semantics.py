"""FusedAdamW against torch.optim.AdamW where an optimizer that owned the model's storage
would differ: what a user's training loop does to parameters, gradients and ``opt.state``.

Each test runs the same pattern on FusedAdamW (every backend) and on
``torch.optim.AdamW(foreach=False)`` and compares parameters, state presence, step counts and
moments after every step (``assert_match``: float32 at atol 1e-6, rtol 1e-5, the measured
error in the message; the implementations differ only in rounding).
"""

from __future__ import annotations

import copy
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch
import torch.distributed as dist
from optim_testing import (  # one_intra_op_thread: an autouse fixture
    assert_close_fp32,
    one_intra_op_thread,  # noqa: F401
)
from test_dropin import BACKENDS, assert_match, grads_for
from torch import nn

from sweeper.optim import FusedAdamW


def torch_adamw(params: Any, **options: Any) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, foreach=False, **options)


def twins(make: Callable[[], nn.Module], device: str) -> tuple[nn.Module, nn.Module]:
    """Two identical models on ``device``."""
    torch.manual_seed(0)
    ours = make().to(device)
    theirs = copy.deepcopy(ours)
    return ours, theirs


def inputs(step: int, shape: tuple[int, ...], device: str) -> torch.Tensor:
    gen = torch.Generator().manual_seed(100 + step)
    return torch.randn(shape, generator=gen).to(device)


def compare(
    ours: torch.optim.Optimizer,
    theirs: torch.optim.Optimizer,
    ours_model: nn.Module,
    theirs_model: nn.Module,
    label: str,
) -> None:
    assert_match(
        ours, theirs, list(ours_model.parameters()), list(theirs_model.parameters()), label
    )


def storage_of(model: nn.Module) -> list[tuple[nn.Parameter, int, torch.Tensor | None]]:
    """Each parameter with its storage address and its gradient object."""
    return [(p, p.data_ptr(), p.grad) for p in model.parameters()]


def assert_storage_kept(before: list[tuple[nn.Parameter, int, torch.Tensor | None]]) -> None:
    """No parameter's storage moved and no ``.grad`` was replaced (torch's optimizers never
    do either; wrappers such as DDP's bucket views rely on it)."""
    for i, (p, address, grad) in enumerate(before):
        assert p.data_ptr() == address, f"param {i}: its storage was moved"
        assert p.grad is grad, f"param {i}: its .grad was replaced"


class Branches(nn.Module):
    """A trunk and two heads; ``forward(x, use_b)`` leaves head b out when asked."""

    def __init__(self) -> None:
        super().__init__()
        self.trunk = nn.Linear(6, 8)
        self.a = nn.Linear(8, 3)
        self.b = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor, use_b: bool) -> torch.Tensor:
        h = torch.tanh(self.trunk(x))
        out = self.a(h)
        return out + self.b(h) if use_b else out


# -- gradients written in place on parameters backward did not reach ----------------------

IN_PLACE: list[Any] = [
    pytest.param(
        lambda params: nn.utils.clip_grad_norm_(params, max_norm=0.5, foreach=False),
        id="clip_grad_norm_",
    ),
    pytest.param(
        lambda params: nn.utils.clip_grad_value_(params, clip_value=0.05, foreach=False),
        id="clip_grad_value_",
    ),
    pytest.param(
        lambda params: [p.grad.mul_(0.5) for p in params if p.grad is not None],
        id="grad.mul_",
    ),
]


@pytest.mark.parametrize("write", IN_PLACE)
@pytest.mark.parametrize("backend", BACKENDS)
def test_branch_unused_after_step_two_stops_stepping_under_in_place_gradient_writes(
    backend: tuple[str, str], write: Callable[[list[nn.Parameter]], Any]
) -> None:
    impl, device = backend
    ours_model, theirs_model = twins(Branches, device)
    ours = FusedAdamW(ours_model.parameters(), impl=impl, lr=1e-2, weight_decay=0.1)
    theirs = torch_adamw(theirs_model.parameters(), lr=1e-2, weight_decay=0.1)
    for step in range(8):
        for model, opt in ((ours_model, ours), (theirs_model, theirs)):
            opt.zero_grad()
            model(inputs(step, (5, 6), device), use_b=step < 2).pow(2).sum().backward()
            write(list(model.parameters()))
            opt.step()
        compare(ours, theirs, ours_model, theirs_model, f"step {step}")
    assert float(ours.state[ours_model.b.weight]["step"]) == 2.0


@pytest.mark.parametrize("backend", BACKENDS)
def test_layers_frozen_and_unfrozen_with_clip_grad_norm(backend: tuple[str, str]) -> None:
    impl, device = backend
    ours_model, theirs_model = twins(Branches, device)
    ours = FusedAdamW(ours_model.parameters(), impl=impl, lr=1e-2)
    theirs = torch_adamw(theirs_model.parameters(), lr=1e-2)
    for step in range(10):
        frozen = step % 4 in (1, 2)  # head a frozen on two of every four steps
        for model, opt in ((ours_model, ours), (theirs_model, theirs)):
            model.a.requires_grad_(not frozen)
            opt.zero_grad()
            model(inputs(step, (5, 6), device), use_b=True).pow(2).sum().backward()
            nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0, foreach=False)
            opt.step()
        compare(ours, theirs, ours_model, theirs_model, f"step {step}")


# -- param_groups edited in place ------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_parameters_appended_to_and_removed_from_a_group_are_followed(
    backend: tuple[str, str],
) -> None:
    impl, device = backend
    ours_model, theirs_model = twins(Branches, device)
    ours_params, theirs_params = list(ours_model.parameters()), list(theirs_model.parameters())
    ours = FusedAdamW(ours_params[:4], impl=impl, lr=1e-2)
    theirs = torch_adamw(theirs_params[:4], lr=1e-2)
    for step in range(6):
        if step == 2:  # head b joins the first group
            ours.param_groups[0]["params"].extend(ours_params[4:])
            theirs.param_groups[0]["params"].extend(theirs_params[4:])
        if step == 4:  # the trunk's bias leaves it
            del ours.param_groups[0]["params"][1]
            del theirs.param_groups[0]["params"][1]
        for model, opt in ((ours_model, ours), (theirs_model, theirs)):
            opt.zero_grad()
            for p in model.parameters():
                p.grad = None
            model(inputs(step, (5, 6), device), use_b=True).pow(2).sum().backward()
            opt.step()
        compare(ours, theirs, ours_model, theirs_model, f"step {step}")


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_groups_parameter_list_replaced_by_a_new_list(backend: tuple[str, str]) -> None:
    impl, device = backend
    ours_model, theirs_model = twins(Branches, device)
    ours = FusedAdamW(ours_model.parameters(), impl=impl, lr=1e-2)
    theirs = torch_adamw(theirs_model.parameters(), lr=1e-2)
    for step in range(5):
        if step == 2:  # from now on only the trunk trains
            ours.param_groups[0]["params"] = list(ours_model.trunk.parameters())
            theirs.param_groups[0]["params"] = list(theirs_model.trunk.parameters())
        for model, opt in ((ours_model, ours), (theirs_model, theirs)):
            opt.zero_grad()
            for p in model.parameters():
                p.grad = None
            model(inputs(step, (5, 6), device), use_b=True).pow(2).sum().backward()
            opt.step()
        compare(ours, theirs, ours_model, theirs_model, f"step {step}")


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradients_with_other_layouts_than_their_parameter(backend: tuple[str, str]) -> None:
    """An expanded gradient (stride 0) and a transposed one on a contiguous weight: the fused
    kernels walk memory, so these are stepped through copies; the gradients stay untouched."""
    impl, device = backend
    ours_model, theirs_model = twins(Branches, device)
    ours = FusedAdamW(ours_model.parameters(), impl=impl, lr=1e-2)
    theirs = torch_adamw(theirs_model.parameters(), lr=1e-2)
    for step in range(4):
        for model, opt in ((ours_model, ours), (theirs_model, theirs)):
            opt.zero_grad()
            model(inputs(step, (5, 6), device), use_b=True).pow(2).sum().backward()
            model.trunk.bias.grad = torch.full((1,), 0.1 * step, device=device).expand(8)
            model.a.weight.grad = model.a.weight.grad.t().contiguous().t()
            before = storage_of(model)
            opt.step()
            assert_storage_kept(before)
        compare(ours, theirs, ours_model, theirs_model, f"step {step}")
        assert ours_model.trunk.bias.grad is not None
        assert torch.all(ours_model.trunk.bias.grad == 0.1 * step)


# -- opt.state edited by the caller ------------------------------------------------------------

# Each edit runs on both optimizers between steps 2 and 3; ``p`` is the trunk's weight.
STATE_EDITS: list[Any] = [
    pytest.param(lambda opt, p: setattr(opt, "state", defaultdict(dict)), id="state=defaultdict"),
    pytest.param(lambda opt, p: opt.state.__delitem__(p), id="del-state[p]"),
    pytest.param(
        lambda opt, p: opt.state[p].__setitem__("exp_avg", torch.full_like(p, 0.01)),
        id="new-exp_avg",
    ),
    pytest.param(
        lambda opt, p: opt.state[p].__setitem__("exp_avg_sq", opt.state[p]["exp_avg_sq"] * 4),
        id="new-exp_avg_sq",
    ),
    pytest.param(lambda opt, p: opt.state[p].__setitem__("step", torch.tensor(0.0)), id="step=0"),
    pytest.param(lambda opt, p: opt.state[p]["step"].zero_(), id="step.zero_"),
    pytest.param(lambda opt, p: opt.state[p]["exp_avg"].mul_(-1), id="exp_avg.mul_"),
]


class Wide(nn.Module):
    """A 2,100-element weight: three blocks of the Triton kernel."""

    def __init__(self) -> None:
        super().__init__()
        self.trunk = nn.Linear(70, 30)
        self.head = nn.Linear(30, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(self.trunk(x)))


@pytest.mark.parametrize("edit", STATE_EDITS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_state_edited_by_the_caller_is_the_state_that_steps(
    backend: tuple[str, str], edit: Callable[[torch.optim.Optimizer, torch.Tensor], Any]
) -> None:
    impl, device = backend
    ours_model, theirs_model = twins(Wide, device)
    assert ours_model.trunk.weight.numel() == 2100
    ours = FusedAdamW(ours_model.parameters(), impl=impl, lr=1e-2, amsgrad=True)
    theirs = torch_adamw(theirs_model.parameters(), lr=1e-2, amsgrad=True)
    for step in range(5):
        if step == 3:
            edit(ours, ours_model.trunk.weight)
            edit(theirs, theirs_model.trunk.weight)
        for model, opt in ((ours_model, ours), (theirs_model, theirs)):
            opt.zero_grad()
            model(inputs(step, (4, 70), device)).pow(2).sum().backward()
            opt.step()
        compare(ours, theirs, ours_model, theirs_model, f"step {step}")


# -- parameters as the model holds them ----------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_lazy_linear_built_before_its_dry_run(backend: tuple[str, str]) -> None:
    impl, device = backend
    torch.manual_seed(0)
    ours_model = nn.Sequential(nn.LazyLinear(4), nn.Tanh(), nn.LazyLinear(2)).to(device)
    theirs_model = nn.Sequential(nn.LazyLinear(4), nn.Tanh(), nn.LazyLinear(2)).to(device)
    ours = FusedAdamW(ours_model.parameters(), impl=impl, lr=1e-2)
    theirs = torch_adamw(theirs_model.parameters(), lr=1e-2)
    with torch.no_grad():  # the dry run materialises the parameters in place
        ours_model(torch.zeros(1, 5, device=device))
        theirs_model(torch.zeros(1, 5, device=device))
    theirs_model.load_state_dict(ours_model.state_dict())
    for step in range(4):
        for model, opt in ((ours_model, ours), (theirs_model, theirs)):
            opt.zero_grad()
            model(inputs(step, (3, 5), device)).pow(2).sum().backward()
            opt.step()
        compare(ours, theirs, ours_model, theirs_model, f"step {step}")


class Conv(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.head = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(self.conv(x)).mean(dim=(2, 3)))


@pytest.mark.parametrize("backend", BACKENDS)
def test_channels_last_weights_stay_channels_last(backend: tuple[str, str]) -> None:
    impl, device = backend
    ours_model, theirs_model = twins(Conv, device)
    for model in (ours_model, theirs_model):
        model.to(memory_format=torch.channels_last)
    weight = ours_model.conv.weight
    assert not weight.is_contiguous()
    ours = FusedAdamW(ours_model.parameters(), impl=impl, lr=1e-2)
    theirs = torch_adamw(theirs_model.parameters(), lr=1e-2)
    for step in range(4):
        for model, opt in ((ours_model, ours), (theirs_model, theirs)):
            opt.zero_grad()
            x = inputs(step, (2, 3, 6, 6), device).contiguous(memory_format=torch.channels_last)
            model(x).pow(2).sum().backward()
            opt.step()
        compare(ours, theirs, ours_model, theirs_model, f"step {step}")
        assert weight.is_contiguous(memory_format=torch.channels_last)
        assert ours_model.conv.weight is weight


@pytest.mark.parametrize("backend", BACKENDS)
def test_model_moved_after_construction(backend: tuple[str, str]) -> None:
    """Module.to() after the optimizer is built (here a change of memory format, which
    replaces every conv weight's storage; on CUDA also cpu -> cuda) and after it stepped."""
    impl, device = backend
    ours_model, theirs_model = twins(Conv, "cpu")
    ours = FusedAdamW(ours_model.parameters(), impl=impl, lr=1e-2)
    theirs = torch_adamw(theirs_model.parameters(), lr=1e-2)
    for model in (ours_model, theirs_model):
        model.to(device)
    for step in range(5):
        if step == 2:
            for model in (ours_model, theirs_model):
                model.to(memory_format=torch.channels_last)
        for model, opt in ((ours_model, ours), (theirs_model, theirs)):
            opt.zero_grad()
            model(inputs(step, (2, 3, 6, 6), device)).pow(2).sum().backward()
            opt.step()
        compare(ours, theirs, ours_model, theirs_model, f"step {step}")
    assert ours_model.conv.weight.device.type == device


@pytest.mark.parametrize("backend", BACKENDS)
def test_views_of_a_callers_flat_tensor_stay_views(backend: tuple[str, str]) -> None:
    impl, device = backend
    shapes = [(3, 5), (7,), (2, 2, 2)]
    flats = []
    param_sets = []
    for _ in range(2):
        flat = torch.randn(15 + 7 + 8, generator=torch.Generator().manual_seed(0)).to(device)
        params, start = [], 0
        for shape in shapes:
            n = int(torch.Size(shape).numel())
            params.append(nn.Parameter(flat[start : start + n].view(shape)))
            start += n
        flats.append(flat)
        param_sets.append(params)
    ours = FusedAdamW(param_sets[0], impl=impl, lr=1e-2)
    theirs = torch_adamw(param_sets[1], lr=1e-2)
    for step in range(4):
        grads = grads_for(param_sets[0], step)
        for ps in param_sets:
            for p, g in zip(ps, grads, strict=True):
                p.grad = g.clone()
        ours.step()
        theirs.step()
        assert_match(ours, theirs, param_sets[0], param_sets[1], f"step {step}")
        for flat, ps in zip(flats, param_sets, strict=True):
            assert torch.equal(flat, torch.cat([p.detach().reshape(-1) for p in ps]))


class Tied(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(10, 6)
        self.out = nn.Linear(6, 10, bias=False)
        self.out.weight = self.embed.weight

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.out(torch.tanh(self.embed(tokens)))


@pytest.mark.parametrize("backend", BACKENDS)
def test_weight_tying(backend: tuple[str, str]) -> None:
    impl, device = backend
    ours_model, theirs_model = twins(Tied, device)
    addresses = [p.data_ptr() for p in ours_model.parameters()]
    ours = FusedAdamW(ours_model.parameters(), impl=impl, lr=1e-2)
    theirs = torch_adamw(theirs_model.parameters(), lr=1e-2)
    tokens = torch.tensor([1, 4, 4, 7], device=device)
    for step in range(4):
        for model, opt in ((ours_model, ours), (theirs_model, theirs)):
            opt.zero_grad()
            nn.functional.cross_entropy(model(tokens), (tokens + step) % 10).backward()
            before = storage_of(model)
            opt.step()
            assert_storage_kept(before)
        compare(ours, theirs, ours_model, theirs_model, f"step {step}")
    assert ours_model.out.weight is ours_model.embed.weight
    assert [p.data_ptr() for p in ours_model.parameters()] == addresses


# -- wrappers that own gradients: DDP -----------------------------------------------------------


@pytest.fixture
def gloo_world_of_one() -> Iterator[None]:
    """A gloo process group of one process (this one), as nanoGPT runs one GPU."""
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


@pytest.mark.usefixtures("gloo_world_of_one")
@pytest.mark.parametrize("bucket_view", [False, True], ids=["copies", "gradient_as_bucket_view"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_ddp_world_of_one(backend: tuple[str, str], bucket_view: bool) -> None:
    impl, device = backend
    ours_model, theirs_model = twins(Branches, device)
    wrapped = [
        nn.parallel.DistributedDataParallel(
            model, gradient_as_bucket_view=bucket_view, find_unused_parameters=True
        )
        for model in (ours_model, theirs_model)
    ]
    ours = FusedAdamW(wrapped[0].parameters(), impl=impl, lr=1e-2)
    theirs = torch_adamw(wrapped[1].parameters(), lr=1e-2)
    for step in range(5):
        for ddp, opt in zip(wrapped, (ours, theirs), strict=True):
            opt.zero_grad(set_to_none=step % 2 == 0)
            ddp(inputs(step, (5, 6), device), use_b=step != 3).pow(2).sum().backward()
            before = storage_of(ddp.module)
            opt.step()
            assert_storage_kept(before)  # bucket views stay DDP's
        compare(ours, theirs, ours_model, theirs_model, f"step {step}")


# -- mixed precision ------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_grad_scaler_with_an_inf_step(backend: tuple[str, str]) -> None:
    """torch.amp.GradScaler drives both unchanged: ours takes grad_scale/found_inf into the
    fused step (as torch's fused AdamW does), torch's unscales first; the inf step changes
    nothing on either side, and the scale backs off alike."""
    impl, device = backend
    ours_model, theirs_model = twins(Branches, device)
    ours = FusedAdamW(ours_model.parameters(), impl=impl, lr=1e-2, weight_decay=0.1)
    theirs = torch_adamw(theirs_model.parameters(), lr=1e-2, weight_decay=0.1)
    scalers = [torch.amp.GradScaler(device, init_scale=2.0**10) for _ in range(2)]
    for step in range(6):
        for model, opt, scaler in zip(
            (ours_model, theirs_model), (ours, theirs), scalers, strict=True
        ):
            opt.zero_grad()
            loss = model(inputs(step, (5, 6), device), use_b=True).pow(2).sum()
            scaler.scale(loss).backward()
            if step == 2:
                model.a.weight.grad[0, 0] = float("inf")
            before = storage_of(model)
            scaler.step(opt)
            assert_storage_kept(before)
            scaler.update()
        assert scalers[0].get_scale() == scalers[1].get_scale()
        compare(ours, theirs, ours_model, theirs_model, f"step {step}")
    assert float(ours.state[ours_model.a.weight]["step"]) == 5.0


# One bfloat16/float16 ulp is 2**-7 / 2**-10 of a value: the fused kernels round the same
# float32 result to the low-precision dtype, and a float32 difference of one rounding
# (fused multiply-adds, the interpreter's numpy) can move that result across a rounding
# boundary, so the bound is one ulp of the low-precision dtype.
LOW_PRECISION = [
    pytest.param(torch.bfloat16, 2.0**-7, id="bf16"),
    pytest.param(torch.float16, 2.0**-10, id="fp16"),
]


@pytest.mark.parametrize(("dtype", "rtol"), LOW_PRECISION)
@pytest.mark.parametrize("backend", BACKENDS)
def test_low_precision_parameters_match_torchs_fused_adamw(
    backend: tuple[str, str], dtype: torch.dtype, rtol: float
) -> None:
    """Parameters and state in bf16/fp16, math in float32: torch's fused AdamW is the
    reference (its single-tensor path rounds every intermediate to the low precision)."""
    impl, device = backend
    gen = torch.Generator().manual_seed(0)
    shapes = [(3, 5), (1100,), (4,)]
    base = [torch.randn(s, generator=gen) for s in shapes]
    ours_params = [nn.Parameter(t.to(device, dtype)) for t in base]
    theirs_params = [nn.Parameter(t.to(device, dtype)) for t in base]
    ours = FusedAdamW(ours_params, impl=impl, lr=1e-2, weight_decay=0.1, amsgrad=True)
    theirs = torch.optim.AdamW(theirs_params, lr=1e-2, weight_decay=0.1, amsgrad=True, fused=True)
    for step in range(5):
        grads = [g.to(dtype) for g in grads_for(ours_params, step)]
        for ps in (ours_params, theirs_params):
            for p, g in zip(ps, grads, strict=True):
                p.grad = g.clone()
        ours.step()
        theirs.step()
        for i, (p, q) in enumerate(zip(ours_params, theirs_params, strict=True)):
            assert p.dtype == dtype
            pairs = [(p, q)] + [
                (ours.state[p][k], theirs.state[q][k])
                for k in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")
            ]
            for low_a, low_b in pairs:
                assert low_a.dtype == dtype
                a, b = low_a.detach().float(), low_b.detach().float()
                err = float(((a - b).abs() / b.abs().clamp_min(1e-6)).max())
                torch.testing.assert_close(
                    a,
                    b,
                    atol=1e-6,
                    rtol=rtol,
                    msg=f"step {step}, param {i}: max rel error {err:.2e} (rtol {rtol})",
                )
            assert float(ours.state[p]["step"]) == float(theirs.state[q]["step"])


@pytest.mark.parametrize("backend", BACKENDS)
def test_float64_model_steps_in_float64_like_torch(backend: tuple[str, str]) -> None:
    """``model.double()``: ATen's fused kernel in float64 on every impl. Both sides compute
    the same formulas in float64 and differ only in the order of roundings (~1e-16 relative
    per operation), so torch's own float64 tolerance (rtol 1e-7, atol 1e-7) holds with a wide
    margin; a float32 computation would miss it by orders of magnitude."""
    impl, device = backend
    ours_model, theirs_model = twins(Branches, device)
    for model in (ours_model, theirs_model):
        model.double()
    ours = FusedAdamW(ours_model.parameters(), impl=impl, lr=1e-2, amsgrad=True)
    theirs = torch_adamw(theirs_model.parameters(), lr=1e-2, amsgrad=True)
    for step in range(4):
        for model, opt in ((ours_model, ours), (theirs_model, theirs)):
            opt.zero_grad()
            x = inputs(step, (5, 6), device).double()
            model(x, use_b=True).pow(2).sum().backward()
            opt.step()
        for p, q in zip(ours_model.parameters(), theirs_model.parameters(), strict=True):
            assert p.dtype == torch.float64
            torch.testing.assert_close(p, q, rtol=1e-7, atol=1e-7)
            for key in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"):
                torch.testing.assert_close(ours.state[p][key], theirs.state[q][key])
            assert float(ours.state[p]["step"]) == float(theirs.state[q]["step"])


@pytest.mark.parametrize("backend", BACKENDS)
def test_state_dict_of_a_bf16_run_loads_into_torch(backend: tuple[str, str]) -> None:
    impl, device = backend
    params = [nn.Parameter(torch.randn(6, 3).to(device, torch.bfloat16))]
    ours = FusedAdamW(params, impl=impl, lr=1e-2)
    params[0].grad = torch.ones_like(params[0])
    ours.step()
    twin = [nn.Parameter(params[0].detach().clone())]
    theirs = torch.optim.AdamW(twin, lr=1e-2, fused=True)
    theirs.load_state_dict(copy.deepcopy(ours.state_dict()))
    assert theirs.state[twin[0]]["exp_avg"].dtype == torch.bfloat16
    assert_close_fp32(
        theirs.state[twin[0]]["exp_avg"].float(), ours.state[params[0]]["exp_avg"].float(), "m"
    )


@pytest.mark.parametrize("backend", BACKENDS)
def test_grad_scale_and_found_inf_as_torchs_fused_adamw_takes_them(
    backend: tuple[str, str],
) -> None:
    """The protocol GradScaler uses, driven by hand: ``grad_scale`` divides the gradients
    (which are written back unscaled), ``found_inf`` = 1 skips the step, step counts too."""
    impl, device = backend
    ours_params, theirs_params = [
        [nn.Parameter(t.to(device)) for t in grads_for([torch.empty(3, 4), torch.empty(9)], 7)]
        for _ in range(2)
    ]
    ours = FusedAdamW(ours_params, impl=impl, lr=1e-2, weight_decay=0.1)
    theirs = torch.optim.AdamW(theirs_params, lr=1e-2, weight_decay=0.1, fused=True)
    for step, inf in enumerate([0.0, 1.0, 0.0]):
        grads = grads_for(ours_params, step)
        for opt, ps in ((ours, ours_params), (theirs, theirs_params)):
            for p, g in zip(ps, grads, strict=True):
                p.grad = g * 512
            opt.grad_scale = torch.tensor(512.0, device=device)  # type: ignore[attr-defined]
            opt.found_inf = torch.tensor(inf, device=device)  # type: ignore[attr-defined]
            opt.step()
            del opt.grad_scale, opt.found_inf  # type: ignore[attr-defined]
        assert_match(ours, theirs, ours_params, theirs_params, f"step {step}")
        for p, q in zip(ours_params, theirs_params, strict=True):
            assert p.grad is not None and q.grad is not None
            assert_close_fp32(p.grad, q.grad, f"step {step}: gradient after the step")
    assert float(ours.state[ours_params[0]]["step"]) == 2.0
