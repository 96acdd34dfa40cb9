"""nbgrader configuration for the course (the repository root is the course directory).

solutions/<id>/   nbgrader's source notebooks (full solutions, visible and hidden tests)
assignments/<id>/ the release, generated from solutions/ by `make release`, committed
"""

c = get_config()  # noqa: F821  (provided by nbgrader when it loads this file)

c.CourseDirectory.course_id = "dl4cv"
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "assignments"
# Only notebooks are assignment files; everything else in a folder is copied as is.
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback"]

# Test cells call course_utils checks that raise with a clear message; keep nbgrader's
# default per-cell timeout generous enough for training cells in fast mode.
c.ExecutePreprocessor.timeout = 300

# Feedback must not reveal the hidden tests (nbgrader issue #917): strip them from the
# autograded notebook before it is turned into the student's feedback page.
from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor  # noqa: E402
from nbgrader.preprocessors import ClearHiddenTests, GetGrades  # noqa: E402

c.GenerateFeedback.preprocessors = [ClearHiddenTests, GetGrades, CSSHTMLHeaderPreprocessor]

# Stock `nbgrader autograde` scores a test cell 0 for anything on stderr, so a correct answer whose own
# logging handler writes there would lose the cell; the course's grader never scores stderr. Drop a test
# cell's stderr before scoring, so both agree (course_utils/grading/stock.py).
from course_utils.grading.stock import AUTOGRADE_PREPROCESSORS  # noqa: E402

c.Autograde.autograde_preprocessors = AUTOGRADE_PREPROCESSORS

# The gradebook. nbgrader's default is sqlite:///<this folder>/gradebook.db; a shared one (several graders, a
# JupyterHub classroom) is a PostgreSQL URL, postgresql://USER:PASSWORD@HOST:5432/DATABASE (requirements-classroom.txt).
# Set it in ~/.jupyter/nbgrader_config.py (c.CourseDirectory.db_url = "...", file mode 600: it holds a password),
# or in the environment as COURSE_GRADEBOOK_URL, which wins over every file (course_utils/grading/gradebook_url.py).
import os  # noqa: E402

if os.environ.get("COURSE_GRADEBOOK_URL"):
    c.CourseDirectory.db_url = os.environ["COURSE_GRADEBOOK_URL"]
