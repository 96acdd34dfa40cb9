"""Heavy tier: every lecture and solution notebook in default mode, as a student runs it."""

import pytest

from course_utils.notebooks import COURSE_ROOT, run_notebook, stored_notebooks

pytestmark = pytest.mark.heavy


@pytest.mark.parametrize("path", stored_notebooks(folders=("lectures", "solutions")),
                         ids=lambda p: str(p.relative_to(COURSE_ROOT)))
def test_notebook_runs_in_default_mode(path, tmp_path):
    run_notebook(path, fast=False, timeout=900, output=tmp_path / path.name)
