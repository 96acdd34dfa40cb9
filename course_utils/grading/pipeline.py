"""Grading a class: every submission in parallel, each in its own sandbox, resumable, into nbgrader's gradebook.

1. Submissions are placed in ``submitted/`` (intake.py; originals are never changed).
2. Each notebook whose stored result no longer stands (store.py: anything that
   decides a verdict changed) is graded by ``session.grade_notebook``, one
   sandboxed worker per core; the result is saved the moment it is ready, so an
   interrupted run loses nothing.
3. nbgrader's gradebook gets the official scores (gradebook.py).

Every student ends in the report: graded, not gradable (intake problem), or a
grader error; nothing one submission does stops the run.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .gradebook import record_grades
from .intake import DEFAULT_PATTERNS, Limits, collect
from .nbgrader_course import COURSE_ROOT
from .results import NotebookResult
from .session import Timeouts
from .store import ResultStore, file_digest, fingerprint, key_parts, why_regrade

__all__ = ["ClassReport", "grade_class"]

_SLOT = 0


def _set_slot(slots: Any) -> None:
    global _SLOT
    _SLOT = slots.get()


def _sandbox_factory(sandboxed: bool, gpu: bool = False) -> Callable[[Path, dict], Any] | None:
    if not sandboxed:
        return None
    from .sandbox import Sandbox, default_readable

    def make(scratch: Path, env: dict) -> Any:
        return Sandbox(scratch, readable=default_readable(), slot=_SLOT, env=env, gpu=gpu)

    return make


@dataclass(frozen=True)
class _Job:
    student: str
    notebook: Path
    parts: dict[str, str]
    flags: tuple[str, ...]


def _grade_one(root: str, assignment: str, job: _Job, timeouts: Timeouts, sandboxed: bool,
               results_dir: str, gpu: bool = False) -> tuple[_Job, NotebookResult | None, str | None]:
    """Grade and store one notebook: (job, result, None), or (job, None, the grader's own error).

    Everything is caught (the session's BaseExceptions too): one submission never stops a class run.
    """
    try:
        from .session import grade_notebook

        result = grade_notebook(job.notebook, assignment, root=Path(root), timeouts=timeouts,
                                sandbox_factory=_sandbox_factory(sandboxed, gpu))
        result.flags = list(job.flags) + result.flags
        result.student, result.key_parts, result.key = job.student, job.parts, fingerprint(job.parts)
        result.submission_sha256 = job.parts["submission"]
        ResultStore(Path(results_dir), assignment).save(result)
        return job, result, None
    except KeyboardInterrupt:
        raise
    except BaseException as err:  # noqa: BLE001 - the grader's fault (or a bug here): say so, store no score
        return job, None, f"{type(err).__name__}: {err}"


@dataclass
class ClassReport:
    """What a class run did, and everything graded so far (cumulative over runs)."""

    assignment: str
    results: dict[tuple[str, str], NotebookResult]   # (student, notebook) -> result, every run so far
    graded: int                                      # notebooks graded in this run
    reused: int = 0                                  # notebooks of this run whose stored result still stands
    reasons: Counter = field(default_factory=Counter)  # why they were graded: "new", "checks changed", ...
    notes: list[str] = field(default_factory=list)
    unprotected: list[str] = field(default_factory=list)
    problems: dict[str, str] = field(default_factory=dict)       # student -> why nothing could be graded
    errors: dict[str, str] = field(default_factory=dict)         # student -> grader error in this run
    record_errors: dict[str, str] = field(default_factory=dict)  # student -> why nbgrader did not record
    this_run: set[str] = field(default_factory=set)              # students in this run's submissions

    @property
    def students(self) -> list[str]:
        return sorted({s for s, _ in self.results} | set(self.problems) | set(self.errors))


def grade_class(assignment: str, source: Path, *, root: Path = COURSE_ROOT, jobs: int | None = None,
                timeouts: Timeouts = Timeouts(), sandboxed: bool = True,
                patterns: list[str] | tuple[str, ...] = DEFAULT_PATTERNS, limits: Limits = Limits(),
                progress: bool = True, gpu: bool = False) -> ClassReport:
    """Grade every submission of ``assignment`` in ``source``; record the grades in nbgrader's gradebook.

    ``gpu``: expose the machine's NVIDIA devices inside each sandbox (``Sandbox(gpu=True)``; the report says so).

    Raises ValueError when nothing in ``source`` is a submission of ``assignment`` (nothing is written).
    """
    from tqdm.auto import tqdm

    intake = collect(source, root, assignment, patterns, limits)
    if not intake.submissions and not intake.problems:
        raise ValueError(f"0 notebooks matched in {source}: expected nbgrader's <student>/{assignment}/ folders "
                         f"or LMS files whose names match the pattern" + "".join(f"\n  {n}" for n in intake.notes))
    store = ResultStore.of(root, assignment)
    report = ClassReport(assignment, {}, 0, notes=intake.notes,
                         this_run={s.student for s in intake.submissions} | set(intake.problems))
    if sandboxed:
        from .sandbox import Sandbox

        probe = root / ".grading" / "probe"
        probe.mkdir(parents=True, exist_ok=True)
        report.unprotected = [f"{p.name}: {p.detail}" for p in Sandbox(probe, gpu=gpu).unprotected()]
        if gpu:
            from .sandbox import cuda_problem

            problem = cuda_problem(probe)
            if problem is not None:
                report.notes.append(f"--gpu: {problem}; student code runs on the CPU")
    else:
        report.unprotected = ["everything: the sandbox was switched off (--no-sandbox)"]

    todo: list[_Job] = []
    for submission in intake.submissions:
        store.remove_other_notebooks(submission.student, set(submission.names))
        for notebook in submission.notebooks():
            parts = key_parts(root, assignment, notebook.stem, file_digest(notebook), timeouts=timeouts,
                              sandboxed=sandboxed, submitted_at=submission.submitted_at)
            earlier = store.load(submission.student, notebook.stem)
            reason = why_regrade(earlier, parts)
            if reason is None:
                report.reused += 1
                continue
            report.reasons[reason] += 1
            todo.append(_Job(submission.student, notebook, parts, tuple(submission.flags)))

    if todo:
        workers = min(jobs or os.cpu_count() or 1, len(todo))
        context = multiprocessing.get_context("spawn")
        slots = context.Queue()
        for slot in range(workers):
            slots.put(slot)
        with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_set_slot,
                                 initargs=(slots,)) as pool:
            futures = {pool.submit(_grade_one, str(root), assignment, job, timeouts, sandboxed,
                                   str(store.results_dir), gpu): job for job in todo}
            for future in tqdm(as_completed(futures), total=len(futures), desc=f"grading {assignment}",
                               unit="notebook", disable=not progress):
                try:
                    job, _, error = future.result()
                except Exception as err:  # the grading process itself died (BrokenProcessPool)
                    job, error = futures[future], f"{type(err).__name__}: {err} (run it again)"
                if error is not None:
                    report.errors[job.student] = error
                else:
                    report.graded += 1

    # Students with nothing graded (an intake problem, a grader error) are kept until they are graded.
    problems = store.problems()
    for submission in intake.submissions:
        if submission.student not in report.errors:
            problems.pop(submission.student, None)
    problems.update(intake.problems)
    problems.update({student: f"grader error: {error}" for student, error in report.errors.items()})
    store.set_problems(problems)
    report.problems = problems
    report.results = store.all_results()

    recorded = store.recorded()
    to_record = sorted({s for (s, nb), r in report.results.items()
                        if not r.invalid and recorded.get(f"{s}/{nb}") != r.key})
    if to_record:
        report.record_errors = record_grades(root, assignment, to_record, store.results_dir)
        for (s, nb), r in report.results.items():
            if s in to_record and s not in report.record_errors:
                recorded[f"{s}/{nb}"] = r.key
        store.set_recorded(recorded)
    return report
