"""a5_saliency_adversarial through the grading command with the sandbox on: hostile submissions cost exactly their
points.

Each student starts from the full solution and changes one thing; the table says which graded cells that must
cost and which flag it must raise (the pattern of test_grading_a4.py). The class includes the issue's wrong answers
(the gradient of the loss, a model left in train mode, noise scaled by the batch's range, IG without the (x - x')
factor, FGSM along the gradient instead of its sign, PGD without projection or clamping, a targeted attack moving
away from its target), answers that reach the course's widget code (and captum / torchattacks where installed),
and a submission that patches the checks' driver in its own process to return the reference (the worker notices:
"tampering suspected"; every cell drives a Call, so every cell scores 0). A wrong vanilla_gradient also costs
integrated_gradients there when the notebook's IG calls it (the solution's does) and the bug survives IG's own
model.eval().

Below the grading run: what the fast tier leaves out (the hidden calls' catch rates over several secrets, the
correct variants' hidden calls) and the seed studies behind the two property thresholds, on the solution.
"""

import secrets
import sys

import pytest
import torch

from course_utils.checks import a5_saliency_adversarial as checks
from course_utils.grading import COURSE_ROOT

sys.path.insert(0, str(COURSE_ROOT / "tests"))
import a5_variants as v  # noqa: E402
import variants_harness as vh  # noqa: E402

pytestmark = pytest.mark.heavy

ASSIGNMENT = "a5_saliency_adversarial"
POINTS = {cell.grade_id: cell.points for cell in v.CELLS}
VANILLA, SMOOTH, IG, FGSM, PGD, TARGETED, ACCURACY = v.VANILLA, v.SMOOTH, v.IG, v.FGSM, v.PGD, v.TARGETED, v.ACCURACY

_SIGMA_BATCH = ("def smoothgrad(attribution, model, x, target, n_samples=50, noise_level=0.1, noise=None):\n"
                "    if n_samples < 1 or noise_level < 0:\n"
                "        raise ValueError('bad setting')\n"
                "    if noise is None:\n"
                "        noise = torch.randn(n_samples, *x.shape)\n"
                "    elif tuple(noise.shape) != (n_samples, *x.shape):\n"
                "        raise ValueError('bad noise')\n"
                "    model.eval()\n"
                "    sigma = noise_level * (x.max() - x.min())  # the batch's range, not each image's\n"
                "    return torch.stack([attribution(model, x + sigma * noise[s], target)\n"
                "                        for s in range(n_samples)]).mean(0).detach()\n")
# student -> (replaced answer cells, extra cell after an answer cell, graded cells it must fail, flag text)
CLASS = {
    "correct": ({}, None, set(), None),
    "vanilla_loss_gradient": ({}, ("vanilla_gradient",
                                   "def vanilla_gradient(model, x, target):\n"
                                   "    model.eval()\n"
                                   "    x = x.detach().clone().requires_grad_(True)\n"
                                   "    F.cross_entropy(model(x), target).backward()\n"
                                   "    return x.grad.detach()\n"), {VANILLA, IG}, None),
    "vanilla_train_mode": ({}, ("vanilla_gradient",
                                "def vanilla_gradient(model, x, target):\n"
                                "    x = x.detach().clone().requires_grad_(True)\n"
                                "    (g,) = torch.autograd.grad(model(x).gather(1, target[:, None]).sum(), x)\n"
                                "    return g\n"), {VANILLA}, None),  # (IG calls model.eval() before it)
    "vanilla_from_the_widget": ({}, ("vanilla_gradient",
                                     "from course_utils.widgets import saliency as _s\n"
                                     "def vanilla_gradient(model, x, target):\n"
                                     "    model.eval()\n"
                                     "    return torch.cat([_s._score_gradient(model, x[n:n + 1], int(target[n]))\n"
                                     "                      for n in range(len(x))])\n"), {VANILLA, SMOOTH, IG}, None),
    "smoothgrad_batch_range": ({}, ("smoothgrad", _SIGMA_BATCH), {SMOOTH}, None),
    "ig_without_the_factor": ({}, ("integrated_gradients",
                                   "def integrated_gradients(model, x, target, baseline=None, steps=50):\n"
                                   "    if steps < 1:\n"
                                   "        raise ValueError('steps')\n"
                                   "    model.eval()\n"
                                   "    base = torch.zeros_like(x) if baseline is None else baseline.expand_as(x)\n"
                                   "    return sum(vanilla_gradient(model, base + k / steps * (x - base), target)\n"
                                   "               for k in range(1, steps + 1)) / steps\n"), {IG}, None),
    "fgsm_without_sign": ({}, ("fgsm",
                               "def fgsm(model, x, y, epsilon):\n"
                               "    if epsilon < 0:\n"
                               "        raise ValueError('epsilon')\n"
                               "    model.eval()\n"
                               "    return (x + epsilon * loss_gradient(model, x, y)).clamp(0, 1)\n"), {FGSM}, None),
    "fgsm_from_the_widget": ({}, ("fgsm",
                                  "import course_utils.widgets.epsilon as _e\n"
                                  "def fgsm(model, x, y, epsilon):\n"
                                  "    if epsilon < 0:\n"
                                  "        raise ValueError('epsilon')\n"
                                  "    model.eval()\n"
                                  "    return (x + epsilon * _e._loss_gradient_sign(model, x, y)).clamp(0, 1)\n"),
                             {FGSM, ACCURACY}, None),
    "pgd_without_projection_or_clamp": ({}, ("pgd",
                                             "def pgd(model, x, y, epsilon, alpha, steps, random_start=False,"
                                             " targeted=False):\n"
                                             "    if min(epsilon, alpha, steps) < 0:\n"
                                             "        raise ValueError('negative')\n"
                                             "    model.eval()\n"
                                             "    x_adv = x.clone()\n"
                                             "    if random_start:\n"
                                             "        x_adv = x_adv + torch.empty_like(x).uniform_(-epsilon, epsilon)\n"
                                             "    for _ in range(steps):\n"
                                             "        g = loss_gradient(model, x_adv, y).sign()\n"
                                             "        x_adv = x_adv - alpha * g if targeted else x_adv + alpha * g\n"
                                             "    return x_adv.detach()\n"), {PGD, TARGETED}, None),
    "targeted_moves_away": ({}, ("pgd",
                                 "_pgd = pgd\n"
                                 "def pgd(model, x, y, epsilon, alpha, steps, random_start=False, targeted=False):\n"
                                 "    return _pgd(model, x, y, epsilon, alpha, steps, random_start, False)\n"),
                            {TARGETED}, None),
    "accuracy_in_percent": ({}, ("accuracy_vs_epsilon",
                                 "_accuracy = accuracy_vs_epsilon\n"
                                 "def accuracy_vs_epsilon(model, attack, x, y, epsilons):\n"
                                 "    return [100 * a for a in _accuracy(model, attack, x, y, epsilons)]\n"),
                            {ACCURACY}, None),
    "driver_patched": ({}, ("fgsm",
                            "import course_utils.checks.a5_saliency_adversarial as _c\n"
                            "def _honest(self, fn):\n"
                            "    m = _c.build_model(self.model)\n"
                            "    out = _c.reference_fgsm(m, self.x, self.labels, *self.args)\n"
                            "    return {'type': 'Tensor', 'value': out, 'requires_grad': False, 'shares_x': False,\n"
                            "            'x_changed': False, 'x_requires_grad': False, 'params_changed': False,\n"
                            "            'calls': []}\n"
                            "_c.Call.__call__ = _honest\n"
                            "def fgsm(model, x, y, epsilon):\n"
                            "    return x.clone()\n"), set(v.ALL_CELLS), "tampering suspected"),  # (every cell drives)
}
if checks._importable("torchattacks"):
    CLASS["pgd_from_torchattacks"] = ({}, ("pgd",
                                           "import torchattacks\n"
                                           "def pgd(model, x, y, epsilon, alpha, steps, random_start=False,"
                                           " targeted=False):\n"
                                           "    model.eval()\n"
                                           "    a = torchattacks.PGD(model, eps=epsilon, alpha=alpha, steps=steps,"
                                           " random_start=random_start)\n"
                                           "    if targeted:\n"
                                           "        a.set_mode_targeted_by_label(quiet=True)\n"
                                           "    return a(x, y)\n"), {PGD, TARGETED}, None)


def _not_ready() -> str | None:
    ready = v.NOTEBOOK is not None and (COURSE_ROOT / "assignments" / ASSIGNMENT).exists()
    return None if ready else "the a5 solution or release notebook is not there yet"


(graded, test_the_class_is_graded_with_the_sandbox_on, test_the_correct_submission_gets_every_autograded_point,
 test_each_submission_loses_exactly_its_points) = vh.hostile_class(
    ASSIGNMENT, CLASS, POINTS, cell_timeout=300, call_timeout=200, timeout=3600, missing=_not_ready)


# --- what the fast tier leaves out -------------------------------------------------------------------------
@pytest.mark.parametrize("secret", ["", "term-2026-spring", "5a0c1e1bd57c03a96f8d1f7b9cb0a1f3"])
def test_the_hidden_checks_alone_catch_every_wrong_variant_for_each_secret(monkeypatch, secret):
    monkeypatch.setenv("COURSE_GRADING_SEED", secret)
    torch.set_num_threads(1)
    missed = {name: must_fail for name, (replacements, must_fail) in v.WRONG.items()
              if not v.caught(replacements, must_fail)}
    assert not missed


@pytest.mark.parametrize("name", v.CORRECT)
def test_differently_written_correct_answers_pass_their_hidden_calls_for_several_secrets(monkeypatch, name):
    torch.set_num_threads(1)
    for secret in ("term-2026-spring", "5a0c1e1bd57c03a96f8d1f7b9cb0a1f3", "another term"):
        monkeypatch.setenv("COURSE_GRADING_SEED", secret)
        assert v.failing_cells(v.CORRECT[name], only_hidden=True) == set(), (name, secret)


# --- the seed studies behind the thresholds -------------------------------------------------------------
def test_targeted_pgd_reaches_its_targets_far_above_the_threshold_on_40_batches():
    """The solution's targeted pgd at TARGETED_SETTING on 40 batches of 24 shapes images (the checkpoint): the share
    that reaches its target. Measured with the check's reference: 0.83 to 1.0 (mean 0.93); threshold 0.6. A
    targeted attack that climbs the loss instead reaches almost none."""
    torch.set_num_threads(1)
    pgd = v.solution_namespace()["pgd"]
    model = checks.build_model(checks._checkpoint()).eval()
    s = checks.TARGETED_SETTING
    reached, away = [], []
    for seed in range(40):
        x, y = checks._shapes(seed, s["n"])
        t = checks._targets(y, 10, seed)
        for targeted, found in ((True, reached), (False, away)):
            adversarial = pgd(model, x, t, s["epsilon"], s["alpha"], s["steps"], targeted=targeted)
            with torch.no_grad():
                found.append(float((model(adversarial).argmax(1) == t).double().mean()))
    print(f"targeted: min {min(reached):.3f}, mean {sum(reached) / 40:.3f}; moving away: max {max(away):.3f}")
    assert min(reached) >= checks.TARGETED_THRESHOLD + 0.15, reached
    assert max(away) < checks.TARGETED_THRESHOLD / 2, away


def test_random_start_pgd_drops_the_accuracy_far_below_the_threshold_on_40_batches():
    """The solution's pgd with random start at RANDOM_START_SETTING on 40 batches of 24 shapes images: clean
    accuracy minus attacked accuracy. Measured: at least 0.875 (attacked accuracy at most 0.083); required 0.5."""
    torch.set_num_threads(1)
    pgd = v.solution_namespace()["pgd"]
    model = checks.build_model(checks._checkpoint()).eval()
    s = checks.RANDOM_START_SETTING
    drops = []
    for seed in range(40):
        x, y = checks._shapes(seed, s["n"])
        torch.manual_seed(seed)
        adversarial = pgd(model, x, y, s["epsilon"], s["alpha"], s["steps"], random_start=True)
        drops.append(checks._accuracy(model, x, y) - checks._accuracy(model, adversarial, y))
    print(f"random start: smallest drop {min(drops):.3f}")
    assert min(drops) >= checks.RANDOM_START_DROP + 0.2, drops


def test_the_solution_passes_its_hidden_calls_for_20_random_secrets(monkeypatch):
    torch.set_num_threads(1)
    failures = {}
    for _ in range(20):
        secret = secrets.token_hex(16)
        monkeypatch.setenv("COURSE_GRADING_SEED", secret)
        results = v.run_cells({}, only_hidden=True, cells=v.CELLS)
        failures.update({(secret, g): r.failure for g, r in results.items() if not r.passed})
    assert failures == {}
