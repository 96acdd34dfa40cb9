"""Checks for a3_optim_batchnorm: optimizers, learning-rate schedules, batch normalization, dropout, a CNN.

Every answer is PyTorch (float32 unless stated). Every reference is PyTorch's
own: ``torch.optim.SGD`` / ``RMSprop`` / ``Adam``, ``StepLR`` / ``ExponentialLR``,
``F.batch_norm`` and ``nn.BatchNorm2d``, autograd. A check never holds the
student's optimizer, scheduler or module: it writes a *driver* (a small class
of this module holding plain data, e.g. :class:`OptimizerRun`) that runs a
scenario with the student's class and returns plain data, and calls it with
``checks.drive`` (in the grader the driver runs in the student's sandboxed
worker, through the guard). The reference is the same driver run with
PyTorch's class, outside the guard: both sides see exactly the same
parameters, gradients and batches.

While the student's code runs, PyTorch's references are refused: the
batch-norm, layer-norm and group-norm operators, the dropout and Bernoulli
operators and the fused optimizer kernels at the dispatcher (``refuse``), and
the Python code of the concrete optimizers, schedulers and normalization and
dropout modules however it was reached (``refuse_code``: imported by name,
aliased, captured before the check, subclassed). The batch-norm backward pass
runs in ``torch.inference_mode()`` with ``torch.autograd.grad``/``backward``
refused: it must be computed with the formulas, not by autograd.

Each check has two sets of cases, each a list of ``(rule, setting)``:

* visible: fixed inputs, every rule the task states at least once (momentum's
  first step, Nesterov, L2 weight decay added to the gradient, parameter
  groups with their own hyper-parameters, a parameter without a gradient, a
  closure, a large epsilon with small gradients, an (N, C) input, a batch of
  two values per channel, eval mode, ...);
* hidden: a fixed twin of visible rules (other sizes and hyper-parameters,
  values drawn from the instructor's secret), then random settings drawn from
  the secret. A failure on a hidden case names the rule, never the inputs.

Tolerances: optimizers are compared after 1, 10 and 100 steps in float32
(:data:`OPTIM_ATOL` + :data:`OPTIM_RTOL` |expected|: a correct update written
another way, ``p.addcdiv_`` or ``p - lr * m / (sqrt(v) + eps)``, stays within
an eighth of it; the kept wrong updates are off by more than 1,000 times it);
batch normalization forward and module in float32 against a float64
reference; the backward pass in float64 against autograd. Dropout is checked
statistically (bands 6 to 7 standard errors wide) with seeds the check sets.

The CNN cell trains the student's ``make_cnn(False)`` and ``make_cnn(True)``
itself (:class:`CNNTraining`, :data:`RECIPE`: minibatch SGD with momentum
written here, seeded) and requires :data:`CNN_THRESHOLD` validation accuracy
for both: correct designs reach 0.87 to 0.99 (seed study in
tests/heavy/test_grading_a3.py). The validation labels stay in the grader.
"""

from __future__ import annotations

import functools
import math
import random
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from . import CheckFailure, ForbiddenReference, check, drive, expect_close, hidden_seed, passed
from . import case_label as _where, type_name as _kind

__all__ = ["check_sgd", "check_rmsprop", "check_adam", "check_step_lr", "check_exponential_lr",
           "check_batchnorm_forward", "check_batchnorm_backward", "check_batchnorm_module", "check_dropout",
           "check_cnn_training", "OptimizerRun", "OptimizerConstruction", "ScheduleRun", "BatchNormForwardRun",
           "BatchNormModuleRun", "DropoutRun", "CNNTraining", "hidden_rules", "BATCH_NORM_OPS",
           "DROPOUT_OPS", "FUSED_OPTIMIZER_OPS", "OPTIMIZER_CODE", "SCHEDULER_CODE", "BATCH_NORM_CODE",
           "DROPOUT_CODE", "AUTOGRAD_CODE", "BatchNormBackwardRun", "CNN_THRESHOLD",
           "UNTRAINED_LIMIT"]

ASSIGNMENT = "a3_optim_batchnorm"
OPTIM_ATOL, OPTIM_RTOL = 1e-5, 1e-4      # float32 parameters after 100 steps
SCHEDULE_RTOL = 1e-6                     # a learning rate: a power of gamma, or a product of gammas
FLOAT32_ATOL, FLOAT32_RTOL = 1e-4, 1e-4  # float32 batch norm against a float64 reference
FLOAT64_ATOL, FLOAT64_RTOL = 1e-7, 1e-6  # float64 backward against autograd
Case = tuple[str, dict]                  # (the rule a case exercises, its setting)

# --- what the student's code may not run ----------------------------------------------------------
BATCH_NORM_OPS: tuple[str, ...] = (
    "batch_norm", "native_batch_norm", "native_batch_norm_backward", "_native_batch_norm_legit",
    "_native_batch_norm_legit_no_training", "_native_batch_norm_legit_functional", "_batch_norm_impl_index",
    "_batch_norm_impl_index_backward", "_batch_norm_no_update", "_batch_norm_with_update",
    "_batch_norm_with_update_functional", "batch_norm_backward", "batch_norm_backward_elemt",
    "batch_norm_backward_reduce", "batch_norm_elemt", "batch_norm_gather_stats",
    "batch_norm_gather_stats_with_counts", "batch_norm_stats", "batch_norm_update_stats", "cudnn_batch_norm",
    "cudnn_batch_norm_backward", "miopen_batch_norm", "miopen_batch_norm_backward", "quantized_batch_norm",
    "instance_norm",
    # the other normalizations, which normalize a permuted or reshaped tensor just as well
    "layer_norm", "native_layer_norm", "native_layer_norm_backward", "group_norm", "native_group_norm",
    "native_group_norm_backward", "rms_norm", "_fused_rms_norm", "_fused_rms_norm_backward",
)
DROPOUT_OPS: tuple[str, ...] = (
    "dropout", "dropout_", "native_dropout", "native_dropout_backward", "_fused_dropout", "feature_dropout",
    "feature_dropout_", "alpha_dropout", "alpha_dropout_", "feature_alpha_dropout", "feature_alpha_dropout_",
    "bernoulli", "bernoulli_",
)
FUSED_OPTIMIZER_OPS: tuple[str, ...] = (
    "_fused_sgd", "_fused_sgd_", "_fused_adam", "_fused_adam_", "_fused_adamw", "_fused_adamw_", "_fused_adagrad",
    "_fused_adagrad_",
)
# Python code that may not run during a call (``refuse_code``): every concrete optimizer and scheduler (not the
# ``Optimizer`` and ``LRScheduler`` base classes, which the answers subclass), the normalization and dropout modules.
OPTIMIZER_CODE: tuple[str, ...] = tuple(
    f"torch.optim.{module}" for module in ("sgd", "adam", "adamw", "rmsprop", "adagrad", "adadelta", "adamax",
                                           "asgd", "nadam", "radam", "rprop", "lbfgs", "sparse_adam", "_adafactor",
                                           "_muon", "swa_utils"))
SCHEDULER_CODE: tuple[str, ...] = tuple(
    f"torch.optim.lr_scheduler.{name}" for name in ("StepLR", "MultiStepLR", "ExponentialLR", "LambdaLR",
                                                    "MultiplicativeLR", "ConstantLR", "LinearLR", "SequentialLR",
                                                    "PolynomialLR", "CosineAnnealingLR", "ChainedScheduler",
                                                    "ReduceLROnPlateau", "CyclicLR", "CosineAnnealingWarmRestarts",
                                                    "OneCycleLR"))
BATCH_NORM_CODE: tuple[str, ...] = ("torch.nn.modules.batchnorm", "torch.nn.modules.instancenorm",
                                    "torch.nn.modules.normalization")
DROPOUT_CODE: tuple[str, ...] = ("torch.nn.modules.dropout",)
# a backward pass written with the formulas: autograd may not compute it (``Tensor.backward`` calls
# ``torch.autograd.backward``; ``torch.autograd.functional`` and ``torch.func`` call ``torch.autograd.grad``)
AUTOGRAD_CODE: tuple[str, ...] = ("torch.autograd.grad", "torch.autograd.backward")


def _declare(*, refuse: Sequence[str] = (), refuse_code: Sequence[str] = (),
             why: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    return check(refuse=refuse, refuse_code=refuse_code, why=why)


_drive = drive  # driver(student), through the guard with the check's refusals (in the grader: in the worker)


# --- helpers ------------------------------------------------------------------------------------
def _rng(hidden: bool, check_name: str, part: str) -> random.Random:
    """Random numbers for one part of a check: fixed for the visible cases, from the secret for hidden ones."""
    return random.Random(hidden_seed(ASSIGNMENT, check_name, part) if hidden else f"{check_name}/{part}")


def _seed(hidden: bool, check_name: str, part: str | int) -> int:
    """A 31-bit seed for one case: fixed (visible) or keyed by the secret (hidden)."""
    if hidden:
        return hidden_seed(ASSIGNMENT, check_name, part) % 2**31
    return sum((i + 1) * ord(ch) for i, ch in enumerate(f"{check_name}/{part}")) % 2**31


def _name(obj: Any, default: str) -> str:
    return getattr(obj, "__name__", default)


def _settings(options: dict) -> str:
    return ", ".join(f"{k}={tuple(v) if isinstance(v, list) else v!r}" for k, v in options.items())


def _run(student: Any, driver: Callable[[Any], Any], where: str, hidden: bool) -> Any:
    """``_drive``; the student's exception becomes a failure that says where (not the inputs, if hidden)."""
    try:
        return _drive(student, driver)
    except NotImplementedError:
        raise CheckFailure(f"{where}: not implemented yet (it raised NotImplementedError)") from None
    except Exception as err:
        detail = "" if hidden else f": {err}"
        raise CheckFailure(f"{where} raised {_kind(err, hidden)}{detail}") from None


def _compare(got: Any, expected: torch.Tensor, where: str, hidden: bool, *, atol: float, rtol: float) -> None:
    """expect_close; a hidden case's message keeps what was wrong, drops shapes and values."""
    try:
        if isinstance(got, torch.Tensor) and not got.dtype.is_floating_point:
            raise CheckFailure(f"{where}: it should be a float tensor, got dtype {got.dtype}")
        expect_close(got, expected, where, atol=atol, rtol=rtol)
    except CheckFailure as failure:
        if not hidden:
            raise
        text = str(failure)
        what = "it has the wrong shape" if "should have shape" in text else \
            "it is not a float tensor" if "should be a" in text else "some values are wrong"
        raise CheckFailure(f"{where}: {what}. The visible cases test the same rule on other inputs: make "
                           f"your code right for every size and setting, not only theirs.") from None


def _expect_value_error(student: Any, driver: Callable[[Any], Any], where: str, why: str, hidden: bool) -> None:
    try:
        _drive(student, driver)
    except ValueError:
        return
    except NotImplementedError:
        raise CheckFailure(f"{where}: not implemented yet (it raised NotImplementedError)") from None
    except Exception as err:
        detail = "" if hidden else f": {err}"
        raise CheckFailure(f"{where} should raise ValueError ({why}), but it raised {_kind(err, hidden)}{detail}") \
            from None
    raise CheckFailure(f"{where} should raise ValueError ({why}), but it returned normally")


# --- 1. optimizers ------------------------------------------------------------------------------
class OptimizerRun:
    """A driver: ``steps`` optimizer steps on float32 parameters of the given shapes, with known gradients.

    The gradient of parameter i at step t is ``scale * (curvature_i * (p_i - target_i) + noise_i[t])`` (the
    gradient of a quadratic bowl plus fixed noise), so an error at one step changes every later gradient.
    ``groups``: None (one list of parameters) or a list of ``{"params": [indices], **hyper-parameters}``.
    ``skip``: ``[i, k]``: parameter i has no gradient (``.grad`` None) on every k-th step. ``closure``: step with
    a closure (called with gradients disabled around ``step``) that zeroes the gradients, computes the loss and
    its gradients; the losses step returns are recorded (a step that returns no scalar tensor ends the run, with
    ``"returned"``: what it returned). Returns ``{"after": {step: [parameters]}, "losses": [...]}`` for the steps
    in ``record``. All its data are plain (``__wire__``), so the grader can rebuild it in the worker.
    """

    def __init__(self, shapes: Sequence[Sequence[int]], options: dict, groups: list[dict] | None = None,
                 steps: int = 100, seed: int = 0, scale: float = 1.0, skip: Sequence[int] | None = None,
                 closure: bool = False, record: Sequence[int] = (1, 10, 100)) -> None:
        self.shapes = [list(map(int, s)) for s in shapes]
        self.options, self.groups = dict(options), None if groups is None else [dict(g) for g in groups]
        self.steps, self.seed, self.scale = int(steps), int(seed), float(scale)
        self.skip, self.closure = None if skip is None else [int(s) for s in skip], bool(closure)
        self.record = [int(r) for r in record if r <= steps]

    def __wire__(self) -> dict[str, Any]:
        return {"shapes": self.shapes, "options": self.options, "groups": self.groups, "steps": self.steps,
                "seed": self.seed, "scale": self.scale, "skip": self.skip, "closure": self.closure,
                "record": self.record}

    def problem(self) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]:
        """(initial values, curvatures, targets, noise (steps, *shape)) of every parameter, float32."""
        g = torch.Generator().manual_seed(self.seed)
        start, curvature, target, noise = [], [], [], []
        for shape in self.shapes:
            start.append(torch.randn(shape, generator=g))
            curvature.append(0.5 + 1.5 * torch.rand(shape, generator=g))
            target.append(torch.randn(shape, generator=g))
            noise.append(torch.randn([self.steps, *shape], generator=g))
        return start, curvature, target, noise

    def _skipped(self, i: int, step: int) -> bool:
        return self.skip is not None and i == self.skip[0] and step % self.skip[1] == 0

    def __call__(self, optimizer_class: Any) -> dict[str, Any]:
        start, curvature, target, noise = self.problem()
        params = [p.clone().requires_grad_(True) for p in start]
        if self.groups is None:
            spec: Any = params
        else:
            spec = [{**{k: tuple(v) if isinstance(v, list) else v for k, v in group.items() if k != "params"},
                     "params": [params[i] for i in group["params"]]} for group in self.groups]
        options = {k: tuple(v) if isinstance(v, list) else v for k, v in self.options.items()}
        optimizer = optimizer_class(spec, **options)
        after: dict[int, list[torch.Tensor]] = {}
        losses: list[float] = []
        for step in range(1, self.steps + 1):
            live = [i for i in range(len(params)) if not self._skipped(i, step)]
            if self.closure:
                def closure(step: int = step, live: list[int] = live) -> torch.Tensor:
                    optimizer.zero_grad()
                    loss = torch.zeros(())
                    for i in live:
                        loss = loss + self.scale * (0.5 * curvature[i] * (params[i] - target[i]) ** 2
                                                    + noise[i][step - 1] * params[i]).sum()
                    loss.backward()
                    return loss

                with torch.no_grad():
                    loss = optimizer.step(closure)
                if not (isinstance(loss, torch.Tensor) and loss.numel() == 1):
                    return {"after": after, "losses": losses, "returned": "None" if loss is None else (
                        f"a tensor of shape {tuple(loss.shape)}" if isinstance(loss, torch.Tensor)
                        else type(loss).__name__)}
                losses.append(loss.detach().item())
            else:
                with torch.no_grad():
                    for i, p in enumerate(params):
                        p.grad = self.scale * (curvature[i] * (p - target[i]) + noise[i][step - 1]) if i in live \
                            else None
                optimizer.step()
            if step in self.record:
                after[step] = [p.detach().clone() for p in params]
        return {"after": after, "losses": losses}


class OptimizerConstruction:
    """A driver: construct the optimizer on one parameter with ``options`` (a check expects it to raise)."""

    def __init__(self, options: dict) -> None:
        self.options = dict(options)

    def __wire__(self) -> dict[str, Any]:
        return {"options": self.options}

    def __call__(self, optimizer_class: Any) -> None:
        options = {k: tuple(v) if isinstance(v, list) else v for k, v in self.options.items()}
        optimizer_class([torch.zeros(3, requires_grad=True)], **options)


def _optimizer_cases(kind: str, hidden: bool) -> list[Case]:
    """The fixed cases of one optimizer: visible, or their hidden twins."""
    v = not hidden
    shapes = [[3, 4], [5]] if v else [[4, 3], [6], [2, 2, 2]]
    two = [[2, 3], [4], [3]] if v else [[3, 2], [5], [2]]
    if kind == "sgd":
        return [
            ("plain SGD: p -= lr * grad", {"shapes": shapes, "options": {"lr": 0.1 if v else 0.07}}),
            ("momentum: buf = grad on the first step, then momentum * buf + grad (no dampening)",
             {"shapes": shapes, "options": {"lr": 0.05 if v else 0.03, "momentum": 0.9 if v else 0.8}}),
            ("nesterov: the step is grad + momentum * buf",
             {"shapes": shapes, "options": {"lr": 0.05 if v else 0.04, "momentum": 0.9 if v else 0.7,
                                            "nesterov": True}}),
            ("weight decay (L2): grad + weight_decay * p, before the momentum",
             {"shapes": shapes, "options": {"lr": 0.05 if v else 0.04, "momentum": 0.9 if v else 0.85,
                                            "weight_decay": 0.1 if v else 0.2}}),
            ("parameter groups: each group uses its own hyper-parameters",
             {"shapes": two, "options": {"lr": 0.05, "momentum": 0.9, "weight_decay": 0.01},
              "groups": [{"params": [0], "lr": 0.2 if v else 0.15}, {"params": [1, 2], "momentum": 0.5 if v else 0.3,
                                                                     "nesterov": True}]}),
            ("a parameter whose .grad is None is skipped (its momentum buffer waits too)",
             {"shapes": shapes, "options": {"lr": 0.05, "momentum": 0.9 if v else 0.8}, "skip": [0, 3 if v else 4]}),
            ("step(closure): calls the closure with gradients enabled and returns its loss",
             {"shapes": shapes, "options": {"lr": 0.05, "momentum": 0.9 if v else 0.6}, "closure": True}),
        ]
    if kind == "rmsprop":
        return [
            ("the defaults: lr 1e-2, alpha 0.99, eps 1e-8; v starts at 0", {"shapes": shapes, "options": {}}),
            ("v = alpha * v + (1 - alpha) * grad^2; p -= lr * grad / (sqrt(v) + eps)",
             {"shapes": shapes, "options": {"lr": 0.01 if v else 0.005, "alpha": 0.9 if v else 0.8}}),
            ("eps is added to sqrt(v), outside the root: a large eps with small gradients",
             {"shapes": shapes, "options": {"lr": 0.01, "eps": 0.01 if v else 0.003}, "scale": 1e-2}),
            ("weight decay (L2): grad + weight_decay * p",
             {"shapes": shapes, "options": {"lr": 0.01, "weight_decay": 0.5 if v else 0.3}}),
            ("parameter groups: each group uses its own hyper-parameters",
             {"shapes": two, "options": {"lr": 0.01, "alpha": 0.9},
              "groups": [{"params": [0], "lr": 0.03 if v else 0.02}, {"params": [1, 2], "alpha": 0.5 if v else 0.6,
                                                                      "weight_decay": 0.1}]}),
            ("a parameter whose .grad is None is skipped (its state waits too)",
             {"shapes": shapes, "options": {"lr": 0.01, "alpha": 0.9}, "skip": [1, 2 if v else 3]}),
            ("step(closure): calls the closure with gradients enabled and returns its loss",
             {"shapes": shapes, "options": {"lr": 0.01}, "closure": True}),
        ]
    return [  # bias correction first: without it every case fails, from the first step
        ("bias correction: m / (1 - beta1^t) and v / (1 - beta2^t), t counted from 1",
         {"shapes": shapes, "options": {"lr": 0.01 if v else 0.02, "betas": [0.8, 0.99] if v else [0.85, 0.95]}}),
        ("the defaults: lr 1e-3, betas (0.9, 0.999), eps 1e-8", {"shapes": shapes, "options": {}}),
        ("eps is added to sqrt(v_hat), outside the root: a large eps with small gradients",
         {"shapes": shapes, "options": {"lr": 0.01, "eps": 0.01 if v else 0.003}, "scale": 1e-2}),
        ("weight decay (L2, as torch.optim.Adam): grad + weight_decay * p, before the moments",
         {"shapes": shapes, "options": {"lr": 0.01, "weight_decay": 0.5 if v else 0.3}}),
        ("parameter groups: each group uses its own hyper-parameters",
         {"shapes": two, "options": {"lr": 0.01, "betas": [0.9, 0.99]},
          "groups": [{"params": [0], "lr": 0.03 if v else 0.02},
                     {"params": [1, 2], "betas": [0.5, 0.9] if v else [0.6, 0.8], "weight_decay": 0.1}]}),
        ("a parameter whose .grad is None is skipped (its step count t waits too)",
         {"shapes": shapes, "options": {"lr": 0.01}, "skip": [0, 2 if v else 3]}),
        ("step(closure): calls the closure with gradients enabled and returns its loss",
         {"shapes": shapes, "options": {"lr": 0.01}, "closure": True}),
    ]


def _random_optimizer_cases(kind: str, rng: random.Random, count: int = 2) -> list[Case]:
    cases = []
    for _ in range(count):
        shapes = [[rng.randint(1, 5) for _ in range(rng.randint(1, 3))] for _ in range(rng.randint(1, 3))]
        options: dict[str, Any]
        if kind == "sgd":
            options = {"lr": rng.uniform(0.01, 0.08), "momentum": rng.choice([0.0, rng.uniform(0.5, 0.95)]),
                       "weight_decay": rng.choice([0.0, rng.uniform(0.01, 0.3)])}
            if options["momentum"]:
                options["nesterov"] = rng.random() < 0.5
        elif kind == "rmsprop":
            options = {"lr": rng.uniform(0.002, 0.02), "alpha": rng.uniform(0.5, 0.99),
                       "eps": rng.choice([1e-8, 1e-3]), "weight_decay": rng.choice([0.0, rng.uniform(0.01, 0.5)])}
        else:
            options = {"lr": rng.uniform(0.002, 0.03), "betas": [rng.uniform(0.5, 0.95), rng.uniform(0.9, 0.999)],
                       "eps": rng.choice([1e-8, 1e-3]), "weight_decay": rng.choice([0.0, rng.uniform(0.01, 0.5)])}
        cases.append(("a random setting", {"shapes": shapes, "options": options}))
    return cases


# (rule, keyword arguments that must raise ValueError)
INVALID_OPTIONS: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "sgd": [("nesterov=True needs momentum > 0", {"lr": 0.1, "momentum": 0.0, "nesterov": True})],
    "rmsprop": [],
    "adam": [("a negative lr", {"lr": -0.01}), ("beta1 outside [0, 1)", {"betas": [1.0, 0.999]}),
             ("beta2 outside [0, 1)", {"betas": [0.9, -0.5]}), ("a negative eps", {"eps": -1e-8}),
             ("a negative weight_decay", {"weight_decay": -0.01})],
}
HIDDEN_INVALID_OPTIONS: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "sgd": [("nesterov=True needs momentum > 0", {"lr": 0.05, "nesterov": True})],
    "rmsprop": [],
    "adam": [("beta1 outside [0, 1)", {"betas": [-0.1, 0.999]}), ("beta2 outside [0, 1)", {"betas": [0.9, 1.5]}),
             ("a negative lr", {"lr": -1.0}), ("a negative eps", {"eps": -0.5}),
             ("a negative weight_decay", {"weight_decay": -1.0})],
}


def _adam_first_step_hint(mine: torch.Tensor, theirs: torch.Tensor, start: torch.Tensor, hidden: bool) -> str:
    """Where torch's first Adam step moved every coordinate by about lr and the student's moved every coordinate
    by one other amount (or NaN): the hint that bias correction gives m_hat_1 = g_1 and v_hat_1 = g_1^2 (a step of
    lr * g_1 / |g_1|), else ""."""
    moved, wanted = (mine - start).abs().double(), (theirs - start).abs().double()
    size = float(wanted.mean())
    if not (size > 0 and float((wanted - size).abs().max()) <= 0.05 * size):
        return ""  # (a large eps with small gradients: torch's own first step is not lr everywhere)
    typical = float(moved.mean())
    if math.isfinite(typical) and (abs(typical - size) <= 0.05 * size
                                   or float((moved - typical).abs().max()) > 0.05 * typical):
        return ""  # about lr, or a different step for each coordinate: another mistake
    shown = "" if hidden else f" (here {size:.3g}; yours moved by {float(moved.min()):.3g} to {float(moved.max()):.3g})"
    return (f"With bias correction, Adam's first step moves each coordinate by about lr{shown}: m_hat_1 = g_1 and "
            f"v_hat_1 = g_1^2, so m_hat_1 / sqrt(v_hat_1) = ±1 (t counts from 1).")


def _reference_optimizer(kind: str) -> Any:
    return {"sgd": torch.optim.SGD, "rmsprop": torch.optim.RMSprop, "adam": torch.optim.Adam}[kind]


def _optimizer_check(check_name: str, kind: str, label: str, doc: str) -> Callable[..., None]:
    @_declare(refuse=FUSED_OPTIMIZER_OPS, refuse_code=OPTIMIZER_CODE, why="write the update yourself")
    def run(optimizer_class: Any, hidden: bool = False) -> None:
        name = _name(optimizer_class, label)
        cases = _optimizer_cases(kind, hidden)
        if hidden:
            cases = cases + _random_optimizer_cases(kind, _rng(True, check_name, "random"))
        for index, (rule, setting) in enumerate(cases):
            seed = _seed(hidden, check_name, index)
            driver = OptimizerRun(seed=seed, **setting)
            expected = driver(_reference_optimizer(kind))
            shown = "params" if setting.get("groups") is None else "param groups " + str(
                [{k: (tuple(v) if isinstance(v, list) else v) for k, v in g.items() if k != "params"}
                 for g in setting["groups"]])
            steps = "step(closure)" if setting.get("closure") else "step()"
            call = (f"{name}({', '.join([shown] + ([_settings(setting['options'])] if setting['options'] else []))}) "
                    f"on parameters of shapes {[tuple(s) for s in setting['shapes']]}, {driver.steps} x {steps}")
            where = _where(name, call, rule, hidden)
            got = _run(optimizer_class, driver, where, hidden)
            if isinstance(got, dict) and "returned" in got:
                raise CheckFailure(f"{where}: step(closure) should return the closure's loss (the tensor closure() "
                                   f"returned), got {got['returned']}")
            if not isinstance(got, dict) or set(got.get("after", {})) != set(expected["after"]):
                raise CheckFailure(f"{where}: the run did not complete")
            for step in driver.record:
                for i, (mine, theirs) in enumerate(zip(got["after"][step], expected["after"][step], strict=True)):
                    what = f"{where}: parameter {i} after {step} step{'s' if step > 1 else ''}"
                    if step == 1 and torch.equal(mine, OptimizerRun(**setting, seed=seed).problem()[0][i]) \
                            and not torch.equal(theirs, mine):
                        raise CheckFailure(f"{what} is unchanged: update each parameter in place (p.add_(...), "
                                           f"p.sub_(...) under torch.no_grad())")
                    try:
                        _compare(mine, theirs, what, hidden, atol=OPTIM_ATOL, rtol=OPTIM_RTOL)
                    except CheckFailure as failure:
                        start = OptimizerRun(**setting, seed=seed).problem()[0][i]
                        hint = _adam_first_step_hint(mine, theirs, start, hidden) if kind == "adam" and step == 1 \
                            else ""
                        if not hint:
                            raise
                        raise CheckFailure(f"{failure}{'' if str(failure).endswith('.') else '.'} {hint}") \
                            from None
            if setting.get("closure"):
                _compare(torch.tensor(got["losses"], dtype=torch.float64),
                         torch.tensor(expected["losses"], dtype=torch.float64), f"{where}: the losses step returned",
                         hidden, atol=OPTIM_ATOL, rtol=OPTIM_RTOL)
        invalid = (HIDDEN_INVALID_OPTIONS if hidden else INVALID_OPTIONS)[kind]
        for why, options in invalid:
            where = _where(name, f"{name}(params, {_settings(options)})", why, hidden)
            _expect_value_error(optimizer_class, OptimizerConstruction(options), where, why + ", as torch.optim",
                                hidden)
        passed(f"{name} matches torch.optim.{_reference_optimizer(kind).__name__}"
               + (" (hidden cases)" if hidden else ""), len(cases) + len(invalid))

    run.__name__ = run.__qualname__ = check_name
    run.__doc__ = doc
    return run


check_sgd = _optimizer_check(
    "check_sgd", "sgd", "SGD",
    "SGD(params, lr, momentum, weight_decay, nesterov) matches torch.optim.SGD over 100 steps: momentum (no "
    "dampening), Nesterov, L2 weight decay, parameter groups, parameters without gradients, a closure.")
check_rmsprop = _optimizer_check(
    "check_rmsprop", "rmsprop", "RMSprop",
    "RMSprop(params, lr, alpha, eps, weight_decay) matches torch.optim.RMSprop over 100 steps.")
check_adam = _optimizer_check(
    "check_adam", "adam", "Adam",
    "Adam(params, lr, betas, eps, weight_decay) matches torch.optim.Adam over 100 steps: bias correction, eps "
    "outside the root, L2 weight decay, parameter groups, per-parameter step counts; bad hyper-parameters (lr, betas, "
    "eps, weight_decay) raise ValueError.")


# --- 2. learning-rate schedules -------------------------------------------------------------------
class _Still(torch.optim.Optimizer):
    """An optimizer that changes nothing: the schedules' drivers only need its parameter groups."""

    def __init__(self, groups: list[dict]) -> None:
        super().__init__(groups, {"lr": 0.0})

    def step(self, closure: Any = None) -> None:  # type: ignore[override]
        return None


def _numbers(values: Any) -> Any:
    """A list of floats, or a description of what ``values`` is instead."""
    if not isinstance(values, (list, tuple)):
        return type(values).__name__
    out = []
    for value in values:
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            value = value.item()
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"a list holding a {type(value).__name__}"
        out.append(float(value))
    return out


class ScheduleRun:
    """A driver: a schedule on an optimizer with one group per learning rate in ``lrs``, stepped ``epochs`` times
    (``optimizer.step()`` then ``scheduler.step()``). Returns get_last_lr() and every group's lr, after
    construction and after each epoch."""

    def __init__(self, lrs: Sequence[float], options: dict, epochs: int = 30) -> None:
        self.lrs, self.options, self.epochs = [float(lr) for lr in lrs], dict(options), int(epochs)

    def __wire__(self) -> dict[str, Any]:
        return {"lrs": self.lrs, "options": self.options, "epochs": self.epochs}

    def __call__(self, scheduler_class: Any) -> dict[str, list]:
        optimizer = _Still([{"params": [torch.zeros(1, requires_grad=True)], "lr": lr} for lr in self.lrs])
        scheduler = scheduler_class(optimizer, **self.options)
        last, groups = [_numbers(scheduler.get_last_lr())], [[float(g["lr"]) for g in optimizer.param_groups]]
        for _ in range(self.epochs):
            optimizer.step()
            scheduler.step()
            last.append(_numbers(scheduler.get_last_lr()))
            groups.append([float(g["lr"]) for g in optimizer.param_groups])
        return {"last": last, "groups": groups}


SCHEDULE_CASES: dict[str, list[Case]] = {
    "step_lr": [
        ("lr = initial * gamma ** (epoch // step_size); the first decay after step_size epochs",
         {"lrs": [0.1], "options": {"step_size": 3, "gamma": 0.5}}),
        ("step_size 1: every epoch", {"lrs": [0.2], "options": {"step_size": 1, "gamma": 0.9}}),
        ("the default gamma 0.1", {"lrs": [1.0], "options": {"step_size": 7}}),
        ("several parameter groups: each decays from its own initial lr",
         {"lrs": [0.1, 0.03, 1.0], "options": {"step_size": 4, "gamma": 0.7}}),
    ],
    "exponential_lr": [
        ("lr = initial * gamma ** epoch", {"lrs": [0.1], "options": {"gamma": 0.9}}),
        ("gamma 0.5, many epochs", {"lrs": [1.0], "options": {"gamma": 0.5}}),
        ("several parameter groups: each decays from its own initial lr",
         {"lrs": [0.1, 0.03, 1.0], "options": {"gamma": 0.8}}),
    ],
}
HIDDEN_SCHEDULE_CASES: dict[str, list[Case]] = {
    "step_lr": [
        ("lr = initial * gamma ** (epoch // step_size); the first decay after step_size epochs",
         {"lrs": [0.05], "options": {"step_size": 5, "gamma": 0.6}}),
        ("several parameter groups: each decays from its own initial lr",
         {"lrs": [0.3, 0.01], "options": {"step_size": 2, "gamma": 0.8}}),
        ("the default gamma 0.1", {"lrs": [0.5], "options": {"step_size": 6}}),
    ],
    "exponential_lr": [
        ("several parameter groups: each decays from its own initial lr",
         {"lrs": [0.2, 0.05], "options": {"gamma": 0.85}}),
        ("lr = initial * gamma ** epoch", {"lrs": [0.4], "options": {"gamma": 0.95}}),
    ],
}


def _random_schedule_cases(kind: str, rng: random.Random, count: int = 2) -> list[Case]:
    cases = []
    for _ in range(count):
        lrs = [round(rng.uniform(0.001, 1.0), 4) for _ in range(rng.randint(1, 3))]
        options: dict[str, Any] = {"gamma": round(rng.uniform(0.3, 0.95), 3)}
        if kind == "step_lr":
            options["step_size"] = rng.randint(1, 8)
        cases.append(("a random setting", {"lrs": lrs, "options": options}))
    return cases


def _schedule_check(check_name: str, kind: str, label: str, doc: str) -> Callable[..., None]:
    reference = {"step_lr": torch.optim.lr_scheduler.StepLR,
                 "exponential_lr": torch.optim.lr_scheduler.ExponentialLR}[kind]

    @_declare(refuse_code=SCHEDULER_CODE, why="write the schedule yourself")
    def run(scheduler_class: Any, hidden: bool = False) -> None:
        name = _name(scheduler_class, label)
        cases = (HIDDEN_SCHEDULE_CASES if hidden else SCHEDULE_CASES)[kind]
        if hidden:
            cases = cases + _random_schedule_cases(kind, _rng(True, check_name, "random"))
        for rule, setting in cases:
            driver = ScheduleRun(**setting, epochs=30)
            expected = driver(reference)
            call = f"{name}(optimizer with lrs {setting['lrs']}, {_settings(setting['options'])}), 30 epochs"
            where = _where(name, call, rule, hidden)
            got = _run(scheduler_class, driver, where, hidden)
            for epoch, (last, groups, want) in enumerate(zip(got["last"], got["groups"], expected["groups"],
                                                             strict=True)):
                when = "after construction" if epoch == 0 else f"after {epoch} epoch{'s' if epoch > 1 else ''}"
                for what, values in (("the optimizer's group lrs", groups), ("get_last_lr()", last)):
                    if isinstance(values, str):
                        raise CheckFailure(f"{where}: {what} {when} should be a list of floats, got {values}")
                    if len(values) != len(want) or not all(abs(a - b) <= SCHEDULE_RTOL * abs(b)
                                                           for a, b in zip(values, want, strict=False)):
                        shown = "" if hidden else f": expected {[float(f'{w:.6g}') for w in want]}, got " \
                                                  f"{[float(f'{v:.6g}') for v in values]}"
                        raise CheckFailure(f"{where}: {what} {when} {'are' if 'lrs' in what else 'is'} "
                                           f"wrong{shown}")
        passed(f"{name} matches torch.optim.lr_scheduler.{reference.__name__}"
               + (" (hidden cases)" if hidden else ""), len(cases))

    run.__name__ = run.__qualname__ = check_name
    run.__doc__ = doc
    return run


check_step_lr = _schedule_check(
    "check_step_lr", "step_lr", "StepLR",
    "StepLR(optimizer, step_size, gamma=0.1): every group's lr and get_last_lr() match torch's over 30 epochs.")
check_exponential_lr = _schedule_check(
    "check_exponential_lr", "exponential_lr", "ExponentialLR",
    "ExponentialLR(optimizer, gamma): every group's lr and get_last_lr() match torch's over 30 epochs.")


# --- 3. batch normalization -----------------------------------------------------------------------
def _in_graph(stat: Any) -> bool:
    """Whether a running statistic became part of autograd's graph (updated from a tensor that requires grad
    without ``torch.no_grad()``): the graph then grows batch after batch and ``copy.deepcopy`` of a model
    holding it fails."""
    return isinstance(stat, torch.Tensor) and (stat.requires_grad or stat.grad_fn is not None)


GRAPH_MESSAGE = "{stat} became part of autograd's graph: update the running statistics under torch.no_grad()"


class BatchNormForwardRun:
    """A driver: ``batchnorm_forward`` called on each input of ``xs`` in turn with the same running statistics
    (updated in place by the calls), ``momentum``/``eps`` passed only when given, x requiring gradients if
    ``requires_grad``. Returns every output, the running statistics after each call and whether they joined
    autograd's graph, or ``{"returned": what}`` if a call did not return (out, cache)."""

    def __init__(self, xs: Sequence[torch.Tensor], gamma: torch.Tensor, beta: torch.Tensor,
                 running_mean: torch.Tensor, running_var: torch.Tensor, training: bool,
                 momentum: float | None = None, eps: float | None = None, requires_grad: bool = False) -> None:
        self.xs, self.gamma, self.beta = list(xs), gamma, beta
        self.running_mean, self.running_var, self.training = running_mean, running_var, bool(training)
        self.momentum, self.eps, self.requires_grad = momentum, eps, bool(requires_grad)

    def __wire__(self) -> dict[str, Any]:
        return {"xs": self.xs, "gamma": self.gamma, "beta": self.beta, "running_mean": self.running_mean,
                "running_var": self.running_var, "training": self.training, "momentum": self.momentum,
                "eps": self.eps, "requires_grad": self.requires_grad}

    def __call__(self, batchnorm_forward: Callable) -> dict[str, Any]:
        mean, var = self.running_mean.clone(), self.running_var.clone()
        options = {k: v for k, v in (("momentum", self.momentum), ("eps", self.eps)) if v is not None}
        outs, means, variances, graph = [], [], [], []
        for x in self.xs:
            got = batchnorm_forward(x.clone().requires_grad_(self.requires_grad), self.gamma.clone(),
                                    self.beta.clone(), mean, var, self.training, **options)
            if not isinstance(got, (tuple, list)) or len(got) != 2:
                return {"returned": type(got).__name__ + (f" of {len(got)} items" if isinstance(got, (tuple, list))
                                                          else "")}
            out = got[0]
            outs.append(out.detach().clone() if isinstance(out, torch.Tensor) else type(out).__name__)
            means.append(mean.detach().clone())
            variances.append(var.detach().clone())
            graph.append([_in_graph(mean), _in_graph(var)])
        return {"outs": outs, "running_mean": means, "running_var": variances, "graph": graph}


def reference_batchnorm_forward(x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor,
                                running_mean: torch.Tensor, running_var: torch.Tensor, training: bool,
                                momentum: float = 0.1, eps: float = 1e-5) -> tuple[torch.Tensor, None]:
    """F.batch_norm computed in float64 (the checks' reference; refused while the student's code runs)."""
    mean64, var64 = running_mean.double(), running_var.double()
    out = F.batch_norm(x.double(), mean64, var64, gamma.double(), beta.double(), training, momentum, eps)
    running_mean.copy_(mean64)
    running_var.copy_(var64)
    return out, None


def _bn_input(g: torch.Generator, shape: Sequence[int], dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Values far from normalized: every channel has its own mean (-3..3) and standard deviation (0.5..3)."""
    c = shape[1]
    view = [1, c] + [1] * (len(shape) - 2)
    mean = (6 * torch.rand(c, generator=g, dtype=torch.float64) - 3).view(view)
    std = (0.5 + 2.5 * torch.rand(c, generator=g, dtype=torch.float64)).view(view)
    return (mean + std * torch.randn(list(shape), generator=g, dtype=torch.float64)).to(dtype)


# (rule, {"shape", "training", "calls", "momentum", "eps"})
BN_FORWARD_CASES: list[Case] = [
    ("training, (N, C): the batch mean and the biased variance; running statistics updated in place",
     {"shape": [8, 3], "training": True, "calls": 1}),
    ("training, (N, C, H, W): statistics over every dim but 1", {"shape": [4, 3, 5, 6], "training": True, "calls": 1}),
    ("running_var is updated with the unbiased batch variance: two values per channel",
     {"shape": [2, 4, 1, 1], "training": True, "calls": 1}),
    ("momentum: r = (1 - momentum) * r + momentum * stat, over several batches",
     {"shape": [5, 2, 3, 3], "training": True, "calls": 3, "momentum": 0.3, "eps": 1e-3}),
    ("not training: normalize with the running statistics and change nothing",
     {"shape": [6, 3, 2, 2], "training": False, "calls": 2}),
    ("not training, (N, C), eps given", {"shape": [5, 4], "training": False, "calls": 1, "eps": 0.1}),
    ("training, x requires grad: the running statistics stay outside autograd's graph (torch.no_grad())",
     {"shape": [4, 3, 2, 2], "training": True, "calls": 2, "requires_grad": True}),
]
HIDDEN_BN_FORWARD_CASES: list[Case] = [
    ("training, (N, C, H, W): statistics over every dim but 1", {"shape": [3, 5, 4, 3], "training": True, "calls": 1}),
    ("running_var is updated with the unbiased batch variance: two values per channel",
     {"shape": [1, 3, 2, 1], "training": True, "calls": 2}),
    ("momentum: r = (1 - momentum) * r + momentum * stat, over several batches",
     {"shape": [6, 3], "training": True, "calls": 3, "momentum": 0.5}),
    ("not training: normalize with the running statistics and change nothing",
     {"shape": [2, 4, 3, 3], "training": False, "calls": 2, "momentum": 0.2}),
    ("training, x requires grad: the running statistics stay outside autograd's graph (torch.no_grad())",
     {"shape": [3, 2, 3, 2], "training": True, "calls": 2, "momentum": 0.3, "requires_grad": True}),
]


def _random_bn_cases(rng: random.Random, count: int = 2) -> list[Case]:
    cases = []
    for _ in range(count):
        shape = [rng.randint(2, 6), rng.randint(1, 5)] + ([rng.randint(1, 4), rng.randint(1, 4)]
                                                         if rng.random() < 0.7 else [])
        cases.append(("a random setting", {"shape": shape, "training": rng.random() < 0.6,
                                           "calls": rng.randint(1, 3), "momentum": rng.uniform(0.05, 0.5)}))
    return cases


def _bn_forward_driver(setting: dict, seed: int, dtype: torch.dtype = torch.float32) -> BatchNormForwardRun:
    g = torch.Generator().manual_seed(seed)
    shape = setting["shape"]
    c = shape[1]
    xs = [_bn_input(g, shape, dtype) for _ in range(setting["calls"])]
    gamma = (0.5 + torch.rand(c, generator=g, dtype=torch.float64)).to(dtype)
    beta = torch.randn(c, generator=g, dtype=torch.float64).to(dtype)
    mean = torch.randn(c, generator=g, dtype=torch.float64).to(dtype)
    var = (0.5 + torch.rand(c, generator=g, dtype=torch.float64)).to(dtype)
    return BatchNormForwardRun(xs, gamma, beta, mean, var, setting["training"], setting.get("momentum"),
                               setting.get("eps"), setting.get("requires_grad", False))


@_declare(refuse=BATCH_NORM_OPS, refuse_code=BATCH_NORM_CODE, why="write the normalization yourself")
def check_batchnorm_forward(batchnorm_forward: Callable, hidden: bool = False) -> None:
    """(out, cache) with out matching F.batch_norm; running statistics updated in place in training
    (momentum-weighted, unbiased variance), untouched in eval mode; (N, C) and (N, C, H, W)."""
    name = _name(batchnorm_forward, "batchnorm_forward")
    cases = HIDDEN_BN_FORWARD_CASES + _random_bn_cases(_rng(True, "check_batchnorm_forward", "random")) \
        if hidden else BN_FORWARD_CASES
    for index, (rule, setting) in enumerate(cases):
        driver = _bn_forward_driver(setting, _seed(hidden, "check_batchnorm_forward", index))
        expected = driver(reference_batchnorm_forward)
        options = {k: setting[k] for k in ("momentum", "eps") if k in setting}
        calls = "" if setting["calls"] == 1 else f", {setting['calls']} calls in a row"
        grad = " requiring grad" if setting.get("requires_grad") else ""
        call = (f"{name}(x of shape {tuple(setting['shape'])}{grad}, gamma, beta, running_mean, running_var, "
                f"training={setting['training']}{', ' if options else ''}{_settings(options)}){calls}")
        where = _where(name, call, rule, hidden)
        got = _run(batchnorm_forward, driver, where, hidden)
        if "returned" in got:
            raise CheckFailure(f"{where} should return (out, cache), got {got['returned']}")
        for k in range(setting["calls"]):
            when = "" if setting["calls"] == 1 else f" (call {k + 1})"
            if isinstance(got["outs"][k], str):
                raise CheckFailure(f"{where}: out{when} should be a tensor, got {got['outs'][k]}")
            _compare(got["outs"][k], expected["outs"][k], f"{where}, out{when}", hidden, atol=FLOAT32_ATOL,
                     rtol=FLOAT32_RTOL)
            for stat in ("running_mean", "running_var"):
                what = f"{where}, {stat} afterwards{when}" + ("" if setting["training"] else
                                                                " (it should not change in eval mode)")
                _compare(got[stat][k], expected[stat][k], what, hidden, atol=FLOAT32_ATOL, rtol=FLOAT32_RTOL)
            for stat, joined in zip(("running_mean", "running_var"), got["graph"][k], strict=True):
                if joined:
                    raise CheckFailure(f"{where}{when}: {GRAPH_MESSAGE.format(stat=stat)}")
    passed(name + (" (hidden cases)" if hidden else ""), len(cases))


BN_BACKWARD_CASES: list[Case] = [
    ("(N, C): dx, dgamma, dbeta of a training-mode forward", {"shape": [6, 3]}),
    ("(N, C, H, W): the sums run over N, H and W", {"shape": [3, 2, 4, 5]}),
    ("dx has the terms of the batch mean and variance (two values per channel)", {"shape": [2, 3, 1, 1]}),
    ("dx has the terms of the batch mean and variance (N*H*W small)", {"shape": [1, 4, 2, 2]}),
]
HIDDEN_BN_BACKWARD_CASES: list[Case] = [
    ("(N, C, H, W): the sums run over N, H and W", {"shape": [2, 4, 3, 3]}),
    ("dx has the terms of the batch mean and variance (two values per channel)", {"shape": [1, 2, 2, 1]}),
    ("(N, C): dx, dgamma, dbeta of a training-mode forward", {"shape": [5, 4]}),
]


class BatchNormBackwardRun:
    """A driver: ``batchnorm_backward(dout, cache)`` inside ``torch.inference_mode()``, where autograd records
    nothing, so a backward pass that recomputes the forward pass with gradients cannot run. If the call fails
    there and succeeds outside it, the answer needed autograd: ``{"autograd": True}``. Otherwise returns
    ``{"grads": [...]}`` (a description of each item that is not a tensor) or ``{"returned": what}``."""

    def __init__(self, dout: torch.Tensor, cache: Any) -> None:
        self.dout, self.cache = dout, cache

    def __wire__(self) -> dict[str, Any]:
        return {"dout": self.dout, "cache": self.cache}

    def __call__(self, batchnorm_backward: Callable) -> dict[str, Any]:
        try:
            with torch.inference_mode():
                grads = batchnorm_backward(self.dout.clone(), self.cache)
        except ForbiddenReference:
            raise
        except Exception:
            try:
                batchnorm_backward(self.dout.clone(), self.cache)
            except Exception:
                pass
            else:
                return {"autograd": True}
            raise
        if not isinstance(grads, (tuple, list)) or len(grads) != 3:
            return {"returned": type(grads).__name__ + (f" of {len(grads)} items" if isinstance(grads, (tuple, list))
                                                        else "")}
        return {"grads": [g.clone() if isinstance(g, torch.Tensor) else type(g).__name__ for g in grads]}


AUTOGRAD_MESSAGE = ("{name} must compute the gradients itself, without autograd (no backward(), torch.autograd.grad "
                    "or forward pass recomputed with gradients): write dx, dgamma and dbeta with the formulas of 3b")


def _random_bn_backward_cases(rng: random.Random, count: int = 2) -> list[Case]:
    return [("a random setting", {"shape": [rng.randint(1, 5), rng.randint(1, 4)] + [rng.randint(1, 4)] * 2})
            for _ in range(count)]


@_declare(refuse=BATCH_NORM_OPS, refuse_code=BATCH_NORM_CODE + AUTOGRAD_CODE,
          why="write the normalization and its gradients yourself")
def check_batchnorm_backward(batchnorm_forward: Callable, batchnorm_backward: Callable, hidden: bool = False) -> None:
    """(dx, dgamma, dbeta) of a training-mode forward agree with autograd of F.batch_norm, in float64; the
    backward is computed without autograd (called in inference mode; torch.autograd.grad/backward refused)."""
    name = _name(batchnorm_backward, "batchnorm_backward")
    forward = _name(batchnorm_forward, "batchnorm_forward")
    cases = HIDDEN_BN_BACKWARD_CASES + _random_bn_backward_cases(_rng(True, "check_batchnorm_backward", "random")) \
        if hidden else BN_BACKWARD_CASES
    for index, (rule, setting) in enumerate(cases):
        g = torch.Generator().manual_seed(_seed(hidden, "check_batchnorm_backward", index))
        shape, c = setting["shape"], setting["shape"][1]
        if shape[0] * math.prod(shape[2:]) < 2:
            continue
        x = _bn_input(g, shape, torch.float64)
        gamma = 0.5 + torch.rand(c, generator=g, dtype=torch.float64)
        beta = torch.randn(c, generator=g, dtype=torch.float64)
        dout = torch.randn(list(shape), generator=g, dtype=torch.float64)
        leaves = [t.clone().requires_grad_(True) for t in (x, gamma, beta)]
        F.batch_norm(leaves[0], None, None, leaves[1], leaves[2], True, 0.1, 1e-5).backward(dout)
        expected = [torch.zeros_like(t) if t.grad is None else t.grad for t in leaves]
        where = _where(name, f"{forward}(x of shape {tuple(shape)}, ..., training=True), then "
                             f"{name}(dout, cache)", rule, hidden)
        try:
            got = batchnorm_forward(x.clone(), gamma.clone(), beta.clone(), torch.zeros(c, dtype=torch.float64),
                                    torch.ones(c, dtype=torch.float64), True)
            if not isinstance(got, (tuple, list)) or len(got) != 2:
                raise CheckFailure(f"{where}: {forward} should return (out, cache), got {_kind(got, hidden)}")
            result = _drive(batchnorm_backward, BatchNormBackwardRun(dout.clone(), got[1]))
        except CheckFailure:
            raise
        except NotImplementedError:
            raise CheckFailure(f"{where}: not implemented yet (it raised NotImplementedError)") from None
        except ForbiddenReference as err:
            if "torch.autograd" in str(err):
                raise CheckFailure(f"{where}: {AUTOGRAD_MESSAGE.format(name=name)}") from None
            raise CheckFailure(f"{where} raised {_kind(err, hidden)}" + ("" if hidden else f": {err}")) from None
        except Exception as err:
            raise CheckFailure(f"{where} raised {_kind(err, hidden)}" + ("" if hidden else f": {err}")) from None
        if result.get("autograd"):
            raise CheckFailure(f"{where}: {AUTOGRAD_MESSAGE.format(name=name)}")
        grads = result.get("grads")
        if grads is None:
            raise CheckFailure(f"{where} should return (dx, dgamma, dbeta), got {result.get('returned')}")
        for mine, theirs, what in zip(grads, expected, ("dx", "dgamma", "dbeta"), strict=True):
            if isinstance(mine, str):
                raise CheckFailure(f"{where}: {what} should be a tensor, got {mine}")
            _compare(mine, theirs, f"{where}, {what}", hidden, atol=FLOAT64_ATOL, rtol=FLOAT64_RTOL)
    passed(name + (" (hidden cases)" if hidden else ""), len(cases))


class BatchNormModuleRun:
    """A driver: the module built with its defaults (its parameters and buffers), then built with ``eps`` and
    ``momentum``, its weight and bias set, trained on each batch of ``xs`` (backward of sum(out * dout)) and
    evaluated on ``x_eval``. Returns what it saw."""

    def __init__(self, channels: int, eps: float, momentum: float, weight: torch.Tensor, bias: torch.Tensor,
                 xs: Sequence[torch.Tensor], douts: Sequence[torch.Tensor], x_eval: torch.Tensor) -> None:
        self.channels, self.eps, self.momentum = int(channels), float(eps), float(momentum)
        self.weight, self.bias, self.xs, self.douts, self.x_eval = weight, bias, list(xs), list(douts), x_eval

    def __wire__(self) -> dict[str, Any]:
        return {"channels": self.channels, "eps": self.eps, "momentum": self.momentum, "weight": self.weight,
                "bias": self.bias, "xs": self.xs, "douts": self.douts, "x_eval": self.x_eval}

    @staticmethod
    def _state(module: Any) -> dict[str, Any]:
        params, buffers = dict(module.named_parameters()), dict(module.named_buffers())
        state: dict[str, Any] = {}
        for key, found in (("weight", params), ("bias", params), ("running_mean", buffers),
                           ("running_var", buffers)):
            value = found.get(key)
            state[key] = value.detach().clone() if isinstance(value, torch.Tensor) else None
        return state

    def __call__(self, module_class: Any) -> dict[str, Any]:
        fresh = self._state(module_class(self.channels))
        bn = module_class(self.channels, eps=self.eps, momentum=self.momentum)
        params = dict(bn.named_parameters())
        if not isinstance(params.get("weight"), torch.Tensor) or not isinstance(params.get("bias"), torch.Tensor):
            return {"fresh": fresh}
        with torch.no_grad():
            params["weight"].copy_(self.weight)
            params["bias"].copy_(self.bias)
        bn.train()
        steps = []
        for x, dout in zip(self.xs, self.douts, strict=True):
            x = x.clone().requires_grad_(True)
            out = bn(x)
            step: dict[str, Any] = {"out": out.detach().clone()}
            if out.requires_grad:
                (out * dout).sum().backward()
            for key, value in (("dx", x.grad), ("dweight", params["weight"].grad), ("dbias", params["bias"].grad)):
                step[key] = None if value is None else value.detach().clone()
            params["weight"].grad = params["bias"].grad = None
            step.update({k: v for k, v in self._state(bn).items() if k.startswith("running")})
            buffers = dict(bn.named_buffers())
            step["graph"] = [_in_graph(buffers.get(k)) for k in ("running_mean", "running_var")]
            steps.append(step)
        bn.eval()
        with torch.no_grad():
            out = bn(self.x_eval.clone())
        evaluation = {"out": out.detach().clone(), **{k: v for k, v in self._state(bn).items()
                                                       if k.startswith("running")}}
        return {"fresh": fresh, "train": steps, "eval": evaluation}


BN_MODULE_CASES: list[Case] = [
    ("train mode, several batches: output, gradients and running statistics; then eval mode",
     {"channels": 3, "shape": [4, 3, 5, 5], "eps": 1e-5, "momentum": 0.1, "batches": 3}),
    ("eps and momentum given; two values per channel in a batch",
     {"channels": 2, "shape": [2, 2, 1, 1], "eps": 1e-3, "momentum": 0.4, "batches": 2}),
]
HIDDEN_BN_MODULE_CASES: list[Case] = [
    ("train mode, several batches: output, gradients and running statistics; then eval mode",
     {"channels": 4, "shape": [3, 4, 4, 6], "eps": 1e-5, "momentum": 0.1, "batches": 3}),
    ("eps and momentum given; two values per channel in a batch",
     {"channels": 3, "shape": [1, 3, 2, 1], "eps": 1e-2, "momentum": 0.25, "batches": 2}),
]


def _bn_module_driver(setting: dict, seed: int) -> BatchNormModuleRun:
    g = torch.Generator().manual_seed(seed)
    c, shape = setting["channels"], setting["shape"]
    weight = 0.5 + torch.rand(c, generator=g)
    bias = torch.randn(c, generator=g)
    xs = [_bn_input(g, shape) for _ in range(setting["batches"])]
    douts = [torch.randn(shape, generator=g) for _ in xs]
    return BatchNormModuleRun(c, setting["eps"], setting["momentum"], weight, bias, xs, douts, _bn_input(g, shape))


@_declare(refuse=BATCH_NORM_OPS, refuse_code=BATCH_NORM_CODE, why="write the normalization yourself")
def check_batchnorm_module(module_class: Any, hidden: bool = False) -> None:
    """BatchNorm2d(num_features, eps, momentum) matches nn.BatchNorm2d: parameters weight (ones) and bias
    (zeros), buffers running_mean (zeros) and running_var (ones); train-mode outputs, input and parameter
    gradients (by autograd) and running statistics over several batches; eval-mode outputs."""
    name = _name(module_class, "BatchNorm2d")
    cases = HIDDEN_BN_MODULE_CASES if hidden else BN_MODULE_CASES
    for index, (rule, setting) in enumerate(cases):
        driver = _bn_module_driver(setting, _seed(hidden, "check_batchnorm_module", index))
        expected = driver(torch.nn.BatchNorm2d)
        call = (f"{name}({setting['channels']}, eps={setting['eps']}, momentum={setting['momentum']}) on "
                f"{setting['batches']} batches of shape {tuple(setting['shape'])}")
        where = _where(name, call, rule, hidden)
        got = _run(module_class, driver, where, hidden)
        fresh_where = _where(name, f"{name}({setting['channels']})", "parameters weight (ones) and bias (zeros), "
                             "buffers running_mean (zeros) and running_var (ones)", hidden)
        for key, kind in (("weight", "parameter"), ("bias", "parameter"), ("running_mean", "buffer"),
                          ("running_var", "buffer")):
            if got["fresh"][key] is None:
                how = "self.weight = nn.Parameter(...)" if kind == "parameter" else \
                    f"self.register_buffer({key!r}, ...)"
                raise CheckFailure(f"{fresh_where}: it should have a {kind} named {key!r} (as nn.BatchNorm2d: "
                                   f"{how})")
            _compare(got["fresh"][key], expected["fresh"][key], f"{fresh_where}, {key}", hidden, atol=0, rtol=0)
        for k, (mine, theirs) in enumerate(zip(got["train"], expected["train"], strict=True)):
            for key in ("out", "dx", "dweight", "dbias", "running_mean", "running_var"):
                what = f"{where}, train mode, batch {k + 1}: " + {"dx": "the input's gradient",
                                                                  "dweight": "weight.grad", "dbias": "bias.grad"}.get(
                    key, key)
                if mine[key] is None:
                    raise CheckFailure(f"{what} is None: the forward must be differentiable by autograd (tensor "
                                       f"operations on the input and on self.weight and self.bias, no .data)")
                _compare(mine[key], theirs[key], what, hidden, atol=FLOAT32_ATOL, rtol=FLOAT32_RTOL)
            for stat, joined in zip(("running_mean", "running_var"), mine["graph"], strict=True):
                if joined:
                    raise CheckFailure(f"{where}, train mode, batch {k + 1}: {GRAPH_MESSAGE.format(stat=stat)}")
        for key in ("out", "running_mean", "running_var"):
            what = f"{where}, eval mode: " + ("the output (normalized with the running statistics)" if key == "out"
                                              else f"{key} (it should not change in eval mode)")
            _compare(got["eval"][key], expected["eval"][key], what, hidden, atol=FLOAT32_ATOL, rtol=FLOAT32_RTOL)
    passed(f"{name} matches nn.BatchNorm2d" + (" (hidden cases)" if hidden else ""), len(cases))


# --- 4. dropout ---------------------------------------------------------------------------------
class DropoutRun:
    """A driver: ``torch.manual_seed(seed)``, then ``dropout(x, p, training)``; with ``dout``, also the gradient
    of sum(out * dout) with respect to x. Returns ``{"out", "grad"}`` (a description where out is no tensor)."""

    def __init__(self, x: torch.Tensor, p: float, training: bool, seed: int, dout: torch.Tensor | None = None) -> None:
        self.x, self.p, self.training, self.seed, self.dout = x, float(p), bool(training), int(seed), dout

    def __wire__(self) -> dict[str, Any]:
        return {"x": self.x, "p": self.p, "training": self.training, "seed": self.seed, "dout": self.dout}

    def __call__(self, dropout: Callable) -> dict[str, Any]:
        torch.manual_seed(self.seed)
        x = self.x.clone().requires_grad_(self.dout is not None)
        out = dropout(x, self.p, self.training)
        if not isinstance(out, torch.Tensor):
            return {"out": type(out).__name__, "grad": None}
        grad = None
        if self.dout is not None and out.requires_grad:
            (grad,) = torch.autograd.grad(out, x, self.dout)
        return {"out": out.detach().clone(), "grad": grad}


# A kept fraction of N = 40,000 elements has standard error sqrt(p (1 - p) / N) <= 0.0025: the band is 6
# standard errors wide (a correct answer fails it with probability 2e-9). A row of 400 (320 hidden) has a
# standard error <= 0.028 and a column of 100 (125) one <= 0.05: their bands are 7 of them (each row and column
# fails with probability < 3e-12).
DROPOUT_SHAPE, HIDDEN_DROPOUT_SHAPE = (100, 400), (125, 320)
FRACTION_BAND, ROW_BAND, COLUMN_BAND = 0.016, 0.2, 0.36

# (rule, {"p", "training", "grad"})
DROPOUT_CASES: list[Case] = [
    ("training: each element kept with probability 1 - p and scaled by 1 / (1 - p)",
     {"p": 0.3, "training": True}),
    ("training, a large p: each element kept independently, in every row and column", {"p": 0.8, "training": True}),
    ("the gradient flows through the kept elements, scaled by 1 / (1 - p)", {"p": 0.4, "training": True,
                                                                             "grad": True}),
    ("not training: x unchanged", {"p": 0.5, "training": False}),
    ("p = 0: x unchanged", {"p": 0.0, "training": True}),
    ("p = 1: all zeros", {"p": 1.0, "training": True}),
    ("p outside [0, 1] raises ValueError", {"p": -0.1, "training": True}),
    ("p outside [0, 1] raises ValueError", {"p": 1.5, "training": False}),
]
HIDDEN_DROPOUT_CASES: list[Case] = [
    ("training: each element kept with probability 1 - p and scaled by 1 / (1 - p)",
     {"p": 0.25, "training": True}),
    ("training, a large p: each element kept independently, in every row and column", {"p": 0.7, "training": True}),
    ("the gradient flows through the kept elements, scaled by 1 / (1 - p)", {"p": 0.6, "training": True,
                                                                             "grad": True}),
    ("not training: x unchanged", {"p": 0.2, "training": False}),
    ("p = 1: all zeros", {"p": 1.0, "training": True}),
    ("p outside [0, 1] raises ValueError", {"p": 2.0, "training": True}),
]


@_declare(refuse=DROPOUT_OPS, refuse_code=DROPOUT_CODE, why="draw the mask with torch.rand yourself")
def check_dropout(dropout: Callable, hidden: bool = False) -> None:
    """Inverted dropout: in training each element is kept independently with probability 1 - p and scaled by
    1 / (1 - p), its gradient likewise; x unchanged when not training or p = 0; zeros for p = 1; ValueError for
    p outside [0, 1]; the mask drawn from torch's generator (the same seed, the same mask)."""
    name = _name(dropout, "dropout")
    cases = HIDDEN_DROPOUT_CASES if hidden else DROPOUT_CASES
    g = torch.Generator().manual_seed(_seed(hidden, "check_dropout", "x"))
    shape = HIDDEN_DROPOUT_SHAPE if hidden else DROPOUT_SHAPE
    # no zeros in x: an element is kept exactly where out != 0
    x = (torch.rand(shape, generator=g) + 0.5) * torch.where(torch.rand(shape, generator=g) < 0.5, -1.0, 1.0)
    for index, (rule, setting) in enumerate(cases):
        p, training = setting["p"], setting["training"]
        seed = _seed(hidden, "check_dropout", index)
        dout = torch.randn(shape, generator=g) if setting.get("grad") else None
        call = f"{name}(x of shape {tuple(shape)}, p={p}, training={training})" + (", then backward" if dout
                                                                                      is not None else "")
        where = _where(name, call, rule, hidden)
        driver = DropoutRun(x, p, training, seed, dout)
        if not 0 <= p <= 1:
            _expect_value_error(dropout, driver, where, "p must be in [0, 1]", hidden)
            continue
        got = _run(dropout, driver, where, hidden)
        out = got["out"]
        if isinstance(out, str):
            raise CheckFailure(f"{where} should return a tensor, got {out}")
        if tuple(out.shape) != tuple(shape):
            raise CheckFailure(f"{where}: out should have the shape of x" + ("" if hidden else
                               f" {tuple(shape)}, got {tuple(out.shape)}"))
        if not training or p == 0:
            if not torch.equal(out, x):
                raise CheckFailure(f"{where}: out should be x unchanged")
            continue
        if p == 1:
            if not torch.equal(out, torch.zeros_like(x)):
                raise CheckFailure(f"{where}: every element should be 0 (and none NaN: no division by 1 - p = 0)")
            continue
        keep = 1 - p
        kept = out != 0
        scaled_ok = torch.isclose(out[kept], x[kept] / keep, rtol=1e-5, atol=1e-6)
        if not bool(scaled_ok.all()):
            shown = "" if hidden else f" (e.g. x = {float(x[kept][~scaled_ok][0]):.4g}, out = " \
                                      f"{float(out[kept][~scaled_ok][0]):.4g}, x / (1 - p) = " \
                                      f"{float(x[kept][~scaled_ok][0] / keep):.4g})"
            raise CheckFailure(f"{where}: every element should be 0 or x / (1 - p); "
                               f"{int((~scaled_ok).sum())} kept elements are not{shown}")
        fraction = float(kept.double().mean())
        if abs(fraction - keep) > FRACTION_BAND:
            shown = "too few" if fraction < keep else "too many"
            shown = shown if hidden else f"{fraction:.1%}"
            raise CheckFailure(f"{where}: {shown} of the elements were kept" + ("" if hidden else
                               f", expected about {keep:.0%}") + " (1 - p: p is the probability of dropping an "
                               "element)")
        rows, columns = kept.double().mean(dim=1), kept.double().mean(dim=0)
        if float((rows - keep).abs().max()) > ROW_BAND or float((columns - keep).abs().max()) > COLUMN_BAND:
            low, high = float(torch.cat([rows, columns]).min()), float(torch.cat([rows, columns]).max())
            shown = "" if hidden else f" ({low:.0%} to {high:.0%}, expected about {keep:.0%} each)"
            raise CheckFailure(f"{where}: some rows or columns keep far more or fewer of their elements than 1 - p"
                               f"{shown}: draw one independent random number per element (torch.rand(x.shape))")
        again = _run(dropout, driver, where, hidden)["out"]
        other = _run(dropout, DropoutRun(x, p, training, seed + 1), where, hidden)["out"]
        if not isinstance(again, torch.Tensor) or not torch.equal(again, out):
            raise CheckFailure(f"{where}: with the same torch.manual_seed the mask should be the same: draw it with "
                               f"torch.rand (torch's generator)")
        if isinstance(other, torch.Tensor) and torch.equal(other != 0, kept):
            raise CheckFailure(f"{where}: with another torch.manual_seed the mask should differ: draw a new one on "
                               f"every call")
        if dout is not None:
            grad = got["grad"]
            if grad is None:
                raise CheckFailure(f"{where}: no gradient reached x: build out from x with tensor operations")
            _compare(grad, torch.where(kept, dout / keep, 0.0), f"{where}, x's gradient", hidden, atol=1e-5,
                     rtol=1e-5)
    passed(name + (" (hidden cases)" if hidden else ""), len(cases))


# --- 5. a CNN with and without batch normalization ------------------------------------------------
@functools.lru_cache(maxsize=1)
def _digits() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """scikit-learn's 8x8 digits as (N, 1, 8, 8) float32 in [0, 1] (as ``course_utils.data.load("digits")``): a
    fixed split, 1,297 to train, 500 to validate."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.from_numpy(bunch.images).float().div_(16.0).unsqueeze(1)
    labels = torch.from_numpy(bunch.target).long()
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    train, val = order[:-500], order[-500:]
    return images[train].contiguous(), labels[train].contiguous(), images[val].contiguous(), \
        labels[val].contiguous()


NORMALIZATION_TOLERANCE = 0.02  # a channel's output std is |weight| * sqrt(var / (var + eps)): 0.5% low at most
# The recipe the check trains with: minibatch SGD with momentum, the learning rate decaying linearly to 0, written
# here (torch.optim is refused while the student's code runs), seeded: a few seconds on a CPU. Over 10 seeds each,
# correct designs reach at least 0.87 (a 3-convolution global-pooling net without BatchNorm, the slowest learner
# tried; the notebook's: 0.98), so 0.8 is far below what a correct answer gets; a BatchNorm2d that never updates
# its running statistics stays below it for most seeds (tests/heavy/test_grading_a3.py).
RECIPE = {"epochs": 10, "batch": 32, "lr": 0.1, "momentum": 0.9}
CNN_THRESHOLD = 0.8
# An untrained network guesses: about 10% on 10 classes (measured: mean 0.09-0.10, at most 0.19 over three designs,
# 20 seeds, with and without BatchNorm). One that
# already classifies the validation digits before training knows them some other way (e.g. looks them up in the
# public data set): the cell is about a network that learns.
UNTRAINED_LIMIT = 0.5


def _is_torch_batch_norm(cls: type) -> bool:
    return any(c.__module__.startswith("torch.nn") and "Norm" in c.__name__ for c in cls.__mro__)


def _is_own_batch_norm(cls: type) -> bool:
    """The notebook's BatchNorm2d (or a subclass of it), not torch's."""
    return not _is_torch_batch_norm(cls) and any(c.__name__ == "BatchNorm2d" for c in cls.__mro__)


class CNNTraining:
    """A driver: ``make_cnn(batch_norm)`` for False and True, each built after ``torch.manual_seed(seed)`` and
    trained with :data:`RECIPE` on ``images``/``labels`` (batches in an order drawn from ``seed``); returns, per
    model, its modules' classes, whether its untrained eval-mode outputs are probabilities (then it is not
    trained), its validation logits (the check computes the accuracy: the labels stay in the grader) and, for each
    BatchNorm2d of the model's own, how well its train-mode output is normalized."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, val_images: torch.Tensor, seed: int,
                 recipe: dict | None = None) -> None:
        self.images, self.labels, self.val_images, self.seed = images, labels, val_images, int(seed)
        self.recipe = dict(RECIPE if recipe is None else recipe)

    def __wire__(self) -> dict[str, Any]:
        return {"images": self.images, "labels": self.labels, "val_images": self.val_images, "seed": self.seed,
                "recipe": self.recipe}

    def _train(self, model: Any) -> None:
        epochs, batch = int(self.recipe["epochs"]), int(self.recipe["batch"])
        lr, momentum = float(self.recipe["lr"]), float(self.recipe["momentum"])
        params = [p for p in model.parameters() if p.requires_grad]
        buffers = [torch.zeros_like(p) for p in params]
        g = torch.Generator().manual_seed(self.seed)
        total, step = epochs * (len(self.labels) // batch), 0
        model.train()
        for _ in range(epochs):
            order = torch.randperm(len(self.labels), generator=g)
            for start in range(0, len(order) - batch + 1, batch):
                idx = order[start:start + batch]
                rate = lr * (1 - step / total)  # decays linearly to 0
                step += 1
                loss = F.cross_entropy(model(self.images[idx]), self.labels[idx])
                grads = torch.autograd.grad(loss, params, allow_unused=True)
                with torch.no_grad():
                    for p, buf, grad in zip(params, buffers, grads, strict=True):
                        if grad is not None:
                            buf.mul_(momentum).add_(grad)
                            p.sub_(rate * buf)

    @staticmethod
    def _normalization(model: Any, images: torch.Tensor) -> list[list[float]]:
        """For each of the model's own BatchNorm2d (not torch's): per channel with input variance > 1e-3, the
        output's mean minus bias and its standard deviation over |weight|, in one train-mode forward."""
        found: list[list[float]] = []
        hooks = []

        def record(module: Any, inputs: tuple, out: Any) -> None:
            x = inputs[0].detach()
            params = dict(module.named_parameters())
            weight, bias = params.get("weight"), params.get("bias")
            if not isinstance(out, torch.Tensor) or weight is None or bias is None or x.ndim != 4:
                found.append([math.nan])
                return
            dims = (0, 2, 3)
            live = x.var(dim=dims, unbiased=False) > 1e-3
            mean_gap = (out.detach().mean(dim=dims) - bias.detach()).abs()[live]
            ratio = (out.detach().var(dim=dims, unbiased=False).sqrt() / weight.detach().abs())[live]
            found.append([float(mean_gap.max()) if mean_gap.numel() else 0.0,
                          float((ratio - 1).abs().max()) if ratio.numel() else 0.0])

        for module in model.modules():
            if _is_own_batch_norm(type(module)):
                hooks.append(module.register_forward_hook(record))
        model.train()
        with torch.no_grad():
            model(images)
        for hook in hooks:
            hook.remove()
        return found

    @staticmethod
    def _probabilities(model: Any, images: torch.Tensor) -> bool:
        """Whether the untrained model's eval-mode outputs are probabilities: every row in [0, 1], summing to 1
        (a softmax at the end, which F.cross_entropy applies again)."""
        model.eval()
        with torch.no_grad():
            out = model(images)
        if not isinstance(out, torch.Tensor) or out.ndim != 2 or not out.is_floating_point() or out.shape[1] < 2:
            return False
        out = out.double()
        return bool(((out >= -1e-6) & (out <= 1 + 1e-6)).all() and (out.sum(dim=1) - 1).abs().max() <= 1e-4)

    def __call__(self, make_cnn: Callable) -> dict[str, Any]:
        results: dict[str, Any] = {}
        for batch_norm in (True, False):  # the model with BatchNorm first: what is wrong with it shows before training
            torch.manual_seed(self.seed)
            model = make_cnn(batch_norm)
            modules = [[type(m).__name__, _is_own_batch_norm(type(m)), _is_torch_batch_norm(type(m))]
                       for m in model.modules()]
            result: dict[str, Any] = {"modules": modules, "normalization": [], "probabilities": False,
                                      "untrained": None, "logits": None}
            results[str(batch_norm)] = result
            if batch_norm and (not any(own for _, own, _ in modules)
                               or any(torch_norm for _, _, torch_norm in modules)):
                return results
            state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            if batch_norm:
                result["normalization"] = self._normalization(model, self.images[:256])
            result["probabilities"] = self._probabilities(model, self.images[:64])
            model.load_state_dict(state)
            model.eval()
            with torch.no_grad():
                untrained = model(self.val_images)
            result["untrained"] = untrained.detach().clone() if isinstance(untrained, torch.Tensor) else None
            model.load_state_dict(state)
            if result["probabilities"] or not all(
                    len(gaps) == 2 and gaps[0] <= 5 * NORMALIZATION_TOLERANCE and gaps[1] <= NORMALIZATION_TOLERANCE
                    for gaps in result["normalization"]):
                return results
            self._train(model)
            model.eval()
            with torch.no_grad():
                logits = model(self.val_images)
            result["logits"] = logits.detach().clone() if isinstance(logits, torch.Tensor) else type(logits).__name__
        return results


def cnn_accuracies(result: dict[str, Any], labels: torch.Tensor, which: str = "logits") -> dict[bool, float]:
    """The validation accuracy of each model of a CNNTraining result, trained (``which="logits"``) or before
    training (``"untrained"``); NaN where the logits are unusable."""
    accuracies = {}
    for key, batch_norm in (("False", False), ("True", True)):
        logits = result.get(key, {}).get(which)
        ok = isinstance(logits, torch.Tensor) and tuple(logits.shape) == (len(labels), 10) \
            and logits.is_floating_point()
        accuracies[batch_norm] = float((logits.argmax(dim=1) == labels).double().mean()) if ok else math.nan
    return accuracies


@_declare(refuse=BATCH_NORM_OPS, refuse_code=BATCH_NORM_CODE, why="write the normalization yourself")
def check_cnn_training(make_cnn: Callable, hidden: bool = False) -> None:
    """make_cnn(False) and make_cnn(True), trained by the check's own recipe (SGD with momentum, seeded) on the
    digits, both reach CNN_THRESHOLD validation accuracy; make_cnn(True) contains the notebook's BatchNorm2d (not
    torch's), which normalizes in train mode."""
    name = _name(make_cnn, "make_cnn")
    images, labels, val_images, val_labels = _digits()
    seed = _seed(hidden, "check_cnn_training", "seed")
    recipe = (f"{RECIPE['epochs']} epochs of SGD, lr {RECIPE['lr']} decaying linearly to 0, momentum "
              f"{RECIPE['momentum']}, batch {RECIPE['batch']}")
    where = _where(name, f"{name}(False) and {name}(True), trained on the digits ({recipe})",
                   "both reach the accuracy threshold; make_cnn(True) uses your BatchNorm2d", hidden)
    got = _run(make_cnn, CNNTraining(images, labels, val_images, seed), where, hidden)
    modules = got["True"]["modules"]
    if any(torch_norm for _, _, torch_norm in modules):
        shown = sorted({cls for cls, _, torch_norm in modules if torch_norm})
        raise CheckFailure(f"{where}: {name}(True) contains {shown} from torch.nn: use your own BatchNorm2d")
    if not any(own for _, own, _ in modules):
        raise CheckFailure(f"{where}: {name}(True) contains no BatchNorm2d: put your BatchNorm2d after the "
                           f"convolutions")
    for k, gaps in enumerate(got["True"]["normalization"]):
        if not (len(gaps) == 2 and gaps[0] <= 5 * NORMALIZATION_TOLERANCE and gaps[1] <= NORMALIZATION_TOLERANCE):
            raise CheckFailure(f"{where}: in train mode, BatchNorm2d number {k + 1} of {name}(True) does not "
                               f"normalize its input (each channel's output should have mean bias and standard "
                               f"deviation |weight|)")
    for batch_norm in (True, False):
        if got.get(str(batch_norm), {}).get("probabilities"):
            raise CheckFailure(f"{where}: {name}({batch_norm}) returns probabilities (every row in [0, 1], summing "
                               f"to 1): return logits (F.cross_entropy applies the softmax)")
    for batch_norm, accuracy in cnn_accuracies(got, val_labels, "untrained").items():
        if accuracy > UNTRAINED_LIMIT:
            raise CheckFailure(f"{where}: {name}({batch_norm}) classifies {accuracy:.0%} of the validation digits "
                               f"before any training (an untrained network guesses: about 10%): the check trains "
                               f"the network {name} builds, which must learn the digits, not know them")
    accuracies = cnn_accuracies(got, val_labels)
    for batch_norm, accuracy in accuracies.items():
        if not accuracy >= CNN_THRESHOLD:
            logits = got.get(str(batch_norm), {}).get("logits")
            why = (f"the logits should be a tensor of shape ({len(val_labels)}, 10), got "
                   + (str(tuple(logits.shape)) if isinstance(logits, torch.Tensor) and not hidden else
                      _kind(logits, hidden))) if math.isnan(accuracy) else \
                f"its validation accuracy is {accuracy:.1%}, expected at least {CNN_THRESHOLD:.0%}"
            raise CheckFailure(f"{where}: {name}({batch_norm}): {why}")
    print(f"✓ {name}: validation accuracy {accuracies[False]:.1%} without and {accuracies[True]:.1%} with "
          f"BatchNorm after {recipe}" + (" (hidden seed)" if hidden else ""))


# --- for the instructor's guide and the tests -------------------------------------------------------
def hidden_rules() -> dict[str, Sequence[str]]:
    """The rules each check's fixed hidden cases exercise (for the instructor's guide and the tests)."""
    return {**{f"check_{kind}": [r for r, _ in _optimizer_cases(kind, True) + HIDDEN_INVALID_OPTIONS[kind]]
               for kind in ("sgd", "rmsprop", "adam")},
            "check_step_lr": [r for r, _ in HIDDEN_SCHEDULE_CASES["step_lr"]],
            "check_exponential_lr": [r for r, _ in HIDDEN_SCHEDULE_CASES["exponential_lr"]],
            "check_batchnorm_forward": [r for r, _ in HIDDEN_BN_FORWARD_CASES],
            "check_batchnorm_backward": [r for r, _ in HIDDEN_BN_BACKWARD_CASES],
            "check_batchnorm_module": [r for r, _ in HIDDEN_BN_MODULE_CASES],
            "check_dropout": [r for r, _ in HIDDEN_DROPOUT_CASES]}
