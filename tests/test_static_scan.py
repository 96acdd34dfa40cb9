"""The static scan of a submission's code: every attack below is named (cell, line, what, alias); honest code is not.

Two corpora. ATTACKS: code that tries, in the student's own process, to switch off
or get around what grades it (in the styles the red-team class used: aliases such as
``_np`` and ``_t``, ``setattr(_mod, ...)``, ``vars(m)[...]``, dispatch modes), each
with the line and the words its flag must carry. HONEST: every code cell of the
course's own notebooks (lectures, solutions, releases) and the idioms students
write, none of which may be flagged. An instructor reads these flags; one that is
mostly wrong is soon ignored, so the false-positive rate is held at zero.
"""

from __future__ import annotations

import nbformat
import pytest

from course_utils.grading import COURSE_ROOT
from course_utils.grading.static_scan import Finding, scan_notebook, scan_sources, suspicious_code

# name -> (cells in order, [(cell, line, words the flag must contain)])
ATTACKS: dict[str, tuple[list[str], list[tuple[int, int, str]]]] = {
    "guard replaced through alias": (
        ["import contextlib\nimport course_utils.checks as c\nc.blocked = lambda *a, **k: contextlib.nullcontext()"],
        [(0, 3, "replaces course_utils.checks.blocked (through alias c)")]),
    "kernel called at a dispatch key through an alias": (
        ["import torch\nop = torch.ops.aten.convolution.default\nkey = op.has_kernel_for_dispatch_key",
         "y = op._op_dk(meta_key, x, w, None, [1, 1], [0, 0], [1, 1], False, [0, 0], 1)"],
        [(1, 1, "a private entry point to a PyTorch kernel")]),
    "operator redispatched": (
        ["import torch as _t\nconv = _t.ops.aten.convolution.default\nout = conv.redispatch(keys, x, w)"],
        [(0, 3, "a private entry point to a PyTorch kernel")]),
    "an allowed operator's kernel swapped": (
        ["import torch\nadd = torch.ops.aten.add.Tensor\nadd._op = torch.ops.aten.convolution.default._op"],
        [(0, 3, "a private entry point to a PyTorch kernel")]),
    "PyTorch's shape formula": (
        ["from torch._meta_registrations import pooling_output_shape as _size"],
        [(0, 1, "PyTorch's private pure-Python references and shape formulas")]),
    "PyTorch's shape functions through an alias": (
        ["import torch.jit._shape_functions as sf\no = sf.conv_output_size([1, 1, 7, 7], [1, 1, 3, 3], None)"],
        [(0, 1, "PyTorch's private pure-Python references and shape formulas")]),
    "a library convolution imported by name": (
        ["from scipy.signal import correlate2d as _xc", "def conv2d_backward(dout, cache):\n    return _xc(dout, 1)"],
        [(0, 1, "a library convolution or max filter, outside PyTorch")]),
    "a max filter through an alias": (
        ["import scipy.ndimage as ndi\nout = ndi.maximum_filter(x, size=2)"],
        [(0, 2, "a library convolution or max filter, outside PyTorch")]),
    "guard module imported": (
        ["from course_utils.checks import guard"],
        [(0, 1, "imports course_utils.checks.guard (the checks' machinery)")]),
    "guard class patched": (
        ["from course_utils.checks.guard import Guard as _G\n_G.call = lambda self, fn, a, k, **kw: (fn(*a, **k), 0)"],
        [(0, 2, "replaces course_utils.checks.guard.Guard.call (through alias _G)")]),
    "the course's gradient checker taken for a2's answer": (
        ["from course_utils.checks.gradients import numerical_gradient as ng"],
        [(0, 1, "imports course_utils.checks.gradients.numerical_gradient (the checks' machinery)")]),
    "private helper of the checks": (
        ["from course_utils.checks import _guarded as _g"],
        [(0, 1, "imports course_utils.checks._guarded (the checks' machinery)")]),
    "the grader's own code": (
        ["import course_utils.grading.worker as w"],
        [(0, 1, "imports course_utils.grading.worker (the grader's own code)")]),
    "check replaced through the release's alias": (
        ["from course_utils.checks import a0_warmup as checks", "checks.check_conv_output_size = lambda f: None"],
        [(1, 1, "replaces course_utils.checks.a0_warmup.check_conv_output_size (through alias checks)")]),
    "comparisons patched through _np": (
        ["import numpy as _np", "_np.allclose = lambda *a, **k: True\n_np.testing.assert_allclose = print"],
        [(1, 1, "replaces numpy.allclose (through alias _np)"),
         (1, 2, "replaces numpy.testing.assert_allclose (through alias _np)")]),
    "comparisons patched through _t": (
        ["import torch as _t\n_t.testing.assert_close = lambda *a, **k: None"],
        [(0, 2, "replaces torch.testing.assert_close (through alias _t)")]),
    "setattr on a module from sys.modules": (
        ["import sys\n_mod = sys.modules['numpy']\nsetattr(_mod, 'allclose', lambda *a, **k: True)"],
        [(0, 3, "replaces numpy.allclose (through setattr on _mod)")]),
    "setattr on a module from import_module": (
        ["import importlib\n_mod = importlib.import_module('torch')\nsetattr(_mod, 'allclose', lambda *a, **k: True)"],
        [(0, 3, "replaces torch.allclose (through setattr on _mod)")]),
    "setattr with a computed name": (
        ["import numpy as _np\nsetattr(_np, 'all' + 'close', print)"],
        [(0, 2, "replaces numpy.<computed> (through setattr on _np)")]),
    "__import__ in an expression": (
        ["_np = __import__('numpy')\n_np.isclose = print"],
        [(0, 2, "replaces numpy.isclose (through alias _np)")]),
    "vars() of a module": (
        ["import math as _m\nvars(_m)['isclose'] = lambda *a, **k: True"],
        [(0, 2, "replaces math.isclose (through vars(_m))")]),
    "__dict__ of a module": (
        ["from torch import nn as _n\n_n.functional.__dict__['conv2d'] = None"],
        [(0, 2, "replaces torch.nn.functional.conv2d (through _n.functional.__dict__)")]),
    "object.__setattr__": (
        ["import numpy as _np\nobject.__setattr__(_np, 'allclose', print)"],
        [(0, 2, "replaces numpy.allclose (through object.__setattr__)")]),
    "mock.patch": (
        ["from unittest import mock\nmock.patch('numpy.allclose', lambda *a, **k: True).start()"],
        [(0, 2, "replaces numpy.allclose (through unittest.mock.patch)")]),
    "a loop over modules": (
        ["import numpy as _np", "import torch as _t", "for _mod in (_np, _t):\n    _mod.allclose = lambda *a: True"],
        [(2, 2, "replaces numpy.allclose (through alias _mod)"),
         (2, 2, "replaces torch.allclose (through alias _mod)")]),
    "a helper function given the module": (
        ["def _patch(module, name):\n    setattr(module, name, lambda *a, **k: True)", "import numpy as _np",
         "_patch(_np, 'allclose')"],
        [(2, 1, "replaces numpy.<computed> (through _patch(module))")]),
    "a function body using a global alias": (
        ["import torch\n_t = torch\ndef _go():\n    _t.allclose = print\n_go()"],
        [(0, 4, "replaces torch.allclose (through alias _t)")]),
    "a method using a global alias rebound later": (
        ["import numpy as _np\nclass _P:\n    def go(self):\n        _np.allclose = print", "_np = None",
         "_P().go()"],
        [(0, 4, "replaces numpy.allclose (through alias _np)")]),
    "builtins.__import__ replaced": (
        ["import builtins as _b\n_real = _b.__import__\n_b.__import__ = lambda *a, **k: _real(*a, **k)"],
        [(0, 3, "replaces builtins.__import__ (every later import goes through it, through alias _b)")]),
    "builtins through __builtins__": (
        ["__builtins__.__dict__['isinstance'] = lambda *a: True"],
        [(0, 1, "replaces builtins.isinstance (through __builtins__.__dict__)")]),
    "gc.get_referrers": (
        ["import gc\nfor _ref in gc.get_referrers(print):\n    pass"],
        [(0, 2, "uses gc.get_referrers (finds objects anywhere in the process)")]),
    "gc.get_objects through an alias": (
        ["import gc as _gc\n_all = _gc.get_objects()"],
        [(0, 2, "uses gc.get_objects (finds objects anywhere in the process, through alias _gc)")]),
    "gc imported by a computed name": (
        ["_g = __import__('g' + 'c')\n_g.get_referrers(1)"],
        [(0, 1, "imports a module by a computed name"),
         (0, 2, "uses _g.get_referrers (finds objects anywhere in the process)")]),
    "sys.modules entry deleted": (
        ["import sys\ndel sys.modules['course_utils.checks']"],
        [(0, 2, "deletes sys.modules['course_utils.checks'] (sys.modules surgery)")]),
    "sys.modules entry replaced through an alias": (
        ["import sys as _s\n_s.modules['numpy'] = None"],
        [(0, 2, "replaces sys.modules['numpy'] (sys.modules surgery, through alias _s)")]),
    "sys.modules popped": (
        ["import sys\nsys.modules.pop('course_utils.checks.a0_warmup')"],
        [(0, 2, "changes sys.modules (sys.modules surgery, with pop())")]),
    "every module in sys.modules": (
        ["import sys\nfor _m in list(sys.modules.values()):\n    _m.allclose = print"],
        [(0, 3, "replaces allclose of a module found by a computed name")]),
    "an import hook": (
        ["import sys\nsys.meta_path.insert(0, object())"],
        [(0, 2, "changes sys.meta_path (an import hook, with insert())")]),
    "dispatch mode popped": (
        ["from torch.utils._python_dispatch import _pop_mode_temporarily as _p\nwith _p():\n    pass"],
        [(0, 1, "imports torch.utils._python_dispatch._pop_mode_temporarily (PyTorch's dispatcher internals")]),
    "dispatch mode popped through torch._C": (
        ["import torch as _t\n_mode = _t._C._pop_torch_dispatch_mode()"],
        [(0, 2, "uses torch._C._pop_torch_dispatch_mode (PyTorch's dispatcher internals")]),
    "dispatch switched off": (
        ["import torch\nwith torch._C._DisableTorchDispatch():\n    pass"],
        [(0, 2, "uses torch._C._DisableTorchDispatch")]),
    "dispatch mode set": (
        ["import torch\ntorch._C._set_dispatch_mode(None)"],
        [(0, 2, "uses torch._C._set_dispatch_mode")]),
    "dispatch key sets": (
        ["import torch\n_keys = torch._C._dispatch_tls_local_exclude_set()"],
        [(0, 2, "uses torch._C._dispatch_tls_local_exclude_set")]),
    "an operator registered with torch.library": (
        ["from torch.library import Library\n_lib = Library('aten', 'IMPL')"],
        [(0, 1, "imports torch.library.Library (PyTorch's dispatcher internals")]),
    "a function mode": (
        ["from torch.overrides import TorchFunctionMode"],
        [(0, 1, "imports torch.overrides.TorchFunctionMode (PyTorch's dispatcher internals")]),
    "ctypes": (
        ["import ctypes\nctypes.pythonapi.PyObject_SetAttr"],
        [(0, 1, "imports ctypes (raw memory access)")]),
    "ctypes by name": (
        ["from ctypes import pythonapi as _api"],
        [(0, 1, "imports ctypes.pythonapi (raw memory access)")]),
    "importlib.reload through an alias": (
        ["import importlib as il\nimport course_utils.checks as c\nil.reload(c)"],
        [(0, 3, "reloads course_utils.checks (importlib.reload, through alias il)")]),
    "reload imported by name": (
        ["from importlib import reload as _r\nimport course_utils.checks.a0_warmup as _c\n_r(_c)"],
        [(0, 3, "reloads course_utils.checks.a0_warmup (importlib.reload, through alias _r)")]),
    "sys.settrace": (
        ["import sys\nsys.settrace(lambda frame, event, arg: None)"],
        [(0, 2, "uses sys.settrace (a trace hook")]),
    "threading.setprofile through an alias": (
        ["import threading as _th\n_th.setprofile(print)"],
        [(0, 2, "uses threading.setprofile (a trace hook")]),
    "the caller's frame": (
        ["import sys\ndef conv_output_size(i, k, s=1, p=0, d=1):\n    return sys._getframe(1).f_locals['expected']"],
        [(0, 3, "(the callers' frames and their variables)")]),
    "inspect's frames": (
        ["import inspect\n_up = inspect.currentframe().f_back"],
        [(0, 2, "(the callers' frames and their variables)")]),
    "__code__ of a check replaced": (
        ["checks.check_conv_output_size.__code__ = (lambda f: None).__code__"],
        [(0, 1, "replaces course_utils.checks.check_conv_output_size.__code__ (through alias checks)")]),
    "__code__ of a comparison replaced": (
        ["import numpy as _np\ndef _yes(*a, **k):\n    return True\n_np.allclose.__code__ = _yes.__code__"],
        [(0, 4, "replaces numpy.allclose.__code__ (through alias _np)")]),
    "__code__ of any function": (
        ["def f():\n    pass\nf.__code__ = (lambda: 1).__code__"],
        [(0, 3, "replaces __code__ of f")]),
    "a check's __globals__": (
        ["import course_utils.checks.a0_warmup as _c\n_g = _c.check_conv_output_size.__globals__\n_g['x'] = 1"],
        [(0, 2, "uses course_utils.checks.a0_warmup.check_conv_output_size.__globals__ (the checks' machinery")]),
    "a tensor subclass in the dispatch": (
        ["import torch\nclass _Sneaky(torch.Tensor):\n    @classmethod\n"
         "    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):\n        return func(*args, **kwargs)"],
        [(0, 4, "defines __torch_dispatch__ (PyTorch's dispatcher internals")]),
    "code built from bytes": (
        ["import marshal as _m\n_code = _m.loads(blob)\nexec(_code)"],
        [(0, 2, "uses marshal.loads (builds code at run time"), (0, 3, "runs code built at run time (exec)")]),
    "exec of a literal": (
        ["exec('import numpy as _np\\n_np.allclose = lambda *a, **k: True')"],
        [(0, 1, "replaces numpy.allclose (through alias _np) (in code given to exec)")]),
    "exec of built code": (
        ["exec(bytes.fromhex('6e70').decode())"],
        [(0, 1, "runs code built at run time (exec): this scan cannot read it")]),
    "a cell magic in front": (
        ["%%capture\nimport numpy as _np\n_np.allclose = print"],
        [(0, 3, "replaces numpy.allclose (through alias _np)")]),
    "a line magic in front": (
        ["%matplotlib inline\nimport course_utils.checks as c\nc.blocked = None"],
        [(0, 3, "replaces course_utils.checks.blocked (through alias c)")]),
    "getattr chains": (
        ["getattr(__import__('torch'), 'testing').assert_close = print"],
        [(0, 1, "replaces torch.testing.assert_close (through getattr(__import__('torch'), 'testing'))")]),
}

HONEST_IDIOMS = [
    "%matplotlib inline\nimport matplotlib.pyplot as plt\nplt.rcParams['figure.figsize'] = (8, 4)\n"
    "fig, ax = plt.subplots()\nax.imshow([[0, 1]])\nplt.show()",
    "import numpy as np\nnp.random.seed(0)\nrng = np.random.default_rng(0)\nx = np.zeros((3, 3))\nx[0, 0] = 1.0\n"
    "np.set_printoptions(precision=3)",
    "import torch\ntorch.manual_seed(0)\ntorch.backends.cudnn.deterministic = True\n"
    "torch.backends.cudnn.benchmark = False\ntorch.set_printoptions(precision=3)",
    "import torch\nfrom torch import nn\nimport torch.nn.functional as F\n"
    "model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU())\nmodel[0].weight.data = torch.zeros_like(model[0].weight)\n"
    "model.eval()\nsetattr(model, 'extra', nn.Identity())\nwith torch.no_grad():\n    y = F.conv2d(x, w, stride=2)",
    "import os, sys\nsys.path.insert(0, os.path.abspath('..'))\nos.environ['CUDA_VISIBLE_DEVICES'] = '0'\n"
    "os.environ.setdefault('COURSE_FAST', '1')",
    "import os\nos._exit(0)",
    "import sys\nsys.exit('done')",
    "import gc\ngc.collect()\ntorch.cuda.empty_cache()",
    "from course_utils import data, training\nfor data, target in loader:\n    data.requires_grad = True",
    "class Net(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
    "        self.conv = nn.Conv2d(1, 8, 3)\n    def forward(self, x):\n        return F.relu(self.conv(x))\n"
    "Net.__repr__ = lambda self: 'Net'",
    "from course_utils.checks import CheckFailure\ntry:\n    checks.check_conv_output_size(conv_output_size)\n"
    "except CheckFailure as err:\n    print(err)",
    "import time\nstart = time.perf_counter()\nfor _ in range(10):\n    conv2d_naive(x, w)\n"
    "print(time.perf_counter() - start)",
    "%timeit conv2d_vectorized(x, w)\n!pip list | grep torch\n%load_ext autoreload\n%autoreload 2",
    "%%time\nout = conv2d_naive(x, w)",
    "import functools\nconv = functools.partial(F.conv2d, stride=2)\ny = torch.stack([conv(x), conv(x)])",
    "import inspect\nprint(inspect.signature(conv2d_naive))",
    "import warnings\nwarnings.filterwarnings('ignore')",
    "import importlib\ntv = importlib.import_module('torchvision')\nmodel = getattr(tv.models, 'resnet18')()",
    "from torch.utils.flop_counter import FlopCounterMode\nwith FlopCounterMode(display=False) as counter:\n"
    "    model(x)\nprint(counter.get_total_flops())",
    "x = torch.randn(2, 3, requires_grad=True)\nx.grad = None\nopt = torch.optim.SGD([x], lr=0.1)\n"
    "opt.param_groups[0]['lr'] = 0.01",
    "import math\nangle = math.pi / 4\nvalues = {k: math.cos(k) for k in range(3)}\n"
    "total = sum(v for v in values.values())",
    "unfolded = x.unfold(2, 3, 1).unfold(3, 3, 1)\nwindows = x.as_strided((1, 1, 2, 2), (16, 16, 4, 1))\n"
    "y = windows @ w",
    "import sys\nprint(sys.version, 'torch' in sys.modules)",
    "class Trainer:\n    def __init__(self, mode):\n        self._mode = mode\n        self._dispatch = {}\n"
    "    def _set_mode(self, mode):\n        self._mode = mode\n    def route(self, key):\n"
    "        return self._dispatch.get(key, self._mode)\nTrainer('train')._set_mode('eval')",
    "import torch\ntorch._dynamo.config.suppress_errors = True\nfast = torch.compile(model)",
    "def conv_output_size(i, k, s=1, p=0, d=1):\n    if k < 1:\n        raise ValueError(f'kernel {k}')\n"
    "    return (i + 2 * p - d * (k - 1) - 1) // s + 1\n_right = conv_output_size",
]


def _notebooks() -> list:
    paths = sorted([*COURSE_ROOT.glob("lectures/*.ipynb"), *COURSE_ROOT.glob("solutions/*/*.ipynb"),
                    *COURSE_ROOT.glob("assignments/*/*.ipynb")])
    assert len(paths) >= 7, paths  # 3 lectures, 2 solutions, 2 releases at least
    return paths


def _scan(cells: list[str]) -> list[Finding]:
    return scan_sources(enumerate(cells))


@pytest.mark.parametrize("name", ATTACKS)
def test_each_attack_is_named_with_its_cell_line_and_alias(name):
    cells, expected = ATTACKS[name]
    found = _scan(cells)
    for cell, line, words in expected:
        assert any(f.cell == cell and f.line == line and words in f.what for f in found), \
            f"{name}: expected 'cell {cell}, line {line}: ...{words}...', the scan said {[str(f) for f in found]}"


def test_catch_rate_is_complete(capsys):
    caught = [name for name, (cells, _) in ATTACKS.items() if _scan(cells)]
    assert len(ATTACKS) >= 16
    with capsys.disabled():
        print(f"\nstatic scan: {len(caught)}/{len(ATTACKS)} attacks flagged")
    assert len(caught) == len(ATTACKS), sorted(set(ATTACKS) - set(caught))


@pytest.mark.parametrize("source", HONEST_IDIOMS, ids=lambda s: s.splitlines()[0][:40])
def test_honest_idioms_are_not_flagged(source):
    assert suspicious_code(source) == []


@pytest.mark.parametrize("path", _notebooks(), ids=lambda p: str(p.relative_to(COURSE_ROOT)))
def test_the_course_notebooks_are_not_flagged(path):
    """Every code cell of the lectures, the solutions and the releases, as one notebook and cell by cell."""
    nb = nbformat.read(path, as_version=4)
    assert scan_notebook(nb) == []
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    assert code and [s for s in code if suspicious_code(s)] == []


def test_false_positive_rate_is_zero(capsys):
    cells = [c.source for p in _notebooks() for c in nbformat.read(p, as_version=4).cells if c.cell_type == "code"]
    cells += HONEST_IDIOMS
    flagged = [s for s in cells if suspicious_code(s)]
    with capsys.disabled():
        print(f"\nstatic scan: {len(flagged)}/{len(cells)} honest cells flagged")
    assert len(cells) > 150 and flagged == []


def test_a_finding_reads_cell_line_what():
    assert str(Finding(7, 3, "replaces course_utils.checks.blocked (through alias c)")) == \
        "cell 7, line 3: replaces course_utils.checks.blocked (through alias c)"
    assert suspicious_code("import numpy\nnumpy.allclose = print") == ["line 2: replaces numpy.allclose"]


def test_aliases_follow_the_order_cells_run_in():
    """A name rebound to something else before the write is not the module any more (and the other way round)."""
    assert _scan(["import numpy as a", "a = [1, 2]", "a.x = 1"]) == []
    assert [str(f) for f in _scan(["a = [1, 2]", "import numpy as a", "a.x = 1"])] == \
        ["cell 2, line 1: replaces numpy.x (through alias a)"]
    branch = "import numpy\nif flag:\n    m = numpy\nelse:\n    m = None\nm.allclose = print"
    assert suspicious_code(branch) == ["line 6: replaces numpy.allclose (through alias m)"]


def test_ending_the_process_is_left_to_the_grader():
    """The worker reports a process that ended ("the process ended"), with the cell; a static note would repeat it."""
    for source in ("import os\nos._exit(0)", "import sys\nsys.exit(1)", "raise SystemExit(0)", "exit()"):
        assert suspicious_code(source) == []
    # replacing them is another matter
    assert suspicious_code("import os\nos._exit = print") == ["line 2: replaces os._exit"]


def test_cells_that_do_not_parse_or_nest_too_deeply():
    assert suspicious_code("def broken(:\n") == []  # a SyntaxError: the cell runs nothing
    assert suspicious_code("x = " + "(" * 150 + "1" + ")" * 150) == []
    # Python cannot compile 20,000 terms either; 1,500 it parses, deeper than the scan reads: said, not skipped,
    # and what follows that statement is still read
    too_long = "x = " + " + ".join(["1"] * 20_000)
    assert suspicious_code(too_long) == ["line 1: too deeply nested to scan: review it by hand"]
    hidden = "import numpy as _np\nx = " + " + ".join(["1"] * 1_500) + "\n_np.allclose = print"
    assert suspicious_code(hidden) == ["line 2: too deeply nested to scan: review it by hand",
                                       "line 3: replaces numpy.allclose (through alias _np)"]


@pytest.mark.parametrize("source", [
    "import numpy as _np\n_holder = {'m': _np}\n_holder['m'].allclose = print",          # a module kept in a dict
    "import numpy as _np\n(lambda m: setattr(m, 'allclose', print))(_np)",             # a lambda given the module
])
def test_known_limits(source):
    """What the scan does not follow (kept here so that a change that starts catching them is noticed)."""
    assert suspicious_code(source) == []
