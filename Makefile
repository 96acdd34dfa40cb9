# Deep Learning for Computer Vision: every command a student, instructor or CI needs.
# Each target creates the course environment (.venv) first if it is missing or broken.
#
#   make lab                 open JupyterLab on the course
#   make test                the test suite (fast tier, < 10 minutes on 2 CPU cores)
#   make start a0            copy a released assignment to work/<id>/ (never overwrites your copy)
#   make check a0            run its visible checks there: each failure in full, unanswered questions
#   make release             regenerate assignments/ from solutions/ (instructors)
#   make student-bundle      build dist/student-bundle.zip for a graded class (no solutions; student Makefile)
#   make grade a0            grade submitted/ (or SUBMISSIONS=zip/folder): sandboxed, parallel, CSV
#   make test-heavy          the slow tier: everything under tests/heavy/ (default mode, whole classes)
#   make test-browser        the browser suite: lectures, widgets, nbgrader and the website in Chromium
#   make site                the course website from the executed notebooks -> build/site/index.html
#   make strip               remove outputs from stored notebooks (they are source)
#   make bench               measure speed: benchmarks/results/README.md (not a test)
#   make precompute          rerun the scripts behind the lectures' precomputed results (scripts/, minutes)
#   make checkpoints         rebuild the course's pretrained models in course_utils/checkpoints/ (minutes)
#   make classroom           a JupyterHub classroom on this machine (root; Ctrl-C or make classroom-stop ends it)

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.course-installed
# pytest-xdist workers: one per core by default.
JOBS   ?= auto

.DEFAULT_GOAL := help
.PHONY: help env lab test test-heavy start check grade release student-bundle strip bench precompute
.PHONY: checkpoints xcheck-env
.PHONY: dev-env chromium test-browser site
.PHONY: classroom classroom-stop classroom-env postgresql

# `make start a1` / `make check a1` / `make grade a1`: the second word is the assignment, not a target.
ifneq ($(filter start check grade,$(firstword $(MAKECMDGOALS))),)
  ID ?= $(word 2,$(MAKECMDGOALS))
  ifneq ($(ID),)
    $(eval $(ID):;@:)
  endif
endif

help:
	@sed -n '2,18p' Makefile | sed 's/^# \{0,1\}//'

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
# The environment's bin/ goes first on PATH: nbgrader's formgrader runs its helper `alembic` by name.
lab: env
	PATH="$(abspath $(VENV))/bin:$$PATH" "$(PY)" -m jupyterlab --notebook-dir="$(CURDIR)" $(LAB_ARGS)

start: env
	@"$(PY)" -m course_utils.assignments start $(ID)

check: env
	@"$(PY)" -m course_utils.assignments check $(ID)

# ---------------------------------------------------------------------------
# Tests (the README's test command is `make test`)
# ---------------------------------------------------------------------------
# tests/conftest.py marks everything under tests/heavy/ as heavy: `make test` leaves that folder out.
test: env
	"$(PY)" -m pytest -n $(JOBS) -m "not heavy" $(PYTEST_ARGS)

test-heavy: xcheck-env
	"$(PY)" -m pytest -n $(JOBS) -m heavy $(PYTEST_ARGS)

# The heavy tier compares a5's solution with captum and torchattacks (tests only, never in a notebook).
# torchattacks pins an old `requests` that breaks nbgrader and jupyterlab-server: it goes in without its
# dependencies (the ones it uses, torch, torchvision, scipy and tqdm, are already there).
XCHECK_STAMP := $(VENV)/.course-xcheck-installed
TORCHATTACKS := torchattacks==3.5.1

xcheck-env: env
	@if [ -f "$(XCHECK_STAMP)" ] && ! "$(PY)" -c "import captum, torchattacks" >/dev/null 2>&1; then \
	  rm -f "$(XCHECK_STAMP)"; fi
	@$(MAKE) --no-print-directory $(XCHECK_STAMP)

$(XCHECK_STAMP): requirements-xcheck.txt
	@echo "make: installing the cross-check tools into $(VENV) (requirements-xcheck.txt; $(TORCHATTACKS) without its dependencies)"
	"$(PY)" -m pip install --quiet -r requirements-xcheck.txt
	"$(PY)" -m pip install --quiet --no-deps "$(TORCHATTACKS)"
	@touch "$(XCHECK_STAMP)"

# ---------------------------------------------------------------------------
# What students see: the browser suite and the course website. Their tools
# (Playwright, Sphinx, MyST-NB) are in requirements-dev.txt, not in the students'
# environment; the browser is Debian's chromium (Playwright cannot download one here).
# ---------------------------------------------------------------------------
DEV_STAMP := $(VENV)/.course-dev-installed

dev-env: env
	@if [ -f "$(DEV_STAMP)" ] && ! "$(PY)" -c "import playwright, sphinx, myst_nb, sphinx_book_theme" >/dev/null 2>&1; then \
	  rm -f "$(DEV_STAMP)"; fi
	@$(MAKE) --no-print-directory $(DEV_STAMP)

$(DEV_STAMP): requirements-dev.txt
	@echo "make: installing the browser suite's and the website's tools into $(VENV) (requirements-dev.txt)"
	"$(PY)" -m pip install --quiet -r requirements-dev.txt
	@touch "$(DEV_STAMP)"

chromium:
	@if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "make: installing Debian's chromium for the browser suite"; \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1 || \
	      { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null; } || \
	      echo "make: could not install chromium: the browser tests will be skipped"; \
	  else \
	    echo "make: Chromium is missing (Debian: sudo apt-get install chromium): the browser tests will be skipped"; \
	  fi; \
	fi

# screenshots of every step: outputs/browser/
test-browser: dev-env chromium
	COURSE_BROWSER_SUITE=1 "$(PY)" -m pytest tests/browser $(PYTEST_ARGS)

# SITE_ARGS: e.g. --fast (COURSE_FAST=1) or --output DIR
site: dev-env
	"$(PY)" -m course_utils.website $(SITE_ARGS)

# ---------------------------------------------------------------------------
# Instructors
# ---------------------------------------------------------------------------
release: env
	"$(PY)" -m course_utils.assignments release

student-bundle: env
	"$(PY)" -m course_utils.assignments bundle

# SUBMISSIONS: nbgrader's submitted/ (default), or an LMS zip or folder; GRADE_ARGS: e.g. --feedback.
# Needs COURSE_GRADING_SEED (128 bits) and bubblewrap; it refuses otherwise (--practice, --no-sandbox).
SUBMISSIONS ?= submitted
grade: env
	"$(PY)" -m course_utils.grading $(ID) $(SUBMISSIONS) $(GRADE_ARGS)

strip: env
	"$(PY)" -m jupyter nbconvert --clear-output --inplace --log-level=WARN \
	  $$(find lectures solutions -name '*.ipynb' -not -path '*/.ipynb_checkpoints/*')

# Results a lecture shows but cannot compute within its time budget (tests/test_precomputed.py fails when a
# script changed and its output was not remade). Lecture 06's BatchNorm x learning-rate grid: about 2 minutes;
# lecture 08's transfer table (from the committed course checkpoint; rerun after `make checkpoints`): about 3.
precompute: env
	"$(PY)" scripts/bn_lr_grid.py
	"$(PY)" scripts/transfer_table.py --jobs 2

# The course checkpoints ("pretrained" models, offline): trained with a fixed seed and recipe, written with their
# manifests (SHA-256, accuracy, recipe) to course_utils/checkpoints/. About 1-2 minutes on a (busy) 2-core CPU.
# CHECKPOINT_ARGS: names, --device cuda, --out DIR (python -m course_utils.pretrained build --help).
checkpoints: env
	"$(PY)" -m course_utils.pretrained build $(CHECKPOINT_ARGS)

# ---------------------------------------------------------------------------
# Benchmarks: measurements, not tests (nothing fails on a missed goal)
# ---------------------------------------------------------------------------
# Runs benchmarks/bench_<name>.py for each name in BENCH, then benchmarks/report.py, which writes
# benchmarks/results/README.md (the tables, with the goals) and all.json. About 45 minutes on 2 busy
# cores: the test suite (16) and stock nbgrader on 30 notebooks, 3 times (12) take the most.
# BENCH_SKIP leaves some out (report.py keeps their last results); BENCH_ARGS goes to every script:
#   make bench BENCH_SKIP=suite BENCH_ARGS="--runs 1"        (about 10 minutes, noisier)
BENCH      ?= conv notebooks autograde grading training suite
BENCH_SKIP ?=
bench: env
	@failed=""; for name in $(filter-out $(BENCH_SKIP),$(BENCH)); do \
	  script=benchmarks/bench_$$name.py; \
	  if [ ! -f "$$script" ]; then echo "make: $$script does not exist"; failed="$$failed $$name"; continue; fi; \
	  echo "== $$script $(BENCH_ARGS)"; start=$$(date +%s); \
	  "$(PY)" "$$script" $(BENCH_ARGS) || failed="$$failed $$name"; \
	  echo "== $$script: $$(( $$(date +%s) - start )) s"; \
	done; \
	"$(PY)" benchmarks/report.py >/dev/null; \
	if [ -n "$$failed" ]; then echo "make: these benchmarks failed:$$failed"; exit 1; fi

# ---------------------------------------------------------------------------
# The classroom on JupyterHub (docs/instructor.md, "Teaching on JupyterHub"): root only. Real Linux users
# (dl4cv-teacher, dl4cv-alice, dl4cv-bob), JupyterHub with the local process spawner, configurable-http-proxy
# (npm, into .classroom/), nbgrader's exchange, the hub's database and the gradebook on a private PostgreSQL,
# all on 127.0.0.1. `make classroom` runs in the foreground: Ctrl-C stops everything it started, by PID, and
# removes the users and the run folder; `make classroom-stop` does the same from another terminal.
# CLASSROOM_ARGS: e.g. --students ana ben carla, --prefix cv-
# ---------------------------------------------------------------------------
CLASSROOM_STAMP := $(VENV)/.course-classroom-installed

classroom-env: env postgresql
	@if [ -f "$(CLASSROOM_STAMP)" ] && ! "$(PY)" -c "import jupyterhub, psycopg" >/dev/null 2>&1; then \
	  rm -f "$(CLASSROOM_STAMP)"; fi
	@$(MAKE) --no-print-directory $(CLASSROOM_STAMP)
	@"$(PY)" -m course_utils.classroom install

$(CLASSROOM_STAMP): requirements-classroom.txt
	@echo "make: installing JupyterHub and the PostgreSQL driver into $(VENV) (requirements-classroom.txt)"
	"$(PY)" -m pip install --quiet -r requirements-classroom.txt
	@touch "$(CLASSROOM_STAMP)"

# Debian's PostgreSQL server programs (the classroom runs its own cluster in its run folder, no service).
postgresql:
	@if ! command -v pg_ctl >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "make: installing Debian's postgresql for the classroom and a PostgreSQL gradebook"; \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >/dev/null 2>&1 || \
	      { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >/dev/null; } || \
	      echo "make: could not install postgresql"; \
	  else \
	    echo "make: PostgreSQL is missing (Debian: sudo apt-get install postgresql)"; \
	  fi; \
	fi

classroom: classroom-env
	"$(PY)" -m course_utils.classroom start $(CLASSROOM_ARGS)

classroom-stop:
	"$(PY)" -m course_utils.classroom stop
