"""Refused Python code (``refuse_code``): every way to torch.optim's own optimizers and schedulers is refused
during a guarded call, their base classes stay usable, and nothing changes outside the call.

The wrong answers below reach ``torch.optim.Adam`` (or SGD, StepLR) another way each; the right ones
subclass ``torch.optim.Optimizer`` / ``LRScheduler`` as the assignment asks. ``drive`` is exercised
here locally; through the grading worker in tests/test_session.py.
"""

from __future__ import annotations

import concurrent.futures
import functools
import importlib.util
import sys
import threading
import time

import pytest
import torch
from torch.optim import Adam as _imported_adam  # a name taken before any check runs

from course_utils import checks
from course_utils.checks import ForbiddenReference
from course_utils.checks.codeguard import code_rules, resolve
from course_utils.checks.guard import guarded_call, install

REFUSED = ("torch.optim.sgd", "torch.optim.adam", "torch.optim.lr_scheduler.StepLR")
_captured = torch.optim.Adam
_alias_module = torch.optim


def _param(n: int = 3) -> torch.nn.Parameter:
    return torch.nn.Parameter(torch.ones(n))


# --- wrong answers: torch's own code, reached in every way ----------------------------------------------------------
def by_imported_name():
    return _imported_adam([_param()], lr=0.1)


def by_module_alias():
    return _alias_module.Adam([_param()])


def by_captured_reference():
    return _captured([_param()])


class SubclassCallingSuper(torch.optim.Adam):
    """Skips Adam.__init__ (so only step can be refused), then lets Adam's step do the work."""

    def __init__(self, params, lr=1e-3):
        torch.optim.Optimizer.__init__(self, params, dict(lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                                                          amsgrad=False, maximize=False, foreach=None,
                                                          capturable=False, differentiable=False, fused=None,
                                                          decoupled_weight_decay=False))

    def step(self, closure=None):
        return super().step(closure)


def by_subclass_super_step():
    p = _param()
    opt = SubclassCallingSuper([p], lr=0.1)
    p.grad = torch.ones(3)
    opt.step()
    return p


def by_getattr_string():
    return getattr(torch.optim, "Ad" + "am")([_param()])


def by_partial():
    return functools.partial(torch.optim.SGD, lr=0.1)([_param()])


def _helper(params):
    return torch.optim.Adam(params)


def by_helper():
    return _helper([_param()])


@torch.no_grad()
def by_functional_adam():  # the module's functions, not only its class
    p = _param()
    adam = importlib.import_module("torch.optim.adam").adam
    adam([p], [torch.ones(3)], [torch.zeros(3)], [torch.zeros(3)], [], [torch.tensor(0.0)], amsgrad=False, beta1=0.9,
         beta2=0.999, lr=0.1, weight_decay=0.0, eps=1e-8, maximize=False)
    return p


def by_fresh_copy_of_the_module():  # the module's file loaded again: new code objects, same file
    path = importlib.import_module("torch.optim.adam").__file__
    spec = importlib.util.spec_from_file_location("torch.optim._adam_copy", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.Adam([_param()])


def by_step_lr():
    return torch.optim.lr_scheduler.StepLR(torch.optim.Optimizer([_param()], {"lr": 1.0}), step_size=2)


def by_catching_the_refusal_and_trying_again():
    try:
        by_imported_name()
    except ForbiddenReference:
        pass
    return by_imported_name()


def by_a_thread_started_in_the_call():
    box = []

    def run():
        try:
            box.append(by_imported_name())
        except ForbiddenReference as refused:  # caught in the thread: the call is refused all the same
            box.append(refused)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    return box


WRONG = [by_imported_name, by_module_alias, by_captured_reference, by_subclass_super_step, by_getattr_string,
         by_partial, by_helper, by_functional_adam, by_fresh_copy_of_the_module, by_step_lr,
         by_catching_the_refusal_and_trying_again, by_a_thread_started_in_the_call]


@pytest.mark.parametrize("wrong", WRONG, ids=lambda f: f.__name__)
def test_every_way_to_torchs_own_code_is_refused(wrong):
    with pytest.raises(ForbiddenReference, match="cannot be used in this answer"):
        guarded_call(wrong, refuse_code=REFUSED)
    wrong()  # outside a guarded call, nothing is refused
    assert sys.getprofile() is None


def test_an_executor_started_before_the_call_is_refused_and_then_blocks_calls_while_it_runs():
    install()  # as the worker does before any student code: threads started from now on are guarded too
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(lambda: None).result()  # its thread waits for work before the call

        def by_the_executor():
            return pool.submit(by_captured_reference).result()

        with pytest.raises(ForbiddenReference, match="torch.optim.adam.Adam.__init__"):
            guarded_call(by_the_executor, refuse_code=REFUSED)
        # CPython unset the hook in that thread when it refused: the thread runs unguarded from now on
        with pytest.raises(ForbiddenReference, match="a thread of your code ran refused code and still runs"):
            guarded_call(train, (MySGD, MyStepLR), refuse_code=REFUSED)
    guarded_call(train, (MySGD, MyStepLR), refuse_code=REFUSED)  # once it has ended, calls run again


def test_the_message_names_the_code_and_the_refused_name():
    with pytest.raises(ForbiddenReference) as refused:
        guarded_call(by_captured_reference, refuse_code=REFUSED, why="write the update yourself")
    assert str(refused.value) == ("torch.optim.adam.Adam.__init__ (the check refuses torch.optim.adam) cannot be "
                                  "used in this answer: write the update yourself")
    with pytest.raises(ForbiddenReference) as refused:
        guarded_call(by_step_lr, refuse_code=REFUSED)
    assert str(refused.value).startswith("torch.optim.lr_scheduler.StepLR.__init__ (the check refuses "
                                         "torch.optim.lr_scheduler.StepLR) cannot be used in this answer")


# --- right answers: the base classes, subclassed ----------------------------------------------------------------------
class MySGD(torch.optim.Optimizer):
    def __init__(self, params, lr, momentum=0.0):
        super().__init__(params, dict(lr=lr, momentum=momentum))

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
                state = self.state[p]
                buf = state.get("buf")
                buf = p.grad.clone() if buf is None else buf.mul_(group["momentum"]).add_(p.grad)
                state["buf"] = buf
                p.add_(buf, alpha=-group["lr"])
        return loss


class MyStepLR(torch.optim.lr_scheduler.LRScheduler):
    def __init__(self, optimizer, step_size, gamma=0.1):
        self.step_size, self.gamma = step_size, gamma
        super().__init__(optimizer)

    def get_lr(self):
        return [base * self.gamma ** (self.last_epoch // self.step_size) for base in self.base_lrs]


def train(optimizer_class, scheduler_class, steps=20):
    torch.manual_seed(0)
    p = torch.nn.Parameter(torch.randn(5))
    optimizer = optimizer_class([p], lr=0.1, momentum=0.9)
    scheduler = scheduler_class(optimizer, step_size=5, gamma=0.5)
    for _ in range(steps):
        optimizer.zero_grad()
        loss = (p ** 2).sum()
        loss.backward()
        optimizer.step(lambda: (p ** 2).sum())
        scheduler.step()
    return p.detach(), scheduler.get_last_lr()


def test_the_base_classes_stay_usable_and_the_answer_matches_torch():
    value, ops = guarded_call(train, (MySGD, MyStepLR), refuse_code=REFUSED)
    expected = train(torch.optim.SGD, torch.optim.lr_scheduler.StepLR)  # outside the call: torch's own
    assert ops > 0
    torch.testing.assert_close(value[0], expected[0])
    assert value[1] == pytest.approx(expected[1])


def test_refused_code_and_refused_operators_compose():
    def dropout_by_bernoulli():
        return torch.bernoulli(torch.full((3,), 0.5))

    with pytest.raises(ForbiddenReference, match="bernoulli"):
        guarded_call(dropout_by_bernoulli, refuse=("bernoulli",), refuse_code=REFUSED)
    with pytest.raises(ForbiddenReference, match="torch.optim.adam"):
        guarded_call(by_captured_reference, refuse=("bernoulli",), refuse_code=REFUSED)
    guarded_call(train, (MySGD, MyStepLR), refuse=("bernoulli",), refuse_code=REFUSED)


def test_a_call_inside_a_call_refuses_what_both_refuse():
    def inner():
        return guarded_call(by_partial, refuse_code=("torch.optim.adam",))  # SGD: refused by the outer call

    with pytest.raises(ForbiddenReference, match="torch.optim.sgd"):
        guarded_call(inner, refuse_code=("torch.optim.sgd",))
    guarded_call(lambda: guarded_call(by_partial, refuse_code=("torch.optim.adam",)))  # neither: allowed


# --- names: resolved when a check is declared ------------------------------------------------------------------------
def test_a_reexported_name_resolves_to_where_the_code_is():
    reexported, defined = resolve("torch.optim.Adam"), resolve("torch.optim.adam.Adam")
    assert (reexported.module, reexported.filenames, reexported.qualname) == \
        (defined.module, defined.filenames, defined.qualname) == ("torch.optim.adam", defined.filenames, "Adam")
    assert resolve("torch.optim.adam").qualname is None


@pytest.mark.parametrize("name, message", [
    ("torch.optim.adamm", "has no 'adamm'"),
    ("torch.add", "not a module, class or Python function"),
    ("torch._C", "not a Python source module"),
    ("no_such_package.x", "no module"),
    ("torch.optim.Adam()", "expected a dotted name"),
])
def test_a_name_whose_code_cannot_be_found_fails_the_declaration(name, message):
    with pytest.raises(ValueError, match=message):
        code_rules((name,))
    with pytest.raises(ValueError, match=message):
        checks.check(refuse_code=(name,))


# --- switching it off is noticed -----------------------------------------------------------------------------------
def unset_the_hook():
    sys.setprofile(None)
    return by_captured_reference()


def unset_and_restore_the_hook():
    hook = sys.getprofile()
    sys.setprofile(None)
    by_captured_reference()
    sys.setprofile(hook)


def replace_the_hook_with_cprofile():
    import cProfile

    profiler = cProfile.Profile()
    profiler.enable()
    try:
        by_captured_reference()
    finally:
        profiler.disable()


def poison_the_cache():
    hook = sys.getprofile()  # the call's state, reached through the hook's closure
    state = hook.__closure__[0].cell_contents[-1].code  # active[-1].code
    code = torch.optim.Adam.__init__.__code__
    state.seen[id(code)] = (code, None)
    return by_captured_reference()


def _silent_hook_code():
    active = disarmed = error = get_ident = None

    def hook(frame, event, arg):
        return None if (active, disarmed, error, get_ident) else None

    return hook.__code__


def replace_the_hooks_code():
    sys.getprofile().__code__ = _silent_hook_code()
    return by_captured_reference()


@pytest.mark.parametrize("tamper", [unset_the_hook, unset_and_restore_the_hook, replace_the_hook_with_cprofile,
                                    poison_the_cache], ids=lambda f: f.__name__)
def test_switching_the_hook_off_during_a_call_is_refused(tamper):
    with pytest.raises(ForbiddenReference, match="switched off|cannot be used"):
        guarded_call(tamper, refuse_code=REFUSED)
    assert sys.getprofile() is None
    guarded_call(train, (MySGD, MyStepLR), refuse_code=REFUSED)  # the guard still works afterwards


def test_replacing_the_hooks_code_is_noticed_and_stays_noticed():
    hook = install()._hook
    original = hook.__code__
    try:
        with pytest.raises(ForbiddenReference, match="switched off"):
            guarded_call(replace_the_hooks_code, refuse_code=REFUSED)
        with pytest.raises(ForbiddenReference, match="switched off .*profile hook's code was replaced"):
            guarded_call(train, (MySGD, MyStepLR), refuse_code=REFUSED)
    finally:
        hook.__code__ = original
    guarded_call(train, (MySGD, MyStepLR), refuse_code=REFUSED)


def test_a_thread_that_replaces_its_hook_blocks_calls_while_it_runs():
    go, done = threading.Event(), threading.Event()

    def worker():
        sys.setprofile(None)  # outside any call: this thread is no longer guarded
        go.set()
        done.wait(10)

    thread = threading.Thread(target=worker)
    thread.start()
    go.wait(10)
    try:
        with pytest.raises(ForbiddenReference, match="a thread of your code replaced its profile hook"):
            guarded_call(train, (MySGD, MyStepLR), refuse_code=REFUSED)
    finally:
        done.set()
        thread.join()
    guarded_call(train, (MySGD, MyStepLR), refuse_code=REFUSED)  # once it has ended, calls run again


# --- drive, locally (the student's kernel, run_checks) ----------------------------------------------------------
class Scenario:
    """A driver as a checks module writes one: plain data in, the student's class run, plain data out."""

    def __init__(self, start: torch.Tensor, grads: list, lr: float) -> None:
        self.start, self.grads, self.lr = start, grads, lr

    def __wire__(self) -> dict:
        return {"start": self.start, "grads": self.grads, "lr": self.lr}

    def __call__(self, student):
        p = torch.nn.Parameter(self.start.clone())
        optimizer = student([p], lr=self.lr)
        for grad in self.grads:
            p.grad = grad.clone()
            optimizer.step()
        return p.detach()


@checks.check(refuse=("bernoulli",), refuse_code=REFUSED)
def check_sgd(SGD):
    scenario = Scenario(torch.ones(3), [torch.full((3,), float(i)) for i in range(4)], 0.1)
    got, ops = checks.drive_counted(SGD, scenario)
    expected = scenario(torch.optim.SGD)  # outside drive: torch's own
    torch.testing.assert_close(got, expected)
    assert ops > 0 and torch.equal(checks.drive(SGD, scenario), got)


def test_drive_runs_the_scenario_with_the_students_class_under_the_checks_refusals():
    check_sgd(MySGD)
    with pytest.raises(ForbiddenReference, match="torch.optim.sgd.SGD"):
        check_sgd(torch.optim.SGD)

    class Borrowed(torch.optim.Optimizer):
        def __init__(self, params, lr):
            super().__init__(params, {"lr": lr})
            self.inner = torch.optim.SGD(self.param_groups[0]["params"], lr=lr)

        def step(self, closure=None):
            return self.inner.step(closure)

    with pytest.raises(ForbiddenReference):
        check_sgd(Borrowed)


def test_drive_needs_a_student_object_as_a_check_received_it():
    with pytest.raises(TypeError, match="drive\\(\\) needs a student function or class"):
        checks.drive(MySGD, Scenario(torch.ones(1), [], 0.1))


# --- what it costs ---------------------------------------------------------------------------------------------------
class PlainSGD:
    def __init__(self, params, lr):
        self.params, self.lr = list(params), lr

    @torch.no_grad()
    def step(self):
        for p in self.params:
            p.add_(p.grad, alpha=-self.lr)


def _steps(steps: int = 100) -> None:
    p = torch.nn.Parameter(torch.randn(100))
    optimizer = PlainSGD([p], 0.01)
    for _ in range(steps):
        p.grad = torch.ones(100)
        optimizer.step()


def _best_seconds(run, repeats: int = 7) -> float:
    run()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def test_the_hook_costs_little_beside_the_operator_guard(capsys):
    """100 steps of a hand-written SGD: the profile hook adds a dict lookup per Python call."""
    plain = _best_seconds(_steps)
    operators = _best_seconds(lambda: guarded_call(_steps, refuse=("bernoulli",)))
    both = _best_seconds(lambda: guarded_call(_steps, refuse=("bernoulli",), refuse_code=REFUSED))
    with capsys.disabled():
        print(f"\n100 SGD steps/s: plain {100 / plain:.0f}, operator guard {100 / operators:.0f}, "
              f"operator guard + refuse_code {100 / both:.0f}")
    assert both < 4 * operators and both < 0.5  # measured: about 1.7x, 10-25 ms


def test_replacing_the_code_of_the_operator_guards_handler_is_noticed():
    """(The operator guard's handler is a plain function: its code could be swapped for one that refuses nothing.)"""
    from course_utils.checks import guard as guard_module

    def passes_everything(mode, func, types_, args=(), kwargs=None):
        return func._op(*args, **(kwargs or {}))

    original = guard_module._handle.__code__
    guard_module._handle.__code__ = passes_everything.__code__
    try:
        with pytest.raises(ForbiddenReference, match="the code of its dispatch handler was replaced"):
            guarded_call(lambda: torch.ones(2) + 1, refuse=("convolution",))
    finally:
        guard_module._handle.__code__ = original
    assert guarded_call(lambda: torch.ones(2) + 1, refuse=("convolution",))[0].tolist() == [2.0, 2.0]


def test_changing_the_refused_code_between_calls_is_noticed():
    """The guard keeps its own rules, with a snapshot taken when they were made: a rule emptied outside a call
    (reached through the guard) or a verdict method replaced is noticed by the next call."""
    from course_utils.checks.codeguard import CodeRules

    guarded_call(train, (MySGD, MyStepLR), refuse_code=REFUSED)
    rules, _ = install()._rule_cache[REFUSED]
    rule = rules.rules[0]
    filenames = rule.filenames
    object.__setattr__(rule, "filenames", frozenset())
    try:
        with pytest.raises(ForbiddenReference, match="switched off .*its list of refused code was changed"):
            guarded_call(by_partial, refuse_code=REFUSED)
    finally:
        object.__setattr__(rule, "filenames", filenames)
    judge = CodeRules.judge
    CodeRules.judge = lambda self, code: None
    try:
        with pytest.raises(ForbiddenReference, match="switched off .*the code of its judge was replaced"):
            guarded_call(by_partial, refuse_code=REFUSED)
    finally:
        CodeRules.judge = judge
    with pytest.raises(ForbiddenReference, match="torch.optim.sgd.SGD.__init__"):
        guarded_call(by_partial, refuse_code=REFUSED)


def test_endless_recursion_is_the_students_recursion_error_not_tampering():
    """Python unsets a profile hook that raised, and at the recursion limit the hook's own call raises too: the
    answer is the RecursionError (it scores nothing), and the guard works for the next call."""
    def endless(n: int = 0) -> int:
        return endless(n + 1)

    with pytest.raises(RecursionError):
        guarded_call(endless, refuse_code=REFUSED)
    assert sys.getprofile() is None
    with pytest.raises(ForbiddenReference, match="cannot be used in this answer"):
        guarded_call(by_imported_name, refuse_code=REFUSED)
