"""The operator-level guard: PyTorch operators a student's function may not run while a check calls it.

A question that asks for a convolution must not be answered by PyTorch's
convolution. Refusing the Python name (``F.conv2d``) is not enough: a name
imported earlier, an alias, ``torch.ops.aten.convolution``, ``functools.partial``,
``getattr(F, "con" + "v2d")`` and ``torch.nn.grad.conv2d_input`` all reach the
same ATen operator. So the guard refuses the computation where every one of them
ends: PyTorch's dispatcher. While a guarded call runs, a ``TorchDispatchMode`` sees
every ATen operator dispatched in that thread (meta tensors and factory functions
included), counts it, and raises :class:`ForbiddenReference` for the refused ones::

    value, ops = guarded_call(conv2d, (x, w), {"stride": 2}, refuse=CONVOLUTION_OPS)

``ops`` (the number of operators dispatched) tells a vectorized answer, whose
count does not depend on the input size, from a Python loop over positions,
whose count grows with it. ``Tensor.unfold``, ``as_strided``, ``@`` and every
other operator not named stay available.

The guard lives in the student's own process, so it is built to notice being
switched off. :func:`install` (called by the grading worker before any student
code runs; lazily otherwise) captures everything it uses: PyTorch's mode-stack
functions, the mode class and its handler, the attribute blocker. It also puts
checkpoints on the ways around a dispatch mode (popping the mode stack,
``torch._C._DisableTorchDispatch`` / ``no_dispatch``, excluding the Python
dispatch key) and on starting another program: while a guarded call runs, using
them from outside PyTorch's own code raises :class:`ForbiddenReference`. After
the call it verifies that its mode is still in place and unchanged. Threads
started during a call run under the call's mode; threads started after install
outside a call run under an ambient mode that refuses what the running call
refuses. What remains possible in-process (objects dug out with ``gc``,
``ctypes``, PyTorch's private kernels-by-key and shape formulas) is what the
static scan (``course_utils.grading.static_scan``) flags for the instructor.

A call can also refuse Python code by name (``refuse_code``: ``torch.optim.adam``,
``torch.optim.lr_scheduler.StepLR``), for references whose operators an answer
needs too (an optimizer's arithmetic): a profile hook (:mod:`.codeguard`), set in
the calling thread for the call and in every thread started after install,
refuses every frame of that code. ``sys.setprofile`` gets a checkpoint; after
the call the guard verifies that the hook was still set, that its code and
state are unchanged, and that no thread whose hook was unset still runs.
"""

from __future__ import annotations

import _thread
import contextlib
import functools
import importlib
import io
import itertools
import os
import sys
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from .codeguard import CodeCall, build_rules, closure_values, hook_damage, make_hook, own_functions

__all__ = ["ForbiddenReference", "Guard", "install", "guarded_call", "blocked", "qualified_op",
           "CONVOLUTION_OPS", "POOLING_OPS", "AVERAGE_POOLING_OPS"]


class ForbiddenReference(RuntimeError):
    """The student's code called a reference implementation that the question asks them to write."""


# --- what a check can refuse ----------------------------------------------------------------------
# Every operator that computes a convolution (forward, backward, transposed; slow/thnn/mkldnn/cudnn/
# miopen/mps/nnpack/quantized variants) or its im2col/col2im building blocks. Written out, not derived,
# so that a check's meaning cannot change silently; tests/test_guard.py re-enumerates the registered
# operators and fails when PyTorch adds one this list misses.
CONVOLUTION_OPS: tuple[str, ...] = (
    "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d",
    "convolution", "_convolution", "_convolution_mode", "convolution_overrideable",
    "convolution_backward", "convolution_backward_overrideable", "_convolution_double_backward",
    "conv_tbc", "conv_tbc_backward", "_conv_depthwise2d", "conv_depthwise3d",
    "thnn_conv2d", "_slow_conv2d_forward", "_slow_conv2d_backward", "slow_conv3d", "slow_conv3d_forward",
    "slow_conv_dilated2d", "slow_conv_dilated3d", "slow_conv_transpose2d", "slow_conv_transpose3d",
    "mkldnn_convolution", "cudnn_convolution", "cudnn_convolution_transpose", "cudnn_convolution_relu",
    "cudnn_convolution_add_relu", "miopen_convolution", "miopen_convolution_transpose",
    "miopen_depthwise_convolution", "miopen_convolution_relu", "miopen_convolution_add_relu",
    "_mps_convolution", "_mps_convolution_transpose", "mps_convolution_backward",
    "mps_convolution_transpose_backward", "_nnpack_spatial_convolution",
    "im2col", "col2im",
    # outside the aten namespace: quantized and oneDNN kernels
    "quantized::conv1d", "quantized::conv1d_relu", "quantized::conv1d_dynamic", "quantized::conv2d",
    "quantized::conv2d_relu", "quantized::conv2d_add", "quantized::conv2d_add_relu", "quantized::conv2d_dynamic",
    "quantized::conv3d", "quantized::conv3d_relu", "quantized::conv3d_dynamic", "quantized::conv_transpose1d",
    "quantized::conv_transpose1d_dynamic", "quantized::conv_transpose2d", "quantized::conv_transpose2d_dynamic",
    "quantized::conv_transpose3d", "quantized::conv_transpose3d_dynamic",
    "_quantized::conv2d", "_quantized::conv2d_relu", "_quantized::conv3d", "_quantized::conv3d_relu",
    "_quantized::conv_transpose1d", "_quantized::conv_transpose2d",
    "mkldnn::_convolution_pointwise", "mkldnn::_convolution_pointwise_", "mkldnn::_convolution_transpose_pointwise",
    "mkldnn_prepacked::conv2d_run", "onednn::qconv1d_pointwise", "onednn::qconv2d_pointwise",
    "onednn::qconv3d_pointwise", "onednn::qconv_pointwise",
    # torchvision's deformable convolution: with zero offsets it is an ordinary convolution
    "torchvision::deform_conv2d", "torchvision::_deform_conv2d_backward",
)
# Every max-pooling operator: 1d/2d/3d (max_pool1d runs as max_pool2d_with_indices), adaptive,
# fractional, their backward passes, and the oneDNN/quantized kernels.
POOLING_OPS: tuple[str, ...] = (
    "max_pool1d", "max_pool1d_with_indices", "max_pool2d", "max_pool2d_with_indices", "max_pool2d_backward",
    "max_pool2d_with_indices_backward", "max_pool3d", "max_pool3d_with_indices", "max_pool3d_with_indices_backward",
    "adaptive_max_pool1d", "adaptive_max_pool2d", "adaptive_max_pool2d_backward", "adaptive_max_pool3d",
    "adaptive_max_pool3d_backward", "fractional_max_pool2d", "fractional_max_pool2d_backward",
    "fractional_max_pool3d", "fractional_max_pool3d_backward", "mkldnn_max_pool2d", "mkldnn_max_pool2d_backward",
    "mkldnn_max_pool3d", "mkldnn_max_pool3d_backward", "quantized_max_pool1d", "quantized_max_pool2d",
    "quantized_max_pool3d", "quantized::max_pool1d", "quantized::max_pool2d",
)
# Average pooling: not a reference for any answer so far, but on meta tensors it computes an output size.
AVERAGE_POOLING_OPS: tuple[str, ...] = (
    "avg_pool1d", "avg_pool2d", "avg_pool2d_backward", "avg_pool3d", "avg_pool3d_backward", "adaptive_avg_pool1d",
    "adaptive_avg_pool2d", "adaptive_avg_pool3d", "adaptive_avg_pool3d_backward", "_adaptive_avg_pool2d",
    "_adaptive_avg_pool2d_backward", "_adaptive_avg_pool3d", "_adaptive_avg_pool3d_backward",
    "mkldnn_adaptive_avg_pool2d", "mkldnn_adaptive_avg_pool2d_backward",
)

_KNOWN_OPS: frozenset[str] | None = None


def qualified_op(name: str) -> str:
    """``"convolution"``, ``"aten.convolution"``, ``"torch.ops.aten.convolution"`` -> ``"aten::convolution"``.

    A name with another namespace keeps it (``"quantized::conv2d"``). An ``aten``
    name that PyTorch does not register raises ``ValueError`` (a typo in a check
    would otherwise refuse nothing).
    """
    global _KNOWN_OPS
    text = name.strip()
    if text.startswith("torch.ops."):
        text = text[len("torch.ops."):]
    if "::" in text:
        namespace, packet = text.split("::", 1)
    elif "." in text:
        namespace, packet = text.split(".", 1)
    else:
        namespace, packet = "aten", text
    packet = packet.split(".")[0]  # an overload ("convolution.default") stands for its packet
    if not namespace or not packet:
        raise ValueError(f"cannot refuse {name!r}: expected an operator name like 'convolution' or 'aten::im2col'")
    if namespace == "aten":
        if _KNOWN_OPS is None:
            _KNOWN_OPS = frozenset(op.split(".")[0] for op in torch._C._dispatch_get_all_op_names())
        if f"aten::{packet}" not in _KNOWN_OPS:
            raise ValueError(f"cannot refuse {name!r}: PyTorch {torch.__version__} has no operator aten::{packet}")
    return f"{namespace}::{packet}"


def _qualified_set(names: Iterable[str]) -> frozenset[str]:
    """The qualified names of ``names`` (a check passes the same tuple on every call: cached)."""
    return _qualified_tuple((names,) if isinstance(names, str) else tuple(names))


@functools.lru_cache(maxsize=256)
def _qualified_tuple(names: tuple[str, ...]) -> frozenset[str]:
    return frozenset(qualified_op(n) for n in names)


# --- attribute-level blocking (for references outside torch, e.g. scipy) -------------------------
def _owner(dotted: str) -> tuple[Any, str]:
    """``"scipy.signal.correlate2d"`` -> (the module scipy.signal, "correlate2d")."""
    parts = dotted.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            owner: Any = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for name in parts[cut:-1]:
            owner = getattr(owner, name)
        if not hasattr(owner, parts[-1]):
            break
        return owner, parts[-1]
    raise ValueError(f"cannot forbid {dotted!r}: expected a dotted path to an attribute, e.g. "
                     f"'scipy.signal.correlate2d'")


@contextlib.contextmanager
def blocked(names: Sequence[str], why: str = "this question asks you to write it yourself") -> Iterator[None]:
    """Within the block, calling any of the dotted ``names`` raises :class:`ForbiddenReference`.

    Attribute level only: a reference taken before the block still works. For
    PyTorch operators use ``refuse`` (the dispatcher-level guard) instead.
    """
    saved = []
    try:
        for dotted in names:
            owner, attr = _owner(dotted)
            # An inherited class attribute is shadowed while blocked and then removed again, so the
            # class ends up exactly as it was (not with a copy of its parent's attribute of its own).
            inherited = isinstance(owner, type) and attr not in owner.__dict__
            original = None if inherited else \
                owner.__dict__[attr] if isinstance(owner, type) else getattr(owner, attr)

            def refuse(*args: Any, _name: str = dotted, **kwargs: Any) -> Any:
                raise ForbiddenReference(f"{_name} cannot be used in this answer: {why}")

            setattr(owner, attr, refuse)  # (raises for a read-only attribute: nothing to restore then)
            saved.append((owner, attr, inherited, original))
        yield
    finally:
        for owner, attr, inherited, original in reversed(saved):
            if inherited:
                delattr(owner, attr)
            else:
                setattr(owner, attr, original)


# --- the dispatch mode ----------------------------------------------------------------------------
def _handle(mode: RefusingMode, func: Any, types_: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
    """Count the operator; refuse it if it is one of the call's refused operators.

    Runs for every operator of the student's function: kept short (the mode itself costs a few µs per operator).
    """
    next(mode.counter)
    verdict = mode.verdicts.get(func)
    if verdict is None:
        verdict = mode.verdicts[func] = func._overloadpacket._qualified_op_name in mode.refuse
    if verdict and mode.active:
        name = func._overloadpacket._qualified_op_name
        mode.refused.append(name)
        raise mode.error(_refusal(name, mode.why))
    return func._op(*args, **(kwargs or {}))


def _refusal(name: str, why: str) -> str:
    return f"{name.removeprefix('aten::')} (PyTorch operator {name}) cannot be used in this answer: {why}"


class RefusingMode(TorchDispatchMode):
    """The mode pushed for one guarded call: counts every operator, refuses those in ``refuse``.

    ``__torch_dispatch__`` is a read-only property (a data descriptor, so an
    instance cannot shadow it), and the fields cannot be reassigned from outside;
    ``verdicts``, the cache of decisions per operator, is verified after the call.
    """

    __torch_dispatch__ = property(_handle.__get__, doc="the handler, bound to this mode")
    _FIELDS = frozenset({"refuse", "why", "error", "counter", "active", "verdicts", "refused", "code"})
    refuse: frozenset[str]              # qualified names ("aten::convolution")
    why: str                            # the end of the refusal's message
    error: type[Exception]
    counter: itertools.count            # next() once per operator dispatched
    active: bool                        # False once the call has returned
    verdicts: dict[Any, bool]           # OpOverload -> refused?
    refused: list[str]                  # the refused operators the call tried
    code: CodeCall | None               # the Python code the call refuses (``codeguard``), or None

    def __init__(self, refuse: frozenset[str], why: str, error: type[Exception],
                 code: CodeCall | None = None) -> None:
        super().__init__()
        for name, value in (("refuse", refuse), ("why", why), ("error", error), ("counter", itertools.count()),
                            ("active", True), ("verdicts", {}), ("refused", []), ("code", code)):
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in RefusingMode._FIELDS or name == "__torch_dispatch__":
            raise ForbiddenReference(f"the guard's {name} cannot be changed")
        object.__setattr__(self, name, value)

    def finish(self) -> int:
        """Stop refusing (threads may outlive the call); the number of operators counted."""
        object.__setattr__(self, "active", False)
        return next(self.counter)

    @classmethod
    def _should_skip_dynamo(cls) -> bool:  # the handler stays as it is (wrapping it costs ~60 µs per operator)
        return False


def _ambient(ambient: AmbientMode, func: Any, types_: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
    """In a thread started outside a call: refuse what the running call refuses (not counted)."""
    if ambient.calls:
        mode = ambient.calls[-1]
        if func._overloadpacket._qualified_op_name in mode.refuse and mode.active:
            name = func._overloadpacket._qualified_op_name
            mode.refused.append(name)
            raise mode.error(_refusal(name, mode.why))
    return func._op(*args, **(kwargs or {}))


class AmbientMode(TorchDispatchMode):
    """Pushed in every thread started after :func:`install` outside a call: a thread started earlier
    (an executor waiting for work, say) cannot run what the running call refuses."""

    __torch_dispatch__ = property(_ambient.__get__, doc="the handler, bound to this mode")
    calls: list[RefusingMode]

    def __init__(self, calls: list[RefusingMode]) -> None:
        super().__init__()
        object.__setattr__(self, "calls", calls)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in ("calls", "__torch_dispatch__"):
            raise ForbiddenReference(f"the guard's {name} cannot be changed")
        object.__setattr__(self, name, value)

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        return False


# --- the guard ------------------------------------------------------------------------------------
_TORCH_DIR = os.path.dirname(torch.__file__) + os.sep
_PASS_THROUGH = frozenset({os.path.join(_TORCH_DIR, "utils", "_python_dispatch.py"), contextlib.__file__, __file__})


def _from_torch_itself(frame: Any, torch_dir: str = _TORCH_DIR, skip: frozenset[str] = _PASS_THROUGH) -> bool:
    """Whether the code that reached a checkpoint is PyTorch's own (printing a tensor pops modes, say)."""
    while frame is not None and frame.f_code.co_filename in skip:
        frame = frame.f_back
    return frame is not None and frame.f_code.co_filename.startswith(torch_dir)


class Guard:
    """One process's guard. Build it with :func:`install`; call student functions with :meth:`call`.

    Everything used at call time is captured when it is built: replacing module
    attributes, reloading this module or patching torch later does not change
    what it calls, and its own attributes cannot be reassigned.
    """

    __slots__ = ("_push", "_pop", "_depth", "_at", "_mode_class", "_handler", "_handle", "_mro", "_error",
                 "_blocked", "_qualified", "_catch_warnings", "_simplefilter", "_redirect_stderr", "_sink",
                 "_active", "_switched_off", "_replaced", "_start_thread", "_from_torch", "_frame", "_refusal",
                 "_base", "_sealed", "_ambient_class", "_ambient_handler", "_codes", "_code_rules", "_code_call",
                 "_hook", "_hook_cells", "_hook_damage", "_setprofile", "_getprofile", "_get_ident", "_threads",
                 "_disarmed", "_rule_cache")
    _ambient_class: type[AmbientMode]
    _ambient_handler: property
    _push: Callable[[Any], None]
    _pop: Callable[[Any], Any]
    _depth: Callable[[], int]
    _at: Callable[[int], Any]
    _mode_class: type[RefusingMode]
    _handler: property
    _handle: Callable[..., Any]
    _mro: tuple[type, ...]
    _base: type
    _error: type[ForbiddenReference]
    _blocked: Callable[..., Any]
    _qualified: Callable[[Iterable[str]], frozenset[str]]
    _refusal: Callable[[str, str], str]
    _catch_warnings: Any
    _simplefilter: Callable[..., None]
    _redirect_stderr: Any
    _sink: Callable[[], io.StringIO]
    _from_torch: Callable[[Any], bool]
    _frame: Callable[[int], Any]
    _start_thread: Callable[..., Any]
    _active: list[RefusingMode]
    _switched_off: list[str]
    _replaced: list[tuple[Any, str, Any]]
    _sealed: bool
    _codes: tuple[tuple[Any, str, Any, Any], ...]
    _code_rules: Callable[[tuple[str, ...]], Any]
    _rule_cache: dict[tuple[str, ...], tuple[Any, tuple]]
    _code_call: type[CodeCall]
    _hook: Callable[..., None]
    _hook_cells: tuple[Any, ...]
    _hook_damage: Callable[..., str | None]
    _setprofile: Callable[[Any], None]
    _getprofile: Callable[[], Any]
    _get_ident: Callable[[], int]
    _threads: Callable[[], dict[int, Any]]
    _disarmed: list[tuple[int, str]]

    def __init__(self) -> None:
        capture = functools.partial(object.__setattr__, self)
        capture("_sealed", False)
        capture("_push", torch._C._push_on_torch_dispatch_stack)
        capture("_pop", torch._C._pop_torch_dispatch_stack)
        capture("_depth", torch._C._len_torch_dispatch_stack)
        capture("_at", torch._C._get_dispatch_stack_at)
        capture("_mode_class", RefusingMode)
        capture("_handler", RefusingMode.__dict__["__torch_dispatch__"])
        capture("_handle", _handle)
        capture("_mro", RefusingMode.__mro__)
        capture("_ambient_class", AmbientMode)
        capture("_ambient_handler", AmbientMode.__dict__["__torch_dispatch__"])
        capture("_base", TorchDispatchMode)
        capture("_error", ForbiddenReference)
        capture("_blocked", blocked)
        capture("_qualified", _qualified_set)
        capture("_refusal", _refusal)
        capture("_catch_warnings", warnings.catch_warnings)
        capture("_simplefilter", warnings.simplefilter)
        capture("_redirect_stderr", contextlib.redirect_stderr)
        capture("_sink", io.StringIO)
        capture("_from_torch", _from_torch_itself)
        capture("_frame", sys._getframe)
        capture("_start_thread", _thread.start_new_thread)
        capture("_active", [])          # the modes of the calls running now (innermost last)
        capture("_switched_off", [])    # what the checkpoints saw
        capture("_replaced", [])        # (owner, attribute, original) for uninstall()
        # Python code refused by name (codeguard): one profile hook, in the calling thread during a call and in
        # every thread started after install; it refuses what the innermost running call refuses.
        capture("_code_rules", build_rules)
        capture("_rule_cache", {})      # names -> (rules, their snapshot when made): its own, not codeguard's
        capture("_code_call", CodeCall)
        capture("_setprofile", sys.setprofile)
        capture("_getprofile", sys.getprofile)
        capture("_get_ident", _thread.get_ident)
        capture("_threads", sys._current_frames)
        capture("_disarmed", [])        # (thread, why) whose hook was unset (by a refusal, or sys.setprofile)
        capture("_hook", make_hook(self._active, self._disarmed, ForbiddenReference, _thread.get_ident))
        capture("_hook_cells", closure_values(self._hook))
        capture("_hook_damage", hook_damage)
        # (namespace, name, function, code) of the handlers and of what the profile hook calls: verified per call
        here = vars(sys.modules[__name__])
        capture("_codes", tuple((here, name, here[name], here[name].__code__) for name in ("_handle", "_ambient"))
                + own_functions())

    def __setattr__(self, name: str, value: Any) -> None:
        raise ForbiddenReference(f"the guard's {name} cannot be changed")

    def __delattr__(self, name: str) -> None:
        raise ForbiddenReference(f"the guard's {name} cannot be removed")

    # -- checkpoints on the ways around a dispatch mode
    def _checkpoint(self, what: str) -> None:
        """Called by the wrappers below: outside PyTorch's own code, during a call, it is tampering."""
        if self._active and not self._from_torch(self._frame(1)):
            self._switched_off.append(what)
            raise self._error(f"{what} while a check called your function: that switches the guard off, so "
                              f"this answer cannot be graded")

    def _wrap(self, original: Any, what: str, applies: Callable[..., bool] | None = None) -> Callable[..., Any]:
        checkpoint = self._checkpoint

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if applies is None or applies(*args, **kwargs):
                checkpoint(what)
            return original(*args, **kwargs)

        wrapper.__name__ = wrapper.__qualname__ = getattr(original, "__name__", what)
        wrapper.__doc__ = getattr(original, "__doc__", None)
        return wrapper

    def _replace(self, owner: Any, attr: str, replacement: Any) -> None:
        original = getattr(owner, attr)
        setattr(owner, attr, replacement)
        self._replaced.append((owner, attr, original))

    def _replace_everywhere(self, original: Any, replacement: Any) -> None:
        """Replace ``original`` by ``replacement`` in every loaded module that holds it (``torch._C``,
        ``torch.utils._mode_utils.no_dispatch``, ``subprocess._fork_exec``, ...)."""
        for module in list(sys.modules.values()):
            if module is None or module is sys.modules.get(__name__):
                continue
            try:
                attributes = list(vars(module).items())
            except TypeError:
                continue
            for attr, value in attributes:
                if value is original:
                    with contextlib.suppress(AttributeError, TypeError):
                        self._replace(module, attr, replacement)

    def _install_checkpoints(self) -> None:
        python_keys = (torch._C.DispatchKey.Python, torch._C.DispatchKey.PythonTLSSnapshot)

        def excludes_python(keys: Any, *rest: Any, **kwargs: Any) -> bool:
            return any(keys.has(key) for key in python_keys)

        def excluded_key(key: Any, excluded: bool = True, *rest: Any) -> bool:
            return key in python_keys and bool(excluded)

        c = torch._C
        bypasses: tuple[tuple[Any, str, Callable[..., bool] | None], ...] = (
                (c._pop_torch_dispatch_stack, "popping the dispatch mode stack", None),
                (c._DisableTorchDispatch, "disabling torch dispatch", None),
                (c._ExcludeDispatchKeyGuard, "excluding the Python dispatch key", excludes_python),
                (c._ForceDispatchKeyGuard, "forcing the dispatch keys", None),
                (c._dispatch_tls_set_dispatch_key_excluded, "excluding the Python dispatch key", excluded_key))
        for bypass, what, applies in bypasses:
            self._replace_everywhere(bypass, self._wrap(bypass, what, applies))
        # Another program would run without the guard.
        import _posixsubprocess
        import subprocess  # noqa: F401 (loaded now, so that its copy of fork_exec is replaced too)
        starters = [getattr(os, name) for name in ("system", "execv", "execve", "posix_spawn", "posix_spawnp")
                    if hasattr(os, name)] + [_posixsubprocess.fork_exec]
        for starter in starters:
            self._replace_everywhere(starter, self._wrap(starter, "starting another program"))
        # The profile hook that refuses Python code: replacing it during a call that refuses code is tampering;
        # a thread that replaces it at any time is remembered (no call runs while that thread is alive).
        guard, setprofile = self, self._setprofile

        def set_profile(function: Any) -> None:
            if guard._active and guard._active[-1].code is not None:
                guard._checkpoint("replacing the profile hook")
            entry = (guard._get_ident(), "replaced its profile hook")
            if function is not guard._hook and entry not in guard._disarmed:
                guard._disarmed.append(entry)
            setprofile(function)

        set_profile.__doc__ = getattr(setprofile, "__doc__", None)
        self._replace_everywhere(setprofile, set_profile)
        every_thread = getattr(sys, "_setprofileallthreads", None)  # Python 3.12+
        if every_thread is not None:
            self._replace_everywhere(every_thread, self._wrap(
                every_thread, "replacing the profile hook of every thread",
                lambda *args, **kwargs: bool(guard._active and guard._active[-1].code is not None)))
        # Threads started during a call run under the call's mode (counted with it); every other thread
        # started from now on runs under an ambient mode that refuses what the running call refuses.
        start = self._start_thread
        ambient = self._ambient_class(self._active)

        def start_new_thread(function: Callable[..., Any], args: tuple, kwargs: dict | None = None) -> Any:
            mode = guard._active[-1] if guard._active else ambient

            def run(*a: Any, **k: Any) -> Any:
                ident = guard._get_ident()  # a new thread may reuse a finished one's ident
                guard._disarmed[:] = [entry for entry in guard._disarmed if entry[0] != ident]
                guard._setprofile(guard._hook)
                guard._push(mode)
                try:
                    return function(*a, **k)
                finally:
                    guard._pop(None)

            return start(run, args, kwargs or {})

        for owner, attr in ((_thread, "start_new_thread"), (threading, "_start_new_thread")):
            if getattr(owner, attr, None) is start:
                self._replace(owner, attr, start_new_thread)
        object.__setattr__(self, "_sealed", True)

    def uninstall(self) -> None:
        """Put back what :func:`install` replaced (for tests)."""
        for owner, attr, original in reversed(self._replaced):
            setattr(owner, attr, original)
        self._replaced.clear()

    # -- the call
    def _damage(self) -> str | None:
        """What was changed in the mode class since install, or None."""
        cls = self._mode_class
        if cls.__mro__ != self._mro:
            return "its dispatch mode class was changed"
        handler = cls.__dict__.get("__torch_dispatch__")
        bound_to = getattr(getattr(handler, "fget", None), "__self__", None)
        if handler is not self._handler or bound_to is not self._handle:
            return "its dispatch handler was replaced"
        if self._ambient_class.__dict__.get("__torch_dispatch__") is not self._ambient_handler:
            return "the dispatch handler of its threads was replaced"
        for space, name, function, code in self._codes:
            if space.get(name) is not function or function.__code__ is not code:
                return f"the code of its {'dispatch handler' if name in ('_handle', '_ambient') else name} was replaced"
        return self._hook_damage(self._hook, self._hook_cells)

    def _rules_of(self, names: Iterable[str]) -> tuple[Any, tuple]:
        """(the rules of the refused code ``names``, their snapshot when first made), or (None, ())."""
        key = (names,) if isinstance(names, str) else tuple(names)
        if not key:
            return None, ()
        if key not in self._rule_cache:
            rules = self._code_rules(key)
            self._rule_cache[key] = (rules, rules.snapshot())
        return self._rule_cache[key]

    @staticmethod
    def _rule_damage(rules: Any, snapshot: tuple) -> str | None:
        return None if rules.snapshot() == snapshot else "its list of refused code was changed"

    def _disarmed_thread(self) -> str | None:
        """Why a thread (not this one) whose profile hook was unset is still running, or None.

        A profile hook that refuses code is unset in its thread (CPython does that when a hook raises),
        and ``sys.setprofile`` replaces it: such a thread runs unguarded, so no call runs while it lives.
        """
        if self._disarmed:
            alive, me = self._threads(), self._get_ident()
            self._disarmed[:] = [(ident, why) for ident, why in self._disarmed if ident in alive]
            for ident, why in self._disarmed:
                if ident != me:
                    return f"a thread of your code {why} and still runs, unguarded"
        return None

    def _intact(self, mode: RefusingMode, depth: int, refuse: frozenset[str], code: CodeCall | None = None,
                rules: Any = None, snapshot: tuple = ()) -> str | None:
        """None if the mode ran the whole call as installed, else what was switched off."""
        if mode.code is not code:
            return "its list of refused code was changed"
        if code is not None:
            # (a thread that ran refused code is unguarded from now on; this call's verdict is that refusal)
            damage = code.damage(rules, snapshot) or (None if code.refused else self._disarmed_thread())
            if damage is not None:
                return damage
        if self._depth() <= depth or self._at(depth) is not mode:
            return "its dispatch mode was removed"
        if type(mode) is not self._mode_class:
            return "its dispatch mode was replaced"
        damage = self._damage()
        if damage is not None:
            return damage
        if mode.refuse is not refuse or not mode.active:
            return "its list of refused operators was changed"
        for func, verdict in list(mode.verdicts.items()):
            if verdict != (func._overloadpacket._qualified_op_name in refuse):
                return "its list of refused operators was changed"
        return None

    def call(self, fn: Callable[..., Any], args: Sequence[Any] = (), kwargs: dict[str, Any] | None = None, *,
             refuse: Iterable[str] = (), forbid: Sequence[str] = (), refuse_code: Iterable[str] = (),
             why: str = "this question asks you to write it yourself") -> tuple[Any, int]:
        """``fn(*args, **kwargs)`` with the ``refuse``d operators refused, ``forbid``den names blocked and the
        Python code of the ``refuse_code`` names (modules, classes, functions: see ``codeguard``) refused.

        Returns ``(value, ops)``: ``ops`` is the number of ATen operators dispatched.
        Warnings are silenced and stderr swallowed during the call (nbgrader fails
        a test cell that writes to stderr). Raises :class:`ForbiddenReference` if a
        refused operator was dispatched or refused code started (even if the
        student's code caught the error and carried on) or if the guard was
        switched off during the call.
        """
        refused = self._qualified(refuse)
        name = getattr(fn, "__name__", "your function")
        rules, snapshot = self._rules_of(refuse_code)
        outer = self._active[-1].code if self._active else None
        if outer is not None:  # a call inside a call refuses what both refuse
            rules = outer.rules if rules is None else rules.merged(outer.rules)
            snapshot = rules.snapshot()
        damage = self._damage() or (None if rules is None else
                                    (self._rule_damage(rules, snapshot) or self._disarmed_thread()))
        if damage is not None:
            raise self._error(f"the guard was switched off ({damage}) before a check called {name}; this answer "
                              f"cannot be graded")
        code = None if rules is None else self._code_call(rules, why, self._get_ident())
        mode = self._mode_class(refused, why, self._error, code)
        mark, depth = len(self._switched_off), self._depth()
        problem: str | None = None
        previous = self._getprofile()
        with self._blocked(forbid, why), self._catch_warnings(), self._redirect_stderr(self._sink()):
            self._simplefilter("ignore")
            self._push(mode)
            self._active.append(mode)
            if code is not None:
                self._setprofile(self._hook)
            recursed = False
            try:
                if self._depth() != depth + 1 or self._at(depth) is not mode:
                    problem = "its dispatch mode could not be installed"
                else:
                    value = fn(*args, **(kwargs or {}))
            except RecursionError:
                # Endless recursion also reaches the hook's own call, and Python unsets a hook that raised: the
                # student's RecursionError is the answer (it scores nothing), not tampering.
                recursed = True
                raise
            finally:
                if code is not None:
                    hook = self._getprofile()
                    self._setprofile(previous)
                    if hook is not self._hook and not code.refused and not recursed:  # a refusal unsets it too
                        problem = problem or "its profile hook was removed or replaced"
                seen = self._switched_off[mark:]
                del self._switched_off[mark:]
                problem = problem or (seen[0] if seen else None) or \
                    self._intact(mode, depth, refused, code, rules, snapshot)
                ops = mode.finish()
                if self._active and self._active[-1] is mode:
                    self._active.pop()
                while self._depth() > depth:  # our mode, and whatever the student's code left above it
                    self._pop(None)
                if problem is not None:
                    raise self._error(f"the guard was switched off ({problem}) while a check called {name}; "
                                      f"this answer cannot be graded") from None
        if mode.refused:  # refused, and the student's code caught the error and carried on
            raise self._error(self._refusal(mode.refused[0], why))
        if code is not None and code.refused:
            raise self._error(code.refused[0])
        return value, ops


_GUARD: Guard | None = None


def install() -> Guard:
    """This process's guard, built (once) with everything it needs captured now.

    The grading worker calls it before the first student cell runs, so that the
    student's code never sees the functions the guard replaces or relies on.
    """
    global _GUARD
    if _GUARD is None:
        guard = Guard()
        guard._install_checkpoints()
        _GUARD = guard
    return _GUARD


def guarded_call(fn: Callable[..., Any], args: Sequence[Any] = (), kwargs: dict[str, Any] | None = None, *,
                 refuse: Iterable[str] = (), forbid: Sequence[str] = (), refuse_code: Iterable[str] = (),
                 why: str = "this question asks you to write it yourself") -> tuple[Any, int]:
    """:meth:`Guard.call` on this process's guard (see :func:`install`)."""
    return install().call(fn, args, kwargs, refuse=refuse, forbid=forbid, refuse_code=refuse_code, why=why)
