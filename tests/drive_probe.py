"""A stand-in checks module with a driver, for the tests of ``checks.drive`` across the grading wire.

A driver must be a top-level class of a ``course_utils.checks.<module>``: :func:`install` puts this one in
``sys.modules`` under such a name, in the test's process (the grader) and, through a cell, in the worker.
"""

from __future__ import annotations

import sys
import types

NAME = "course_utils.checks._drive_probe"

SOURCE = '''
import torch
from course_utils import checks


class Steps:
    """Builds the student's optimizer on a fresh parameter, steps it with the given gradients."""

    def __init__(self, start, grads, lr):
        self.start, self.grads, self.lr = start, grads, lr

    def __wire__(self):
        return {"start": self.start, "grads": self.grads, "lr": self.lr}

    def __call__(self, student):
        p = torch.nn.Parameter(self.start.clone())
        optimizer = student([p], lr=self.lr)
        for grad in self.grads:
            p.grad = grad.clone()
            optimizer.step()
        return {"p": p.detach(), "steps": len(self.grads)}


class NoWire:
    def __call__(self, student):
        return student


def scenario():
    return Steps(torch.ones(3), [torch.full((3,), float(i)) for i in range(4)], 0.1)


@checks.check(refuse=("bernoulli",), refuse_code=("torch.optim.sgd", "torch.optim.adam"),
              why="write the update yourself")
def check_sgd(SGD):
    got, ops = checks.drive_counted(SGD, scenario())
    expected = scenario()(torch.optim.SGD)
    if not torch.allclose(got["p"], expected["p"]) or got["steps"] != 4 or ops <= 0:
        raise checks.CheckFailure(f"expected {expected}, got {got} ({ops} operators)")
    checks.passed("SGD", 1)
'''

CELL = (f"import sys, types\n_m = types.ModuleType({NAME!r})\nexec({SOURCE!r}, _m.__dict__)\n"
        f"sys.modules[{NAME!r}] = _m\n")  # the same module in the worker, made by a cell


def install() -> types.ModuleType:
    """The probe module, made (once) and registered in this process's ``sys.modules``."""
    if NAME not in sys.modules:
        module = types.ModuleType(NAME)
        exec(SOURCE, module.__dict__)
        sys.modules[NAME] = module
    return sys.modules[NAME]
