"""What a submission did to its notebook: flags for the instructor, never silent."""

import copy
import json

import nbformat
import pytest

from course_utils.grading import COURSE_ROOT
from course_utils.grading.integrity import compare_with_release, read_submission

RELEASE = COURSE_ROOT / "assignments" / "a0_warmup" / "a0_warmup.ipynb"
SOURCE = COURSE_ROOT / "solutions" / "a0_warmup" / "a0_warmup.ipynb"


@pytest.fixture
def release():
    return nbformat.read(RELEASE, as_version=4)


def _cell(nb, grade_id):
    return next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)


def test_an_answered_release_raises_no_flags(release):
    answered = copy.deepcopy(release)
    _cell(answered, "conv_output_size").source = "def conv_output_size(i, k, s=1, p=0, d=1):\n    return 1\n"
    _cell(answered, "leftover_answer").source = "Two outputs."
    answered.cells.insert(4, nbformat.v4.new_code_cell("print('my own scratch cell')"))
    assert compare_with_release(answered, release).flags == []


def test_hidden_tests_restored_by_grading_are_not_tampering(release):
    """The source's test cells differ from the release only by hidden tests: that is routine."""
    source = nbformat.read(SOURCE, as_version=4)
    report = compare_with_release(source, release)
    assert report.modified_locked == [] and report.deleted == [] and report.changed_metadata == []
    # (a submission never contains them; if it did, the test cell differs from what was handed out)
    assert report.modified_tests == ["test_conv_output_size", "test_conv_output_size_errors"]


def test_edits_deletions_and_duplicates_are_each_flagged(release):
    tampered = copy.deepcopy(release)
    _cell(tampered, "test_conv_output_size").source = "print('✓ passed')"
    _cell(tampered, "imports").source = "import numpy"
    _cell(tampered, "q1_text").source = "## changed the question"
    tampered.cells.remove(_cell(tampered, "test_conv_output_size_errors"))
    tampered.cells.append(copy.deepcopy(_cell(tampered, "conv_output_size")))
    _cell(tampered, "leftover_answer").metadata["nbgrader"]["points"] = 100
    report = compare_with_release(tampered, release)
    assert report.modified_tests == ["test_conv_output_size"]
    assert sorted(report.modified_locked) == ["imports", "q1_text"]
    assert report.deleted == ["test_conv_output_size_errors"]
    assert report.duplicated == ["conv_output_size"]
    assert report.changed_metadata == ["leftover_answer"]
    assert any(f.startswith("deleted cell: test_conv_output_size_errors") for f in report.flags)


def test_a_cell_with_an_unknown_grade_id_is_flagged(release):
    renamed = copy.deepcopy(release)
    _cell(renamed, "conv_output_size").metadata["nbgrader"]["grade_id"] = "my_answer"
    report = compare_with_release(renamed, release)
    assert report.unknown == ["my_answer"] and report.deleted == ["conv_output_size"]


@pytest.mark.parametrize("content, message", [
    (b'{"cells": [', "not readable as JSON"),
    (b"", "not readable as JSON"),
    (b"[1, 2]", "no list of cells"),
    (b'{"cells": [{"cell_type": "code"}], "nbformat": 4, "nbformat_minor": 5, "metadata": {}}', "invalid notebook"),
])
def test_unreadable_notebooks_are_not_graded_and_say_why(tmp_path, content, message):
    path = tmp_path / "broken.ipynb"
    path.write_bytes(content)
    nb, problems = read_submission(path)
    assert nb is None and len(problems) == 1
    assert message in problems[0] and "needs review" in problems[0]


def test_a_readable_but_invalid_notebook_is_graded_with_a_flag(tmp_path, release):
    broken = copy.deepcopy(release)
    broken.cells[0]["unexpected_key"] = 1
    path = tmp_path / "odd.ipynb"
    path.write_text(json.dumps(broken), encoding="utf-8")
    nb, problems = read_submission(path)
    assert nb is not None and len(nb.cells) == len(release.cells)
    assert problems and "invalid notebook format" in problems[0]


def test_the_static_scan_reads_the_notebook_in_order(release):
    """Aliases carry from cell to cell (static_scan has the full corpus); an honest exit is no tampering."""
    student = copy.deepcopy(release)
    student.cells.insert(1, nbformat.v4.new_code_cell("import numpy as _np\nimport course_utils.checks as c"))
    _cell(student, "conv_output_size").source = "c.blocked = None\n_np.allclose = lambda *a: True\n"
    index = student.cells.index(_cell(student, "conv_output_size"))
    report = compare_with_release(student, release)
    assert report.suspicious == [f"cell {index}, line 1: replaces course_utils.checks.blocked (through alias c)",
                                 f"cell {index}, line 2: replaces numpy.allclose (through alias _np)"]
    honest = copy.deepcopy(release)
    _cell(honest, "conv_output_size").source = "%matplotlib inline\nimport os\nos._exit(0)\n"
    assert compare_with_release(honest, release).suspicious == []


def test_kernelspec_and_tampering_show_up_as_flags(release):
    odd = copy.deepcopy(release)
    odd.metadata["kernelspec"]["name"] = "julia-1.10"
    _cell(odd, "conv_output_size").source = "import numpy\nnumpy.allclose = lambda *a: True\n"
    flags = compare_with_release(odd, release).flags
    assert "kernelspec changed to 'julia-1.10' (graded with python3)" in flags
    assert "suspected tampering: cell 3, line 2: replaces numpy.allclose" in flags


@pytest.mark.parametrize("meta", [
    {"grade": "yes", "grade_id": ["x"], "points": "lots", "locked": 7, "schema_version": 3},
    {"grade": True, "grade_id": "test_conv_output_size", "points": "lots", "locked": True, "solution": False,
     "schema_version": 3},
    "corrupt",
], ids=["list-id", "points-not-a-number", "not-a-dict"])
def test_nbgrader_records_a_notebook_whose_grading_metadata_was_corrupted(meta):
    """nbgrader's own sanitizers raise on such metadata (TypeError: unhashable type: 'list'); the course's
    repair runs first, so the notebook the grader graded is the one nbgrader records."""
    from nbgrader.preprocessors import CheckCellMetadata

    from course_utils.grading.gradebook import SANITIZERS, DropDuplicateIds, RepairMetadata

    assert SANITIZERS[0] is RepairMetadata
    nb = nbformat.read(RELEASE, as_version=4)
    cell = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "test_conv_output_size")
    cell.metadata["nbgrader"] = meta
    resources: dict = {}
    for step in (RepairMetadata(), DropDuplicateIds(), CheckCellMetadata()):
        nb, resources = step.preprocess(nb, resources)
    assert "nbgrader" not in cell.metadata  # graded as a deleted test cell, put back from the source
