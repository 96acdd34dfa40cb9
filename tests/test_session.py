"""Trusted grading of one notebook: the checks run in the grader, the student's code in a worker.

These run the worker as a plain subprocess (fast); tests/heavy/test_grading_pipeline.py repeats
the hostile cases through the whole command with the sandbox on.
"""

import time

import pytest

from course_utils.grading import COURSE_ROOT
from course_utils.checks.a0_warmup import VISIBLE_CASES
from course_utils.grading.session import Timeouts, grade_notebook

CORRECT = """def conv_output_size(i, k, s=1, p=0, d=1):
    span = d * (k - 1) + 1
    if min(k, s, d) < 1 or p < 0 or i + 2 * p < span:
        raise ValueError(f"impossible: i={i} k={k} s={s} p={p} d={d}")
    return (i + 2 * p - span) // s + 1
"""
WRONG = "def conv_output_size(i, k, s=1, p=0, d=1):\n    return (i + 2 * p - k) // s + 1\n"


def grade(path, **timeouts):
    return grade_notebook(path, "a0_warmup", timeouts=Timeouts(**timeouts) if timeouts else Timeouts())


def passed(result):
    return {g: t.passed for g, t in result.tests.items()}


def test_the_solution_gets_every_autograded_point_and_the_release_none():
    solved = grade(COURSE_ROOT / "solutions" / "a0_warmup" / "a0_warmup.ipynb")
    blank = grade(COURSE_ROOT / "assignments" / "a0_warmup" / "a0_warmup.ipynb")
    assert solved.score == 4 and blank.score == 0
    assert "hidden cases" in solved.tests["test_conv_output_size"].output
    assert "not implemented yet" in blank.tests["test_conv_output_size"].failure
    assert [r.status for r in blank.runs] == ["ok", "ok", "error"]  # the "try it" cell raised, nothing else


def test_nothing_in_the_students_process_can_change_the_verdict(make_submission):
    """Patched numpy/torch comparisons, a rewritten checks module, printed ✓: a wrong answer stays wrong."""
    hostile = WRONG + """
import numpy, torch, sys
numpy.allclose = torch.allclose = lambda *a, **k: True
numpy.testing.assert_allclose = lambda *a, **k: None
import course_utils.checks.a0_warmup as c
c.check_conv_output_size = c.check_conv_output_size_errors = lambda *a, **k: print("✓ all passed")
print("✓ conv_output_size: all 7 cases passed")
"""
    result = grade(make_submission({"conv_output_size": hostile}))
    assert passed(result) == {"test_conv_output_size": False, "test_conv_output_size_errors": False}


def test_warnings_and_stderr_from_a_correct_answer_cost_nothing(make_submission):
    noisy = CORRECT.replace("    return", "    import sys, warnings\n"
                                          "    warnings.warn('a UserWarning from the answer')\n"
                                          "    print('to stderr', file=sys.stderr)\n    return")
    result = grade(make_submission({"conv_output_size": noisy}))
    assert result.score == 4 and result.flags == []


def test_a_tampered_test_cell_is_graded_as_the_original_and_flagged(make_submission):
    result = grade(make_submission({"conv_output_size": WRONG, "test_conv_output_size": "print('✓ passed')"}))
    assert passed(result)["test_conv_output_size"] is False
    assert "modified test cell (graded with the original): test_conv_output_size" in result.flags


def test_a_crash_or_a_hang_costs_only_its_own_cell(make_submission):
    crashed = grade(make_submission({"conv_output_size": CORRECT}, name="crash",
                                    after={"conv_output_size": "import os\nos._exit(3)"}))
    assert crashed.score == 4 and crashed.restarts == 1
    assert any("process ended" in flag for flag in crashed.flags)

    hung = grade(make_submission({"conv_output_size": CORRECT}, name="hang",
                                 after={"conv_output_size": "while True:\n    pass"}), cell=12)
    assert hung.score == 4 and any("timed out" in flag for flag in hung.flags)
    assert [r.status for r in hung.runs] == ["ok", "ok", "timeout", "ok"]


def test_the_reference_is_unavailable_while_the_answer_runs(make_submission):
    via_pytorch = """def conv_output_size(i, k, s=1, p=0, d=1):
    import torch
    x = torch.empty(1, 1, i, i, device="meta")
    w = torch.empty(1, 1, k, k, device="meta")
    return torch.nn.functional.conv2d(x, w, stride=s, padding=p, dilation=d).shape[-1]
"""
    result = grade(make_submission({"conv_output_size": via_pytorch}))
    assert result.score == 0
    assert "ForbiddenReference: convolution (PyTorch operator aten::convolution) cannot be used" in \
        result.tests["test_conv_output_size"].failure


@pytest.mark.parametrize("answer, message", [
    (CORRECT.replace("return (", "import numpy\n    return numpy.int64("), "should return the int"),
    ("x = 1", "conv_output_size is not defined"),
    ("conv_output_size = 42", "is a int, not a function"),
])
def test_the_grader_sees_what_the_students_kernel_would(make_submission, answer, message):
    result = grade(make_submission({"conv_output_size": answer}))
    assert result.score == 0 and message in result.tests["test_conv_output_size"].failure


def test_a_deleted_test_cell_is_still_graded(make_submission, tmp_path):
    import nbformat

    path = make_submission({"conv_output_size": CORRECT})
    nb = nbformat.read(path, as_version=4)
    nb.cells = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") != "test_conv_output_size"]
    nbformat.write(nb, path)
    result = grade(path)
    assert result.score == 4
    assert "deleted cell: test_conv_output_size" in result.flags
    assert result.tests["test_conv_output_size"].flags


# --- blame: whatever the worker sends or fails to send is the student's, never a grader error ------------------
# Student cells that reach into the worker's own objects through gc (the untrusted side: nothing stops them).
WORKER_GLOBALS = 'import gc\n_g = next(o for o in gc.get_objects() if isinstance(o, dict) and "STDOUT_LIMIT" in o)\n'
FORGE_REPLY = """import json, os, struct
_forged = json.dumps({"id": 3, "value": 1}).encode()  # the grader's 3rd request: imports, answer, this cell
os.write(3, struct.pack(">Q", len(_forged)) + _forged)  # the worker's answer channel (a dup of its stdout)
"""
BREAK_ENCODER = WORKER_GLOBALS + '_g["encode"] = lambda value: {"t": "pickle", "data": "gASVAAAAAAAAAAA="}\n'
RAISE_ANSWER_LIMIT = WORKER_GLOBALS + '_g["MAX_ANSWER_BYTES"] = 2**40\n'
BIG_ANSWER = "def conv_output_size(i, k, s=1, p=0, d=1):\n    return b'x' * (64 * 2**20)\n"


def flags_text(result):
    return "\n".join(result.all_flags)


def test_a_cell_whose_source_is_test_is_the_students_cell():
    """The plan's step kinds are StepKind, never strings: a cell `test` is run (a NameError), not a test step."""
    import nbformat

    from course_utils.grading.protocol import graded_cells, source_notebook
    from course_utils.grading.results import StepKind
    from course_utils.grading.session import _plan

    release = nbformat.read(COURSE_ROOT / "assignments" / "a0_warmup" / "a0_warmup.ipynb", as_version=4)
    submission = nbformat.read(COURSE_ROOT / "assignments" / "a0_warmup" / "a0_warmup.ipynb", as_version=4)
    submission.cells.insert(4, nbformat.v4.new_code_cell("test"))
    tests = {c.grade_id: c for c in graded_cells(source_notebook("a0_warmup"))}
    steps = _plan(submission, release, tests)
    assert [s.kind for s in steps].count(StepKind.TEST) == 2
    assert all(isinstance(s.kind, StepKind) for s in steps)
    assert next(s for s in steps if s.index == 4).kind is StepKind.EXEC


def test_a_cell_test_costs_nothing(make_submission):
    result = grade(make_submission({"conv_output_size": CORRECT}, after={"conv_output_size": "test"}))
    assert result.score == 4 and result.flags == []
    assert result.runs[2].status == "error" and result.runs[2].error["ename"] == "NameError"


def test_a_forged_reply_is_a_flagged_refusal_and_the_rest_is_graded(make_submission):
    """Today's "grader error: KeyError 'ok'": the cell's answer is forged, so the cell is refused and flagged."""
    result = grade(make_submission({"conv_output_size": CORRECT}, after={"conv_output_size": FORGE_REPLY}))
    assert result.score == 4 and result.restarts == 1
    assert [r.status for r in result.runs] == ["ok", "ok", "refused", "ok"]
    assert "cell 4: tampering suspected" in flags_text(result)


def test_an_answer_the_grader_cannot_decode_is_flagged_as_tampering(make_submission):
    result = grade(make_submission({"conv_output_size": CORRECT + BREAK_ENCODER}))
    assert result.score == 0
    for test in result.tests.values():
        assert test.error_name == "BadAnswer" and "could not be read" in test.failure
        assert any("tampering suspected" in flag for flag in test.flags)


@pytest.mark.parametrize("tamper", ["", RAISE_ANSWER_LIMIT], ids=["worker-refuses", "grader-refuses"])
def test_an_oversized_answer_is_a_flagged_zero_for_that_cell(make_submission, tamper):
    """64 MiB where an int is expected: refused at the boundary (by the worker, or by the grader before reading)."""
    errors_ok = CORRECT.replace("def conv_output_size", "def _correct") + \
        "def conv_output_size(i, k, s=1, p=0, d=1):\n" \
        "    return b'x' * (64 * 2**20) if (i, k) == (32, 5) else _correct(i, k, s, p, d)\n"
    result = grade(make_submission({"conv_output_size": tamper + errors_ok}))
    sizes, errors = result.tests["test_conv_output_size"], result.tests["test_conv_output_size_errors"]
    assert not sizes.passed and sizes.error_name == "BadAnswer" and "oversized answer" in sizes.flags[0]
    assert errors.passed  # the rest is graded (after a restart where the grader had to cut the channel)
    assert result.restarts == (1 if tamper else 0)


def test_a_lone_surrogate_from_the_student_cannot_break_the_results(make_submission):
    import json

    raising = CORRECT.replace("return (", "raise ValueError('bad \\ud800 input')\n    return (")
    result = grade(make_submission({"conv_output_size": raising},
                                   after={"conv_output_size": "print('\\udcff')\nraise ValueError('\\ud800')"}))
    assert result.score == 0 and "bad \ufffd input" in result.tests["test_conv_output_size"].failure
    assert result.runs[2].stdout.startswith("\ufffd\n") and "\ufffd" in result.runs[2].error["evalue"]
    json.dumps(result.to_json(), ensure_ascii=False).encode("utf-8")  # a file, the CSV, the gradebook: UTF-8


def test_a_20000_term_expression_costs_its_cell_only(make_submission):
    huge = "x = " + " + ".join(["1"] * 20_000)
    result = grade(make_submission({"conv_output_size": CORRECT}, after={"conv_output_size": huge}))
    assert result.score == 4 and result.restarts == 0
    assert result.runs[2].status == "error" and result.runs[2].error["ename"] == "RecursionError"
    assert "suspected tampering: cell 4" in flags_text(result)  # the static scan cannot read it: a person looks


def _nested(depth):
    value = {}
    for _ in range(depth):
        value = {"a": value}
    return value


CORRUPTED = "corrupted grading metadata in cell 5"


@pytest.mark.parametrize("corrupt, flag", [
    (lambda meta: meta.__setitem__("nbgrader", "corrupt"), CORRUPTED),
    (lambda meta: meta["nbgrader"].__setitem__("grade_id", ["test_conv_output_size"]), CORRUPTED),
    (lambda meta: meta["nbgrader"].__setitem__("grade_id", 7), CORRUPTED),
    (lambda meta: meta.__setitem__("extra", _nested(500)), "metadata of cell 5 nested too deeply"),
], ids=["not-a-dict", "list-id", "int-id", "nested-500-deep"])
def test_corrupted_grading_metadata_is_flagged_and_the_rest_graded(make_submission, corrupt, flag):
    import json

    path = make_submission({"conv_output_size": CORRECT})
    nb = json.loads(path.read_text())
    corrupt(nb["cells"][5]["metadata"])  # the test cell test_conv_output_size
    path.write_text(json.dumps(nb))
    result = grade(path)
    assert result.score == 4 and flag in flags_text(result)
    assert "deleted cell: test_conv_output_size" in result.flags  # graded from the source notebook


def test_a_worker_that_dies_again_on_restart_still_ends_in_a_result(make_submission):
    """The first run of a cell leaves a mark; replayed after a crash, it kills the new worker too."""
    booby_trap = "import os\nif os.path.exists('ran-once'):\n    os._exit(1)\nopen('ran-once', 'w').close()"
    path = make_submission({"conv_output_size": CORRECT + booby_trap},
                           after={"test_conv_output_size": "import os\nos._exit(3)"})
    result = grade(path)  # StudentGone never escapes
    sizes = result.tests["test_conv_output_size"]
    assert "✓" in sizes.output  # its visible checks passed where the cell stands ...
    assert not sizes.passed and "not run" in sizes.failure  # ... its hidden ones, due after the last cell, never ran
    assert not result.tests["test_conv_output_size_errors"].passed
    assert "did not come back after a restart" in flags_text(result)
    assert result.score == 0


def test_the_notebook_budget_stops_a_slow_notebook_and_grades_what_ran(make_submission):
    slow = "import time\ntime.sleep(600)"
    start = time.perf_counter()
    result = grade(make_submission({"conv_output_size": CORRECT}, after={"test_conv_output_size": slow}),
                   notebook=25, cell=500)
    assert time.perf_counter() - start < 60
    assert result.tests["test_conv_output_size"].passed  # ran before the budget was spent
    assert result.tests["test_conv_output_size_errors"].error_name == "OverBudget"
    assert result.score == 3 and result.runs[-1].status == "timeout"
    assert "time budget of 25 s ran out: 1 step(s) not run" in flags_text(result)


def test_hidden_checks_run_after_the_last_cell_so_no_output_holds_their_inputs(make_submission):
    """A function that stashes its arguments, and later cells that print them (or raise with them): they see
    the visible checks' inputs only, because the hidden checks run after the notebook's last cell."""
    stash = CORRECT.replace("    span =", "    SEEN.append((i, k, s, p, d))\n    span =")
    leak = "print('LEAK', len(SEEN))\nraise ValueError(f'LEAK {len(SEEN)}')"
    path = make_submission({"conv_output_size": "SEEN = []\n" + stash},
                           after={"conv_output_size": "print('before', len(SEEN))",
                                  "test_conv_output_size": leak})
    result = grade(path)
    assert result.score == 4
    assert result.runs[2].stdout == "before 0\n"
    assert result.runs[-1].status == "error"
    # the visible calls only (and the notebook's own "try it" call), none hidden
    assert result.runs[-1].stdout.startswith(f"LEAK {len(VISIBLE_CASES) + 1}\n")
    assert result.runs[-1].error["evalue"] == f"LEAK {len(VISIBLE_CASES) + 1}"
    assert "(hidden cases)" in result.tests["test_conv_output_size"].output  # the hidden checks did run


def test_a_visible_failure_skips_the_cells_hidden_checks_and_a_later_redefinition_is_what_hidden_checks_call(
        make_submission):
    wrong = CORRECT.replace("def conv_output_size", "def conv_output_size_right") + \
        "\ndef conv_output_size(i, k, s=1, p=0, d=1):\n    return 0\n"
    # the first test cell fails on its visible cases: its hidden checks are not run, the cell scores 0
    result = grade(make_submission({"conv_output_size": wrong}))
    sizes = result.tests["test_conv_output_size"]
    assert not sizes.passed and not sizes.hidden_failed
    # a correct answer redefined as a wrong one after the test cells: the hidden checks see the last definition
    late = "def conv_output_size(i, k, s=1, p=0, d=1):\n    return 0"
    result = grade(make_submission({"conv_output_size": CORRECT}, after={"test_conv_output_size_errors": late}))
    sizes = result.tests["test_conv_output_size"]
    assert not sizes.passed and sizes.hidden_failed


def test_matplotlib_inline_costs_nothing(make_submission):
    """The course's notebooks may start with %matplotlib inline; the worker has no GUI and needs none."""
    result = grade(make_submission({"conv_output_size": "%matplotlib inline\n" + CORRECT},
                                   after={"conv_output_size": "%matplotlib widget\nimport matplotlib.pyplot as plt\n"
                                                              "plt.plot([1, 2])\nplt.show()"}))
    assert result.score == 4 and [r.status for r in result.runs] == ["ok", "ok", "ok", "ok"]


# --- the proxy: the guard in the worker, operator counts, what an answer may be ----------------------------------
@pytest.fixture
def worker(tmp_path):
    from course_utils.grading.session import Worker

    plain = Worker(tmp_path, None, {"COURSE_FAST": "1", "MPLBACKEND": "Agg"}, Timeouts(cell=60, call=60))
    plain.start()
    yield plain
    plain.stop()


def _solution_cell(assignment, grade_id):
    import nbformat

    nb = nbformat.read(COURSE_ROOT / "solutions" / assignment / f"{assignment}.ipynb", as_version=4)
    cell = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)
    return "\n".join(line for line in cell.source.splitlines() if "### " not in line)


def test_the_proxy_refuses_operators_in_the_worker_and_counts_them(worker):
    import torch

    from course_utils.checks import ForbiddenReference
    from course_utils.grading.session import StudentFunction

    assert worker.execute("import torch\nfrom torch.nn.functional import conv2d as _c\n"
                          "def add(x):\n    return x + 1\n"
                          "def conv(x, w):\n    return _c(x, w)\n")["ok"]
    value, ops = StudentFunction(worker, "add").counted(torch.zeros(3))
    assert value.tolist() == [1.0, 1.0, 1.0] and ops >= 1
    x, w = torch.ones(1, 1, 3, 3), torch.ones(1, 1, 2, 2)
    assert StudentFunction(worker, "conv")(x, w).shape == (1, 1, 2, 2)  # no refusal asked for
    with pytest.raises(ForbiddenReference):  # a name imported before the check: refused all the same
        StudentFunction(worker, "conv").with_guard(("convolution",), ())(x, w)


def test_a_sparse_answer_is_graded_by_its_value(worker):
    """a1's conv matrix as torch.sparse_coo: converted to dense at the wire, the real check passes it."""
    from course_utils.checks import a1_convolutions as checks
    from course_utils.grading.session import StudentFunction

    source = _solution_cell("a1_convolutions", "conv_matrix").replace("def conv_matrix(", "def _dense(")
    assert worker.execute("import torch\nimport torch.nn.functional as F\n" + source +
                          "\ndef conv_matrix(*args, **kwargs):\n    return _dense(*args, **kwargs).to_sparse()\n"
                          "\ndef csr_matrix(*args, **kwargs):\n    return _dense(*args, **kwargs).to_sparse_csr()\n"
                          )["ok"]
    checks.check_conv_matrix(StudentFunction(worker, "conv_matrix"))
    checks.check_conv_matrix(StudentFunction(worker, "csr_matrix"))


def test_an_unsupported_answer_costs_its_cell_with_a_clear_message(worker):
    from course_utils.grading.protocol import GradedCell, parse_test_cell, run_test_cell
    from course_utils.grading.session import StudentFunction
    from course_utils.checks import a0_warmup

    assert worker.execute("def conv_output_size(i, k, s=1, p=0, d=1):\n    return {i, k}\n")["ok"]
    cell = GradedCell("test_conv_output_size", 3, tuple(parse_test_cell(
        "checks.check_conv_output_size(conv_output_size)")), 0)
    outcome = run_test_cell(cell, a0_warmup, lambda name: StudentFunction(worker, name))
    assert not outcome.passed and outcome.flags == []
    assert "returned something the grader cannot read: cannot send a value of type set" in outcome.failure
    assert worker.running  # nothing else lost


def test_a_students_exception_class_name_is_not_shown_for_a_hidden_failure():
    from course_utils.grading.protocol import _error_name
    from course_utils.grading.session import _rebuild

    named = _rebuild({"type": "Inputs_32_5_1_2_1", "builtin": "ValueError", "message": "x"})
    assert type(named).__name__ == "Inputs_32_5_1_2_1" and isinstance(named, ValueError)
    assert _error_name(named) == "ValueError"
    assert _error_name(_rebuild({"type": "ValueError", "builtin": "ValueError"})) == "ValueError"


@pytest.mark.parametrize("deep", ["-" * 20_000 + "1", "x" + ".a" * 20_000, "x = " + " + ".join(["1"] * 20_000)],
                         ids=["unary", "attributes", "terms"])
def test_a_test_cell_too_deep_to_parse_is_graded_from_the_original(make_submission, deep):
    result = grade(make_submission({"conv_output_size": CORRECT, "test_conv_output_size": deep}))
    assert result.score == 4
    assert "modified test cell (graded with the original): test_conv_output_size" in result.flags


# --- drive and refuse_code through the worker ---------------------------------------------------------------------
OPTIMIZERS = """import torch
class Mine(torch.optim.Optimizer):
    def __init__(self, params, lr):
        if lr < 0:
            raise ValueError(f"Invalid learning rate: {lr}")
        super().__init__(params, dict(lr=lr))
    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                p.add_(p.grad, alpha=-group["lr"])
class Subclassed(torch.optim.SGD):
    pass
def by_helper(params, lr):
    return _make(params, lr)
_make = torch.optim.SGD
def plain(x):
    return x * 2
"""


# A second driver for the probe, whose scenario goes through a module-level helper of its checks module, seeds
# torch (which torch._dynamo, once imported, wraps) and steps an optimizer class of its own (whose step torch wraps
# when the first instance is made): libraries rebinding their own names are no tampering.
HELPED = """
def _twice(x):
    return 2 * x


class _Held(torch.optim.Optimizer):
    def step(self, closure=None):
        return None


class Doubled:
    def __init__(self, value):
        self.value = value

    def __wire__(self):
        return {"value": self.value}

    def __call__(self, student):
        torch.manual_seed(0)
        _Held([torch.zeros(1, requires_grad=True)], {}).step()
        return _twice(student(self.value))
"""


@pytest.fixture
def probe():
    """The probe checks module in this process (the grader's side), with ``Doubled``."""
    import drive_probe

    module = drive_probe.install()
    if not hasattr(module, "Doubled"):
        exec(HELPED, vars(module))
    return module


@pytest.fixture
def probe_worker(tmp_path, probe):
    """A worker that pins the probe checks module when it starts, as the grader's worker pins the assignment's."""
    import drive_probe

    from course_utils.grading.session import Worker
    from course_utils.grading.wire import CHECKS_ENV

    source = tmp_path / "checks_probe.py"
    source.write_text(drive_probe.SOURCE + HELPED)
    pinned = Worker(tmp_path, None, {"COURSE_FAST": "1", "MPLBACKEND": "Agg",
                                     CHECKS_ENV: f"{drive_probe.NAME}={source}"}, Timeouts(cell=60, call=60))
    pinned.start()
    yield pinned
    pinned.stop()


def test_a_check_drives_the_students_class_in_the_worker_with_its_refusals(probe_worker, probe):
    from course_utils.checks import ForbiddenReference
    from course_utils.grading.session import StudentFunction

    worker = probe_worker
    assert worker.execute(OPTIMIZERS)["ok"]
    probe.check_sgd(StudentFunction(worker, "Mine"))
    for wrong in ("Subclassed", "by_helper"):
        with pytest.raises(ForbiddenReference, match=r"torch\.optim\.sgd\.SGD\.__init__ \(the check refuses "
                                                     r"torch\.optim\.sgd\) cannot be used in this answer: write "
                                                     r"the update yourself"):
            probe.check_sgd(StudentFunction(worker, wrong))
    # refuse_code on a plain call too; the same function unguarded, and refusals only while asked for
    with pytest.raises(ForbiddenReference, match="torch.optim.sgd"):
        StudentFunction(worker, "by_helper").with_guard((), (), refuse_code=("torch.optim.sgd",))([], 0.1)
    assert StudentFunction(worker, "plain").with_guard((), (), refuse_code=("torch.optim.sgd",))(2) == 4
    assert worker.running


def test_a_drive_reports_the_students_errors_and_refuses_what_is_no_driver(probe_worker, probe):
    import torch

    from course_utils.grading.session import GradingError, StudentFunction

    worker = probe_worker
    assert worker.execute(OPTIMIZERS)["ok"]
    negative = probe.Steps(torch.ones(1), [], -1.0)
    with pytest.raises(ValueError, match="Invalid learning rate: -1.0"):
        StudentFunction(worker, "Mine").drive(negative)
    with pytest.raises(NameError, match="Missing is not defined"):
        StudentFunction(worker, "Missing").drive(negative)
    with pytest.raises(GradingError, match="expected a test object of a checks module"):
        StudentFunction(worker, "Mine").drive([1, 2])
    with pytest.raises(GradingError, match="cannot be sent"):
        StudentFunction(worker, "Mine").drive(probe.NoWire())
    value, ops = StudentFunction(worker, "Mine").drive(probe.scenario())
    assert value["steps"] == 4 and ops > 0 and worker.running


# --- a driver runs next to the student's code: patched, it is refused -------------------------------------------------
PROBE = "import torch\nimport course_utils.checks._drive_probe as _p\n"
FAKE_RUN = "def _fake(self, student):\n    return {'p': self.start - 0.1 * sum(self.grads), 'steps': len(self.grads)}\n"
TAMPER = {  # name -> (cell, driver, what the flag names)
    "call_patched": (FAKE_RUN + "_p.Steps.__call__ = _fake\n", "Steps", "Steps.__call__ was replaced"),
    "call_code_patched": (FAKE_RUN + "_p.Steps.__call__.__code__ = _fake.__code__\n", "Steps",
                          "the code or defaults of Steps.__call__ were changed"),
    "helper_patched": ("_p._twice = lambda x: 3 * x\n", "Doubled", "_drive_probe._twice was replaced"),
    "helper_code_patched": ("_p._twice.__code__ = (lambda x: 3 * x).__code__\n", "Doubled",
                            "the code or defaults of course_utils.checks._drive_probe._twice were changed"),
    "helper_defaults_patched": ("_p._twice.__defaults__ = (3,)\n", "Doubled",
                                "the code or defaults of course_utils.checks._drive_probe._twice were changed"),
    "method_wrapped_like_a_library": ("import functools\n_p._Held.step = functools.wraps(_p._Held.step)(lambda self, "
                                      "closure=None: None)\n", "Doubled", "_Held.step was replaced"),
    "builtin_hidden_by_a_global": ("_p.len = lambda grads: 4\n", "Steps", "_drive_probe.len was defined"),
    "torch_attribute_patched": ("_real = torch.nn.Parameter\ntorch.nn.Parameter = lambda t: _real(t)\n", "Steps",
                                "torch.nn.Parameter was replaced"),
    "class_replaced": (FAKE_RUN + "class Steps:\n    def __init__(self, start, grads, lr):\n"
                       "        self.start, self.grads = start, grads\n    __call__ = _fake\n    def __wire__(self):\n"
                       "        return {}\n_p.Steps = Steps\n", "Steps", "_drive_probe.Steps was replaced"),
    "subclass_swapped": (FAKE_RUN + "class _Steps(_p.Steps):\n    __call__ = _fake\n_p.Steps = _Steps\n", "Steps",
                         "_drive_probe.Steps was replaced"),
    "getattribute_added": ("_p.Steps.__getattribute__ = lambda self, name: object.__getattribute__(self, name)\n",
                           "Steps", "Steps.__getattribute__ was added"),
    # during the call: the student's function reaches the driver through the frame that called it
    "attribute_hides_a_method": ("import sys\ndef Mine(params, lr):\n"
                                 "    sys._getframe(1).f_locals['self'].__wire__ = None\n"
                                 "    return torch.optim.Optimizer(params, dict(lr=lr))\n", "Steps",
                                 "attribute __wire__ hides its method"),
    "class_changed_during_the_call": ("import sys\nclass _Other(_p.Steps):\n    pass\ndef Mine(params, lr):\n"
                                      "    sys._getframe(1).f_locals['self'].__class__ = _Other\n"
                                      "    return torch.optim.Optimizer(params, dict(lr=lr))\n", "Steps",
                                      "class was changed to _Other"),
}


@pytest.mark.parametrize("name", TAMPER)
def test_a_driver_patched_by_the_students_code_is_refused_as_tampering(probe_worker, probe, name):
    """The hostile a3 submission patched CNNTraining.__call__ in a cell to return perfect logits: every way of
    changing a driver or what it runs is caught through a real worker; the drive is a flagged BadAnswer."""
    import torch

    from course_utils.grading.protocol import BadAnswer
    from course_utils.grading.session import StudentFunction

    cell, driver, what = TAMPER[name]
    assert probe_worker.execute(OPTIMIZERS + PROBE)["ok"]
    assert probe_worker.execute(cell)["ok"], name
    scenario = probe.scenario() if driver == "Steps" else probe.Doubled(torch.ones(2))
    student = "Mine" if driver == "Steps" else "plain"
    with pytest.raises(BadAnswer, match="tampering suspected") as refused:
        StudentFunction(probe_worker, student).drive(scenario)
    assert what in str(refused.value)
    assert probe_worker.running  # an honest worker said so: it stays in step


def test_an_unpatched_driver_runs_after_the_students_own_use_of_the_checks(probe_worker, probe):
    """What an honest notebook does with the checks module (import it, run a check in its own cell, read its
    names, replace its entry in sys.modules), and a library rebinding its own names, change nothing a driver runs."""
    import torch

    from course_utils.grading.session import StudentFunction

    assert probe_worker.execute(OPTIMIZERS + PROBE + "_p.check_sgd(Mine)\nprint(_p.Steps.__call__, _p._twice(2))\n"
                                "import sys, types\nsys.modules['course_utils.checks._drive_probe'] = "
                                "types.ModuleType('x')\nimport torch._dynamo\n")["ok"]
    value, _ = StudentFunction(probe_worker, "Mine").drive(probe.scenario())
    assert value["steps"] == 4 and torch.allclose(value["p"], probe.scenario()(torch.optim.SGD)["p"])
    assert torch.equal(StudentFunction(probe_worker, "plain").drive(probe.Doubled(torch.ones(2)))[0],
                       torch.full((2,), 4.0))
    probe.check_sgd(StudentFunction(probe_worker, "Mine"))


def test_a_driver_the_worker_did_not_pin_is_refused(worker, probe_worker, probe):
    """A worker started without the probe: the grader refuses to drive it (its own fault, before sending); a
    class the pinned worker never saw (a checks class defined by a cell, say) is refused by the worker."""
    import drive_probe

    from course_utils.grading.protocol import BadAnswer
    from course_utils.grading.session import GradingError, StudentFunction
    from course_utils.grading.wire import encode

    assert worker.execute(drive_probe.CELL + OPTIMIZERS)["ok"]  # the probe, made by the student's code
    with pytest.raises(GradingError, match="a module the worker was not started with"):
        StudentFunction(worker, "Mine").drive(probe.scenario())
    later = {**encode(probe.scenario()), "class": f"{drive_probe.NAME}:Later"}
    message = {"op": "drive", "name": "Mine", "driver": later, "refuse": [], "forbid": []}
    assert probe_worker.execute(OPTIMIZERS)["ok"]
    with pytest.raises(BadAnswer, match=r"tampering suspected.*no class 'course_utils\.checks\._drive_probe:Later' "
                                        r"was among the checks' test objects when the worker started"):
        probe_worker._answer(message, "Mine", "driving")
