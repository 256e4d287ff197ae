"""FusedAdamW as a drop-in for torch.optim.AdamW / Adam: the scenarios a user's code brings.

Each test runs a user's pattern (gradients written in place, copies of the optimizer, a Tensor
lr, torch.compile, schedulers, hooks, flags) on FusedAdamW and on torch's optimizer and
compares. Tolerances: float32 comparisons use ``assert_close_fp32`` (atol 1e-6, rtol 1e-5,
the measured error in the message) where the two implementations round differently; bit
equality only where both sides run the same code on the same numbers (a copy of the optimizer
against the original, ATen's fused kernel against itself).
"""

from __future__ import annotations

import copy
import inspect
import io
import pickle
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from optim_testing import (  # one_intra_op_thread: an autouse fixture
    assert_close_fp32,
    assert_equal_bits,
    one_intra_op_thread,  # noqa: F401
)
from torch import nn
from torch.optim.adam import adam as functional_adam
from torch.optim.adamw import adamw as functional_adamw
from torch.optim.optimizer import register_optimizer_step_pre_hook

from sweeper.optim import FusedAdamW
from sweeper.optim import adamw as adamw_module

HAS_CUDA = torch.cuda.is_available()
cuda_only = [pytest.mark.cuda, pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")]
BACKENDS = [
    pytest.param(("torch", "cpu"), id="torch-cpu"),
    pytest.param(("triton", "cpu"), id="triton-interpreter"),
    pytest.param(("torch", "cuda"), id="torch-cuda", marks=cuda_only),
    pytest.param(("triton", "cuda"), id="triton-cuda", marks=cuda_only),
]
SHAPES = [(4,), (3, 5), (7,)]


def make_params(device: str, seed: int = 0, shapes: list[Any] = SHAPES) -> list[nn.Parameter]:
    gen = torch.Generator().manual_seed(seed)
    return [nn.Parameter(torch.randn(s, generator=gen).to(device)) for s in shapes]


def grads_for(params: list[nn.Parameter], seed: int) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(p.shape, generator=gen).to(p.device) for p in params]


def assert_match(
    ours: torch.optim.Optimizer,
    theirs: torch.optim.Optimizer,
    ours_params: list[nn.Parameter],
    theirs_params: list[nn.Parameter],
    label: str,
    *,
    exact: bool = False,
) -> None:
    """Parameters, state presence, step counts and moments of two optimizers agree."""
    check = assert_equal_bits if exact else assert_close_fp32
    for i, (p, q) in enumerate(zip(ours_params, theirs_params, strict=True)):
        where = f"{label}, param {i}"
        check(p, q, f"{where}, param")
        assert (p in ours.state) == (q in theirs.state), f"{where}: state presence differs"
        if q in theirs.state:
            assert float(ours.state[p]["step"]) == float(theirs.state[q]["step"]), where
            for key in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"):
                if key in theirs.state[q]:
                    check(ours.state[p][key], theirs.state[q][key], f"{where}, {key}")


def step_both(
    ours: torch.optim.Optimizer,
    theirs: torch.optim.Optimizer,
    ours_params: list[nn.Parameter],
    theirs_params: list[nn.Parameter],
    step: int,
    *,
    check: bool = True,
) -> None:
    """Give both optimizers step ``step``'s gradients, step both, and (``check``) compare."""
    grads = grads_for(ours_params, step)
    for ps in (ours_params, theirs_params):
        for p, g in zip(ps, grads, strict=True):
            p.grad = g.clone()
    ours.step()
    theirs.step()
    if check:
        assert_match(ours, theirs, ours_params, theirs_params, f"step {step}")


def pair(
    backend: tuple[str, str], **options: Any
) -> tuple[FusedAdamW, torch.optim.Optimizer, list[nn.Parameter], list[nn.Parameter]]:
    impl, device = backend
    ours_params, theirs_params = make_params(device), make_params(device)
    ours = FusedAdamW(ours_params, impl=impl, **options)
    theirs = torch.optim.AdamW(theirs_params, foreach=False, **options)
    return ours, theirs, ours_params, theirs_params


# -- 1. gradients written in place ---------------------------------------------------------


IN_PLACE_WRITES: list[Any] = [
    pytest.param(lambda grad, g: grad.add_(g), id="add_"),
    pytest.param(lambda grad, g: grad.copy_(g), id="copy_"),
    pytest.param(lambda grad, g: grad.mul_(0).add_(g, alpha=2.0), id="mul_-add_"),
]


@pytest.mark.parametrize("write", IN_PLACE_WRITES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_gradients_written_in_place_are_stepped_like_torch(
    backend: tuple[str, str], write: Callable[[torch.Tensor, torch.Tensor], Any]
) -> None:
    """No backward at all: .grad exists (zero_grad(set_to_none=False) or a first backward)
    and the caller writes into it, as gradient surgery and tests do."""
    ours, theirs, ours_params, theirs_params = pair(backend, weight_decay=0.1)
    for params in (ours_params, theirs_params):
        torch.stack([(p * 0).sum() for p in params]).sum().backward()  # zero grads exist
    for step in range(4):
        for opt in (ours, theirs):
            opt.zero_grad(set_to_none=step % 2 == 0)
        grads = grads_for(ours_params, step)
        for params in (ours_params, theirs_params):
            for i, (p, g) in enumerate(zip(params, grads, strict=True)):
                if i == 2 and step == 2:
                    # Not written after set_to_none: None on both, both skip it.
                    continue
                if p.grad is None:  # after set_to_none: the caller makes a tensor
                    p.grad = torch.zeros_like(p)
                write(p.grad, g)
        ours.step()
        theirs.step()
        assert_match(ours, theirs, ours_params, theirs_params, f"step {step}")


@pytest.mark.parametrize("backend", BACKENDS)
def test_after_set_to_none_only_parameters_given_a_gradient_step(
    backend: tuple[str, str],
) -> None:
    """After zero_grad() every .grad is None, as in torch; a gradient assigned to one
    parameter steps that parameter only."""
    ours, theirs, ours_params, theirs_params = pair(backend, weight_decay=0.1)
    for params in (ours_params, theirs_params):
        for p, g in zip(params, grads_for(params, 0), strict=True):
            p.grad = g
    ours.step()
    theirs.step()
    ours.zero_grad()
    theirs.zero_grad()
    assert all(p.grad is None for p in ours_params)
    g = grads_for(ours_params, 1)[1]
    ours_params[1].grad = g.clone()
    theirs_params[1].grad = g.clone()
    ours.step()
    theirs.step()
    assert_match(ours, theirs, ours_params, theirs_params, "after one assigned gradient")
    assert float(ours.state[ours_params[0]]["step"]) == 1.0


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradient_accumulation_and_clipping_match_torch(backend: tuple[str, str]) -> None:
    """Two backward passes per step (accumulation), then clip_grad_norm_ (in place)."""
    ours, theirs, ours_params, theirs_params = pair(backend, weight_decay=0.1, lr=1e-2)
    for step in range(4):
        for opt, params in ((ours, ours_params), (theirs, theirs_params)):
            opt.zero_grad()
            for micro in range(2):
                xs = grads_for(params, 10 * step + micro)
                torch.stack(
                    [(p * x).sum() ** 2 for p, x in zip(params, xs, strict=True)]
                ).sum().backward()
            nn.utils.clip_grad_norm_(params, max_norm=1.0, foreach=False)
        ours.step()
        theirs.step()
        assert_match(ours, theirs, ours_params, theirs_params, f"step {step}")


# -- 2. copies of the optimizer --------------------------------------------------------------


def _copy_deepcopy(opt: FusedAdamW) -> FusedAdamW:
    return copy.deepcopy(opt)


def _copy_pickle(opt: FusedAdamW) -> FusedAdamW:
    copied: FusedAdamW = pickle.loads(pickle.dumps(opt))
    return copied


def _copy_torch_save(opt: FusedAdamW) -> FusedAdamW:
    buffer = io.BytesIO()
    torch.save(opt, buffer)
    buffer.seek(0)
    copied: FusedAdamW = torch.load(buffer, weights_only=False)
    return copied


COPIES = [
    pytest.param(_copy_deepcopy, id="deepcopy"),
    pytest.param(_copy_pickle, id="pickle"),
    pytest.param(_copy_torch_save, id="torch.save"),
]


@pytest.mark.parametrize("make_copy", COPIES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_copied_optimizer_continues_bit_identically(
    backend: tuple[str, str], make_copy: Callable[[FusedAdamW], FusedAdamW]
) -> None:
    """The copy trains copies of the parameters (as torch's copies do) exactly as the original
    goes on: same code, same numbers, so bit for bit."""
    impl, device = backend
    params = make_params(device)
    opt = FusedAdamW(
        [{"params": params[:2], "amsgrad": True}, {"params": params[2:], "lr": 1e-2}],
        impl=impl,
        weight_decay=0.1,
    )
    for step in range(3):
        for p, g in zip(params, grads_for(params, step), strict=True):
            p.grad = g
        opt.step()
    copied = make_copy(opt)
    copied_params = [p for g in copied.param_groups for p in g["params"]]
    assert all(c is not p for c, p in zip(copied_params, params, strict=True))
    assert copied.implementation == opt.implementation
    assert [g["lr"] for g in copied.param_groups] == [g["lr"] for g in opt.param_groups]
    for step in range(3, 6):
        grads = grads_for(params, step)
        for ps in (params, copied_params):
            for p, g in zip(ps, grads, strict=True):
                p.grad = g.clone()
        opt.step()
        copied.step()
        assert_match(copied, opt, copied_params, params, f"step {step}", exact=True)


@pytest.mark.parametrize("backend", BACKENDS)
def test_loading_own_live_state_dict_is_a_no_op(backend: tuple[str, str]) -> None:
    impl, device = backend
    params, twin_params = make_params(device), make_params(device)
    opt = FusedAdamW(params, impl=impl, amsgrad=True)
    twin = FusedAdamW(twin_params, impl=impl, amsgrad=True)
    for step in range(5):
        if step == 2:
            opt.load_state_dict(opt.state_dict())
            opt.load_state_dict(copy.deepcopy(opt.state_dict()))
        grads = grads_for(params, step)
        for ps in (params, twin_params):
            for p, g in zip(ps, grads, strict=True):
                p.grad = g.clone()
        opt.step()
        twin.step()
        assert_match(opt, twin, params, twin_params, f"step {step}", exact=True)


# -- 3. state dicts across the two classes ----------------------------------------------------


@pytest.mark.parametrize("mode", ["adamw", "adam"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_state_dict_round_trip_through_torch_and_back(backend: tuple[str, str], mode: str) -> None:
    """ours -> torch.optim.Adam (which honours decoupled_weight_decay) -> ours."""
    impl, device = backend
    ours_params = make_params(device)
    ours = FusedAdamW(ours_params, impl=impl, mode=mode, weight_decay=0.1, lr=1e-2)
    for step in range(3):
        for p, g in zip(ours_params, grads_for(ours_params, step), strict=True):
            p.grad = g
        ours.step()
    theirs_params = [nn.Parameter(p.detach().clone()) for p in ours_params]
    theirs = torch.optim.Adam(theirs_params, foreach=False)
    theirs.load_state_dict(copy.deepcopy(ours.state_dict()))
    assert theirs.param_groups[0]["decoupled_weight_decay"] == (mode == "adamw")
    for step in range(3, 6):
        step_both(ours, theirs, ours_params, theirs_params, step)
    back_params = [nn.Parameter(p.detach().clone()) for p in theirs_params]
    back = FusedAdamW(back_params, impl=impl)
    back.load_state_dict(copy.deepcopy(theirs.state_dict()))
    assert back.param_groups[0]["mode"] == mode
    assert "decoupled_weight_decay" not in back.param_groups[0]
    assert_match(back, theirs, back_params, theirs_params, "loaded back")


# -- 4. lr as a Tensor or a numpy scalar -----------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_tensor_lr_matches_torch_and_follows_in_place_changes(backend: tuple[str, str]) -> None:
    impl, device = backend
    ours_lr = torch.tensor(1e-2, device=device)
    theirs_lr = torch.tensor(1e-2, device=device)
    ours_params, theirs_params = make_params(device), make_params(device)
    ours = FusedAdamW(ours_params, lr=ours_lr, weight_decay=0.1, impl=impl)
    # torch takes a Tensor lr with fused=True or capturable=True; fused is its CPU/CUDA path.
    theirs = torch.optim.AdamW(theirs_params, lr=theirs_lr, weight_decay=0.1, fused=True)
    for step in range(5):
        if step == 3:
            ours_lr.fill_(3e-3)  # what a capturable schedule does
            theirs_lr.fill_(3e-3)
        step_both(ours, theirs, ours_params, theirs_params, step)
    assert ours.param_groups[0]["lr"] is ours_lr


@pytest.mark.parametrize("backend", BACKENDS)
def test_numpy_scalars_are_numbers(backend: tuple[str, str]) -> None:
    impl, device = backend
    ours_params, theirs_params = make_params(device), make_params(device)
    ours = FusedAdamW(
        ours_params,
        lr=np.float32(1e-2),
        betas=(np.float64(0.9), np.float32(0.99)),
        eps=np.float64(1e-8),
        weight_decay=np.float32(0.1),
        impl=impl,
    )
    theirs = torch.optim.AdamW(
        theirs_params,
        lr=float(np.float32(1e-2)),
        betas=(0.9, float(np.float32(0.99))),
        weight_decay=float(np.float32(0.1)),
        foreach=False,
    )
    for step in range(3):
        step_both(ours, theirs, ours_params, theirs_params, step)


BAD_LRS: list[tuple[str, Callable[[], Any], str]] = [
    ("two-element tensor", lambda: torch.tensor([1e-3, 1e-3]), "a Tensor lr must hold one"),
    ("integer tensor", lambda: torch.tensor(1), "a Tensor lr must hold one"),
    ("negative tensor", lambda: torch.tensor(-1.0), "must be a finite number >= 0"),
    ("nan numpy", lambda: np.float64("nan"), "must be a finite number >= 0"),
    ("numpy bool", lambda: np.bool_(True), "must be a finite number >= 0"),
]


@pytest.mark.parametrize(
    ("make_lr", "message"), [pytest.param(m, msg, id=name) for name, m, msg in BAD_LRS]
)
def test_bad_lr_values_are_refused(make_lr: Callable[[], Any], message: str) -> None:
    with pytest.raises(ValueError, match=rf"^invalid lr=.*{message}"):
        FusedAdamW(make_params("cpu"), lr=make_lr())


# -- 5. defaults of each mode --------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_mode_adam_has_torch_adams_defaults(backend: tuple[str, str]) -> None:
    impl, device = backend
    ours_params, theirs_params = make_params(device), make_params(device)
    ours = FusedAdamW(ours_params, mode="adam", impl=impl)
    theirs = torch.optim.Adam(theirs_params, foreach=False)
    assert ours.param_groups[0]["weight_decay"] == theirs.param_groups[0]["weight_decay"] == 0
    adamw_default = FusedAdamW(make_params(device), impl=impl)
    assert adamw_default.param_groups[0]["weight_decay"] == 1e-2  # torch.optim.AdamW's
    for step in range(3):
        step_both(ours, theirs, ours_params, theirs_params, step)


def test_a_group_naming_its_mode_takes_that_modes_default_weight_decay() -> None:
    params = make_params("cpu")
    opt = FusedAdamW(
        [
            {"params": params[:1]},
            {"params": params[1:2], "mode": "adam"},
            {"params": params[2:], "mode": "adam", "weight_decay": 0.3},
        ]
    )
    assert [g["weight_decay"] for g in opt.param_groups] == [1e-2, 0.0, 0.3]
    explicit = FusedAdamW([{"params": params[:1], "mode": "adam"}], weight_decay=0.2)
    assert explicit.param_groups[0]["weight_decay"] == 0.2  # an explicit default wins


# -- 6. torch.compile ------------------------------------------------------------------------


def _model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))


def _batches(n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(5)
    return [
        (torch.randn(4, 6, generator=gen), torch.randint(0, 3, (4,), generator=gen))
        for _ in range(n)
    ]


def test_compiled_model_trains_exactly_as_with_torch_fused_adamw() -> None:
    """torch.compile(model) with our step against the same compiled model with torch's fused
    AdamW: the same ATen kernel on the same numbers (our CPU path), so bit for bit."""
    torch._dynamo.reset()
    losses = {}
    final = {}
    for name in ("ours", "torch"):
        model = _model(0)
        opt: torch.optim.Optimizer = (
            FusedAdamW(model.parameters(), lr=1e-2, weight_decay=0.1, impl="torch")
            if name == "ours"
            else torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1, fused=True)
        )
        compiled = torch.compile(model, backend="aot_eager")
        losses[name] = []
        for x, y in _batches(6):
            opt.zero_grad()
            loss = nn.functional.cross_entropy(compiled(x), y)
            loss.backward()
            opt.step()
            losses[name].append(float(loss.detach()))
        final[name] = [p.detach().clone() for p in model.parameters()]
    assert losses["ours"] == losses["torch"]
    for i, (a, b) in enumerate(zip(final["ours"], final["torch"], strict=True)):
        assert_equal_bits(a, b, f"param {i} after compiled training")


@pytest.mark.parametrize("backend", BACKENDS)
def test_compiled_train_step_calling_step_graph_breaks_and_matches_torch(
    backend: tuple[str, str],
) -> None:
    impl, device = backend
    torch._dynamo.reset()
    ours_model, theirs_model = _model(0).to(device), _model(0).to(device)
    ours = FusedAdamW(ours_model.parameters(), lr=1e-2, impl=impl)
    theirs = torch.optim.AdamW(theirs_model.parameters(), lr=1e-2, foreach=False)

    def train_step(
        model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor
    ) -> torch.Tensor:
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss.detach()

    compiled_step = torch.compile(train_step, backend="aot_eager")
    for step, (x, y) in enumerate(_batches(3)):
        x, y = x.to(device), y.to(device)
        compiled_step(ours_model, ours, x, y)
        train_step(theirs_model, theirs, x, y)
        ours_params, theirs_params = list(ours_model.parameters()), list(theirs_model.parameters())
        assert_match(ours, theirs, ours_params, theirs_params, f"step {step}")


def test_fullgraph_compile_of_step_raises_torchs_graph_break_error() -> None:
    """Documented: step() is excluded from compilation, so fullgraph=True cannot hold it."""
    torch._dynamo.reset()
    params = make_params("cpu")
    opt = FusedAdamW(params, impl="torch")
    for p in params:
        p.grad = torch.ones_like(p)

    @torch.compile(backend="eager", fullgraph=True)
    def only_step() -> None:
        opt.step()

    with pytest.raises(torch._dynamo.exc.Unsupported, match="disable"):
        only_step()


# -- 7. sparse gradients and repeated parameters -------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_sparse_embedding_raises_at_step_like_torch(backend: tuple[str, str]) -> None:
    impl, device = backend
    for make in (
        lambda ps: FusedAdamW(ps, impl=impl),
        lambda ps: torch.optim.AdamW(ps, foreach=False),
    ):
        embedding = nn.Embedding(10, 3, sparse=True).to(device)
        opt = make(embedding.parameters())
        embedding(torch.tensor([1, 4], device=device)).sum().backward()
        with pytest.raises(RuntimeError, match="does not support sparse gradients"):
            opt.step()


@pytest.mark.parametrize("backend", BACKENDS)
def test_repeated_parameter_warns_like_torch_and_is_updated_once(backend: tuple[str, str]) -> None:
    impl, device = backend
    params = make_params(device)
    single = make_params(device)
    with pytest.warns(UserWarning, match="duplicate parameters"):
        opt = FusedAdamW([params[0], params[1], params[0], params[2]], impl=impl)
    reference = FusedAdamW(single, impl=impl)
    for step in range(3):
        grads = grads_for(params, step)
        for ps in (params, single):
            for p, g in zip(ps, grads, strict=True):
                p.grad = g.clone()
        opt.step()
        reference.step()
        assert_match(opt, reference, params, single, f"step {step}", exact=True)
    assert len(opt.state_dict()["param_groups"][0]["params"]) == 4  # torch keeps the list


# -- flags, hooks, schedulers, frozen parameters ------------------------------------------


FLAGS: list[tuple[str, dict[str, Any], str | None]] = [
    ("foreach=None", {"foreach": None}, None),
    ("foreach=True", {"foreach": True}, None),
    ("foreach=False", {"foreach": False}, None),
    ("fused=True", {"fused": True}, None),
    ("capturable=False", {"capturable": False}, None),
    (
        "fused=False",
        {"fused": False},
        "invalid fused=False: FusedAdamW always runs one fused step; "
        "use torch.optim.AdamW for an unfused one",
    ),
    (
        "differentiable=True",
        {"differentiable": True},
        "invalid differentiable=True: FusedAdamW's step is not differentiable; "
        "use torch.optim.AdamW(differentiable=True)",
    ),
    (
        "capturable=True on cpu",
        {"capturable": True},
        "invalid capturable=True: the step of 'torch-fused' on cpu cannot be captured "
        "in a CUDA graph; only impl='triton', compiled on CUDA, can",
    ),
    ("foreach='yes'", {"foreach": "yes"}, "invalid foreach='yes': must be None or a bool"),
]


@pytest.mark.parametrize(
    ("flags", "message"), [pytest.param(f, m, id=name) for name, f, m in FLAGS]
)
def test_torch_implementation_flags(flags: dict[str, Any], message: str | None) -> None:
    if message is None:
        opt = FusedAdamW(make_params("cpu"), impl="torch", **flags)
        assert opt.implementation == "torch-fused"
        return
    import re

    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        FusedAdamW(make_params("cpu"), impl="torch", **flags)


def test_step_hooks_and_profiler_range_run_as_in_torch() -> None:
    params = make_params("cpu")
    opt = FusedAdamW(params, impl="torch")
    calls: list[str] = []
    pre = opt.register_step_pre_hook(lambda o, args, kwargs: calls.append("pre"))
    post = opt.register_step_post_hook(lambda o, args, kwargs: calls.append("post"))
    glob = register_optimizer_step_pre_hook(lambda o, args, kwargs: calls.append("global-pre"))
    try:
        for p in params:
            p.grad = torch.ones_like(p)
        assert opt.step(lambda: 2.5) == 2.5
        assert calls == ["global-pre", "pre", "post"]
    finally:
        pre.remove()
        post.remove()
        glob.remove()
    opt.step()
    assert calls == ["global-pre", "pre", "post"], "removed hooks ran"
    with torch.profiler.profile() as prof:
        opt.step()
    assert any(e.name == "Optimizer.step#FusedAdamW.step" for e in prof.events())


SCHEDULERS: list[Any] = [
    pytest.param(
        lambda o: torch.optim.lr_scheduler.OneCycleLR(o, max_lr=0.05, total_steps=10),
        id="onecycle-changes-betas",
    ),
    pytest.param(lambda o: torch.optim.lr_scheduler.LambdaLR(o, lambda s: 0.8**s), id="lambda"),
    pytest.param(
        lambda o: torch.optim.lr_scheduler.SequentialLR(
            o,
            [
                torch.optim.lr_scheduler.LinearLR(o, start_factor=0.1, total_iters=3),
                torch.optim.lr_scheduler.ExponentialLR(o, gamma=0.7),
            ],
            milestones=[3],
        ),
        id="sequential",
    ),
    pytest.param(
        lambda o: torch.optim.lr_scheduler.ReduceLROnPlateau(o, patience=0, factor=0.5),
        id="plateau",
    ),
]


@pytest.mark.parametrize("make_sched", SCHEDULERS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_lr_schedulers_drive_both_alike(
    backend: tuple[str, str], make_sched: Callable[[torch.optim.Optimizer], Any]
) -> None:
    ours, theirs, ours_params, theirs_params = pair(backend, weight_decay=0.1)
    scheds = [make_sched(ours), make_sched(theirs)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. "lr_scheduler.step() before optimizer.step()"
        for step in range(8):
            step_both(ours, theirs, ours_params, theirs_params, step, check=False)
            for sched in scheds:
                if isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau):
                    sched.step(1.0)  # a flat metric: lr halves every step
                else:
                    sched.step()
            assert ours.param_groups[0]["lr"] == theirs.param_groups[0]["lr"]
            assert tuple(ours.param_groups[0]["betas"]) == tuple(theirs.param_groups[0]["betas"])
            assert_match(ours, theirs, ours_params, theirs_params, f"step {step}")


@pytest.mark.parametrize("backend", BACKENDS)
def test_frozen_parameters_and_zero_grad_match_torch(backend: tuple[str, str]) -> None:
    """requires_grad=False parameters never get a gradient, state or an update; .grad of a
    foreign tensor becomes None on zero_grad(), as in torch."""
    impl, device = backend
    ours_params, theirs_params = make_params(device), make_params(device)
    for ps in (ours_params, theirs_params):
        ps[1].requires_grad_(False)
    ours = FusedAdamW(ours_params, impl=impl)
    theirs = torch.optim.AdamW(theirs_params, foreach=False)
    assert all(p.grad is None for p in ours_params)
    for step in range(3):
        for opt, ps in ((ours, ours_params), (theirs, theirs_params)):
            opt.zero_grad()
            assert ps[1].grad is None
            torch.stack([(p * p).sum() for p in ps if p.requires_grad]).sum().backward()
            opt.step()
        assert_match(ours, theirs, ours_params, theirs_params, f"step {step}")
    assert ours_params[1] not in ours.state


def test_repr_lists_groups_like_torch() -> None:
    text = repr(FusedAdamW(make_params("cpu"), impl="torch"))
    assert text.startswith("FusedAdamW (\nParameter Group 0\n") and "mode: adamw" in text


def test_public_functional_takes_the_arguments_we_pass() -> None:
    """The torch path calls torch.optim.adamw.adamw / adam.adam (public since torch 2.0) with
    these keywords; a torch that renamed one would fail here, not in a training run."""
    for fn in (functional_adamw, functional_adam):
        names = set(inspect.signature(fn).parameters)
        wanted = {"fused", "amsgrad", "beta1", "beta2", "lr", "weight_decay", "eps", "maximize"}
        assert wanted <= names, (fn, wanted - names)
    assert adamw_module._torch_adamw is functional_adamw
