"""``python -m course_utils.grading <assignment> <submissions>``: see cli.py."""

import sys

from .cli import main

sys.exit(main())
