"""What the course changes in stock nbgrader (``nbgrader autograde``, formgrader's *Autograde* button).

Stock nbgrader scores a test cell 0 when anything appears on its stderr. The
course's checks keep a correct answer's warnings quiet, but a logging handler the
student configured earlier (``logging.basicConfig()``) still holds the original
stderr and writes to it, so a correct answer would lose the cell. The course's own
grader never scores stderr; :class:`IgnoreStderrInTests`, placed right after
nbgrader's ``Execute`` in ``nbgrader_config.py``, makes stock autograding agree:
a test cell's stderr is dropped before it is scored (an error still fails it).
"""

from __future__ import annotations

from nbgrader import utils
from nbgrader.preprocessors import (AssignLatePenalties, CheckCellMetadata, Execute, IgnorePattern, LimitOutput,
                                    NbGraderPreprocessor, SaveAutoGrades)
from nbconvert.preprocessors import ClearMetadataPreprocessor

__all__ = ["IgnoreStderrInTests", "AUTOGRADE_PREPROCESSORS"]


class IgnoreStderrInTests(NbGraderPreprocessor):
    """Drops stderr output from autograded test cells (code cells that are graded and not solutions)."""

    def preprocess_cell(self, cell, resources, cell_index):
        if cell.cell_type == "code" and utils.is_grade(cell) and not utils.is_solution(cell):
            cell.outputs = [o for o in cell.outputs if not (o.output_type == "stream" and o.name == "stderr")]
        return cell, resources


#: nbgrader 0.9's Autograde.autograde_preprocessors with IgnoreStderrInTests after Execute.
AUTOGRADE_PREPROCESSORS = [Execute, IgnoreStderrInTests, IgnorePattern, ClearMetadataPreprocessor, LimitOutput,
                           SaveAutoGrades, AssignLatePenalties, CheckCellMetadata]
