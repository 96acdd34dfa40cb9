"""Official grades into nbgrader's gradebook, from the trusted results.

nbgrader's ``autograde`` runs a notebook in a kernel (its ``Execute``
preprocessor) and scores each test cell by its outputs. Here that one step is
replaced by :class:`TrustedResults`, which writes the outputs the trusted
grader computed (a passing check's ✓ lines, or an error with the feedback) into
the test cells; nbgrader's own steps do the rest: restoring locked and test
cells, scoring, late penalties, the gradebook. So formgrader, manual grading,
``generate_feedback`` and ``export`` work exactly as with stock nbgrader.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbconvert.preprocessors import ClearMetadataPreprocessor
from nbgrader.preprocessors import (AssignLatePenalties, CheckCellMetadata, ClearOutput, DeduplicateIds,
                                    IgnorePattern, LimitOutput, NbGraderPreprocessor, OverwriteCells,
                                    OverwriteKernelspec, SaveAutoGrades)
from traitlets import Unicode

from .integrity import repair_metadata
from .results import CellResult
from .store import ResultStore

__all__ = ["TrustedResults", "record_grades", "nbgrader_api"]


def _stream(text: str) -> nbformat.NotebookNode:
    return nbformat.v4.new_output("stream", name="stdout", text=text)


def _error(name: str, message: str) -> nbformat.NotebookNode:
    return nbformat.v4.new_output("error", ename=name, evalue=message, traceback=[f"{name}: {message}"])


class TrustedResults(NbGraderPreprocessor):
    """Fills a notebook's outputs from the trusted grader's result file (in place of executing it)."""

    results_dir = Unicode("", help="folder of the trusted grader's results").tag(config=True)
    source_dir = Unicode("", help="the course's source folder, to restore deleted test cells").tag(config=True)

    def preprocess(self, nb, resources):
        info = resources["nbgrader"]
        student, assignment, notebook = info["student"], info["assignment"], info["notebook"]
        store = ResultStore(Path(self.results_dir), assignment)
        result = store.load(student, notebook)
        if result is None:
            raise RuntimeError(f"no trusted result for {student}/{assignment}/{notebook}: expected "
                               f"{store.path(student, notebook)}; run the course's grading command")
        tests, runs = result.tests, {run.index: run for run in result.runs}
        present = set()
        for index, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
            if grade_id in tests:
                present.add(grade_id)
                cell.outputs = self._test_outputs(tests[grade_id])
            elif index in runs:
                run = runs[index]
                cell.outputs = [_stream(run.stdout)] if run.stdout else []
                if run.error:
                    cell.outputs.append(_error(str(run.error.get("ename", "Error")), str(run.error.get("evalue", ""))))
        missing = [g for g in tests if g not in present]
        if missing:  # a deleted test cell is put back, so the gradebook scores it
            source = nbformat.read(Path(self.source_dir) / assignment / f"{notebook}.ipynb", as_version=4)
            for cell in source.cells:
                if cell.metadata.get("nbgrader", {}).get("grade_id") in missing:
                    cell.outputs = self._test_outputs(tests[cell.metadata["nbgrader"]["grade_id"]])
                    nb.cells.append(cell)
        return nb, resources

    @staticmethod
    def _test_outputs(test: CellResult) -> list:
        outputs = [_stream(test.output)] if test.output else []
        if not test.passed:
            outputs.append(_error(test.error_name or "CheckFailure", test.feedback or "failed"))
        return outputs


class RepairMetadata(NbGraderPreprocessor):
    """The trusted grader's repair of corrupted grading metadata (``integrity.repair_metadata``), run before
    nbgrader's own steps, which raise on a grade_id that is not a string: the notebook nbgrader records is the
    one the grader graded (a corrupted test cell counts as deleted and is put back from the source)."""

    def preprocess(self, nb, resources):
        repair_metadata(nb)
        return nb, resources


class DropDuplicateIds(DeduplicateIds):
    """nbgrader's DeduplicateIds, but a duplicate loses its nbgrader metadata entirely.

    Stock DeduplicateIds leaves ``nbgrader = {}``, which CheckCellMetadata then
    rejects ("Outdated schema version: 0"), so a student who duplicated a cell
    never reaches the gradebook (nbgrader issue #1083).
    """

    def preprocess_cell(self, cell, resources, cell_index):
        cell, resources = super().preprocess_cell(cell, resources, cell_index)
        if cell.get("metadata", {}).get("nbgrader") == {}:
            del cell.metadata["nbgrader"]
        return cell, resources


PREPROCESSORS = [TrustedResults, IgnorePattern, ClearMetadataPreprocessor, LimitOutput, SaveAutoGrades,
                 AssignLatePenalties, CheckCellMetadata]
SANITIZERS = [RepairMetadata, ClearOutput, DropDuplicateIds, OverwriteKernelspec, OverwriteCells, CheckCellMetadata]


def nbgrader_api(root: Path, results_dir: Path):
    """nbgrader's API for the course at ``root``, its autograde step replaced by :class:`TrustedResults`.

    Its configuration is nbgrader's (``gradebook_url.course_config``: ~/.jupyter's nbgrader_config.py, then the
    course's), so the gradebook (``CourseDirectory.db_url``, SQLite or PostgreSQL) is the one formgrader uses.
    """
    from nbgrader.apps import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory

    from .gradebook_url import course_config

    config = course_config(root)
    config.CourseDirectory.root = str(root)
    config.Autograde.sanitize_preprocessors = SANITIZERS
    config.Autograde.autograde_preprocessors = PREPROCESSORS
    config.TrustedResults.results_dir = str(results_dir)
    config.TrustedResults.source_dir = str(root / config.CourseDirectory.get("source_directory", "source"))
    coursedir = CourseDirectory(config=config)
    return NbGraderAPI(coursedir=coursedir, config=config)


def record_grades(root: Path, assignment: str, students: list[str], results_dir: Path) -> dict[str, str]:
    """Run nbgrader's autograde (with :class:`TrustedResults`) for ``students``; errors by student."""
    from nbgrader.api import Gradebook, MissingEntry

    import warnings

    warnings.filterwarnings("ignore", module="nbgrader")  # SQLAlchemy autoflush chatter from nbgrader's api
    warnings.filterwarnings("ignore", message=".*not in session.*")
    api = nbgrader_api(root, results_dir)
    with Gradebook(api.coursedir.db_url, api.coursedir.course_id) as gradebook:
        try:  # added with `nbgrader db assignment add` (a due date) but never generated: no notebooks yet
            known = bool(gradebook.find_assignment(assignment).notebooks)
        except MissingEntry:
            known = False
    if not known:  # nbgrader learns the graded cells only from generate_assignment with its database
        outcome = api.generate_assignment(assignment, force=True, create=True)
        if not outcome["success"]:
            raise RuntimeError(f"nbgrader generate_assignment {assignment} failed:\n{outcome.get('error')}")
    errors = {}
    for student in students:
        outcome = api.autograde(assignment, student, force=True, create=True)
        if not outcome["success"]:
            lines = (outcome.get("error") or outcome.get("log") or "failed").strip().splitlines()
            # the exception's own line, not nbgrader's closing "Please see the above traceback"
            causes = [line for line in lines if ("Error" in line or "Exception" in line) and "Please see" not in line]
            why = (causes or lines or ["failed"])[-1].strip()
            errors[student] = f"nbgrader could not record the grades: {why[:300]}"
    return errors
