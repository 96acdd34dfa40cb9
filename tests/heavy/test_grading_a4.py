"""a4_architectures_transfer through the grading command with the sandbox on: hostile submissions cost exactly their
points.

Each student starts from the full solution and changes one thing; the table says which graded cells that must
cost and which flag it must raise (the pattern of test_grading_a3.py). The class includes torchvision's model code
reached every way a student might (subclassed, called through the package, an alias of its VGG), the issue's
wrong answers (ReLU before the addition, v1 stride placement, a body left trainable, frozen BatchNorm statistics
still updating, the head in both groups, a residual net without skips) and a submission that patches the checks'
residual-training driver in its own process to report perfect logits (the worker notices: that cell scores 0,
flagged "tampering suspected").

Below the grading run: what the fast tier leaves out (the training cells of every wrong variant, the hidden calls'
catch rates over several secrets) and the seed studies behind the training thresholds, on the solution.
"""

import secrets
import statistics
import sys

import pytest
import torch

from course_utils.checks import a4_architectures_transfer as checks
from course_utils.grading import COURSE_ROOT

sys.path.insert(0, str(COURSE_ROOT / "tests"))
import a4_variants as v  # noqa: E402
import variants_harness as vh  # noqa: E402

pytestmark = pytest.mark.heavy

ASSIGNMENT = "a4_architectures_transfer"
POINTS = {cell.grade_id: cell.points for cell in v.CELLS}
RESIDUAL, FEATURES, FINE_TUNE = v.RESIDUAL, v.FEATURES, v.FINE_TUNE

_BLOCK_HEAD = ("    def __init__(self, in_channels, out_channels, stride=1):\n"
               "        needs = stride != 1 or in_channels != out_channels\n"
               "        down = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),\n"
               "                             nn.BatchNorm2d(out_channels)) if needs else None\n")
# student -> (replaced answer cells, extra cell after an answer cell, graded cells it must fail, flag text)
CLASS = {
    "correct": ({}, None, set(), None),
    "basic_block_subclasses_torchvision": ({}, ("basic_block",
                                                "from torchvision.models.resnet import BasicBlock as _TorchBlock\n"
                                                "class BasicBlock(_TorchBlock):\n" + _BLOCK_HEAD +
                                                "        super().__init__(in_channels, out_channels, stride, down)\n"),
                                           {"test_basic_block", "test_resnet", RESIDUAL}, None),
    "resnet_through_the_package": ({}, ("resnet",
                                        "import torchvision\n"
                                        "def make_resnet(block, layers, num_classes=1000):\n"
                                        "    tv = torchvision.models.resnet\n"
                                        "    kind = tv.BasicBlock if block.expansion == 1 else tv.Bottleneck\n"
                                        "    return tv.ResNet(kind, layers, num_classes=num_classes)\n"),
                                   {"test_resnet"}, None),
    "vgg_alias": ({}, ("vgg",
                       "from torchvision.models import vgg as _v\n"
                       "def make_vgg(config, num_classes=1000, batch_norm=False):\n"
                       "    return _v.VGG(_v.make_layers(config, batch_norm), num_classes, init_weights=False)\n"),
                  {"test_vgg"}, None),
    "inception_torchvision_3x3": ({}, ("inception",
                                       "class Inception(Inception):\n"
                                       "    def __init__(self, in_channels, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5,"
                                       " pool_proj):\n"
                                       "        super().__init__(in_channels, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5,"
                                       " pool_proj)\n"
                                       "        self.branch3[1] = nn.Sequential(nn.Conv2d(ch5x5red, ch5x5, 3,"
                                       " padding=1, bias=False), nn.BatchNorm2d(ch5x5, eps=0.001), nn.ReLU())\n"),
                                  {"test_inception"}, None),
    "conv_bias": ({}, ("basic_block",
                       "class BasicBlock(BasicBlock):\n"
                       "    def __init__(self, in_channels, out_channels, stride=1):\n"
                       "        super().__init__(in_channels, out_channels, stride)\n"
                       "        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1)\n"
                       "        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1)\n"),
                  {"test_basic_block", "test_resnet", RESIDUAL}, None),
    "bottleneck_v1": ({}, ("bottleneck",
                           "class Bottleneck(Bottleneck):\n"
                           "    def __init__(self, in_channels, width, stride=1):\n"
                           "        super().__init__(in_channels, width, stride)\n"
                           "        self.conv1 = nn.Conv2d(in_channels, width, 1, stride, bias=False)\n"
                           "        self.conv2 = nn.Conv2d(width, width, 3, 1, 1, bias=False)\n"),
                      {"test_bottleneck", "test_resnet"}, None),
    "receptive_field_with_padding": ({}, ("receptive_field",
                                          "def receptive_field(layers):\n"
                                          "    r, j, out = 1, 1, []\n"
                                          "    for k, s, p, d in layers:\n"
                                          "        if k < 1 or s < 1 or d < 1 or p < 0:\n"
                                          "            raise ValueError(layers)\n"
                                          "        r, j = r + (k - 1) * d * j + 2 * p, j * s\n"
                                          "        out.append((r, j))\n"
                                          "    return out\n"), {"test_receptive_field"}, None),
    "residual_without_skips": ({}, ("plain_residual", "make_residual = make_plain\n"), {RESIDUAL}, None),
    "body_not_frozen": ({}, ("feature_extractor",
                             "def feature_extractor(model, num_classes):\n"
                             "    model.fc = nn.Linear(model.fc.in_features, num_classes)\n"
                             "    for m in model.modules():\n"
                             "        if isinstance(m, nn.BatchNorm2d):\n"
                             "            m.register_forward_pre_hook(lambda module, args: setattr(module, 'training',"
                             " False))\n"
                             "    return model\n"), {FEATURES}, None),
    "frozen_statistics_updating": ({}, ("feature_extractor",
                                        "def feature_extractor(model, num_classes):\n"
                                        "    model.requires_grad_(False)\n"
                                        "    model.fc = nn.Linear(model.fc.in_features, num_classes)\n"
                                        "    return model\n"), {FEATURES}, None),
    "head_in_both_groups": ({}, ("fine_tune",
                                 "def fine_tune_param_groups(model, num_classes, lr_body, lr_head):\n"
                                 "    model.fc = nn.Linear(model.fc.in_features, num_classes)\n"
                                 "    model.requires_grad_(True)\n"
                                 "    return [{'params': list(model.parameters()), 'lr': lr_body},\n"
                                 "            {'params': list(model.fc.parameters()), 'lr': lr_head}]\n"),
                            {FINE_TUNE}, None),
    "residual_driver_patched": ({}, ("plain_residual",
                                     "import course_utils.checks.a4_architectures_transfer as _c\n"
                                     "def _perfect(self, make_residual):\n"
                                     "    return torch.nn.functional.one_hot(self.labels, 10).float()\n"
                                     "_c.ResidualTraining.__call__ = _perfect\n"), {RESIDUAL}, "tampering suspected"),
}


def _not_ready() -> str | None:
    return "the a4 solution notebook is not there yet" if v.NOTEBOOK is None else None


(graded, test_the_class_is_graded_with_the_sandbox_on, test_the_correct_submission_gets_every_autograded_point,
 test_each_submission_loses_exactly_its_points) = vh.hostile_class(
    ASSIGNMENT, CLASS, POINTS, cell_timeout=300, call_timeout=200, timeout=3600, missing=_not_ready)


# --- what the fast tier leaves out -------------------------------------------------------------------------
@pytest.mark.parametrize("name", v.WRONG)
def test_each_wrong_variant_loses_exactly_its_cells_training_cells_included(name):
    replacements, must_fail = v.WRONG[name]
    assert v.failing_cells(replacements) - v.SEED_DEPENDENT.get(name, set()) == must_fail


@pytest.mark.parametrize("secret", ["", "term-2026-spring", "5a0c1e1bd57c03a96f8d1f7b9cb0a1f3"])
def test_the_hidden_checks_alone_catch_every_wrong_variant_for_each_secret(monkeypatch, secret):
    monkeypatch.setenv("COURSE_GRADING_SEED", secret)
    missed = {name: must_fail for name, (replacements, must_fail) in v.WRONG.items()
              if not v.caught(replacements, must_fail - v.SEED_DEPENDENT.get(name, set()))}
    assert not missed


def test_the_solution_passes_its_hidden_calls_for_several_secrets(monkeypatch):
    for secret in ("term-2026-spring", "5a0c1e1bd57c03a96f8d1f7b9cb0a1f3", "another term"):
        monkeypatch.setenv("COURSE_GRADING_SEED", secret)
        results = v.run_cells({}, only_hidden=True, cells=v.CELLS)
        assert {g: r.failure for g, r in results.items() if not r.passed} == {}


# --- the seed studies behind the thresholds -------------------------------------------------------------
def test_the_residual_cell_passes_the_solution_for_20_random_secrets(monkeypatch):
    """The review's finding 1: the structural probe at the hidden depths (12 and 6, width 6, 8x8 inputs) once ran in
    eval mode, where a fresh plain net's logits hardly depend on the input, and rejected the solution's correct
    make_plain for most secrets. Now in train mode: the solution's hidden residual call passes for 20 random
    128-bit secrets (probe and training both; the training errors printed)."""
    cell = [c for c in v.CELLS if c.grade_id == RESIDUAL]
    failures, outputs = {}, []
    for _ in range(20):
        secret = secrets.token_hex(16)
        monkeypatch.setenv("COURSE_GRADING_SEED", secret)
        (result,) = v.run_cells({}, only_hidden=True, cells=cell).values()
        if not result.passed:
            failures[secret] = result.failure
        outputs.append(result.output.strip())
    print("\n".join(outputs))
    assert failures == {}


def test_the_residual_threshold_holds_across_seeds():
    """The solution's make_residual(20, 16) trained by the check's recipe: over 10 seeds its training error stays
    far below RESIDUAL_THRESHOLD (the reference answer measured at most 0.027 over 20); its make_plain(20, 16),
    trained the same way, does not reach it (the degradation the cell is about)."""
    torch.set_num_threads(1)
    namespace = v.solution_namespace()
    errors = {"make_residual": [], "make_plain": []}
    for seed in range(10):
        images, labels = checks.residual_training_data(seed)
        for name in (("make_residual", "make_plain") if seed < 5 else ("make_residual",)):
            logits = checks.ResidualTraining(images, labels, seed)(namespace[name])
            errors[name].append(float((logits.argmax(1) != labels).double().mean()))
    print({name: (round(max(e), 3), round(statistics.mean(e), 3)) for name, e in errors.items()})
    assert max(errors["make_residual"]) <= checks.RESIDUAL_THRESHOLD / 2, errors
    assert min(errors["make_plain"]) > checks.RESIDUAL_THRESHOLD, errors


def test_the_transfer_margin_holds_across_seeds():
    """The solution's feature extractor and fine-tuning, trained by the check's recipe, beat the check's own
    from-scratch model by far more than TRANSFER_MARGIN on 6 seeds (the reference answers measured 0.64-0.74 vs
    0.08-0.13 over 8); the baseline is deterministic."""
    torch.set_num_threads(1)
    namespace = v.solution_namespace()
    gaps = []
    for seed in range(6):
        images, labels, test_images, test_labels = checks.transfer_data(seed)
        baseline = checks.scratch_accuracy(seed)
        features = checks.FeatureExtractorRun(images, labels, test_images, test_images[:16], seed)(
            namespace["feature_extractor"])
        tuned = checks.FineTuneRun(images, labels, test_images, seed)(namespace["fine_tune_param_groups"])
        accuracies = [checks._accuracy(run["logits"], test_labels) for run in (features, tuned)]
        print(f"seed {seed}: feature extraction {accuracies[0]:.3f}, fine-tuning {accuracies[1]:.3f}, "
              f"from scratch {baseline:.3f}")
        gaps.append(min(accuracies) - baseline)
    assert min(gaps) >= 2 * checks.TRANSFER_MARGIN, gaps
    checks.scratch_accuracy.cache_clear()
    assert checks.scratch_accuracy(0) == checks.scratch_accuracy.__wrapped__(0)
