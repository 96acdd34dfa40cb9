"""Every lecture and solution notebook runs top to bottom in fast mode; every stored notebook is clean.

New notebooks are collected automatically; pytest-xdist spreads them over the cores.
"""

import nbformat
import pytest

from course_utils.notebooks import COURSE_ROOT, NotebookError, clean_problems, run_notebook, stored_notebooks

EXECUTED = stored_notebooks(folders=("lectures", "solutions"))
STORED = stored_notebooks()


def _id(path):
    return str(path.relative_to(COURSE_ROOT))


def test_there_are_notebooks_to_test():
    assert any(p.parts[-2] == "lectures" for p in EXECUTED)
    assert any("solutions" in p.parts for p in EXECUTED)


@pytest.mark.notebook
@pytest.mark.parametrize("path", EXECUTED, ids=_id)
def test_notebook_runs_in_fast_mode(path, tmp_path):
    run_notebook(path, fast=True, timeout=300, output=tmp_path / path.name)


@pytest.mark.parametrize("path", STORED, ids=_id)
def test_stored_notebook_is_clean(path):
    assert clean_problems(path) == []


def test_clean_check_catches_outputs_counts_kernels_and_bad_json(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1 + 1")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    good = tmp_path / "good.ipynb"
    nbformat.write(nb, good)
    assert clean_problems(good) == []
    nb.cells[0].outputs = [nbformat.v4.new_output("execute_result", {"text/plain": "2"}, execution_count=1)]
    nb.cells[0].execution_count = 1
    nb.metadata["kernelspec"]["name"] = "conda-env"
    dirty = tmp_path / "dirty.ipynb"
    nbformat.write(nb, dirty)
    problems = "\n".join(clean_problems(dirty))
    assert "with outputs" in problems and "execution count" in problems and "'conda-env'" in problems
    broken = tmp_path / "broken.ipynb"
    broken.write_text("{not json")
    assert "not a readable notebook" in clean_problems(broken)[0]


def test_runner_reports_the_failing_cell_and_its_traceback(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# title"),
        nbformat.v4.new_code_cell("import os\nmode = os.environ['COURSE_FAST']"),
        nbformat.v4.new_code_cell("assert mode == '1', mode\nx = 1 / 0"),
        nbformat.v4.new_code_cell("print('never reached')"),
    ])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = tmp_path / "fails.ipynb"
    nbformat.write(nb, path)
    with pytest.raises(NotebookError) as info:
        run_notebook(path, timeout=60)
    err = info.value
    assert err.cell == 2
    assert "x = 1 / 0" in err.source
    assert "ZeroDivisionError" in err.traceback
    assert "cell 2 failed" in str(err)
    assert clean_problems(path) == []  # the source notebook was not written to


def test_runner_refuses_to_write_over_its_source(tmp_path):
    path = tmp_path / "n.ipynb"
    nbformat.write(nbformat.v4.new_notebook(), path)
    with pytest.raises(ValueError, match="must not be the source"):
        run_notebook(path, output=path)
    with pytest.raises(FileNotFoundError, match="expected an existing .ipynb"):
        run_notebook(tmp_path / "missing.ipynb")


def _my_kernels() -> list[int]:
    """Kernel processes started by this process (children running ipykernel)."""
    import os
    from pathlib import Path

    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (entry / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if ppid == os.getpid() and b"ipykernel" in cmdline:
            found.append(int(entry.name))
    return found


@pytest.mark.skipif(not __import__("os").path.isdir("/proc"), reason="needs /proc to list processes")
def test_the_runner_shuts_its_kernel_down(tmp_path):
    """Regression: with a kernel manager of our own, nbclient left every kernel running (about 1 GB each)."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    path = tmp_path / "tiny.ipynb"
    nbformat.write(new_notebook(cells=[new_code_cell("x = 1")], metadata={"kernelspec": {
        "name": "python3", "display_name": "Python 3", "language": "python"}}), path)
    run_notebook(path)
    assert _my_kernels() == []
