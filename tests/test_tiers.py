"""The slow tier is a directory: every test under tests/heavy/ is marked heavy, so `make test` leaves it out."""

import subprocess
import sys

from course_utils.grading import COURSE_ROOT


def collected(*args: str) -> list[str]:
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--collect-only", "-q", *args],
                          cwd=COURSE_ROOT, capture_output=True, text=True, timeout=300)
    return [line for line in done.stdout.splitlines() if "::" in line]


def test_every_heavy_file_is_in_the_heavy_tier_only():
    files = sorted(p.name for p in (COURSE_ROOT / "tests" / "heavy").glob("test_*.py"))
    assert collected("-m", "not heavy", "tests/heavy") == []  # what `make test` selects there: nothing
    heavy = {line.split("::")[0].rsplit("/", 1)[-1] for line in collected("-m", "heavy", "tests/heavy")}
    assert sorted(heavy) == files
