"""a3_optim_batchnorm through the grading command with the sandbox on: hostile submissions cost exactly their points.

Each student starts from the full solution and changes one thing; the table says which graded cells that must
cost and which flag it must raise (the pattern of test_grading_a2.py). The class includes PyTorch's own references
reached every way a student might (imported by name, captured before the check, subclassed with super().step(),
an nn.BatchNorm2d inside the module, F.layer_norm on a permuted tensor, torch.bernoulli) and a submission that
patches the checks' CNN driver in its own process to report perfect logits without training (the worker notices the
patched driver: that cell scores 0, flagged "tampering suspected"; the scan names it too).

Below the grading run: the CNN cell's own evidence (its hidden call on the solution, the wrong and correct
variants the fast tier leaves out, the seed study behind its threshold).
"""

import statistics
import sys

import pytest
import torch

from course_utils.checks import a3_optim_batchnorm as checks
from course_utils.grading import COURSE_ROOT
from course_utils.grading.protocol import graded_cells, source_notebook

sys.path.insert(0, str(COURSE_ROOT / "tests"))
import a3_variants as v  # noqa: E402
import variants_harness as vh  # noqa: E402

pytestmark = pytest.mark.heavy

ASSIGNMENT = "a3_optim_batchnorm"
POINTS = {cell.grade_id: cell.points for cell in graded_cells(source_notebook(ASSIGNMENT))}
BN = {"test_batchnorm_forward", "test_batchnorm_backward"}  # (the notebook's BatchNorm2d calls batchnorm_forward)
CNN = "test_cnn_training"

# student -> (replaced answer cells, extra cell after an answer cell, graded cells it must fail, flag text)
CLASS = {
    "correct": ({}, None, set(), None),
    "adam_imported_by_name": ({}, ("adam", "from torch.optim import Adam\n"), {"test_adam"}, None),
    "adam_subclassed_super_step": ({}, ("adam",
                                        "class Adam(torch.optim.Adam):\n"
                                        "    def step(self, closure=None):\n"
                                        "        return super().step(closure)\n"), {"test_adam"}, None),
    "sgd_captured_and_wrapped": ({}, ("sgd",
                                      "_torch_sgd = torch.optim.SGD\n"
                                      "class SGD:\n"
                                      "    def __init__(self, params, lr, **options):\n"
                                      "        self.inner = _torch_sgd(params, lr, **options)\n"
                                      "        self.param_groups = self.inner.param_groups\n"
                                      "        self.state = self.inner.state\n"
                                      "    def zero_grad(self):\n"
                                      "        self.inner.zero_grad()\n"
                                      "    def step(self, closure=None):\n"
                                      "        return self.inner.step(closure)\n"), {"test_sgd"}, None),
    "step_lr_aliased": ({}, ("schedules", "from torch.optim.lr_scheduler import StepLR\n"), {"test_step_lr"}, None),
    "adam_without_bias_correction": ({}, ("adam",
                                          "class Adam(torch.optim.Optimizer):\n"
                                          "    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8,"
                                          " weight_decay=0.0):\n"
                                          "        super().__init__(params, dict(lr=lr, betas=betas, eps=eps,"
                                          " weight_decay=weight_decay))\n"
                                          "    @torch.no_grad()\n"
                                          "    def step(self, closure=None):\n"
                                          "        loss = None\n"
                                          "        if closure is not None:\n"
                                          "            with torch.enable_grad():\n"
                                          "                loss = closure()\n"
                                          "        for group in self.param_groups:\n"
                                          "            b1, b2 = group['betas']\n"
                                          "            for p in group['params']:\n"
                                          "                if p.grad is None:\n"
                                          "                    continue\n"
                                          "                g = p.grad + group['weight_decay'] * p\n"
                                          "                m = self.state[p].setdefault('m', torch.zeros_like(p))\n"
                                          "                s = self.state[p].setdefault('v', torch.zeros_like(p))\n"
                                          "                m.mul_(b1).add_(g, alpha=1 - b1)\n"
                                          "                s.mul_(b2).addcmul_(g, g, value=1 - b2)\n"
                                          "                p.addcdiv_(m, s.sqrt() + group['eps'], value=-group['lr'])\n"
                                          "        return loss\n"), {"test_adam"}, None),
    "running_var_biased": ({}, ("batchnorm_forward",
                                "_solution_forward = batchnorm_forward\n"
                                "def batchnorm_forward(x, gamma, beta, running_mean, running_var, training, "
                                "momentum=0.1, eps=1e-5):\n"
                                "    if not training:\n"
                                "        return _solution_forward(x, gamma, beta, running_mean, running_var, False,"
                                " momentum, eps)\n"
                                "    out, cache = _solution_forward(x, gamma, beta, running_mean.clone(), "
                                "running_var.clone(), True, momentum, eps)\n"
                                "    dims = (0,) if x.ndim == 2 else (0, 2, 3)\n"
                                "    running_mean.mul_(1 - momentum).add_(momentum * x.mean(dims))\n"
                                "    running_var.mul_(1 - momentum).add_(momentum * x.var(dims, unbiased=False))\n"
                                "    return out, cache\n"), {"test_batchnorm_forward", "test_batchnorm_module"}, None),
    "batchnorm_forward_layer_norm": ({}, ("batchnorm_forward",
                                          "def batchnorm_forward(x, gamma, beta, running_mean, running_var, training,"
                                          " momentum=0.1, eps=1e-5):\n"
                                          "    c = x.shape[1]\n"
                                          "    flat = x.transpose(0, 1).reshape(c, -1)\n"
                                          "    out = F.layer_norm(flat, flat.shape[1:], eps=eps)\n"
                                          "    out = gamma[:, None] * out + beta[:, None]\n"
                                          "    out = out.reshape(c, x.shape[0], *x.shape[2:])\n"
                                          "    return out.transpose(0, 1), None\n"),
                                     BN | {"test_batchnorm_module", CNN}, None),
    "batchnorm_module_wrapping_torch": ({}, ("batchnorm_module",
                                             "class BatchNorm2d(nn.Module):\n"
                                             "    def __init__(self, num_features, eps=1e-5, momentum=0.1):\n"
                                             "        super().__init__()\n"
                                             "        self.inner = nn.BatchNorm2d(num_features, eps, momentum)\n"
                                             "        self.weight, self.bias = self.inner.weight, self.inner.bias\n"
                                             "        self.register_buffer('running_mean', self.inner.running_mean)\n"
                                             "        self.register_buffer('running_var', self.inner.running_var)\n"
                                             "    def forward(self, x):\n"
                                             "        return self.inner(x)\n"),
                                        {"test_batchnorm_module", CNN}, None),
    "dropout_bernoulli": ({}, ("dropout",
                               "def dropout(x, p, training):\n"
                               "    if not 0 <= p <= 1:\n"
                               "        raise ValueError(p)\n"
                               "    if not training or p == 0:\n"
                               "        return x\n"
                               "    if p == 1:\n"
                               "        return torch.zeros_like(x)\n"
                               "    return x * torch.bernoulli(torch.full_like(x, 1 - p)) / (1 - p)\n"),
                          {"test_dropout"}, None),
    "dropout_not_rescaled": ({}, ("dropout",
                                  "def dropout(x, p, training):\n"
                                  "    if not 0 <= p <= 1:\n"
                                  "        raise ValueError(p)\n"
                                  "    if not training:\n"
                                  "        return x\n"
                                  "    return x * (torch.rand(x.shape) >= p)\n"), {"test_dropout"}, None),
    "make_cnn_without_batch_norm": ({}, ("make_cnn",
                                         "_solution_make_cnn = make_cnn\n"
                                         "def make_cnn(batch_norm):\n"
                                         "    return _solution_make_cnn(False)\n"), {CNN}, None),
    "cnn_driver_patched": ({}, ("make_cnn",
                                "import course_utils.checks.a3_optim_batchnorm as _c\n"
                                "from sklearn.datasets import load_digits as _load\n"
                                "def _perfect(self, make_cnn):\n"
                                "    bunch = _load()\n"
                                "    table = {tuple((torch.from_numpy(im).float() / 16).flatten().tolist()): int(t)\n"
                                "             for im, t in zip(bunch.images, bunch.target)}\n"
                                "    labels = [table[tuple(im.flatten().tolist())] for im in self.val_images]\n"
                                "    logits = torch.nn.functional.one_hot(torch.tensor(labels), 10).float()\n"
                                "    modules = [['BatchNorm2d', True, False]]\n"
                                "    return {'True': {'modules': modules, 'normalization': [], 'logits': logits},\n"
                                "            'False': {'modules': [], 'normalization': [], 'logits': logits}}\n"
                                "_c.CNNTraining.__call__ = _perfect\n"), {CNN}, "tampering suspected"),
}


(graded, test_the_class_is_graded_with_the_sandbox_on, test_the_correct_submission_gets_every_autograded_point,
 test_each_submission_loses_exactly_its_points) = vh.hostile_class(
    ASSIGNMENT, CLASS, POINTS, cell_timeout=300, call_timeout=120, timeout=3000)


# --- the CNN cell, directly ------------------------------------------------------------------------------
def test_the_solutions_cnn_passes_its_hidden_call_for_several_secrets(monkeypatch):
    for secret in ("", "term-2026-spring", "5a0c1e1bd57c03a96f8d1f7b9cb0a1f3"):
        monkeypatch.setenv("COURSE_GRADING_SEED", secret)
        results = v.run_cells({}, cells=[c for c in v.CELLS if c.grade_id == CNN])
        assert results[CNN].passed, results[CNN].failure


@pytest.mark.parametrize("name", ["make_cnn_global_pool", "batchnorm_module_permuted"])
def test_correct_variants_pass_the_cnn_cell(name):
    assert v.failing_cells(v.CORRECT[name]) == set()


@pytest.mark.parametrize("name", [n for n, (replacements, _) in v.WRONG.items()
                                  if {"BatchNorm2d", "make_cnn"} & set(replacements)])
def test_wrong_modules_lose_exactly_their_cells_with_the_cnn_cell(name):
    replacements, must_fail = v.WRONG[name]
    assert v.failing_cells(replacements) == must_fail


@pytest.mark.parametrize("name", [n for n, (replacements, _) in v.BACK_DOORS.items() if "BatchNorm2d" in replacements])
def test_the_module_back_doors_lose_the_cnn_cell_too(name):
    replacements, must_fail = v.BACK_DOORS[name]
    assert v.failing_cells(replacements) == must_fail


def _lenet(batch_norm):
    norm = (lambda c: v.BatchNorm2d(c)) if batch_norm else (lambda c: torch.nn.Identity())
    nn = torch.nn
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), norm(8), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(8, 16, 3, padding=1), norm(16), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(16 * 2 * 2, 32), nn.ReLU(), nn.Linear(32, 10))


class _FrozenStatistics(v.BatchNorm2d):
    """Normalizes with the batch in training but never updates its running estimates (eval: mean 0, var 1)."""

    def forward(self, x):
        if self.training:
            mean, var = x.mean(dim=(0, 2, 3)), x.var(dim=(0, 2, 3), unbiased=False)
        else:
            mean, var = self.running_mean, self.running_var
        xhat = (x - mean.view(1, -1, 1, 1)) / torch.sqrt(var.view(1, -1, 1, 1) + self.eps)
        return self.weight.view(1, -1, 1, 1) * xhat + self.bias.view(1, -1, 1, 1)


def _reference_design_with(bn_class):
    def make(batch_norm):
        nn = torch.nn
        layers = [nn.Conv2d(1, 16, 3, padding=1)] + ([bn_class(16)] if batch_norm else []) + [nn.ReLU()]
        layers += [nn.Conv2d(16, 32, 3, padding=1)] + ([bn_class(32)] if batch_norm else []) + [nn.ReLU()]
        return nn.Sequential(*layers, nn.MaxPool2d(2), nn.Flatten(), nn.Linear(32 * 4 * 4, 10))
    return make


def test_the_threshold_holds_for_correct_designs_across_seeds_and_fails_a_broken_one():
    """The seed study behind CNN_THRESHOLD: three differently designed correct CNNs (the notebook's, a LeNet-like
    one, a deeper global-average-pooling one that trains slowly without BatchNorm) over 10 seeds each, with and
    without BatchNorm, all reach it; a BatchNorm2d whose running estimates never move (eval mode normalizes with
    mean 0 and variance 1) falls below it for most seeds."""
    torch.set_num_threads(1)
    images, labels, val_images, val_labels = checks._digits()
    designs = {"notebook": v.solution_namespace()["make_cnn"], "lenet": _lenet, "global_pool": v.make_cnn_global_pool}
    lowest = {}
    for name, make_cnn in designs.items():
        accuracies = {False: [], True: []}
        for seed in range(10):
            result = checks.CNNTraining(images, labels, val_images, seed)(make_cnn)
            for batch_norm, accuracy in checks.cnn_accuracies(result, val_labels).items():
                accuracies[batch_norm].append(accuracy)
        for batch_norm, values in accuracies.items():
            print(f"{name}, batch_norm={batch_norm}: min {min(values):.3f}, mean {statistics.mean(values):.3f}")
            lowest[name, batch_norm] = min(values)
    assert min(lowest.values()) >= checks.CNN_THRESHOLD + 0.05, lowest
    broken = []
    for seed in range(5):
        result = checks.CNNTraining(images, labels, val_images, seed)(_reference_design_with(_FrozenStatistics))
        broken.append(checks.cnn_accuracies(result, val_labels)[True])
    print("frozen running statistics:", [round(a, 3) for a in broken])
    assert sum(a < checks.CNN_THRESHOLD for a in broken) >= 3, broken
