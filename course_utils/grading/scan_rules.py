"""What the static scan (``static_scan``) names, and how it words it: the policy, in one place to review.

What it names: replacing or deleting attributes of numpy / torch / math /
builtins / sys / course_utils and a few modules the grader relies on (through
any alias, ``setattr``, ``vars(m)[...]``, ``m.__dict__``, ``mock.patch``);
``sys.modules`` surgery and import hooks; references to ``course_utils.grading``
and to the machinery of ``course_utils.checks`` (the guard, ``blocked``,
private names); ``gc`` object walks; PyTorch dispatch internals (``torch._C``,
``torch.library``, dispatch modes, a class defining ``__torch_dispatch__``);
``ctypes``; ``importlib.reload``; trace hooks; frames of the callers;
``__code__``/``__globals__`` writes; code built at run time (``exec`` of a
string the scan cannot see, ``marshal.loads``, ``types.CodeType``).

What it leaves alone: ending the process (``os._exit``, ``sys.exit``) is not
an attempt on the grader: the grader sees it happen, restarts the worker and
reports "the process ended" itself, so a static note would only repeat that,
less precisely, for honest scripts too. Settings (``torch.backends.*``,
``sys.path``, ``os.environ``, ``sys.stdout``) and ordinary calls
(``np.random.seed``, ``torch.manual_seed``, magics) are not flagged either.
"""

from __future__ import annotations

import re

__all__ = ["UNKNOWN", "PROTECTED", "DEFAULTS", "SHELL", "NAMED", "DISPATCH", "ANY_DISPATCH", "DISPATCH_HOOKS",
           "CODE_ATTRS", "MUTATORS", "RUNS_CODE", "root", "protected", "reference", "write_text", "container"]

UNKNOWN = "?"  # a module reached by a computed name (sys.modules[name], import_module(name))

# Modules whose attributes a submission has no business replacing: the comparisons, the checks, the worker's tools.
PROTECTED = {"numpy", "torch", "math", "cmath", "builtins", "course_utils", "sys", "os", "scipy", "json", "pickle",
             "copyreg", "marshal", "functools", "operator", "contextlib", "unittest", "pytest", "nbgrader", "IPython",
             "ipykernel", "traceback", "inspect", "types", "gc", "importlib", "threading", "signal", "time", "timeit",
             "random", "hmac", "hashlib", "secrets", "warnings", "io", UNKNOWN}
# ... except their settings, which honest code changes
_SETTINGS = ("torch.backends", "torch._dynamo.config", "torch._inductor.config", "sys.path", "sys.argv", "sys.stdout",
             "sys.stderr", "sys.stdin", "os.environ")
# Names a student may use from course_utils.checks are the assignment modules and the exceptions; these are not.
_MACHINERY = {"guard", "blocked", "check", "operations", "install", "Guard", "guarded_call", "hidden_seed",
              "hidden_random", "hidden_generator", "secret_problem", "secret_fingerprint", "grading_seed",
              "GRADING_SEED_VAR", "gradients", "codeguard", "drive", "drive_counted", "build_rules", "code_rules",
              "__wrapped__", "__globals__", "__closure__", "__code__"}
_DISPATCH_PATHS = ("torch._C", "torch.library", "torch._ops", "torch._dispatch", "torch.utils._python_dispatch")
# in torch, any private name about dispatch or modes; reached through anything else, only the unmistakable ones
_TORCH_DISPATCH = re.compile(r"_\w*(dispatch|mode)\w*|TorchDispatchMode|TorchFunctionMode", re.IGNORECASE)
ANY_DISPATCH = re.compile(r"_\w*(torch_?dispatch|dispatch_?(mode|tls|key)|python_?dispatch)\w*|_pop_mode\w*|"
                          r"_push_mode\w*|_disable_current_modes|TorchDispatchMode|TorchFunctionMode", re.IGNORECASE)
DISPATCH = "PyTorch's dispatcher internals, where the guard works"
_TRACE, _FRAMES = "a trace hook: sees every call, the grader's too", "the callers' frames and their variables"
_PATHS = {"sys.monitoring": _TRACE, **dict.fromkeys(
    ("inspect.currentframe", "inspect.stack", "inspect.getouterframes", "inspect.getinnerframes", "inspect.trace",
     "traceback.walk_stack"), _FRAMES), **dict.fromkeys(
    ("marshal.loads", "types.CodeType", "types.FunctionType"), "builds code at run time, which the scan cannot read"),
    **dict.fromkeys(("torch._meta_registrations", "torch.jit._shape_functions", "torch._refs", "torch._decomp",
                     "torch._prims", "torch._prims_common"),
                    "PyTorch's private pure-Python references and shape formulas, which dispatch no operator"),
    **dict.fromkeys(("scipy.signal.convolve", "scipy.signal.convolve2d", "scipy.signal.correlate",
                     "scipy.signal.correlate2d", "scipy.signal.fftconvolve", "scipy.signal.oaconvolve",
                     "scipy.ndimage.convolve", "scipy.ndimage.correlate", "scipy.ndimage.convolve1d",
                     "scipy.ndimage.correlate1d", "scipy.ndimage.maximum_filter", "scipy.ndimage.grey_dilation"),
                    "a library convolution or max filter, outside PyTorch (the guard cannot refuse it: check the "
                    "assignment's rules)")}
# Methods that make a class of the student's take part in PyTorch's dispatch.
DISPATCH_HOOKS = {"__torch_dispatch__", "__torch_function__"}
# Names that say what they do whatever object they are reached through.
NAMED = {**dict.fromkeys(("get_referrers", "get_referents", "get_objects"), "finds objects anywhere in the process"),
         **dict.fromkeys(("settrace", "setprofile", "settrace_all_threads", "setprofile_all_threads",
                          "getprofile"), _TRACE),
         **dict.fromkeys(("_getframe", "_current_frames", "f_back", "f_locals", "f_globals", "f_builtins", "tb_frame",
                          "gi_frame", "cr_frame"), _FRAMES),
         "__globals__": "another module's globals", "__subclasses__": "finds classes anywhere in the process",
         **dict.fromkeys(("_op_dk", "redispatch", "py_kernels", "py_impl", "_op"),
                         "a private entry point to a PyTorch kernel, past the guard"),
         **dict.fromkeys(("ast_transformers", "input_transformers_post", "input_transformers_cleanup",
                          "input_transformer_manager"), "changes how IPython reads cells")}
CODE_ATTRS = {"__code__", "__globals__", "__defaults__", "__kwdefaults__", "__closure__", "cell_contents"}
MUTATORS = {"append", "extend", "insert", "pop", "popitem", "remove", "clear", "update", "setdefault", "add",
            "discard", "__setitem__", "__delitem__"}
RUNS_CODE = {"builtins.exec", "builtins.eval", "builtins.compile"}
# Conventional names that a released (locked) cell binds; a cell scanned on its own resolves them this way.
DEFAULTS = {"np": "numpy", "torch": "torch", "F": "torch.nn.functional", "nn": "torch.nn",
            "checks": "course_utils.checks", "__builtins__": "builtins", "get_ipython": "IPython.get_ipython"}
SHELL = "get_ipython()"


def root(path: str) -> str:
    """``numpy.linalg.norm`` -> ``numpy``; ``sys.modules['x']`` -> ``sys``."""
    return re.split(r"[.\[]", path, maxsplit=1)[0]


def protected(path: str) -> bool:
    """Whether writing ``path`` changes a module the grader relies on (settings such as torch.backends aside)."""
    return root(path) in PROTECTED and not any(path == s or path.startswith((s + ".", s + "[")) for s in _SETTINGS)


def reference(path: str) -> str | None:
    """Why a reference to ``path`` (a dotted name) deserves a look, or None."""
    parts = path.split(".")
    if parts[:2] == ["course_utils", "grading"]:
        return "the grader's own code"
    if parts[:2] == ["course_utils", "checks"] and any(
            p in _MACHINERY or p.startswith("_") and not p.startswith("__") for p in parts[2:]):
        return "the checks' machinery"
    if parts[0] in ("ctypes", "_ctypes", "cffi"):
        return "raw memory access"
    if any(path == p or path.startswith(p + ".") for p in _DISPATCH_PATHS) or parts[0] in ("torch", UNKNOWN) and any(
            _TORCH_DISPATCH.fullmatch(p) for p in parts[1:]):
        return DISPATCH
    if any(path == p or path.startswith(p + ".") for p in _PATHS):
        return next(why for p, why in _PATHS.items() if path == p or path.startswith(p + "."))
    return next((NAMED[p] for p in parts[1:] if p in NAMED), None)


def write_text(verb: str, path: str, how: str = "") -> str:
    """"replaces numpy.allclose (through alias _np)": the verb, what it lands on, and how the code got there."""
    if path.startswith("sys.modules"):
        what = f"{verb} {path} (sys.modules surgery)"
    elif path == "builtins.__import__":
        what = f"{verb} builtins.__import__ (every later import goes through it)"
    elif path.startswith(("sys.meta_path", "sys.path_hooks", "sys.path_importer_cache")):
        what = f"{verb} {path} (an import hook)"
    elif root(path) == UNKNOWN:
        what = f"{verb} {path[2:] or 'an attribute'} of a module found by a computed name"
    else:
        what = f"{verb} {path}"
    return what[:-1] + f", {how})" if how and what.endswith(")") else what + (f" ({how})" if how else "")


def container(path: str) -> bool:
    """Whether a mutating call on ``path`` changes state the grader relies on (not a function such as torch.add)."""
    last = path.rsplit(".", 1)[-1]
    return path in ("sys.modules", "sys.meta_path", "sys.path_hooks", "sys.path_importer_cache", "builtins") or \
        path.endswith(".__dict__") and protected(path) or \
        root(path) == "course_utils" and (last.isupper() or last.startswith("_") and not last.startswith("__"))
