"""Sphinx configuration of the course website (built by `make site`, i.e. `python -m course_utils.website`).

The builder stages the pages in a folder (lectures executed, with their outputs; the
syllabus and notation; the released assignments, without solutions) and runs Sphinx
on it with this file: MyST-NB renders the notebooks, the Book theme lays them out,
MathJax ships with the site (sphinx-mathjax-offline), so it reads offline too.
"""

project = "Deep Learning for Computer Vision"
author = "the course authors"
copyright = "the course authors; text CC BY 4.0, code MIT"

extensions = [
    "myst_nb",                 # .md and .ipynb pages (executed by the builder, not by Sphinx)
    "sphinx.ext.mathjax",
    "sphinx-mathjax-offline",  # MathJax 3 copied into the site instead of loaded from a CDN
]
root_doc = "index"
exclude_patterns = ["_build", "**/.ipynb_checkpoints"]

# MyST: $...$ and $$...$$ math as in JupyterLab, \begin{align} blocks
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 3

# The builder has already run every lecture (fast or default mode): Sphinx only renders.
nb_execution_mode = "off"
nb_merge_streams = True          # one block per stream, carriage returns (progress bars) resolved
nb_output_stderr = "show"
nb_ipywidgets_js = {}            # no widget JavaScript from a CDN: widgets are stills in the site

html_theme = "sphinx_book_theme"
html_title = "Deep Learning for Computer Vision"
html_static_path = ["_static"]
html_css_files = ["course.css"]
html_last_updated_fmt = None
html_copy_source = True   # the download button offers each page's source (the executed notebook)
html_show_sourcelink = False
html_theme_options = {
    "show_toc_level": 2,
    "use_download_button": True,
    "use_fullscreen_button": False,
    "home_page_in_toc": True,
    "navbar_persistent": [],  # the sidebar has the search field; no second one in a header band
}
html_context = {"default_mode": "light"}
