"""a3 student variants, shared by tests/test_a3_checks.py (fast tier) and tests/heavy/test_grading_a3.py.

The solution is the notebook's (solutions/a3_optim_batchnorm/a3_optim_batchnorm.ipynb) when it exists, else the
reference answers below: a correct PyTorch implementation of every class and function of the contract, run in a
namespace of their own (like a notebook's cells: make_cnn looks BatchNorm2d up by name, so a student's
redefinition of BatchNorm2d reaches make_cnn too). WRONG maps a variant's name to the replacements and exactly the
graded cells it must fail; CORRECT lists differently written right answers (every point); BACK_DOORS lists answers
that run PyTorch's own optimizer, schedule, normalization or dropout, reached by any name (each loses exactly its
cells' points, told that the reference is not available).
"""

from __future__ import annotations

import math
import types
from collections.abc import Callable, Iterable
from typing import Any

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn
from torch.nn.functional import batch_norm as batch_norm_by_name  # captured before any check runs
from torch.optim import Adam as TorchAdam  # captured before any check runs
from torch.optim.lr_scheduler import StepLR as TorchStepLR

import variants_harness as vh
from course_utils.grading.protocol import CellResult, graded_cells

ASSIGNMENT = "a3_optim_batchnorm"
# the contract's test cells: grade_id -> (check, functions, points)
CONTRACT_CELLS = {
    "test_sgd": ("check_sgd", ("SGD",), 10),
    "test_rmsprop": ("check_rmsprop", ("RMSprop",), 7),
    "test_adam": ("check_adam", ("Adam",), 11),
    "test_step_lr": ("check_step_lr", ("StepLR",), 4),
    "test_exponential_lr": ("check_exponential_lr", ("ExponentialLR",), 3),
    "test_batchnorm_forward": ("check_batchnorm_forward", ("batchnorm_forward",), 10),
    "test_batchnorm_backward": ("check_batchnorm_backward", ("batchnorm_forward", "batchnorm_backward"), 10),
    "test_batchnorm_module": ("check_batchnorm_module", ("BatchNorm2d",), 8),
    "test_dropout": ("check_dropout", ("dropout",), 7),
    "test_cnn_training": ("check_cnn_training", ("make_cnn",), 10),
}

NOTEBOOK = vh.solution_notebook_or_none(ASSIGNMENT)
CELLS = graded_cells(NOTEBOOK) if NOTEBOOK is not None else vh.contract_cells(CONTRACT_CELLS)
ALL_CELLS = {cell.grade_id for cell in CELLS}
# which notebook names use which (a replaced class changes the cells of its users too)
CALLERS = {"batchnorm_forward": {"BatchNorm2d", "make_cnn"}, "BatchNorm2d": {"make_cnn"}}
CNN = "test_cnn_training"


# --- the reference answers ---------------------------------------------------------------------------
class SGD(torch.optim.Optimizer):
    def __init__(self, params, lr, momentum=0.0, weight_decay=0.0, nesterov=False):
        if nesterov and momentum <= 0:
            raise ValueError("nesterov=True needs momentum > 0")
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, momentum, wd = group["lr"], group["momentum"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad + wd * p if wd else p.grad
                if momentum:
                    state = self.state[p]
                    if "buf" not in state:
                        state["buf"] = g.clone()
                    else:
                        state["buf"].mul_(momentum).add_(g)
                    g = g + momentum * state["buf"] if group["nesterov"] else state["buf"]
                p.add_(g, alpha=-lr)
        return loss


class RMSprop(torch.optim.Optimizer):
    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0):
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad + group["weight_decay"] * p
                state = self.state[p]
                if "v" not in state:
                    state["v"] = torch.zeros_like(p)
                v = state["v"]
                v.mul_(group["alpha"]).addcmul_(g, g, value=1 - group["alpha"])
                p.addcdiv_(g, v.sqrt().add_(group["eps"]), value=-group["lr"])
        return loss


class Adam(torch.optim.Optimizer):
    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        if lr < 0:
            raise ValueError(f"Invalid lr: {lr}")
        if not (0 <= betas[0] < 1 and 0 <= betas[1] < 1):
            raise ValueError(f"Invalid betas: {betas}")
        if eps < 0:
            raise ValueError(f"Invalid eps: {eps}")
        if weight_decay < 0:
            raise ValueError(f"Invalid weight_decay: {weight_decay}")
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad + group["weight_decay"] * p
                state = self.state[p]
                if not state:
                    state.update(t=0, m=torch.zeros_like(p), v=torch.zeros_like(p))
                state["t"] += 1
                t = state["t"]
                state["m"].mul_(b1).add_(g, alpha=1 - b1)
                state["v"].mul_(b2).addcmul_(g, g, value=1 - b2)
                denom = (state["v"] / (1 - b2 ** t)).sqrt_().add_(group["eps"])
                p.addcdiv_(state["m"], denom, value=-group["lr"] / (1 - b1 ** t))
        return loss


class StepLR:
    def __init__(self, optimizer, step_size, gamma=0.1):
        self.optimizer, self.step_size, self.gamma, self.epoch = optimizer, step_size, gamma, 0
        self.base_lrs = [group.setdefault("initial_lr", group["lr"]) for group in optimizer.param_groups]
        self._set()

    def _set(self):
        for group, base in zip(self.optimizer.param_groups, self.base_lrs, strict=True):
            group["lr"] = base * self.gamma ** (self.epoch // self.step_size)

    def step(self):
        self.epoch += 1
        self._set()

    def get_last_lr(self):
        return [group["lr"] for group in self.optimizer.param_groups]


class ExponentialLR:
    def __init__(self, optimizer, gamma):
        self.optimizer, self.gamma, self.epoch = optimizer, gamma, 0
        self.base_lrs = [group.setdefault("initial_lr", group["lr"]) for group in optimizer.param_groups]

    def step(self):
        self.epoch += 1
        for group, base in zip(self.optimizer.param_groups, self.base_lrs, strict=True):
            group["lr"] = base * self.gamma ** self.epoch

    def get_last_lr(self):
        return [group["lr"] for group in self.optimizer.param_groups]


def _channel_dims(x):
    return (0,) if x.ndim == 2 else (0, 2, 3)


def _per_channel(v, x):
    return v.view(1, -1) if x.ndim == 2 else v.view(1, -1, 1, 1)


def batchnorm_forward(x, gamma, beta, running_mean, running_var, training, momentum=0.1, eps=1e-5):
    dims = _channel_dims(x)
    if training:
        m = x.numel() // x.shape[1]
        mean = x.mean(dim=dims)
        var = x.var(dim=dims, unbiased=False)
        with torch.no_grad():
            running_mean.mul_(1 - momentum).add_(momentum * mean)
            running_var.mul_(1 - momentum).add_(momentum * var * m / max(m - 1, 1))
    else:
        mean, var = running_mean, running_var
    inv_std = 1 / torch.sqrt(var + eps)
    xhat = (x - _per_channel(mean, x)) * _per_channel(inv_std, x)
    out = _per_channel(gamma, x) * xhat + _per_channel(beta, x)
    return out, (xhat, gamma, inv_std)


def batchnorm_backward(dout, cache):
    xhat, gamma, inv_std = cache
    dims = _channel_dims(xhat)
    m = xhat.numel() // xhat.shape[1]
    dbeta = dout.sum(dim=dims)
    dgamma = (dout * xhat).sum(dim=dims)
    dxhat = dout * _per_channel(gamma, xhat)
    dx = _per_channel(inv_std / m, xhat) * (m * dxhat - _per_channel(dxhat.sum(dim=dims), xhat)
                                             - xhat * _per_channel((dxhat * xhat).sum(dim=dims), xhat))
    return dx, dgamma, dbeta


class BatchNorm2d(nn.Module):
    """The notebook's design: forward calls batchnorm_forward (so a wrong batchnorm_forward is a wrong module)."""

    def __init__(self, num_features, eps=1e-5, momentum=0.1):
        super().__init__()
        self.eps, self.momentum = eps, momentum
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def forward(self, x):
        return batchnorm_forward(x, self.weight, self.bias, self.running_mean, self.running_var, self.training,
                                 self.momentum, self.eps)[0]


class BatchNorm2dOwnForward(BatchNorm2d):
    """Its own forward, written out (the wrong module variants start from it)."""

    def forward(self, x):
        if self.training:
            mean = x.mean(dim=(0, 2, 3))
            var = x.var(dim=(0, 2, 3), unbiased=False)
            m = x.numel() // x.shape[1]
            with torch.no_grad():
                self.running_mean.mul_(1 - self.momentum).add_(self.momentum * mean)
                self.running_var.mul_(1 - self.momentum).add_(self.momentum * var * m / max(m - 1, 1))
        else:
            mean, var = self.running_mean, self.running_var
        xhat = (x - mean.view(1, -1, 1, 1)) / torch.sqrt(var.view(1, -1, 1, 1) + self.eps)
        return self.weight.view(1, -1, 1, 1) * xhat + self.bias.view(1, -1, 1, 1)


def dropout(x, p, training):
    if not 0 <= p <= 1:
        raise ValueError(f"p must be in [0, 1], got {p}")
    if not training or p == 0:
        return x
    if p == 1:
        return torch.zeros_like(x)
    mask = (torch.rand(x.shape) < 1 - p).to(x.dtype)
    return x * mask / (1 - p)


def make_cnn(batch_norm):
    def block(c_in, c_out):
        layers = [nn.Conv2d(c_in, c_out, 3, padding=1)]
        if batch_norm:
            layers.append(BatchNorm2d(c_out))
        return layers + [nn.ReLU()]

    return nn.Sequential(*block(1, 16), *block(16, 32), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(32 * 4 * 4, 10))


_reference_make_cnn = make_cnn
REFERENCE = {name: globals()[name] for name in (
    "SGD", "RMSprop", "Adam", "StepLR", "ExponentialLR", "batchnorm_forward", "batchnorm_backward", "BatchNorm2d",
    "dropout", "make_cnn")}


def solution_namespace() -> dict:
    """The solution's classes and functions in a fresh namespace: the notebook's cells (its training and plotting
    cells skipped: they are not graded) or the reference answers above."""
    namespace: dict[str, Any] = {**globals(), "__name__": f"solution_{ASSIGNMENT}"}  # (the variants' helpers)
    if NOTEBOOK is not None:
        with vh.environment("COURSE_FAST", "1"):
            vh.exec_solution(ASSIGNMENT, NOTEBOOK, namespace, quiet_stdout=True, quiet_stderr=True)
    else:
        namespace.update({name: vh.rebound(fn, namespace) if isinstance(fn, types.FunctionType) else fn
                          for name, fn in REFERENCE.items()})
        module = REFERENCE["BatchNorm2d"]  # its forward looks batchnorm_forward up in the namespace, as a cell's
        namespace["BatchNorm2d"] = type("BatchNorm2d", (module,), {"forward": vh.rebound(module.forward, namespace)})
    return namespace


def cells_using(names: Iterable[str]) -> list:
    """The graded cells whose checks use one of ``names`` or something that uses one."""
    return vh.cells_using(CELLS, CALLERS, names)


def _bind(name: str, value: Any, namespace: dict) -> Any:
    """A function rebound to the namespace; a class of this file under the notebook's name (a student's
    BatchNorm2d is called BatchNorm2d, whatever the variant is called here)."""
    if isinstance(value, types.FunctionType):
        return vh.rebound(value, namespace)
    if isinstance(value, type) and value.__module__ == __name__ and value.__name__ != name:
        return type(name, (value,), {"__module__": value.__module__})
    return value


def run_cells(replacements: dict[str, Any], hidden: bool = True, only_hidden: bool = False,
              cells: list | None = None, skip_cnn: bool = False) -> dict[str, CellResult]:
    """The graded cells that use the replaced names, run on the solution with the replacements (each function
    rebound to the solution's namespace, as a student's redefinition in the notebook would be)."""
    namespace = solution_namespace()
    namespace.update({name: _bind(name, value, namespace) for name, value in replacements.items()})
    cells = cells if cells is not None else cells_using(replacements)
    return vh.run_cells_in(ASSIGNMENT, namespace, [c for c in cells if not (skip_cnn and c.grade_id == CNN)], hidden,
                           only_hidden)


def failing_cells(replacements: dict[str, Any], skip_cnn: bool = False, **options: Any) -> set[str]:
    """Graded cells that fail (visible and hidden checks) when the notebook's names are replaced."""
    return vh.failed(run_cells(replacements, skip_cnn=skip_cnn, **options))


# --- correct, written differently ----------------------------------------------------------------------
class SGDOutOfPlace(torch.optim.Optimizer):
    """A velocity that starts at zero and a step counter; updates written out of place through .data."""

    def __init__(self, params, lr, momentum=0.0, weight_decay=0.0, nesterov=False):
        if nesterov and not momentum > 0:
            raise ValueError("Nesterov momentum needs a positive momentum")
        super().__init__(params, {"lr": lr, "momentum": momentum, "weight_decay": weight_decay,
                                  "nesterov": nesterov})

    def step(self, closure=None):
        loss = closure() if closure is not None and torch.is_grad_enabled() else None
        if closure is not None and loss is None:
            with torch.enable_grad():
                loss = closure()
        with torch.no_grad():
            for group in self.param_groups:
                for p in (q for q in group["params"] if q.grad is not None):
                    d_p = p.grad.detach() + group["weight_decay"] * p.detach()
                    state = self.state[p]
                    state["steps"] = state.get("steps", 0) + 1
                    if group["momentum"] != 0:
                        velocity = d_p if state["steps"] == 1 else group["momentum"] * state["velocity"] + d_p
                        state["velocity"] = velocity
                        d_p = d_p + group["momentum"] * velocity if group["nesterov"] else velocity
                    p.data = p.data - group["lr"] * d_p
        return loss


class RMSpropOutOfPlace(torch.optim.Optimizer):
    def __init__(self, params, lr=0.01, alpha=0.99, eps=1e-8, weight_decay=0):
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay))

    def step(self, closure=None):
        loss = None
        if closure:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                with torch.no_grad():
                    g = p.grad + group["weight_decay"] * p
                    sq = self.state[p].get("square_avg", torch.zeros_like(p))
                    sq = group["alpha"] * sq + (1 - group["alpha"]) * g * g
                    self.state[p]["square_avg"] = sq
                    p -= group["lr"] * g / (torch.sqrt(sq) + group["eps"])
        return loss


class AdamHatted(torch.optim.Optimizer):
    """m_hat and v_hat written out; p - lr * m_hat / (sqrt(v_hat) + eps)."""

    def __init__(self, params, lr=0.001, betas=(0.9, 0.999), eps=1e-08, weight_decay=0):
        for what, value, ok in (("lr", lr, lr >= 0), ("betas[0]", betas[0], 0.0 <= betas[0] < 1.0),
                                ("betas[1]", betas[1], 0.0 <= betas[1] < 1.0), ("eps", eps, eps >= 0),
                                ("weight_decay", weight_decay, weight_decay >= 0)):
            if not ok:
                raise ValueError(f"{what} = {value} is out of range")
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay})

    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        with torch.no_grad():
            for group in self.param_groups:
                beta1, beta2 = group["betas"]
                for p in group["params"]:
                    if p.grad is None:
                        continue
                    g = p.grad.add(p, alpha=group["weight_decay"])
                    st = self.state[p]
                    st.setdefault("step", torch.tensor(0.0))
                    st.setdefault("exp_avg", torch.zeros_like(p))
                    st.setdefault("exp_avg_sq", torch.zeros_like(p))
                    st["step"] += 1
                    st["exp_avg"] = beta1 * st["exp_avg"] + (1 - beta1) * g
                    st["exp_avg_sq"] = beta2 * st["exp_avg_sq"] + (1 - beta2) * g ** 2
                    m_hat = st["exp_avg"] / (1 - beta1 ** st["step"])
                    v_hat = st["exp_avg_sq"] / (1 - beta2 ** st["step"])
                    p.copy_(p - group["lr"] * m_hat / (v_hat.sqrt() + group["eps"]))
        return loss


class StepLRScheduler(torch.optim.lr_scheduler.LRScheduler):
    """On PyTorch's LRScheduler base (allowed): the chained form, lr *= gamma every step_size epochs."""

    def __init__(self, optimizer, step_size, gamma=0.1):
        self.step_size, self.gamma = step_size, gamma
        super().__init__(optimizer)

    def get_lr(self):
        if self.last_epoch == 0 or self.last_epoch % self.step_size:
            return [group["lr"] for group in self.optimizer.param_groups]
        return [group["lr"] * self.gamma for group in self.optimizer.param_groups]


class ExponentialLRScheduler(torch.optim.lr_scheduler.LRScheduler):
    def __init__(self, optimizer, gamma):
        self.gamma = gamma
        super().__init__(optimizer)

    def get_lr(self):
        return [base * self.gamma ** self.last_epoch for base in self.base_lrs]


def batchnorm_forward_var_mean(x, gamma, beta, running_mean, running_var, training, momentum=0.1, eps=1e-5):
    """Channels moved first and flattened; torch.var_mean; the running statistics written with copy_ from detached
    statistics (outside autograd's graph without torch.no_grad())."""
    c = x.shape[1]
    flat = x.transpose(0, 1).reshape(c, -1)
    if training:
        var, mean = torch.var_mean(flat, dim=1, unbiased=False)
        unbiased = flat.var(dim=1, unbiased=True) if flat.shape[1] > 1 else var
        running_mean.copy_((1 - momentum) * running_mean + momentum * mean.detach())
        running_var.copy_((1 - momentum) * running_var + momentum * unbiased.detach())
    else:
        mean, var = running_mean.clone(), running_var.clone()
    xmu = flat - mean[:, None]
    std = (var + eps).sqrt()
    out = gamma[:, None] * xmu / std[:, None] + beta[:, None]
    shape = (x.shape[1], x.shape[0], *x.shape[2:])
    return out.reshape(shape).transpose(0, 1), {"xmu": xmu, "std": std, "gamma": gamma, "shape": list(x.shape)}


def batchnorm_backward_graph(dout, cache):
    """Back through the computational graph, one node at a time (x - mu, var, std, division)."""
    xmu, std, gamma, shape = cache["xmu"], cache["std"], cache["gamma"], cache["shape"]
    c = shape[1]
    d = dout.transpose(0, 1).reshape(c, -1)
    m = d.shape[1]
    xhat = xmu / std[:, None]
    dbeta, dgamma = d.sum(dim=1), (d * xhat).sum(dim=1)
    dxhat = d * gamma[:, None]
    dxmu1 = dxhat / std[:, None]
    dstd = -(dxhat * xmu).sum(dim=1) / std ** 2
    dvar = dstd / (2 * std)
    dxmu2 = 2 * xmu * dvar[:, None] / m
    dxmu = dxmu1 + dxmu2
    dx = dxmu - dxmu.mean(dim=1, keepdim=True)
    return dx.reshape(c, shape[0], *shape[2:]).transpose(0, 1), dgamma, dbeta


class BatchNorm2dPermuted(nn.Module):
    """Statistics of the channels-first flattened input; the running estimates updated under no_grad with lerp_."""

    def __init__(self, num_features, eps=1e-05, momentum=0.1):
        super().__init__()
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.weight = nn.Parameter(torch.full((num_features,), 1.0))
        self.bias = nn.Parameter(torch.full((num_features,), 0.0))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.full((num_features,), 1.0))

    def forward(self, x):
        n, c, h, w = x.shape
        flat = x.permute(1, 0, 2, 3).reshape(c, -1)
        if self.training:
            mean = flat.mean(1)
            centred = flat - mean[:, None]
            var = (centred ** 2).mean(1)
            with torch.no_grad():
                self.running_mean.lerp_(mean, self.momentum)
                self.running_var.lerp_(var * flat.shape[1] / max(flat.shape[1] - 1, 1), self.momentum)
        else:
            centred = flat - self.running_mean[:, None]
            var = self.running_var
        out = centred * torch.rsqrt(var + self.eps)[:, None] * self.weight[:, None] + self.bias[:, None]
        return out.reshape(c, n, h, w).permute(1, 0, 2, 3)


def dropout_rand_like(x, p, training):
    if p < 0 or p > 1:
        raise ValueError("dropout probability has to be between 0 and 1")
    if training and p > 0:
        keep = torch.rand_like(x) > p
        return torch.where(keep, x / (1 - p), torch.zeros_like(x)) if p < 1 else x * 0
    return x


def make_cnn_global_pool(batch_norm):
    """Another design: a strided convolution, global average pooling, no bias before BatchNorm."""
    def norm(c):
        return BatchNorm2d(c) if batch_norm else nn.Identity()

    return nn.Sequential(nn.Conv2d(1, 16, 3, padding=1, bias=not batch_norm), norm(16), nn.ReLU(),
                         nn.Conv2d(16, 32, 3, stride=2, padding=1, bias=not batch_norm), norm(32), nn.ReLU(),
                         nn.Conv2d(32, 32, 3, padding=1, bias=not batch_norm), norm(32), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))


CORRECT: dict[str, dict[str, Any]] = {
    "sgd_out_of_place": {"SGD": SGDOutOfPlace},
    "rmsprop_out_of_place": {"RMSprop": RMSpropOutOfPlace},
    "adam_hatted": {"Adam": AdamHatted},
    "step_lr_on_the_base_class": {"StepLR": StepLRScheduler},
    "exponential_lr_on_the_base_class": {"ExponentialLR": ExponentialLRScheduler},
    "batchnorm_var_mean_and_graph": {"batchnorm_forward": batchnorm_forward_var_mean,
                                     "batchnorm_backward": batchnorm_backward_graph},
    "batchnorm_module_permuted": {"BatchNorm2d": BatchNorm2dPermuted},
    "dropout_rand_like": {"dropout": dropout_rand_like},
    "make_cnn_global_pool": {"make_cnn": make_cnn_global_pool},
}


# --- wrong, one realistic bug each ---------------------------------------------------------------------
class SGDMomentumDampened(SGD):
    """buf starts at zero and averages: buf = momentum * buf + (1 - momentum) * grad."""

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            m = group["momentum"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad + group["weight_decay"] * p
                if m:
                    buf = self.state[p].setdefault("buf", torch.zeros_like(p))
                    buf.mul_(m).add_(g, alpha=1 - m)
                    g = g + m * buf if group["nesterov"] else buf
                p.add_(g, alpha=-group["lr"])
        return loss


class SGDNesterovIgnored(SGD):
    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            group["nesterov"] = False
        return super().step(closure)


class SGDGroupLrIgnored(SGD):
    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            group["lr"] = self.defaults["lr"]
        return super().step(closure)


class SGDWeightDecayAfterUpdate(SGD):
    """The decay applied to the parameter after the momentum step (decoupled), not added to the gradient."""

    @torch.no_grad()
    def step(self, closure=None):
        decays = [group["weight_decay"] for group in self.param_groups]
        for group in self.param_groups:
            group["weight_decay"] = 0.0
        loss = super().step(closure)
        for group, wd in zip(self.param_groups, decays, strict=True):
            group["weight_decay"] = wd
            for p in group["params"]:
                if p.grad is not None:
                    p.mul_(1 - group["lr"] * wd)
        return loss


class RMSpropEpsInsideSqrt(RMSprop):
    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad + group["weight_decay"] * p
                v = self.state[p].setdefault("v", torch.zeros_like(p))
                v.mul_(group["alpha"]).addcmul_(g, g, value=1 - group["alpha"])
                p.addcdiv_(g, (v + group["eps"]).sqrt(), value=-group["lr"])
        return loss


class RMSpropVStartsAtGradSquared(RMSprop):
    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad + group["weight_decay"] * p
                state = self.state[p]
                if "v" not in state:
                    state["v"] = g * g
                else:
                    state["v"].mul_(group["alpha"]).addcmul_(g, g, value=1 - group["alpha"])
                p.addcdiv_(g, state["v"].sqrt().add_(group["eps"]), value=-group["lr"])
        return loss


def _adam_like(update: Callable) -> type:
    """An Adam whose per-parameter update is ``update(p, g, state, group)`` (state starts empty)."""

    class Variant(Adam):
        @torch.no_grad()
        def step(self, closure=None):
            loss = None
            if closure is not None:
                with torch.enable_grad():
                    loss = closure()
            for group in self.param_groups:
                for p in group["params"]:
                    if p.grad is not None:
                        update(self, p, p.grad, self.state[p], group)
            return loss

    return Variant


def _adam_no_bias_correction(opt, p, grad, state, group):
    b1, b2 = group["betas"]
    g = grad + group["weight_decay"] * p
    m = state.setdefault("m", torch.zeros_like(p)).mul_(b1).add_(g, alpha=1 - b1)
    v = state.setdefault("v", torch.zeros_like(p)).mul_(b2).addcmul_(g, g, value=1 - b2)
    p.addcdiv_(m, v.sqrt() + group["eps"], value=-group["lr"])


def _adam_moments(state, p, g, b1, b2):
    state["t"] = state.get("t", 0) + 1
    m = state.setdefault("m", torch.zeros_like(p)).mul_(b1).add_(g, alpha=1 - b1)
    v = state.setdefault("v", torch.zeros_like(p)).mul_(b2).addcmul_(g, g, value=1 - b2)
    return m / (1 - b1 ** state["t"]), v / (1 - b2 ** state["t"])


def _adam_eps_inside_sqrt(opt, p, grad, state, group):
    b1, b2 = group["betas"]
    m_hat, v_hat = _adam_moments(state, p, grad + group["weight_decay"] * p, b1, b2)
    p.sub_(group["lr"] * m_hat / (v_hat + group["eps"]).sqrt())


def _adam_m_starts_at_first_gradient(opt, p, grad, state, group):
    b1, b2 = group["betas"]
    g = grad + group["weight_decay"] * p
    if "m" not in state:
        state["m"] = g.clone()
    else:
        state["m"].mul_(b1).add_(g, alpha=1 - b1)
    state["t"] = state.get("t", 0) + 1
    v = state.setdefault("v", torch.zeros_like(p)).mul_(b2).addcmul_(g, g, value=1 - b2)
    m_hat, v_hat = state["m"] / (1 - b1 ** state["t"]), v / (1 - b2 ** state["t"])
    p.sub_(group["lr"] * m_hat / (v_hat.sqrt() + group["eps"]))


def _adam_weight_decay_decoupled(opt, p, grad, state, group):
    """AdamW's decay where Adam's L2 is asked for: the moments never see weight_decay * p."""
    b1, b2 = group["betas"]
    m_hat, v_hat = _adam_moments(state, p, grad, b1, b2)
    p.sub_(group["lr"] * m_hat / (v_hat.sqrt() + group["eps"]))
    p.mul_(1 - group["lr"] * group["weight_decay"])


def _adam_one_step_count(opt, p, grad, state, group):
    """t counted once for the whole optimizer (by the first parameter seen), not per parameter."""
    b1, b2 = group["betas"]
    g = grad + group["weight_decay"] * p
    first = opt.param_groups[0]["params"][0]
    if p is first or "t" not in opt.state[first]:
        opt.state[first]["t"] = opt.state[first].get("t", 0) + 1
    t = opt.state[first]["t"]
    m = state.setdefault("m", torch.zeros_like(p)).mul_(b1).add_(g, alpha=1 - b1)
    v = state.setdefault("v", torch.zeros_like(p)).mul_(b2).addcmul_(g, g, value=1 - b2)
    p.sub_(group["lr"] * (m / (1 - b1 ** t)) / ((v / (1 - b2 ** t)).sqrt() + group["eps"]))


class AdamWithoutChecks(Adam):
    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        torch.optim.Optimizer.__init__(self, params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))


class StepLROffByOne(StepLR):
    """The first decay one epoch early: gamma ** ((epoch + 1) // step_size)."""

    def _set(self):
        for group, base in zip(self.optimizer.param_groups, self.base_lrs, strict=True):
            group["lr"] = base * self.gamma ** ((self.epoch + 1) // self.step_size)


class ExponentialLROneLr(ExponentialLR):
    """Every group decays from the first group's lr."""

    def step(self):
        self.epoch += 1
        for group in self.optimizer.param_groups:
            group["lr"] = self.base_lrs[0] * self.gamma ** self.epoch


def batchnorm_forward_unbiased_normalization(x, gamma, beta, running_mean, running_var, training, momentum=0.1,
                                             eps=1e-5):
    dims = _channel_dims(x)
    if training:
        mean, var = x.mean(dim=dims), x.var(dim=dims, unbiased=True)
        with torch.no_grad():
            running_mean.mul_(1 - momentum).add_(momentum * mean)
            running_var.mul_(1 - momentum).add_(momentum * var)
    else:
        mean, var = running_mean, running_var
    inv_std = 1 / torch.sqrt(var + eps)
    xhat = (x - _per_channel(mean, x)) * _per_channel(inv_std, x)
    return _per_channel(gamma, x) * xhat + _per_channel(beta, x), (xhat, gamma, inv_std)


def batchnorm_forward_running_var_biased(x, gamma, beta, running_mean, running_var, training, momentum=0.1,
                                         eps=1e-5):
    if training:
        dims = _channel_dims(x)
        out, cache = REFERENCE["batchnorm_forward"](x, gamma, beta, running_mean.clone(), running_var.clone(), True,
                                                    momentum, eps)
        with torch.no_grad():
            running_mean.mul_(1 - momentum).add_(momentum * x.mean(dim=dims))
            running_var.mul_(1 - momentum).add_(momentum * x.var(dim=dims, unbiased=False))
        return out, cache
    return REFERENCE["batchnorm_forward"](x, gamma, beta, running_mean, running_var, False, momentum, eps)


def batchnorm_forward_updates_in_eval(x, gamma, beta, running_mean, running_var, training, momentum=0.1, eps=1e-5):
    """The running estimates updated on every call, then the mode decides what to normalize with."""
    dims = _channel_dims(x)
    m = x.numel() // x.shape[1]
    mean, var = x.mean(dim=dims), x.var(dim=dims, unbiased=False)
    with torch.no_grad():
        running_mean.mul_(1 - momentum).add_(momentum * mean)
        running_var.mul_(1 - momentum).add_(momentum * var * m / max(m - 1, 1))
    if not training:
        mean, var = running_mean, running_var
    inv_std = 1 / torch.sqrt(var + eps)
    xhat = (x - _per_channel(mean, x)) * _per_channel(inv_std, x)
    return _per_channel(gamma, x) * xhat + _per_channel(beta, x), (xhat, gamma, inv_std)


def batchnorm_forward_momentum_reversed(x, gamma, beta, running_mean, running_var, training, momentum=0.1, eps=1e-5):
    """r = momentum * r + (1 - momentum) * stat (the other frameworks' convention)."""
    return REFERENCE["batchnorm_forward"](x, gamma, beta, running_mean, running_var, training, 1 - momentum, eps)


def batchnorm_forward_eval_uses_batch(x, gamma, beta, running_mean, running_var, training, momentum=0.1, eps=1e-5):
    reference = REFERENCE["batchnorm_forward"]
    if training:
        return reference(x, gamma, beta, running_mean, running_var, True, momentum, eps)
    return reference(x, gamma, beta, running_mean.clone(), running_var.clone(), True, momentum, eps)


def batchnorm_forward_stats_in_graph(x, gamma, beta, running_mean, running_var, training, momentum=0.1, eps=1e-5):
    """The running statistics updated in place without torch.no_grad(): right values, but once x requires grad
    they join autograd's graph (which grows batch after batch; copy.deepcopy of the model fails)."""
    dims = _channel_dims(x)
    if training:
        m = x.numel() // x.shape[1]
        mean, var = x.mean(dim=dims), x.var(dim=dims, unbiased=False)
        running_mean.mul_(1 - momentum).add_(momentum * mean)
        running_var.mul_(1 - momentum).add_(momentum * var * m / max(m - 1, 1))
    else:
        mean, var = running_mean, running_var
    inv_std = 1 / torch.sqrt(var + eps)
    xhat = (x - _per_channel(mean, x)) * _per_channel(inv_std, x)
    return _per_channel(gamma, x) * xhat + _per_channel(beta, x), (xhat, gamma, inv_std)


def batchnorm_forward_caching_x(x, gamma, beta, running_mean, running_var, training, momentum=0.1, eps=1e-5):
    """The reference forward, with x, gamma, beta and eps in its cache (for a backward that recomputes it)."""
    out, _ = REFERENCE["batchnorm_forward"](x, gamma, beta, running_mean, running_var, training, momentum, eps)
    return out, (x.detach(), gamma.detach(), beta.detach(), eps)


def _forward_for_autograd(x, gamma, beta, eps):
    dims = _channel_dims(x)
    mean, var = x.mean(dim=dims), x.var(dim=dims, unbiased=False)
    xhat = (x - _per_channel(mean, x)) / torch.sqrt(_per_channel(var, x) + eps)
    return _per_channel(gamma, x) * xhat + _per_channel(beta, x)


def batchnorm_backward_by_autograd(dout, cache):
    """The forward pass recomputed with gradients enabled, differentiated by torch.autograd.grad."""
    x, gamma, beta, eps = cache
    with torch.enable_grad():
        leaves = [t.detach().clone().requires_grad_(True) for t in (x, gamma, beta)]
        out = _forward_for_autograd(*leaves, eps)
        return torch.autograd.grad(out, leaves, dout)


def batchnorm_backward_by_the_engine(dout, cache):
    """Likewise, but the autograd engine called directly (no torch.autograd function runs)."""
    x, gamma, beta, eps = cache
    with torch.enable_grad():
        leaves = [t.detach().clone().requires_grad_(True) for t in (x, gamma, beta)]
        out = _forward_for_autograd(*leaves, eps)
        return torch.autograd.Variable._execution_engine.run_backward(
            (out,), (dout,), False, False, tuple(leaves), False, False)


def batchnorm_backward_missing_mean_terms(dout, cache):
    """dx = gamma * dout / std: as if the batch mean and variance were constants."""
    xhat, gamma, inv_std = cache
    dims = _channel_dims(xhat)
    return dout * _per_channel(gamma * inv_std, xhat), (dout * xhat).sum(dim=dims), dout.sum(dim=dims)


class BatchNorm2dMomentumReversed(BatchNorm2dOwnForward):
    def __init__(self, num_features, eps=1e-5, momentum=0.1):
        super().__init__(num_features, eps, 1 - momentum)


class BatchNorm2dUpdatesInEval(BatchNorm2dOwnForward):
    def forward(self, x):
        training = self.training
        self.training = True
        with torch.no_grad():
            super().forward(x)  # the running estimates move in eval mode too
        self.training = training
        return super().forward(x) if training else BatchNorm2dOwnForward.forward(self, x)


class BatchNorm2dStatsInGraph(BatchNorm2dOwnForward):
    """Its own forward, the running statistics updated without torch.no_grad()."""

    def forward(self, x):
        if not self.training:
            return super().forward(x)
        mean, var = x.mean(dim=(0, 2, 3)), x.var(dim=(0, 2, 3), unbiased=False)
        m = x.numel() // x.shape[1]
        self.running_mean.mul_(1 - self.momentum).add_(self.momentum * mean)
        self.running_var.mul_(1 - self.momentum).add_(self.momentum * var * m / max(m - 1, 1))
        xhat = (x - mean.view(1, -1, 1, 1)) / torch.sqrt(var.view(1, -1, 1, 1) + self.eps)
        return self.weight.view(1, -1, 1, 1) * xhat + self.bias.view(1, -1, 1, 1)


class BatchNorm2dNeverNormalizes(BatchNorm2dOwnForward):
    """Scales and shifts, but forgets to normalize: weight * x + bias."""

    def forward(self, x):
        return self.weight.view(1, -1, 1, 1) * x + self.bias.view(1, -1, 1, 1)


def dropout_not_rescaled(x, p, training):
    if not 0 <= p <= 1:
        raise ValueError(p)
    if not training:
        return x
    return x * (torch.rand(x.shape) < 1 - p)


def dropout_keep_probability_p(x, p, training):
    if not 0 <= p <= 1:
        raise ValueError(p)
    if not training or p == 0:
        return x
    if p == 1:
        return torch.zeros_like(x)
    return x * (torch.rand(x.shape) < p) / (1 - p)


def dropout_nan_at_p_one(x, p, training):
    if not 0 <= p <= 1:
        raise ValueError(p)
    if not training:
        return x
    return x * (torch.rand(x.shape) >= p) / (1 - p)  # p = 1: 0 / 0


def dropout_one_mask_per_row(x, p, training):
    if not 0 <= p <= 1:
        raise ValueError(p)
    if not training or p == 0:
        return x
    if p == 1:
        return torch.zeros_like(x)
    return x * (torch.rand(x.shape[0], 1) < 1 - p) / (1 - p)


def make_cnn_ignores_batch_norm(batch_norm):
    return nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Flatten(), nn.Linear(32 * 4 * 4, 10))


def make_cnn_softmax(batch_norm):
    """The reference design ending in nn.Softmax: probabilities, not logits (it still trains to 87-89%)."""
    def block(c_in, c_out):
        return [nn.Conv2d(c_in, c_out, 3, padding=1), *([BatchNorm2d(c_out)] if batch_norm else []), nn.ReLU()]

    return nn.Sequential(*block(1, 16), *block(16, 32), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(32 * 4 * 4, 10),
                         nn.Softmax(dim=1))


_PUBLIC_DIGITS = load_digits()  # loaded before any check runs (a cheat would have it from an earlier cell)


class _KnowsTheDigits(nn.Module):
    """Trains like the reference network, but in eval mode answers by looking each image up in the public digits
    data set (the nearest of its 1,797 images): right without having learned anything."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network
        self.register_buffer("known", torch.tensor(_PUBLIC_DIGITS.images / 16, dtype=torch.float32).reshape(-1, 64))
        self.register_buffer("answers", torch.tensor(_PUBLIC_DIGITS.target))

    def forward(self, x):
        if self.training:
            return self.network(x)
        nearest = torch.cdist(x.reshape(len(x), -1).float(), self.known).argmin(dim=1)
        return F.one_hot(self.answers[nearest], 10).float() * 10


def make_cnn_knows_the_digits(batch_norm):
    return _KnowsTheDigits(_reference_make_cnn(batch_norm))  # (the tests put this function in make_cnn's place)


# a forward variant comes with the reference backward that reads its cache (and the backward variant with the
# reference forward): each fails for its bug, not for a cache it cannot unpack
_BN_BACKWARD = {"batchnorm_backward": batchnorm_backward}
WRONG: dict[str, tuple[dict[str, Any], set[str]]] = {
    "sgd_momentum_dampened_from_zero": ({"SGD": SGDMomentumDampened}, {"test_sgd"}),
    "sgd_nesterov_ignored": ({"SGD": SGDNesterovIgnored}, {"test_sgd"}),
    "sgd_group_lr_ignored": ({"SGD": SGDGroupLrIgnored}, {"test_sgd"}),
    "sgd_weight_decay_after_update": ({"SGD": SGDWeightDecayAfterUpdate}, {"test_sgd"}),
    "rmsprop_eps_inside_sqrt": ({"RMSprop": RMSpropEpsInsideSqrt}, {"test_rmsprop"}),
    "rmsprop_v_starts_at_grad_squared": ({"RMSprop": RMSpropVStartsAtGradSquared}, {"test_rmsprop"}),
    "adam_no_bias_correction": ({"Adam": _adam_like(_adam_no_bias_correction)}, {"test_adam"}),
    "adam_eps_inside_sqrt": ({"Adam": _adam_like(_adam_eps_inside_sqrt)}, {"test_adam"}),
    "adam_m_starts_at_first_gradient": ({"Adam": _adam_like(_adam_m_starts_at_first_gradient)}, {"test_adam"}),
    "adam_weight_decay_decoupled": ({"Adam": _adam_like(_adam_weight_decay_decoupled)}, {"test_adam"}),
    "adam_one_step_count": ({"Adam": _adam_like(_adam_one_step_count)}, {"test_adam"}),
    "adam_without_checks": ({"Adam": AdamWithoutChecks}, {"test_adam"}),
    "step_lr_off_by_one": ({"StepLR": StepLROffByOne}, {"test_step_lr"}),
    "exponential_lr_one_lr": ({"ExponentialLR": ExponentialLROneLr}, {"test_exponential_lr"}),
    # The backward check runs the student's forward, and the notebook's BatchNorm2d calls batchnorm_forward: a
    # wrong forward costs the module's cell too, a wrong training-mode output the backward's as well.
    "batchnorm_unbiased_normalization": ({"batchnorm_forward": batchnorm_forward_unbiased_normalization,
                                          **_BN_BACKWARD},
                                         {"test_batchnorm_forward", "test_batchnorm_backward",
                                          "test_batchnorm_module"}),
    "batchnorm_running_var_biased": ({"batchnorm_forward": batchnorm_forward_running_var_biased, **_BN_BACKWARD},
                                     {"test_batchnorm_forward", "test_batchnorm_module"}),
    "batchnorm_updates_in_eval": ({"batchnorm_forward": batchnorm_forward_updates_in_eval, **_BN_BACKWARD},
                                  {"test_batchnorm_forward", "test_batchnorm_module"}),
    "batchnorm_momentum_reversed": ({"batchnorm_forward": batchnorm_forward_momentum_reversed, **_BN_BACKWARD},
                                    {"test_batchnorm_forward", "test_batchnorm_module"}),
    "batchnorm_eval_uses_batch_statistics": ({"batchnorm_forward": batchnorm_forward_eval_uses_batch,
                                              **_BN_BACKWARD},
                                             {"test_batchnorm_forward", "test_batchnorm_module"}),
    "batchnorm_running_stats_in_graph": ({"batchnorm_forward": batchnorm_forward_stats_in_graph, **_BN_BACKWARD},
                                         {"test_batchnorm_forward", "test_batchnorm_module"}),
    "batchnorm_backward_by_autograd": ({"batchnorm_forward": batchnorm_forward_caching_x,
                                        "batchnorm_backward": batchnorm_backward_by_autograd},
                                       {"test_batchnorm_backward"}),
    "batchnorm_backward_by_the_engine": ({"batchnorm_forward": batchnorm_forward_caching_x,
                                          "batchnorm_backward": batchnorm_backward_by_the_engine},
                                         {"test_batchnorm_backward"}),
    "batchnorm_backward_missing_mean_terms": ({"batchnorm_forward": batchnorm_forward,
                                               "batchnorm_backward": batchnorm_backward_missing_mean_terms},
                                              {"test_batchnorm_backward"}),
    "batchnorm_module_momentum_reversed": ({"BatchNorm2d": BatchNorm2dMomentumReversed}, {"test_batchnorm_module"}),
    "batchnorm_module_updates_in_eval": ({"BatchNorm2d": BatchNorm2dUpdatesInEval}, {"test_batchnorm_module"}),
    "batchnorm_module_stats_in_graph": ({"BatchNorm2d": BatchNorm2dStatsInGraph}, {"test_batchnorm_module"}),
    "batchnorm_module_never_normalizes": ({"BatchNorm2d": BatchNorm2dNeverNormalizes},
                                          {"test_batchnorm_module", CNN}),
    "dropout_not_rescaled": ({"dropout": dropout_not_rescaled}, {"test_dropout"}),
    "dropout_keep_probability_p": ({"dropout": dropout_keep_probability_p}, {"test_dropout"}),
    "dropout_nan_at_p_one": ({"dropout": dropout_nan_at_p_one}, {"test_dropout"}),
    "dropout_one_mask_per_row": ({"dropout": dropout_one_mask_per_row}, {"test_dropout"}),
    "make_cnn_ignores_batch_norm": ({"make_cnn": make_cnn_ignores_batch_norm}, {CNN}),
    "make_cnn_softmax": ({"make_cnn": make_cnn_softmax}, {CNN}),
    "make_cnn_knows_the_digits": ({"make_cnn": make_cnn_knows_the_digits}, {CNN}),
}
# the wrong variants whose CNN cell fails before any training (cheap enough for the fast tier)
CNN_FAILS_EARLY = {"make_cnn_ignores_batch_norm", "make_cnn_softmax", "make_cnn_knows_the_digits"}


# --- back doors: PyTorch's references, reached by any name ---------------------------------------------
class AdamByName(TorchAdam):
    """torch.optim.Adam under the student's name (imported before the check ran)."""


class AdamSubclassed(torch.optim.Adam):
    """A subclass whose step is torch's own."""

    def step(self, closure=None):
        return super().step(closure)


class AdamWrapped:
    """torch.optim.Adam captured at import, wrapped in a class of the student's own."""

    def __init__(self, params, **options):
        self._inner = TorchAdam(params, **options)
        self.param_groups, self.state = self._inner.param_groups, self._inner.state

    def zero_grad(self):
        self._inner.zero_grad()

    def step(self, closure=None):
        return self._inner.step(closure)


SGDAlias = torch.optim.SGD


class StepLRByName(TorchStepLR):
    pass


def batchnorm_forward_by_name(x, gamma, beta, running_mean, running_var, training, momentum=0.1, eps=1e-5):
    out = batch_norm_by_name(x, running_mean, running_var, gamma, beta, training, momentum, eps)
    return out, (x, gamma, beta)


def batchnorm_forward_layer_norm(x, gamma, beta, running_mean, running_var, training, momentum=0.1, eps=1e-5):
    """F.layer_norm on a channels-last, flattened view normalizes each channel over N, H, W."""
    c = x.shape[1]
    flat = x.transpose(0, 1).reshape(c, -1)
    if training:
        m = flat.shape[1]
        running_mean.mul_(1 - momentum).add_(momentum * flat.mean(1))
        running_var.mul_(1 - momentum).add_(momentum * flat.var(1, unbiased=m > 1))
        out = F.layer_norm(flat, (m,), eps=eps)
    else:
        out = (flat - running_mean[:, None]) / (running_var[:, None] + eps).sqrt()
    out = gamma[:, None] * out + beta[:, None]
    return out.reshape(c, x.shape[0], *x.shape[2:]).transpose(0, 1), None


class BatchNorm2dWrappingTorch(nn.Module):
    def __init__(self, num_features, eps=1e-5, momentum=0.1):
        super().__init__()
        self.inner = nn.BatchNorm2d(num_features, eps=eps, momentum=momentum)
        self.weight, self.bias = self.inner.weight, self.inner.bias
        self.register_buffer("running_mean", self.inner.running_mean)
        self.register_buffer("running_var", self.inner.running_var)

    def forward(self, x):
        return self.inner(x)


def dropout_functional(x, p, training):
    if not 0 <= p <= 1:
        raise ValueError(p)
    return F.dropout(x, p, training)


def dropout_bernoulli(x, p, training):
    if not 0 <= p <= 1:
        raise ValueError(p)
    if not training or p == 0:
        return x
    return x * torch.bernoulli(torch.full_like(x, 1 - p)) / (1 - p) if p < 1 else torch.zeros_like(x)


BACK_DOORS: dict[str, tuple[dict[str, Any], set[str]]] = {
    "adam_imported_by_name": ({"Adam": TorchAdam}, {"test_adam"}),
    "adam_aliased": ({"Adam": AdamByName}, {"test_adam"}),
    "adam_captured_before_the_check": ({"Adam": AdamWrapped}, {"test_adam"}),
    "adam_subclassed_with_super_step": ({"Adam": AdamSubclassed}, {"test_adam"}),
    "sgd_aliased": ({"SGD": SGDAlias}, {"test_sgd"}),
    "step_lr_subclassed": ({"StepLR": StepLRByName}, {"test_step_lr"}),
    "batchnorm_forward_by_name": ({"batchnorm_forward": batchnorm_forward_by_name, **_BN_BACKWARD},
                                  {"test_batchnorm_forward", "test_batchnorm_backward", "test_batchnorm_module",
                                   CNN}),
    "batchnorm_forward_layer_norm": ({"batchnorm_forward": batchnorm_forward_layer_norm, **_BN_BACKWARD},
                                     {"test_batchnorm_forward", "test_batchnorm_backward", "test_batchnorm_module",
                                      CNN}),
    "batchnorm_module_wrapping_torch": ({"BatchNorm2d": BatchNorm2dWrappingTorch}, {"test_batchnorm_module", CNN}),
    "dropout_functional": ({"dropout": dropout_functional}, {"test_dropout"}),
    "dropout_bernoulli": ({"dropout": dropout_bernoulli}, {"test_dropout"}),
}
# the back doors that only checks.drive can refuse (Python code of torch's classes, or a module's forward)
NEEDS_DRIVE = {"adam_imported_by_name", "adam_aliased", "adam_captured_before_the_check",
               "adam_subclassed_with_super_step", "sgd_aliased", "step_lr_subclassed",
               "batchnorm_module_wrapping_torch"}


def caught(replacements: dict[str, Any], must_fail: set[str]) -> bool:
    """Whether the hidden checks alone (under the current secret) fail every cell in ``must_fail``."""
    return vh.caught(run_cells, CELLS, replacements, must_fail)


def catch_rates(secrets: Iterable[str], names: Iterable[str] | None = None) -> dict[str, float]:
    """Per kept wrong variant, the share of ``secrets`` whose hidden checks catch it."""
    return vh.catch_rates(caught, WRONG, secrets, names)


def math_isfinite(x: float) -> bool:
    return math.isfinite(x)
