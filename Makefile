# Deep Learning for Computer Vision: every command a student, instructor or CI needs.
# Each target creates the course environment (.venv) first if it is missing or broken.
#
#   make lab                 open JupyterLab on the course
#   make test                the test suite (fast tier, < 10 minutes on 2 CPU cores)
#   make start a0            copy a released assignment to work/<id>/ (never overwrites your copy)
#   make check a0            run its visible checks there (nbgrader validate)
#   make release             regenerate assignments/ from solutions/ (instructors)
#   make student-bundle      build dist/student-bundle.zip for a graded class (no solutions)
#   make grade a0            grade submitted/ (or SUBMISSIONS=zip/folder): sandboxed, parallel, CSV
#   make test-heavy          the slow tier: default-mode notebooks and other long checks
#   make strip               remove outputs from stored notebooks (they are source)

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.course-installed
# pytest-xdist workers: one per core by default.
JOBS   ?= auto

.DEFAULT_GOAL := help
.PHONY: help env lab test test-heavy start check grade release student-bundle strip bench

# `make start a1` / `make check a1` / `make grade a1`: the second word is the assignment, not a target.
ifneq ($(filter start check grade,$(firstword $(MAKECMDGOALS))),)
  ID ?= $(word 2,$(MAKECMDGOALS))
  ifneq ($(ID),)
    $(eval $(ID):;@:)
  endif
endif

help:
	@sed -n '2,14p' Makefile | sed 's/^# \{0,1\}//'

# ---------------------------------------------------------------------------
# The environment: created once, reused, rebuilt when broken or out of date.
# ---------------------------------------------------------------------------
env:
	@if [ -d "$(VENV)" ] && ! "$(PY)" -c "import sys" >/dev/null 2>&1; then \
	  echo "make: $(VENV) exists but its Python does not run: removing it and building a new one."; \
	  rm -rf "$(VENV)"; \
	fi
	@if [ -f "$(STAMP)" ] && ! "$(PY)" -c "import course_utils, torch, nbgrader" >/dev/null 2>&1; then \
	  echo "make: $(VENV) is incomplete (course_utils, torch or nbgrader does not import): reinstalling."; \
	  rm -f "$(STAMP)"; \
	fi
	@$(MAKE) --no-print-directory $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	@"$(PYTHON)" -c "import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)" || { \
	  echo "make: the course needs Python 3.10 or newer; '$(PYTHON)' is $$($(PYTHON) --version 2>&1)."; \
	  echo "      Run e.g. 'make PYTHON=python3.11 $(MAKECMDGOALS)', or use conda (see README)."; exit 1; }
	@[ -x "$(PY)" ] || { echo "make: creating $(VENV) with $$($(PYTHON) --version)"; "$(PYTHON)" -m venv "$(VENV)"; }
	@echo "make: installing the course's packages into $(VENV) (the first time downloads a few GB: torch)"
	"$(PY)" -m pip install --quiet --upgrade pip
	"$(PY)" -m pip install --quiet -r requirements.txt
	"$(PY)" -m pip install --quiet --no-deps -e .
	@"$(PY)" -c "import torch, torchvision, nbgrader, jupyterlab, ipywidgets, course_utils" || { \
	  echo "make: the install finished but the course's packages do not import (see above)."; exit 1; }
	@touch "$(STAMP)"
	@echo "make: $(VENV) is ready"

# ---------------------------------------------------------------------------
# Students and self-learners
# ---------------------------------------------------------------------------
lab: env
	"$(PY)" -m jupyterlab --notebook-dir="$(CURDIR)" $(LAB_ARGS)

start: env
	@"$(PY)" -m course_utils.assignments start $(ID)

check: env
	@"$(PY)" -m course_utils.assignments check $(ID)

# ---------------------------------------------------------------------------
# Tests (the README's test command is `make test`)
# ---------------------------------------------------------------------------
test: env
	"$(PY)" -m pytest -n $(JOBS) -m "not heavy" $(PYTEST_ARGS)

test-heavy: env
	"$(PY)" -m pytest -n $(JOBS) -m heavy $(PYTEST_ARGS)

# ---------------------------------------------------------------------------
# Instructors
# ---------------------------------------------------------------------------
release: env
	"$(PY)" -m course_utils.assignments release

student-bundle: env
	"$(PY)" -m course_utils.assignments bundle

# SUBMISSIONS: nbgrader's submitted/ (default), or an LMS zip or folder; GRADE_ARGS: e.g. --feedback
SUBMISSIONS ?= submitted
grade: env
	"$(PY)" -m course_utils.grading $(ID) $(SUBMISSIONS) $(GRADE_ARGS)

strip: env
	"$(PY)" -m jupyter nbconvert --clear-output --inplace --log-level=WARN \
	  $$(find lectures solutions -name '*.ipynb' -not -path '*/.ipynb_checkpoints/*')

bench: env
	@for script in benchmarks/bench_*.py; do echo "== $$script"; "$(PY)" "$$script" || exit 1; done
