"""The course website (``make site``), built in fast mode: every page, working links, no errors.

The first tests read the HTML (they need Sphinx, not a browser); the last one opens two
pages in Chromium and checks that math and figures render (MathJax ships with the site).
"""

from __future__ import annotations

import functools
import html
import http.server
import re
import threading
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import nbformat
import pytest

from course_utils.notebooks import COURSE_ROOT, stored_notebooks
from course_utils.widgets import DEMOS

pytestmark = [pytest.mark.heavy]


class _Page(HTMLParser):
    """Links (href/src), element ids and text of one HTML page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[tuple[str, str]] = []
        self.ids: set[str] = set()
        self.text: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for key in ("href", "src"):
            if attrs.get(key):
                self.links.append((tag, attrs[key]))
        for key in ("id", "name"):
            if attrs.get(key):
                self.ids.add(attrs[key])
        if tag in ("script", "style"):
            self._skip += 1

    def handle_endtag(self, tag):
        if tag in ("script", "style") and self._skip:
            self._skip -= 1

    def handle_data(self, data):
        if not self._skip:
            self.text.append(data)


@functools.cache
def _parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


def _text(path: Path) -> str:
    return re.sub(r"\s+", " ", "".join(_parse(path).text))


def test_every_page_exists(fast_site):
    print(f"site build (fast mode): {fast_site.seconds}")
    missing = [page for page in fast_site.pages if not (fast_site.output / page).is_file()]
    assert not missing
    index = _text(fast_site.output / "index.html")
    for lecture in stored_notebooks(folders=("lectures",)):
        title = nbformat.read(lecture, as_version=4).cells[0].source.splitlines()[0].lstrip("# ").strip()
        assert title in _text(fast_site.output / "lectures" / f"{lecture.stem}.html")
        assert title in index, f"the landing page does not list {title!r}"
    assert "fast mode" in index  # the page says how it was built


def test_internal_links_resolve(fast_site):
    root = fast_site.output
    broken = []
    pages = [p for p in root.rglob("*.html") if "_static" not in p.relative_to(root).parts]  # not theme files
    assert len(pages) >= len(fast_site.pages)
    for page in pages:
        for tag, link in _parse(page).links:
            parts = urlsplit(link)
            if parts.scheme or link.startswith("//"):
                # the site works offline: nothing loaded from elsewhere (links to read elsewhere are fine)
                if tag in ("script", "link", "img") and parts.scheme in ("http", "https"):
                    broken.append((str(page.relative_to(root)), link, "loaded from the network"))
                continue
            target = page if not parts.path else (page.parent / unquote(parts.path)).resolve()
            if target.is_dir():
                target = target / "index.html"
            if not target.is_file() or not target.is_relative_to(root):
                broken.append((str(page.relative_to(root)), link, "no such file"))
            elif parts.fragment and target.suffix == ".html" and unquote(parts.fragment) not in _parse(target).ids:
                broken.append((str(page.relative_to(root)), link, "no such anchor"))
    assert not broken, f"{len(broken)} broken links, e.g. {broken[:10]}"


def test_lectures_ran_without_errors_and_widgets_became_stills(fast_site):
    for lecture in stored_notebooks(folders=("lectures",)):
        page = fast_site.output / "lectures" / f"{lecture.stem}.html"
        raw = page.read_text(encoding="utf-8")
        assert "output traceback" not in raw and "ipythontb" not in raw, f"{page.name} shows an error"
        assert "widget-view+json" not in raw and "@jupyter-widgets" not in raw, f"{page.name} embeds a live widget"
        assert re.search(r'<img[^>]+src="[^"]*_images/', raw), f"{page.name} has no figure"
        source = "\n".join(c.source for c in nbformat.read(lecture, as_version=4).cells if c.cell_type == "code")
        used = [name for name in DEMOS if re.search(rf"widgets\.{name}\(", source)]
        notes = re.findall(r'<p class="course-widget-note">(.*?)</p>', raw, re.S)
        assert len(notes) == len(used), f"{page.name}: {len(notes)} widget notes for widgets {used}"
        for name, note in zip(used, notes):
            assert f"widgets.{name}()" in html.unescape(note) and "JupyterLab" in note
            # the still is the figure right above the note
            before = raw[:raw.index(note)]
            assert before.rfind("<img") > before.rfind('class="cell_input'), f"{name}: no still above its note"


def test_assignments_are_the_release_without_solutions(fast_site):
    for release in stored_notebooks(folders=("assignments",)):
        page = fast_site.output / release.relative_to(COURSE_ROOT).with_suffix(".html")
        text = _text(page)
        solution = nbformat.read(COURSE_ROOT / "solutions" / release.parent.name / release.name, as_version=4)
        hidden = []
        for cell in solution.cells:
            if "### BEGIN SOLUTION" not in cell.source:
                continue
            inside = cell.source.split("### BEGIN SOLUTION", 1)[1].split("### END SOLUTION", 1)[0]
            hidden += [line.strip() for line in inside.splitlines() if len(line.strip()) > 25]
        leaked = [line for line in hidden if re.sub(r"\s+", " ", line) in text]
        assert not leaked, f"{page.name} shows solution lines: {leaked[:3]}"
        assert "YOUR CODE HERE" in text or "YOUR ANSWER HERE" in text


@pytest.fixture(scope="module")
def served_site(fast_site):
    """The site over HTTP on localhost, as any static host serves it."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                             functools.partial(Quiet, directory=str(fast_site.output)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _first_lecture_with_a_widget() -> Path:
    for lecture in stored_notebooks(folders=("lectures",)):
        source = lecture.read_text(encoding="utf-8")
        if any(f"widgets.{name}(" in source for name in DEMOS) and "$" in source:
            return lecture
    return stored_notebooks(folders=("lectures",))[0]


@pytest.mark.parametrize("page_path", ["docs/notation.html", "lecture"])
def test_math_and_figures_render_in_a_browser(page, served_site, shots, page_path):
    if page_path == "lecture":
        page_path = f"lectures/{_first_lecture_with_a_widget().stem}.html"
    failed = []
    page.on("response", lambda r: failed.append(r.url) if r.status >= 400 and "favicon" not in r.url else None)
    page.goto(f"{served_site}/{page_path}")
    page.wait_for_load_state("networkidle")
    typeset = page.evaluate("async () => { await window.MathJax.startup.promise; "
                            "return document.querySelectorAll('mjx-container').length; }")
    math = page.locator(".math").count()
    assert typeset > 0 and math > 0, f"{page_path}: no math typeset ({typeset} of {math})"
    assert page.locator("mjx-merror").count() == 0, f"{page_path}: MathJax reports errors"
    raw = page.evaluate("() => Array.from(document.querySelectorAll('.math')).filter(e => "
                        "!e.querySelector('mjx-container')).map(e => e.textContent.slice(0, 60))")
    assert not raw, f"{page_path}: math left as TeX: {raw[:5]}"
    images = page.evaluate("() => Array.from(document.querySelectorAll('article img')).map(i => "
                           "[i.getAttribute('src'), i.complete && i.naturalWidth > 0])")
    assert all(ok for _, ok in images), f"{page_path}: images that did not load: {images}"
    if page_path.startswith("lectures/"):
        assert images, f"{page_path}: no figures"
        note = page.locator(".course-widget-note").first
        note.scroll_into_view_if_needed()
        page.screenshot(path=str(shots / f"site-{Path(page_path).stem}-widget-still.png"))
    assert not failed, f"{page_path}: requests that failed: {failed}"
    page.evaluate("() => window.scrollTo(0, 0)")
    page.screenshot(path=str(shots / f"site-{Path(page_path).stem}.png"))
