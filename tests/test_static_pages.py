"""Static mode (the course website): progress bars become one line of text; the site's page list."""

import re

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


def _promised_by_the_syllabus() -> tuple[list[str], list[str]]:
    """The lectures and assignments that docs/syllabus.md marks **available**: what a student is told exists."""
    rows = "\n".join(line for line in (COURSE_ROOT / "docs" / "syllabus.md").read_text(encoding="utf-8").splitlines()
                     if line.startswith("|") and "**available**" in line)
    return re.findall(r"`lectures/(\w+)\.ipynb`", rows), re.findall(r"`assignments/(\w+)/`", rows)


def test_the_syllabus_listing_reads_as_expected():
    lectures, assignments = _promised_by_the_syllabus()
    assert lectures[:3] == ["00_getting_started", "01_convolution_arithmetic", "02_transposed_convolution"]
    assert assignments[:2] == ["a0_warmup", "a1_convolutions"]


def test_the_site_lists_every_page_the_syllabus_promises_and_nothing_else():
    """Against the syllabus, not the globs the site code uses: a page the code drops, or one it adds, fails."""
    lectures, assignments = _promised_by_the_syllabus()
    expected = ["index.html", "docs/syllabus.html", "docs/notation.html"]
    expected += [f"lectures/{name}.html" for name in sorted(lectures)]
    expected += [f"assignments/{name}/{name}.html" for name in sorted(assignments)]
    assert website.site_pages() == expected


def test_the_page_list_of_another_course_root_skips_checkpoint_copies(tmp_path):
    """site_pages(root) lists that root's lectures and assignments, not Jupyter's checkpoint copies of them."""
    for folder in ("lectures", "assignments/a0_warmup"):
        (tmp_path / folder).mkdir(parents=True)
    (tmp_path / "lectures" / "00_intro.ipynb").write_text("{}")
    (tmp_path / "lectures" / ".ipynb_checkpoints").mkdir()
    (tmp_path / "lectures" / ".ipynb_checkpoints" / "00_intro-checkpoint.ipynb").write_text("{}")
    (tmp_path / "assignments" / "a0_warmup" / "a0_warmup.ipynb").write_text("{}")
    assert website.site_pages(tmp_path) == ["index.html", "docs/syllabus.html", "docs/notation.html",
                                            "lectures/00_intro.html", "assignments/a0_warmup/a0_warmup.html"]


def test_the_site_build_says_which_tools_are_missing(monkeypatch):
    monkeypatch.setattr(website.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(RuntimeError, match="make site"):
        website.build(fast=True)
