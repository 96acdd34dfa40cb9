"""Heavy tier: faults are blamed on the right side, with the sandbox on (bubblewrap), one a0 notebook each.

Whatever the untrusted worker sends or fails to send is the student's: a flagged zero for that cell, the rest
graded, and always a result (never a grader error). The fast tier (tests/test_session.py) has the same cases
with a plain subprocess worker; here they run as the course's grader runs them.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from course_utils.checks import a0_warmup
from course_utils.grading import COURSE_ROOT
from course_utils.grading.sandbox import Sandbox, bubblewrap_problem, default_readable
from course_utils.grading.session import Timeouts, grade_notebook

PROBLEM = bubblewrap_problem()
if PROBLEM is not None:
    pytest.skip(f"the grading sandbox cannot run here: {PROBLEM}", allow_module_level=True)

ASSIGNMENT = "a0_warmup"
SIZES, ERRORS = "test_conv_output_size", "test_conv_output_size_errors"  # 3 and 1 points


def _solution() -> str:
    nb = nbformat.read(COURSE_ROOT / "solutions" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", as_version=4)
    cell = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "conv_output_size")
    return "\n".join(line for line in cell.source.splitlines() if "### " not in line)


CORRECT = _solution()
# The worker's own globals, found through gc (nothing in the student's process is out of reach).
WORKER_GLOBALS = 'import gc\n_g = next(o for o in gc.get_objects() if isinstance(o, dict) and "STDOUT_LIMIT" in o)\n'


def sandboxed(scratch: Path, env: dict) -> Sandbox:
    return Sandbox(scratch, readable=default_readable(), env=env)


def submission(tmp_path: Path, answer: str, after: dict[str, str] | None = None) -> Path:
    nb = nbformat.read(COURSE_ROOT / "assignments" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", as_version=4)
    cells = []
    for cell in nb.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id == "conv_output_size":
            cell.source = answer
        cells.append(cell)
        if grade_id in (after or {}):
            cells.append(nbformat.v4.new_code_cell((after or {})[grade_id]))
    nb.cells = cells
    path = tmp_path / "student" / f"{ASSIGNMENT}.ipynb"
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def grade(path: Path, factory=sandboxed, **timeouts):
    return grade_notebook(path, ASSIGNMENT, sandbox_factory=factory, timeouts=Timeouts(**timeouts),
                          scratch_parent=path.parent)


def test_a_forged_reply_is_refused_and_flagged(tmp_path):
    forge = ('import json, os, struct\n_m = json.dumps({"id": 3, "value": 1}).encode()\n'
             'os.write(3, struct.pack(">Q", len(_m)) + _m)\n')
    result = grade(submission(tmp_path, CORRECT, {"conv_output_size": forge}))
    assert result.score == 4 and [r.status for r in result.runs][2] == "refused"
    assert any("tampering suspected" in flag for flag in result.all_flags)


def test_an_oversized_answer_costs_its_cell_and_not_the_graders_memory(tmp_path):
    """The worker's own limit raised (tampered): the grader still reads no more than the length of the answer."""
    answer = WORKER_GLOBALS + '_g["MAX_ANSWER_BYTES"] = 2**40\n' + \
        CORRECT.replace("def conv_output_size", "def _correct") + \
        "\ndef conv_output_size(i, k, s=1, p=0, d=1):\n" \
        "    return b'x' * (64 * 2**20) if (i, k) == (32, 5) else _correct(i, k, s, p, d)\n"
    path = submission(tmp_path, answer)
    probe = f"""
import json, resource, sys
import torch
from course_utils.checks import a0_warmup
from course_utils.grading.session import grade_notebook
from course_utils.grading.sandbox import Sandbox, default_readable
from pathlib import Path
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
result = grade_notebook(Path({str(path)!r}), "a0_warmup", scratch_parent=Path({str(tmp_path)!r}),
                        sandbox_factory=lambda s, e: Sandbox(s, readable=default_readable(), env=e))
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({{"grown_kib": after - before, "result": result.to_json()}}))
"""
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    tests = report["result"]["tests"]
    assert not tests[SIZES]["passed"] and "oversized answer" in tests[SIZES]["failure"]
    assert tests[SIZES]["flags"] and tests[ERRORS]["passed"]
    assert report["grown_kib"] < 100 * 1024, f"the grader grew by {report['grown_kib'] / 1024:.0f} MiB"


def test_output_after_hidden_checks_never_reaches_the_result(tmp_path):
    stash = CORRECT.replace("def conv_output_size", "def _correct") + \
        "\nSEEN = []\ndef conv_output_size(i, k, s=1, p=0, d=1):\n" \
        "    SEEN.append((i, k, s, p, d))\n    print('CALLED WITH', i, k, s, p, d)\n" \
        "    return _correct(i, k, s, p, d)\n"
    leak = "print('LEAK', SEEN)\nraise ValueError(f'LEAK {SEEN}')"
    result = grade(submission(tmp_path, stash, {SIZES: leak}))
    assert result.score == 4
    # the hidden checks run after the last cell: the leaking cell saw the visible calls only
    assert result.runs[-1].stdout.startswith("LEAK [") and result.runs[-1].error["ename"] == "ValueError"
    printed = result.runs[-1].stdout.splitlines()[0]  # (the traceback of the raise follows)
    seen = {tuple(case) for case in ast.literal_eval(printed[len("LEAK "):].strip())}
    hidden = set(a0_warmup._hidden_cases())  # what the hidden checks called it with (this process's secret)
    assert seen and hidden and not seen & hidden, seen & hidden
    text = json.dumps(result.to_json())
    assert text.count("CALLED WITH") == 1  # the "Try it" cell's own call, before any check: nothing printed in one


def test_a_worker_that_dies_again_on_restart_ends_in_a_flagged_result(tmp_path):
    """The first worker runs; every later one exits at once (as if the student had broken the machine)."""
    started = []

    class DiesOnRestart(Sandbox):
        def popen(self, argv, **kwargs):
            started.append(argv)
            if len(started) > 1:
                argv = [sys.executable, "-c", "raise SystemExit(9)"]
            return super().popen(argv, **kwargs)

    result = grade(submission(tmp_path, CORRECT, {SIZES: "import os\nos._exit(3)"}),
                   factory=lambda scratch, env: DiesOnRestart(scratch, readable=default_readable(), env=env))
    assert len(started) == 2
    # the visible checks of the first test cell passed where it stands; its hidden ones, due after the last
    # cell, could not run without a worker: the cell is not passed, and nothing raised
    assert "✓" in result.tests[SIZES].output and not result.tests[SIZES].passed
    assert not result.tests[ERRORS].passed
    assert "did not come back after a restart" in "; ".join(result.all_flags)


def test_the_notebook_budget_holds_under_the_sandbox(tmp_path):
    start = time.perf_counter()
    result = grade(submission(tmp_path, CORRECT, {SIZES: "while True:\n    pass"}), notebook=30, cell=600)
    assert time.perf_counter() - start < 75
    assert result.tests[SIZES].passed and result.tests[ERRORS].error_name == "OverBudget"
    assert any("time budget of 30 s ran out" in flag for flag in result.all_flags)


def test_matplotlib_inline_and_a_lone_surrogate_cost_nothing(tmp_path):
    answer = "%matplotlib inline\n" + CORRECT
    result = grade(submission(tmp_path, answer, {"conv_output_size": "print('\\ud800')"}))
    assert result.score == 4 and result.runs[2].stdout == "\ufffd\n"
    json.dumps(result.to_json(), ensure_ascii=False).encode("utf-8")
