"""The course in JupyterLab, as students and instructors see it (headless Chromium, fast mode).

- Every lecture: Run All, then no cell errored, every figure shows, every widget the
  kernel displayed is rendered (no "Error displaying widget" placeholder), tqdm bars are
  widgets, and every control of every registered widget (``course_utils.widgets.DEMOS``)
  moves the picture: after the moves the page shows exactly the figure that the widget's
  plain function draws, in the kernel, for the values the controls now display.
- The warm-up assignment (a student's ``make start`` copy): run it unanswered (its checks
  fail), Validate, answer it, Validate again: success.
- Formgrader lists every assignment.

Screenshots of each step: ``outputs/browser/``.
"""

from __future__ import annotations

import re

import nbformat
import pytest
from labdriver import (WARMUP, Notebook, control_label, control_value, controls, move, png_digest, same_value,
                       shown_output, wait_for_new_output)

from course_utils.notebooks import COURSE_ROOT, stored_notebooks

pytestmark = [pytest.mark.heavy]

LECTURES = stored_notebooks(folders=("lectures",))
RUN_SECONDS = 300  # one lecture, fast mode (each takes 10-30 s)

# Run in the notebook's own kernel after the page has been checked: what the kernel displayed,
# and the PNG digest of the figure each registered widget's plain function draws for its values.
KERNEL_CHECK = """import json
from course_utils import fastmode
from course_utils.widgets.registry import describe_views
print(json.dumps({{"fast": fastmode.is_fast(), "views": describe_views({ids!r})}}))"""


def _outputs(cells):
    return [(cell, output) for cell in cells for output in cell["outputs"]]


def _check_demo_on_screen(view, entry: dict, when: str) -> None:
    """The widget's controls display the kernel's values, and its picture is the plain function's figure."""
    name = entry["name"]
    view.scroll_into_view_if_needed()
    shown = [control_value(c) for c in controls(view)]
    values = list(entry["values"].values())
    kernel_labels = entry.get("labels") or [None] * len(values)
    labels = [control_label(c) for c in controls(view)]
    assert len(shown) == len(values), f"{name} ({when}): {len(shown)} controls on screen, kernel has {values}"
    for label, text, value, kernel_label in zip(labels, shown, values, kernel_labels):
        if text is not None and kernel_label is not None and kernel_label != str(value):  # (label, value) options
            assert text == kernel_label, (f"{name} ({when}): control {label!r} shows {text!r}, the kernel's "
                                          f"{value!r} is labelled {kernel_label!r}")
            continue
        assert same_value(text, value), f"{name} ({when}): control {label!r} shows {text!r}, the kernel has {value!r}"
    images = [png_digest(src) for src in shown_output(view)["images"]]
    assert images == entry["images"], (
        f"{name} ({when}): the page shows {len(images)} image(s) that differ from what "
        f"{name}'s plain function draws for {entry['values']} ({len(entry['images'])} image(s))"
        + (f"; it raised: {entry.get('error')}" if entry.get("error") else ""))


@pytest.mark.parametrize("lecture", LECTURES, ids=lambda p: p.stem)
def test_lecture_runs_and_its_widgets_work(page, lab, shots, lecture):
    source = nbformat.read(lecture, as_version=4)
    nb = Notebook.open(page, lab, f"lectures/{lecture.name}", shots, lecture.stem)
    try:
        nb.screenshot("opened")
        seconds = nb.run_all(RUN_SECONDS)
        cells = nb.report()
        nb.screenshot("ran-all")
        print(f"{lecture.name}: Run All took {seconds:.1f} s")

        # every code cell ran, none errored
        code_cells = [c for c in source.cells if c.cell_type == "code"]
        assert len(cells) == len(code_cells)
        errors = [(c["index"], o["text"]) for c, o in _outputs(cells) if o["type"] == "error"]
        assert not errors, f"cells errored (index, error): {errors}"
        not_run = [c["index"] for c in cells if c["count"] is None]
        assert not not_run, f"cells never ran: {not_run}"

        # every figure shows
        figures = [(c["index"], o) for c, o in _outputs(cells) if "image/png" in o["mimes"]]
        assert figures, "the lecture shows no figure"
        broken = [index for index, o in figures if not o.get("images") or not all(o["images"])]
        assert not broken, f"figures that did not render, in cells {broken}"
        nb.screenshot("first-figure", page.locator(".jp-OutputArea-output img").first)

        # every widget the kernel displayed is rendered: as many views as widget outputs, no placeholder
        views = [o for _, o in _outputs(cells) if "model_id" in o]
        failed = [(o["view"], o.get("shown", "")[:80]) for o in views if not o.get("rendered")]
        assert not failed, f"widget outputs not rendered (view, what shows instead): {failed}"
        rendered = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) [data-course-view] > .jupyter-widgets")
        assert rendered.count() == len(views)

        kernel = nb.kernel_json(KERNEL_CHECK.format(ids=[o["model_id"] for o in views]))
        assert kernel["fast"], "JupyterLab was started with COURSE_FAST=1 but the kernel is not in fast mode"
        described = kernel["views"]
        problems = [d for d in described if d["kind"] in ("missing", "unregistered")]
        assert not problems, ("widgets the registry does not know (decorate their builder with "
                              f"course_utils.widgets.demo): {problems}")

        # tqdm bars are widgets, not text
        text_bars = [c["index"] for c, o in _outputs(cells) if o["type"] == "stream" and
                     re.search(r"\d+%\|", o.get("text", ""))]
        assert not text_bars, f"progress bars printed as text in cells {text_bars}"
        bars = [o for o, d in zip(views, described) if d["kind"] == "progress"]
        if any("training.fit(" in c.source for c in code_cells):
            assert bars, "the lecture trains with training.fit but no progress bar widget was displayed"
        for bar in bars:
            assert bar["progress_bars"] == 1 and "100%" in bar["shown"], f"progress bar: {bar}"
            nb.screenshot("progress-bar", nb.view(bar["view"]))

        # every registered widget: shows its figure, and each control moves it
        demos = [(o, d) for o, d in zip(views, described) if d["kind"] == "demo"]
        for output, entry in demos:
            view = nb.view(output["view"])
            _check_demo_on_screen(view, entry, "after Run All")
            nb.screenshot(f"{entry['name']}-start", view)
            moved = []
            for control in controls(view):
                before, value_before = shown_output(view), control_value(control)
                done = move(page, control)
                if done is None:
                    continue
                after = wait_for_new_output(nb, view, before)
                assert control_value(control) != value_before, f"{entry['name']}: {done} did not move the control"
                assert after != before, f"{entry['name']}: {done} did not change what the widget shows"
                moved.append(done)
            assert moved, f"{entry['name']}: none of its controls could be moved"
            print(f"{entry['name']}: moved {moved}")
            nb.screenshot(f"{entry['name']}-moved", view)

        if demos:  # the pictures on screen are the plain functions' figures for the new values
            after = nb.kernel_json(KERNEL_CHECK.format(ids=[o["model_id"] for o, _ in demos]))["views"]
            for (output, _), entry in zip(demos, after):
                _check_demo_on_screen(nb.view(output["view"]), entry, "after moving every control")
        nb.screenshot("end")
    finally:
        lab.shutdown_kernels()


def _student_answers(assignment: str) -> dict[str, str]:
    """grade_id -> what a student types: the model code without nbgrader's markers, or a written answer."""
    source = nbformat.read(COURSE_ROOT / "solutions" / assignment / f"{assignment}.ipynb", as_version=4)
    answers = {}
    for cell in source.cells:
        meta = cell.metadata.get("nbgrader", {})
        if not meta.get("solution"):
            continue
        if cell.cell_type == "code":
            lines = [line for line in cell.source.splitlines() if "### BEGIN SOLUTION" not in line
                     and "### END SOLUTION" not in line]
            answers[meta["grade_id"]] = "\n".join(lines)
        else:
            answers[meta["grade_id"]] = ("Two outputs per side: the windows start at columns 0 and 3, and the "
                                         "last column is never read, so PyTorch drops it.")
    return answers


def _validate(nb: Notebook, name: str) -> tuple[str, str]:
    """Click Validate; return the result dialog's class and text (then close it)."""
    page = nb.page
    page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .validate-button").click()
    message = page.locator("#validation-message")
    message.wait_for(timeout=240_000)
    classes, text = message.get_attribute("class") or "", message.inner_text()
    nb.screenshot(name)
    page.locator(".jp-Dialog .jp-mod-accept").click()
    message.wait_for(state="detached")
    return classes, text


def test_student_answers_and_validates_the_warmup(page, lab, shots):
    path = f"work/{WARMUP}/{WARMUP}.ipynb"
    assert (lab.root / path).is_file(), "make start did not copy the assignment"
    nb = Notebook.open(page, lab, path, shots, f"assignment-{WARMUP}")
    try:
        nb.screenshot("opened")

        # unanswered: the first answer cell raises NotImplementedError and Run All stops there
        nb.run_all()
        errors = [o["text"] for c, o in _outputs(nb.report()) if o["type"] == "error"]
        assert errors and "NotImplementedError" in errors[0], errors
        nb.screenshot("unanswered-run")
        classes, text = _validate(nb, "unanswered-validate")
        assert "validation-failed" in classes and "not implemented yet" in text, text

        # answered the way a student does: typing into each answer cell
        model = nbformat.read(lab.root / path, as_version=4)
        answers = _student_answers(WARMUP)
        for index, cell in enumerate(model.cells):
            grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
            if grade_id in answers:
                nb.type_into(index, answers[grade_id])
        nb.run_all()
        cells = nb.report()
        errors = [(c["index"], o["text"]) for c, o in _outputs(cells) if o["type"] == "error"]
        assert not errors, f"the answered assignment still errors: {errors}"
        assert all(c["count"] is not None for c in cells)
        nb.screenshot("answered-run")
        classes, text = _validate(nb, "answered-validate")
        assert "validation-success" in classes and "Success! Your notebook passes all the tests." in text, text
    finally:
        lab.shutdown_kernels()


def test_instructor_sees_every_assignment_in_formgrader(page, lab, shots):
    page.goto(lab.url("lab", "reset"))
    page.wait_for_selector('.lm-MenuBar-itemLabel:text-is("Nbgrader")')
    page.click('.lm-MenuBar-itemLabel:text-is("Nbgrader")')
    page.click('.lm-Menu-item[data-command="nbgrader:open-formgrader"]')
    frame = page.frame_locator("iframe[src*='formgrader']")
    rows = frame.locator("table tbody tr")
    expected = sorted(p.name for p in (COURSE_ROOT / "solutions").iterdir() if p.is_dir())
    rows.filter(has_text=expected[0]).first.wait_for(timeout=60_000)
    listed = rows.all_inner_texts()
    page.screenshot(path=str(shots / "formgrader-01-manage-assignments.png"))
    for name in expected:
        assert any(row.split()[0] == name for row in listed if row.split()), f"{name} not listed: {listed}"
