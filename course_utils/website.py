"""Build the course website: every lecture executed, with outputs and figures, as a static site.

    python -m course_utils.website                       # default mode -> build/site/index.html
    python -m course_utils.website --fast --output /tmp/site

``make site`` runs the first line. The build stages the pages in ``<output>-src/`` (Sphinx's
cache goes to ``<output>-doctrees/``):
the lectures, executed top to bottom in a fresh kernel (default mode unless
``--fast``; on a GPU where there is one) with ``COURSE_STATIC=1``, so that every
widget shows a still of its figure and a note on running it live (see
``course_utils.widgets.registry``) and progress bars are text; the syllabus and
the notation sheet; the assignments as released (``assignments/``: no solutions,
not executed); and ``website/index.md``. Sphinx with MyST-NB and the Book theme
(``website/conf.py``) then renders the pages; MathJax ships inside the site, so
it also reads offline. A lecture cell that fails stops the build and is reported
with its number, its source and the traceback, as ``course_utils.notebooks`` does.

Sphinx and its extensions are not part of the students' environment: they are in
``requirements-dev.txt``, which ``make site`` installs.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from .notebooks import COURSE_ROOT, NotebookError, run_notebook, stored_notebooks
from .widgets.registry import STATIC_ENV

__all__ = ["SiteBuild", "build", "site_pages", "SITE_DOCS", "WEBSITE_DIR"]

WEBSITE_DIR = COURSE_ROOT / "website"  # conf.py, index.md, _static/
SITE_DOCS = ("docs/syllabus.md", "docs/notation.md")  # the course's own pages in the site
_IGNORE = shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__", "*.pyc")
_SITE_PACKAGES = {"sphinx": "sphinx", "myst_nb": "myst-nb", "sphinx_book_theme": "sphinx-book-theme",
                  "sphinx-mathjax-offline": "sphinx-mathjax-offline"}  # module -> package on PyPI


def _check_tools() -> None:
    missing = [package for module, package in _SITE_PACKAGES.items() if importlib.util.find_spec(module) is None]
    if missing:
        raise RuntimeError(f"the site needs {', '.join(missing)}, which are not installed: run `make site` "
                           f"(it installs requirements-dev.txt) or `pip install -r requirements-dev.txt`")


@dataclass
class SiteBuild:
    """What a build made: ``output`` (the HTML), ``pages`` (relative .html paths) and seconds per step."""

    output: Path
    fast: bool
    pages: list[str]
    seconds: dict[str, float] = field(default_factory=dict)


def site_pages(root: Path = COURSE_ROOT) -> list[str]:
    """The pages the site must have, as paths relative to its root (``lectures/00_x.html``, ...)."""
    pages = ["index.html"] + [str(Path(doc).with_suffix(".html")) for doc in SITE_DOCS]
    pages += [str(p.relative_to(root).with_suffix(".html")) for p in stored_notebooks(root, ("lectures",))]
    pages += [str(p.relative_to(root).with_suffix(".html")) for p in stored_notebooks(root, ("assignments",))]
    return pages


def _device_name() -> str:
    from .device import get_device

    return get_device(verbose=False).type


def _stage(stage: Path, fast: bool, root: Path, timeout: int, log) -> dict[str, float]:
    """Fill ``stage`` with the pages Sphinx renders; return the seconds each lecture took to run."""
    if stage.exists():
        shutil.rmtree(stage)
    stage.mkdir(parents=True)
    shutil.copy2(WEBSITE_DIR / "index.md", stage / "index.md")
    for doc in SITE_DOCS:
        (stage / doc).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / doc, stage / doc)
    # assignments as released: students' starting point, no outputs, no solutions
    shutil.copytree(root / "assignments", stage / "assignments", ignore=_IGNORE)

    seconds = {}
    (stage / "lectures").mkdir()
    for lecture in stored_notebooks(root, ("lectures",)):
        start = time.perf_counter()
        log(f"running {lecture.relative_to(root)} ({'fast' if fast else 'default'} mode) ...")
        run_notebook(lecture, fast=fast, timeout=timeout, output=stage / "lectures" / lecture.name,
                     env={STATIC_ENV: "1"})
        seconds[lecture.name] = time.perf_counter() - start
        log(f"  done in {seconds[lecture.name]:.1f} s")

    mode = "fast mode (`COURSE_FAST=1`: small data, few epochs)" if fast else "default mode"
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    with open(stage / "index.md", "a", encoding="utf-8") as index:
        index.write(f"\n*This build: the lectures ran in {mode} on the {_device_name().upper()} "
                    f"on {when}.*\n")
    return seconds


def build(fast: bool = False, output: Path | str | None = None, root: Path = COURSE_ROOT, timeout: int = 900,
          quiet: bool = False) -> SiteBuild:
    """Execute the lectures and render the whole site into ``output`` (default ``build/site``).

    fast:    run the lectures with ``COURSE_FAST=1`` (the tests do); the site to publish uses the default.
    timeout: seconds allowed per cell.
    Raises :class:`~course_utils.notebooks.NotebookError` if a lecture cell fails and
    RuntimeError if Sphinx reports an error or a warning (a broken link, a missing page).
    """
    _check_tools()
    log = (lambda message: None) if quiet else (lambda message: print(message, flush=True))
    output = Path(output or root / "build" / "site").resolve()
    stage, doctrees = output.with_name(output.name + "-src"), output.with_name(output.name + "-doctrees")
    started = time.perf_counter()
    seconds = {f"run {name}": s for name, s in _stage(stage, fast, root, timeout, log).items()}

    for folder in (output, doctrees):  # a clean build every time: no page left from an earlier one
        if folder.exists():
            shutil.rmtree(folder)
    log(f"rendering the site with Sphinx into {output} ...")
    start = time.perf_counter()
    # -W: a warning (unresolved reference, page outside the table of contents) fails the build
    command = [sys.executable, "-m", "sphinx", "-b", "html", "-c", str(WEBSITE_DIR), "-W", "--keep-going",
               "-q", "-d", str(doctrees), str(stage), str(output)]
    result = subprocess.run(command, capture_output=True, text=True)
    seconds["sphinx"] = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"Sphinx failed (exit {result.returncode}):\n{result.stdout[-3000:]}\n"
                           f"{result.stderr[-6000:]}")
    pages = site_pages(root)
    missing = [page for page in pages if not (output / page).is_file()]
    if missing:
        raise RuntimeError(f"the site is missing pages: {missing}")
    seconds["total"] = time.perf_counter() - started
    log(f"site ready: {output / 'index.html'} ({len(pages)} pages, {seconds['total']:.0f} s)")
    return SiteBuild(output, fast, pages, seconds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course_utils.website", description=__doc__.split("\n")[0])
    parser.add_argument("--fast", action="store_true", help="run the lectures in fast mode (COURSE_FAST=1)")
    parser.add_argument("--output", type=Path, help="where the HTML goes (default build/site)")
    parser.add_argument("--timeout", type=int, default=900, help="seconds per cell (default 900)")
    args = parser.parse_args(argv)
    try:
        build(fast=args.fast, output=args.output, timeout=args.timeout)
    except (NotebookError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
