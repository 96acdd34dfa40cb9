"""The operator-level guard: every way to PyTorch's convolution is refused, what the task allows still works.

The wrong variants below are a0 answers with the right numbers, computed by running PyTorch's convolution
on shape-only meta tensors, each reaching it another way. Graded through the direct-call helper
(``run_checks``), each must lose every point. The ways the guard cannot refuse in its own process are
kept at the end as strict xfails: they are the static scan's (``course_utils.grading.integrity``).
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import subprocess
import sys
import threading

import pytest
import torch
import torch.nn.functional as F
from torch.nn.functional import conv2d as _imported_conv2d  # a name taken before any check runs

import course_utils.checks as checks_package
from course_utils.checks import ForbiddenReference, guard
from course_utils.checks.guard import (AVERAGE_POOLING_OPS, CONVOLUTION_OPS, POOLING_OPS, RefusingMode,
                                       guarded_call, install, qualified_op)
from course_utils.grading.protocol import run_checks

conv_alias = F.conv2d
aten = torch.ops.aten


def _meta(i, k, p):
    return torch.empty(1, 1, i + 2 * p, i + 2 * p, device="meta"), torch.empty(1, 1, k, k, device="meta")


def _validate(i, k, s, p, d):
    if min(k, s, d) < 1 or p < 0 or i + 2 * p < d * (k - 1) + 1:
        raise ValueError("impossible convolution settings")


def correct(i, k, s=1, p=0, d=1):
    _validate(i, k, s, p, d)
    return (i + 2 * p - d * (k - 1) - 1) // s + 1


# --- kept wrong variants: right numbers, by PyTorch's convolution ---------------------------------
def by_imported_name(i, k, s=1, p=0, d=1):
    _validate(i, k, s, p, d)
    x, w = _meta(i, k, p)
    return _imported_conv2d(x, w, stride=s, dilation=d).shape[-1]


def by_alias(i, k, s=1, p=0, d=1):
    _validate(i, k, s, p, d)
    x, w = _meta(i, k, p)
    return conv_alias(x, w, stride=s, dilation=d).shape[-1]


def by_torch_ops_aten(i, k, s=1, p=0, d=1):
    _validate(i, k, s, p, d)
    x, w = _meta(i, k, p)
    return aten.convolution(x, w, None, [s, s], [0, 0], [d, d], False, [0, 0], 1).shape[-1]


def by_partial(i, k, s=1, p=0, d=1):
    _validate(i, k, s, p, d)
    x, w = _meta(i, k, p)
    return functools.partial(torch.conv2d, stride=s, dilation=d)(x, w).shape[-1]


def by_getattr_string(i, k, s=1, p=0, d=1):
    _validate(i, k, s, p, d)
    x, w = _meta(i, k, p)
    return getattr(F, "con" + "v2d")(x, w, stride=s, dilation=d).shape[-1]


def by_nn_grad(i, k, s=1, p=0, d=1):
    """The input gradient of a convolution is a transposed convolution: it gives the size back, too."""
    _validate(i, k, s, p, d)
    o = correct(i, k, s, p, d)
    w = torch.empty(1, 1, k, k, device="meta")
    torch.nn.grad.conv2d_input((1, 1, i + 2 * p, i + 2 * p), w, torch.empty(1, 1, o, o, device="meta"),
                               stride=s, dilation=d)
    return o


def by_unfold_functional(i, k, s=1, p=0, d=1):
    _validate(i, k, s, p, d)
    x, _ = _meta(i, k, p)
    columns = F.unfold(x, k, dilation=d, stride=s).shape[-1]  # aten.im2col
    return int(round(columns ** 0.5))


def by_max_pool(i, k, s=1, p=0, d=1):
    _validate(i, k, s, p, d)
    x, _ = _meta(i, k, p)
    return F.max_pool1d(x[0], k, stride=s, dilation=d).shape[-1]


def by_avg_pool(i, k, s=1, p=0, d=1):
    _validate(i, k, s, p, d)
    return F.avg_pool2d(torch.empty(1, 1, i + 2 * p, 1, device="meta"), (d * (k - 1) + 1, 1),
                        stride=(s, 1)).shape[-2]


def by_replacing_blocked(i, k, s=1, p=0, d=1):
    import course_utils.checks as c
    c.blocked = lambda *a, **kw: contextlib.nullcontext()
    return by_alias(i, k, s, p, d)


def by_patching_the_mode_class(i, k, s=1, p=0, d=1):
    import course_utils.checks.guard as g
    type.__setattr__(g.RefusingMode, "__torch_dispatch__",
                     lambda self, func, types, args=(), kwargs=None: func(*args, **(kwargs or {})))
    return by_alias(i, k, s, p, d)


def by_replacing_the_handler_function(i, k, s=1, p=0, d=1):
    import course_utils.checks.guard as g
    g._handle = lambda mode, func, types, args=(), kwargs=None: func(*args, **(kwargs or {}))
    return by_alias(i, k, s, p, d)


def by_replacing_the_guards_parts(i, k, s=1, p=0, d=1):
    import course_utils.checks.guard as g
    g.install()._push = lambda mode: None
    return by_alias(i, k, s, p, d)


def by_replacing_install_and_call(i, k, s=1, p=0, d=1):
    import course_utils.checks.guard as g
    g.Guard.call = lambda self, fn, args=(), kwargs=None, **options: (fn(*args, **(kwargs or {})), 0)
    g.install = g.Guard
    g._GUARD = None
    return by_alias(i, k, s, p, d)


def by_reloading_the_guard(i, k, s=1, p=0, d=1):
    import course_utils.checks.guard as g
    importlib.reload(g)
    return by_alias(i, k, s, p, d)


def by_popping_the_mode(i, k, s=1, p=0, d=1):
    from torch.utils._python_dispatch import _disable_current_modes
    with _disable_current_modes():
        return by_alias(i, k, s, p, d)


def by_popping_the_mode_in_c(i, k, s=1, p=0, d=1):
    mode = torch._C._pop_torch_dispatch_stack(None)
    try:
        return by_alias(i, k, s, p, d)
    finally:
        torch._C._push_on_torch_dispatch_stack(mode)


def by_no_dispatch(i, k, s=1, p=0, d=1):
    from torch.utils._mode_utils import no_dispatch
    with no_dispatch():
        return by_alias(i, k, s, p, d)


def by_excluding_the_python_key(i, k, s=1, p=0, d=1):
    with torch._C._ExcludeDispatchKeyGuard(torch._C.DispatchKeySet(torch._C.DispatchKey.Python)):
        return by_alias(i, k, s, p, d)


def by_shadowing_the_handler(i, k, s=1, p=0, d=1):
    mode = torch._C._get_dispatch_stack_at(torch._C._len_torch_dispatch_stack() - 1)
    mode.__dict__["__torch_dispatch__"] = lambda func, types, args=(), kwargs=None: func(*args, **(kwargs or {}))
    return by_alias(i, k, s, p, d)


def by_emptying_the_refused_list(i, k, s=1, p=0, d=1):
    mode = torch._C._get_dispatch_stack_at(torch._C._len_torch_dispatch_stack() - 1)
    object.__setattr__(mode, "refuse", frozenset())
    return by_alias(i, k, s, p, d)


def by_poisoning_the_verdicts(i, k, s=1, p=0, d=1):
    mode = torch._C._get_dispatch_stack_at(torch._C._len_torch_dispatch_stack() - 1)
    mode.verdicts[aten.convolution.default] = False
    return by_alias(i, k, s, p, d)


def in_a_thread(i, k, s=1, p=0, d=1):
    out = []

    def work():
        with contextlib.suppress(Exception):
            out.append(by_alias(i, k, s, p, d))

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    return out[0] if out else -1


_EXECUTOR = None


def in_a_thread_started_before_the_check(i, k, s=1, p=0, d=1):
    """An executor started earlier (in another cell) does the work: its thread runs under the ambient mode."""
    return _EXECUTOR.submit(by_alias, i, k, s, p, d).result()


def in_another_program(i, k, s=1, p=0, d=1):
    code = (f"import torch, torch.nn.functional as F; print(F.conv2d(torch.empty(1, 1, {i + 2 * p}, {i + 2 * p}, "
            f"device='meta'), torch.empty(1, 1, {k}, {k}, device='meta'), stride={s}, dilation={d}).shape[-1])")
    return int(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)


def swallowing_the_refusal(i, k, s=1, p=0, d=1):
    try:
        by_alias(i, k, s, p, d)
    except Exception:
        pass
    return correct(i, k, s, p, d)


VIA_THE_DISPATCHER = [by_imported_name, by_alias, by_torch_ops_aten, by_partial, by_getattr_string, by_nn_grad,
                      by_unfold_functional, by_max_pool, by_avg_pool, swallowing_the_refusal]
SWITCHING_IT_OFF = [by_replacing_blocked, by_patching_the_mode_class, by_replacing_the_handler_function,
                    by_replacing_the_guards_parts, by_replacing_install_and_call, by_reloading_the_guard,
                    by_popping_the_mode, by_popping_the_mode_in_c, by_no_dispatch, by_excluding_the_python_key,
                    by_shadowing_the_handler, by_emptying_the_refused_list, by_poisoning_the_verdicts, in_a_thread,
                    in_a_thread_started_before_the_check, in_another_program]


@pytest.fixture
def restore_guard():
    """Undo what the hostile variants change: the guard module, its class, the checks package's names."""
    module_state = dict(vars(guard))
    handler = RefusingMode.__dict__["__torch_dispatch__"]
    call = guard.Guard.call
    blocked = checks_package.blocked
    modes = torch._C._len_torch_dispatch_stack()
    yield
    vars(guard).clear()
    vars(guard).update(module_state)
    type.__setattr__(RefusingMode, "__torch_dispatch__", handler)
    type.__setattr__(guard.Guard, "call", call)
    checks_package.blocked = blocked
    assert torch._C._len_torch_dispatch_stack() == modes


def test_the_reference_variant_is_right():
    results = run_checks("a0_warmup", {"conv_output_size": correct})
    assert all(r.passed for r in results.values()), {g: r.failure for g, r in results.items()}
    assert by_alias(7, 3, s=3) == correct(7, 3, s=3) == 2  # outside a check every variant works


@pytest.fixture(scope="module", autouse=True)
def executor():
    """A thread pool whose thread exists before any check runs (as if a student's earlier cell started it)."""
    global _EXECUTOR
    from concurrent.futures import ThreadPoolExecutor

    install()
    _EXECUTOR = ThreadPoolExecutor(max_workers=1)
    assert _EXECUTOR.submit(lambda: 7).result() == 7  # its thread now exists, outside any call
    yield _EXECUTOR
    _EXECUTOR.shutdown()


@pytest.mark.parametrize("variant", VIA_THE_DISPATCHER + SWITCHING_IT_OFF, ids=lambda v: v.__name__)
def test_every_way_to_pytorchs_convolution_loses_every_point(variant, restore_guard):
    results = run_checks("a0_warmup", {"conv_output_size": variant})
    assert results and not any(r.passed for r in results.values()), \
        f"{variant.__name__} kept points: {[g for g, r in results.items() if r.passed]}"
    said = [r.failure for r in results.values()]
    assert any("ForbiddenReference" in text or "switches the guard off" in text for text in said), said


def test_refusal_names_the_operator_and_the_reason():
    x, w = _meta(5, 3, 0)
    with pytest.raises(ForbiddenReference, match=r"convolution \(PyTorch operator aten::convolution\) cannot be "
                                                 r"used in this answer: this question asks you to write it"):
        guarded_call(F.conv2d, (x, w), refuse=CONVOLUTION_OPS)
    with pytest.raises(ForbiddenReference, match="aten::max_pool3d_with_indices"):
        guarded_call(F.max_pool3d, (torch.ones(1, 1, 2, 4, 4), 2), refuse=POOLING_OPS)
    assert F.conv2d(x, w).shape == (1, 1, 3, 3)  # and available again after the call


def test_what_the_task_allows_still_works_and_is_counted():
    x = torch.arange(16.0).reshape(1, 1, 4, 4)

    def allowed(x):
        patches = x.unfold(2, 2, 1).unfold(3, 2, 1)                # Tensor.unfold (aten.unfold)
        strided = x.as_strided((1, 1, 3, 3, 2, 2), (16, 16, 4, 1, 4, 1))
        weights = torch.ones(4, 1)
        out = patches.reshape(-1, 4) @ weights                      # @
        return out.reshape(3, 3), (patches == strided).all()

    (out, same), ops = guarded_call(allowed, (x,), refuse=CONVOLUTION_OPS + POOLING_OPS)
    expected = F.conv2d(x, torch.ones(1, 1, 2, 2))[0, 0]
    assert torch.equal(out, expected) and bool(same) and ops > 5


def test_threads_started_outside_a_call_refuse_only_while_a_call_runs(executor):
    x, w = _meta(5, 3, 0)
    assert executor.submit(F.conv2d, x, w).result().shape == (1, 1, 3, 3)
    with pytest.raises(ForbiddenReference, match="aten::convolution"):
        guarded_call(lambda: executor.submit(F.conv2d, x, w).result(), refuse=CONVOLUTION_OPS)
    assert executor.submit(F.conv2d, x, w).result().shape == (1, 1, 3, 3)
    assert guarded_call(lambda: executor.submit(torch.add, x, 1).result().shape, refuse=CONVOLUTION_OPS)[0] \
        == x.shape


def test_printing_a_tensor_inside_the_call_is_not_tampering(capsys):
    value, _ = guarded_call(lambda: print(torch.ones(2)) or 1, refuse=CONVOLUTION_OPS)
    assert value == 1 and "tensor([1., 1.])" in capsys.readouterr().out


def test_operator_count_is_stable_for_a_vectorized_function_and_grows_for_a_loop():
    def vectorized(x):
        return (x.unfold(0, 3, 1) * torch.tensor([1.0, 2.0, 1.0])).sum(-1)

    def looped(x):
        out = torch.empty(x.shape[0] - 2)
        for j in range(out.shape[0]):
            out[j] = x[j] + 2 * x[j + 1] + x[j + 2]
        return out

    small, large = torch.rand(10), torch.rand(1000)
    counts = {f.__name__: [guarded_call(f, (t,))[1] for t in (small, large, small)] for f in (vectorized, looped)}
    assert counts["vectorized"][0] == counts["vectorized"][1] == counts["vectorized"][2] > 0
    assert counts["looped"][1] > 50 * counts["looped"][0] > 0 and counts["looped"][0] == counts["looped"][2]
    assert torch.allclose(guarded_call(vectorized, (large,))[0], looped(large))


def test_warnings_and_stderr_stay_quiet_and_forbid_blocks_dotted_names(capsys):
    import warnings

    import numpy as np

    def noisy():
        warnings.warn("deprecated thing", stacklevel=2)
        print("debug", file=sys.stderr)
        return np.allclose([1.0], [1.0])

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        assert guarded_call(noisy)[0]
    assert seen == [] and capsys.readouterr().err == ""
    with pytest.raises(ForbiddenReference, match="numpy.allclose cannot be used"):
        guarded_call(noisy, forbid=("numpy.allclose",))
    assert np.allclose([1.0], [1.0])


def test_install_returns_one_guard_whose_attributes_cannot_be_reassigned():
    assert install() is install()
    with pytest.raises(ForbiddenReference):
        install()._push = None
    mode = RefusingMode(frozenset(), "why", ForbiddenReference)
    with pytest.raises(ForbiddenReference):
        mode.refuse = frozenset({"aten::add"})
    with pytest.raises(ForbiddenReference):
        mode.__torch_dispatch__ = None


def test_operator_names_are_qualified_and_checked():
    assert qualified_op("convolution") == qualified_op("aten::convolution") == qualified_op("aten.convolution") \
        == qualified_op("torch.ops.aten.convolution.default") == "aten::convolution"
    assert qualified_op("quantized::conv2d") == "quantized::conv2d"
    with pytest.raises(ValueError, match="no operator aten::convolutoin"):
        qualified_op("convolutoin")
    with pytest.raises(ValueError, match="no operator"):
        checks_package.check(refuse=("max_pool2", ))


def _registered_packets() -> set[str]:
    return {name.split(".")[0] for name in torch._C._dispatch_get_all_op_names()}


def test_every_listed_operator_exists():
    import torchvision  # noqa: F401  (its operators are listed too)

    registered = _registered_packets()
    for name in CONVOLUTION_OPS + POOLING_OPS + AVERAGE_POOLING_OPS:
        assert qualified_op(name) in registered, name


def test_the_lists_name_every_convolution_and_max_pooling_operator_pytorch_registers():
    """Re-enumerated from the dispatcher: a PyTorch upgrade that adds one fails here, not silently."""
    import re

    import torchvision  # noqa: F401  (registers its own operators, e.g. torchvision::deform_conv2d)

    listed = {qualified_op(n) for n in CONVOLUTION_OPS + POOLING_OPS}
    not_computing = re.compile(r"_convert_|prepack|unpack|_reorder_|reorder_conv|convert_element_type|"
                               r"conv\w*_(stride|padding|dilation|groups|transpose|output_padding)$")
    missing = []
    for name in sorted(_registered_packets()):
        packet = name.split("::")[1]
        if re.search(r"conv|im2col|col2im|max_pool", packet) and not not_computing.search(name):
            if name not in listed:
                missing.append(name)
    assert not missing, f"operators computing a convolution or max-pooling that no list names: {missing}"
    assert "aten::unfold" not in listed and "aten::as_strided" not in listed


def test_torchvisions_deformable_convolution_is_refused_as_a_convolution():
    """deform_conv2d with zero offsets computes an ordinary convolution: a student could reach for it."""
    from torchvision.ops import deform_conv2d

    x, w = torch.randn(1, 2, 5, 5), torch.randn(3, 2, 3, 3)
    offsets = torch.zeros(1, 2 * 3 * 3, 3, 3)
    assert torch.allclose(deform_conv2d(x, offsets, w), F.conv2d(x, w), atol=1e-5)
    with pytest.raises(ForbiddenReference, match="deform_conv2d"):
        guarded_call(deform_conv2d, (x, offsets, w), {}, refuse=CONVOLUTION_OPS)


def test_hidden_checks_refuse_the_same_as_visible_ones():
    from course_utils.checks import a0_warmup

    for check in (a0_warmup.check_conv_output_size, a0_warmup.check_conv_output_size_errors):
        refused = {qualified_op(n) for n in check.refuse}
        assert {"aten::convolution", "aten::max_pool2d_with_indices", "aten::avg_pool2d"} <= refused


# --- what only the static scan can flag ----------------------------------------------------------
def by_kernel_at_a_dispatch_key(i, k, s=1, p=0, d=1):
    """``_op_dk`` calls the Meta kernel directly, under the dispatcher's mode handling."""
    _validate(i, k, s, p, d)
    x, w = _meta(i, k, p)
    return aten.convolution.default._op_dk(torch._C.DispatchKey.Meta, x, w, None, [s, s], [0, 0], [d, d], False,
                                           [0, 0], 1).shape[-1]


def by_pytorchs_shape_formula(i, k, s=1, p=0, d=1):
    """Pure Python in a private torch module: no operator is dispatched at all."""
    from torch._meta_registrations import pooling_output_shape
    _validate(i, k, s, p, d)
    return pooling_output_shape(i, k, p, s, d, False)


@pytest.mark.xfail(strict=True, reason="needs the static scan: private torch entry points")
@pytest.mark.parametrize("variant", [by_kernel_at_a_dispatch_key, by_pytorchs_shape_formula],
                         ids=lambda v: v.__name__)
def test_private_torch_entry_points_are_not_refused_in_process(variant):
    results = run_checks("a0_warmup", {"conv_output_size": variant})
    assert not any(r.passed for r in results.values())
