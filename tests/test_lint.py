"""What decides a grade is linted and type-checked: ruff and mypy on course_utils/grading and course_utils/checks.

The rules are in pyproject.toml ([tool.ruff], [tool.mypy]). mypy once found a real bug here (a sandbox factory
documented with one argument and called with two), which no test had noticed.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from course_utils.grading import COURSE_ROOT

PACKAGES = ["course_utils/grading", "course_utils/checks"]


def _run(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *argv], cwd=COURSE_ROOT, capture_output=True, text=True,
                          timeout=300)


@pytest.mark.parametrize("tool", ["ruff", "mypy"])
def test_tool_is_installed(tool):
    done = _run(tool, "--version")
    assert done.returncode == 0, f"{tool} is not installed in the course environment (requirements.txt)"


def test_ruff():
    done = _run("ruff", "check", "--no-cache", "--output-format", "concise", *PACKAGES)
    assert done.returncode == 0, done.stdout + done.stderr


def test_mypy():
    done = _run("mypy", "--no-incremental", *PACKAGES)
    assert done.returncode == 0, done.stdout + done.stderr
