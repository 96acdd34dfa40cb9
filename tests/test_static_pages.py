"""Static mode (the course website): progress bars become one line of text; the site's page list."""

import pytest
import torch
from torch import nn

from course_utils import training, website
from course_utils.notebooks import COURSE_ROOT
from course_utils.widgets import registry


def _tiny_fit(**options):
    x, y = torch.randn(48, 4), torch.randint(0, 2, (48,))
    loader = [(x[i:i + 16], y[i:i + 16]) for i in range(0, 48, 16)]
    return training.fit(nn.Linear(4, 2), loader, epochs=2, device="cpu", **options)


def test_a_static_page_gets_the_progress_bar_as_one_final_line(monkeypatch, capsys):
    monkeypatch.setenv(registry.STATIC_ENV, "1")
    _tiny_fit()
    out, err = capsys.readouterr()
    assert out.count("training:") == 1 and "100%" in out and "6/6" in out and "\r" not in out
    assert "epoch=2" in out and err == ""
    _tiny_fit(progress=False)
    assert capsys.readouterr().out == ""


def test_elsewhere_the_progress_bar_is_tqdm_auto(monkeypatch):
    monkeypatch.delenv(registry.STATIC_ENV, raising=False)
    bar = training._progress_bar(total=3, disable=True)
    assert not isinstance(bar, training._FinalLine)
    bar.close()


def test_the_site_lists_every_lecture_doc_and_released_assignment():
    pages = website.site_pages()
    assert pages[0] == "index.html" and "docs/syllabus.html" in pages and "docs/notation.html" in pages
    lectures = sorted(p.stem for p in (COURSE_ROOT / "lectures").glob("*.ipynb"))
    assert [p for p in pages if p.startswith("lectures/")] == [f"lectures/{name}.html" for name in lectures]
    released = sorted(COURSE_ROOT.glob("assignments/*/*.ipynb"))
    assert [p for p in pages if p.startswith("assignments/")] == [
        str(p.relative_to(COURSE_ROOT).with_suffix(".html")) for p in released]
    assert not any(p.startswith("solutions/") for p in pages)


def test_the_site_build_says_which_tools_are_missing(monkeypatch):
    monkeypatch.setattr(website.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(RuntimeError, match="make site"):
        website.build(fast=True)
