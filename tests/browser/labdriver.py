"""Drive a notebook in JupyterLab as a student does, and read back what the page shows.

Menus and buttons are clicked the way a person would. JupyterLab runs with
``--expose-app-in-browser``, so the tests can also read the notebook's model (which
outputs the kernel sent) and compare it with the DOM (what was rendered).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import time
from pathlib import Path

WARMUP = "a0_warmup"  # the assignment a student opens, answers and validates

# The notebook panel of `path`, once JupyterLab has opened it (kept as window.courseNotebook).
_FIND_PANEL = """(path) => {
  const app = window.jupyterapp;
  if (!app) return false;
  for (const w of app.shell.widgets('main')) {
    if (w.context && w.context.path === path && w.content && w.sessionContext) {
      window.courseNotebook = w; return true;
    }
  }
  return false;
}"""

_KERNEL_IDLE = """() => {
  const s = window.courseNotebook.sessionContext.session;
  return !!(s && s.kernel && s.kernel.status === 'idle');
}"""

# Idle and no cell queued or running ("[*]"): a run has finished (or stopped at an error).
_SETTLED = """() => {
  const panel = window.courseNotebook, s = panel.sessionContext.session;
  if (!(s && s.kernel && s.kernel.status === 'idle')) return false;
  return panel.content.widgets.every(c => c.model.type !== 'code' ||
      !(c.node.querySelector('.jp-InputPrompt') || {textContent: ''}).textContent.includes('*'));
}"""

# Every code cell with its outputs as the kernel sent them, and what the page rendered for each.
# Widget views are tagged data-course-view="<n>" (n counts them in notebook order).
_REPORT = """() => {
  const cells = []; let views = 0;
  window.courseNotebook.content.widgets.forEach((cell, index) => {
    if (cell.model.type !== 'code') return;
    const outputs = [], area = cell.outputArea;
    for (let j = 0; j < area.model.length; j++) {
      const o = area.model.get(j).toJSON();
      const entry = {type: o.output_type, mimes: Object.keys(o.data || {}), name: o.name || null};
      if (o.output_type === 'stream') entry.text = String(o.text).slice(-3000);
      if (o.output_type === 'error') entry.text = o.ename + ': ' + o.evalue;
      const child = area.widgets[j];
      const node = child ? child.node.querySelector('.jp-OutputArea-output') : null;
      if (node) {
        entry.images = Array.from(node.querySelectorAll('img')).map(i => i.complete && i.naturalWidth > 0);
        entry.shown = node.textContent.slice(0, 300);  // textContent: cells off screen are not laid out
      }
      const view = (o.data || {})['application/vnd.jupyter.widget-view+json'];
      if (view) {
        entry.model_id = view.model_id;
        entry.view = views++;
        if (node) {
          node.setAttribute('data-course-view', String(entry.view));
          const rendered = node.querySelector(':scope > .jupyter-widgets');
          const placeholder = /^(Error displaying widget|Loading widget)/.test(node.textContent.trim());
          entry.rendered = !!rendered && !placeholder;
          entry.widget_classes = rendered ? rendered.className : '';
          entry.progress_bars = node.querySelectorAll('.widget-hprogress .progress-bar').length;
        }
      }
      outputs.push(entry);
    }
    cells.push({index, count: cell.model.executionCount, source: cell.model.sharedModel.getSource(), outputs});
  });
  return cells;
}"""

# Add a code cell at the end of the notebook with `source`, run it; returns its index.
_APPEND_AND_RUN = """async (source) => {
  const app = window.jupyterapp, panel = window.courseNotebook, nb = panel.content;
  app.shell.activateById(panel.id);
  nb.activeCellIndex = nb.widgets.length - 1;
  await app.commands.execute('notebook:insert-cell-below');
  if (nb.activeCell.model.type !== 'code') await app.commands.execute('notebook:change-cell-to-code');
  nb.activeCell.model.sharedModel.setSource(source);
  await app.commands.execute('notebook:run-cell');
  return nb.activeCellIndex;
}"""

_CELL_DONE = """(index) => {
  const cell = window.courseNotebook.content.widgets[index];
  return cell.model.executionCount !== null &&
      !cell.node.querySelector('.jp-InputPrompt').textContent.includes('*');
}"""

_CELL_STDOUT = """(index) => {
  const area = window.courseNotebook.content.widgets[index].outputArea, parts = [];
  for (let j = 0; j < area.model.length; j++) {
    const o = area.model.get(j).toJSON();
    if (o.output_type === 'stream') parts.push(String(o.text));
    if (o.output_type === 'error') parts.push('ERROR ' + o.ename + ': ' + o.evalue);
  }
  return parts.join('');
}"""


class Notebook:
    """One notebook open in JupyterLab in a Playwright page."""

    def __init__(self, page, lab, path: str, shots: Path, prefix: str) -> None:
        self.page, self.lab, self.path, self.shots, self.prefix = page, lab, path, shots, prefix
        self.step = 0

    @classmethod
    def open(cls, page, lab, path: str, shots: Path, prefix: str) -> Notebook:
        """Open ``path`` in a fresh JupyterLab workspace and wait for its kernel."""
        page.goto(lab.url(f"lab/tree/{path}", "reset"))
        page.wait_for_function(_FIND_PANEL, arg=path, timeout=90_000)
        page.wait_for_selector(".jp-NotebookPanel .jp-Cell", timeout=60_000)
        notebook = cls(page, lab, path, shots, prefix)
        notebook.wait_idle(90)
        return notebook

    # --- waiting ---------------------------------------------------------
    def wait_idle(self, seconds: float = 120) -> None:
        self.page.wait_for_function(_KERNEL_IDLE, timeout=seconds * 1000, polling=200)

    def wait_settled(self, seconds: float) -> None:
        """Until the kernel is idle and no cell is queued, twice in a row half a second apart."""
        deadline = time.monotonic() + seconds
        while True:
            remaining = max(deadline - time.monotonic(), 1)
            self.page.wait_for_function(_SETTLED, timeout=remaining * 1000, polling=250)
            self.page.wait_for_timeout(500)
            if self.page.evaluate(_SETTLED):
                return

    # --- what a student does ---------------------------------------------
    def menu(self, menu: str, command: str) -> None:
        """Click a menu of the menu bar, then the item that runs ``command``."""
        self.page.click(f'.lm-MenuBar-itemLabel:text-is("{menu}")')
        self.page.click(f'.lm-Menu-item[data-command="{command}"]')

    def run_all(self, seconds: float = 300) -> float:
        """Run > Run All Cells; wait until the run has finished (or stopped at an error); return seconds."""
        start = time.monotonic()
        self.menu("Run", "runmenu:run-all")
        self.page.wait_for_timeout(500)
        self.wait_settled(seconds)
        return time.monotonic() - start

    def cell(self, index: int):
        """The locator of cell ``index`` (all cells, markdown included)."""
        self.page.evaluate("(i) => window.courseNotebook.content.widgets[i].node.setAttribute('data-course-cell', i)",
                           index)
        return self.page.locator(f'[data-course-cell="{index}"]')

    def type_into(self, index: int, text: str) -> None:
        """Click into cell ``index``, select its text and type ``text`` over it, as a student edits a cell."""
        cell = self.cell(index)
        if "jp-MarkdownCell" in (cell.get_attribute("class") or ""):
            cell.dblclick()  # a rendered markdown cell opens its editor on a double click
        editor = cell.locator(".cm-content")
        editor.click()
        self.page.keyboard.press("Control+a")
        self.page.keyboard.insert_text(text)
        self.page.keyboard.press("Escape")  # back to command mode

    # --- reading the page ------------------------------------------------
    def report(self) -> list[dict]:
        return self.page.evaluate(_REPORT)

    def append_and_run(self, source: str, seconds: float = 120) -> str:
        """Add a code cell at the end, run it, return what it printed (errors included)."""
        index = self.page.evaluate(_APPEND_AND_RUN, source)
        self.page.wait_for_function(_CELL_DONE, arg=index, timeout=seconds * 1000, polling=250)
        self.wait_idle(seconds)
        return self.page.evaluate(_CELL_STDOUT, index)

    def kernel_json(self, source: str) -> dict:
        """Run ``source`` (which prints one JSON line last) in the notebook's kernel; return that JSON."""
        printed = self.append_and_run(source)
        lines = [line for line in printed.strip().splitlines() if line.startswith("{")]
        assert lines, f"the check cell printed no JSON:\n{printed}"
        return json.loads(lines[-1])

    def screenshot(self, name: str, locator=None) -> Path:
        """Save a numbered screenshot: the page, or one element scrolled into view."""
        self.step += 1
        path = self.shots / f"{self.prefix}-{self.step:02d}-{name}.png"
        if locator is not None:
            locator.scroll_into_view_if_needed()
            self.page.wait_for_timeout(200)
            locator.screenshot(path=str(path))
        else:
            self.page.screenshot(path=str(path))
        return path

    def view(self, n: int):
        """The locator of widget view ``n`` (numbered by :meth:`report`)."""
        return self.page.locator(f'[data-course-view="{n}"]')


# ---------------------------------------------------------------------------
# Widgets in the page
# ---------------------------------------------------------------------------
def png_digest(src: str) -> str:
    """sha256 of the PNG in a data: URL (as the kernel computes it for the figure it expects)."""
    match = re.match(r"data:image/png;base64,(.*)", src, re.S)
    assert match, f"not a PNG data URL: {src[:60]}"
    return hashlib.sha256(base64.b64decode(match.group(1))).hexdigest()


def shown_output(view) -> dict:
    """What an interactive widget's output area shows now: its images' sources and its text."""
    return view.evaluate("""(el) => {
      const out = el.querySelector('.widget-output');
      if (!out) return {images: [], text: ''};
      return {images: Array.from(out.querySelectorAll('img')).map(i => i.src), text: out.textContent.trim()};
    }""")


def controls(view) -> list:
    """The controls of an interactive widget, in order (everything but its output area)."""
    return view.locator(":scope > .widget-interact > :not(.widget-output)").all()


def control_label(control) -> str:
    label = control.locator(".widget-label")
    return (label.first.text_content() or "").strip() if label.count() else "?"


def control_value(control) -> str | None:
    """The value a control displays: a slider's readout, a dropdown's choice, the active toggle button."""
    kind = control.get_attribute("class") or ""  # text_content, not inner_text: it needs no layout
    if "widget-slider" in kind:
        return (control.locator(".widget-readout").text_content() or "").strip()
    if "widget-dropdown" in kind:
        return control.locator("select").input_value()
    if "widget-toggle-buttons" in kind:
        return (control.locator("button.mod-active").text_content() or "").strip()
    if "widget-checkbox" in kind:
        return str(control.locator("input").is_checked())
    return None


def move(page, control) -> str | None:
    """Move a control one step, as a person would (keyboard on sliders, clicks elsewhere).

    Returns what was done, or None when the control cannot move (a slider whose range is a single
    value, or a kind of control this does not know).
    """
    kind = control.get_attribute("class") or ""
    label = control_label(control)
    if "widget-slider" in kind:
        if control.locator(".noUi-target[disabled]").count():
            return None  # greyed out: the settings in force make it irrelevant
        handle = control.locator(".noUi-handle").first
        low, high = (float(handle.get_attribute(a)) for a in ("aria-valuemin", "aria-valuemax"))
        now = float(control.locator(".widget-readout").text_content())
        if high <= low:
            return None
        key = "ArrowRight" if now < high else "ArrowLeft"
        handle.focus()
        handle.press(key)
        return f"{label}: {key}"
    if "widget-dropdown" in kind:
        select = control.locator("select")
        options = [o.strip() for o in select.locator("option").all_text_contents()]
        current = int(select.evaluate("s => s.selectedIndex"))  # by position: an option's text may be a label
        others = [i for i in range(len(options)) if i != current]
        if not others:
            return None
        select.select_option(index=others[0])
        return f"{label}: {options[current] if current >= 0 else None} -> {options[others[0]]}"
    if "widget-toggle-buttons" in kind:
        buttons = control.locator("button.widget-toggle-button:not(.mod-active)")
        if not buttons.count():
            return None
        text = (buttons.first.text_content() or "").strip()
        buttons.first.click()
        return f"{label}: {text}"
    if "widget-checkbox" in kind:
        control.locator("input").click()
        return f"{label}: toggled"
    return None


def wait_for_new_output(notebook: Notebook, view, before: dict, seconds: float = 60) -> dict:
    """Wait until the widget's output differs from ``before`` and has stopped changing; return it."""
    deadline = time.monotonic() + seconds
    last = None
    while time.monotonic() < deadline:
        now = shown_output(view)
        idle = notebook.page.evaluate(_KERNEL_IDLE)
        if now != before and (now["images"] or now["text"]) and idle and now == last:
            return now
        last = now
        notebook.page.wait_for_timeout(400)
    return shown_output(view)


def same_value(shown: str | None, value) -> bool:
    """Does a control's displayed text stand for the kernel's value (numbers compared as numbers)?"""
    if shown is None:
        return True
    if isinstance(value, bool):
        return shown == str(value)
    if isinstance(value, (int, float)):
        try:  # a readout shows a rounded value ("0.10" for 0.1000000001)
            decimals = len(shown.split(".")[1]) if "." in shown else 0
            return round(float(value), decimals) == round(float(shown), decimals)
        except ValueError:
            return False
    return shown == str(value)
