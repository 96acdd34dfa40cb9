"""Grading: nbgrader round trips for tests, and the course's trusted grading pipeline.

nbgrader_course  a throw-away nbgrader course for round-trip tests (TempCourse)
sandbox          runs untrusted student code with bubblewrap and kernel limits
"""

from .nbgrader_course import (COURSE_ROOT, CellScore, TempCourse, assignment_ids, nbgrader_env,
                              release_differences, run_nbgrader)

__all__ = ["CellScore", "TempCourse", "release_differences", "assignment_ids", "nbgrader_env", "run_nbgrader",
           "COURSE_ROOT"]
