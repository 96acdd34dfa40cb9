"""The browser suite: what students see, in headless Chromium driven by Playwright.

It runs with ``make test-browser``, which installs Debian's ``chromium`` (when root) and
requirements-dev.txt, then runs ``pytest tests/browser`` with ``COURSE_BROWSER_SUITE=1``.
Elsewhere (``make test-heavy``) these tests are skipped with a message saying so. Without
Chromium or Playwright they skip too, with the command that installs them; under CI
(``CI=true``) that is a failure instead, since CI must run them.

Fixtures: a copy of the course in a temporary folder (lectures, assignments, solutions,
nbgrader_config.py and a student's ``make start a0`` copy in ``work/``); JupyterLab served
from it by the course environment on a free localhost port with a token, with
``COURSE_FAST=1``; one browser for the session and a fresh page per test; the course
website built in fast mode. Screenshots of every step go to ``outputs/browser/`` (git-ignored;
``COURSE_SCREENSHOTS`` moves them), with JupyterLab's log.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from labdriver import WARMUP

from course_utils.notebooks import COURSE_ROOT

HERE = Path(__file__).resolve().parent
SUITE_ENV = "COURSE_BROWSER_SUITE"
SHOTS = Path(os.environ.get("COURSE_SCREENSHOTS", COURSE_ROOT / "outputs" / "browser"))
VIEWPORT = {"width": 1400, "height": 1350}  # tall enough for a whole widget in one screenshot


def pytest_collection_modifyitems(config, items):
    if os.environ.get(SUITE_ENV) == "1":
        return
    skip = pytest.mark.skip(reason="the browser suite runs with `make test-browser` (it installs Chromium, "
                                   "Playwright and the site tools first)")
    for item in items:
        if Path(str(item.fspath)).resolve().is_relative_to(HERE):
            item.add_marker(skip)


def unavailable(message: str):
    """Skip with ``message``; under CI, fail: the browser suite must run there."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{message} (CI must run the browser suite)", pytrace=False)
    pytest.skip(message)


def find_chromium() -> str | None:
    for name in (os.environ.get("COURSE_CHROMIUM"), "chromium", "chromium-browser"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


@pytest.fixture(scope="session")
def shots() -> Path:
    """The screenshot folder, emptied at the start of the session."""
    if SHOTS.exists():
        shutil.rmtree(SHOTS)
    SHOTS.mkdir(parents=True)
    return SHOTS


@pytest.fixture(scope="session")
def browser():
    chromium = find_chromium()
    if chromium is None:
        unavailable("Chromium is missing: install Debian's `chromium` package (`make test-browser` does "
                    "when run as root), or set COURSE_CHROMIUM to a Chromium binary")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("Playwright is missing: `make test-browser` installs it (requirements-dev.txt)")
    playwright = sync_playwright().start()
    # --no-sandbox: Chromium's sandbox refuses to run as root; the pages are our own, on localhost
    browser = playwright.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
    yield browser
    browser.close()
    playwright.stop()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.course_errors = []  # uncaught JavaScript errors, for failure messages
    page.on("pageerror", lambda err: page.course_errors.append(str(err)))
    yield page
    context.close()


# ---------------------------------------------------------------------------
# The course copy and JupyterLab
# ---------------------------------------------------------------------------
@pytest.fixture(scope="session")
def course_copy(tmp_path_factory) -> Path:
    """The course as a student and an instructor have it, in a temporary folder (never the repository:
    JupyterLab autosaves, and formgrader writes its gradebook next to nbgrader_config.py)."""
    from course_utils.assignments import start

    root = tmp_path_factory.mktemp("course")
    ignore = shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__")
    for folder in ("lectures", "assignments", "solutions"):
        shutil.copytree(COURSE_ROOT / folder, root / folder, ignore=ignore)
    shutil.copy2(COURSE_ROOT / "nbgrader_config.py", root / "nbgrader_config.py")
    start(WARMUP, root=root)  # what `make start a0` does
    return root


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Lab:
    """A running JupyterLab: ``url(path)`` gives an address with the token."""

    def __init__(self, root: Path, port: int, token: str, process: subprocess.Popen, log: Path) -> None:
        self.root, self.port, self.token, self.process, self.log = root, port, token, process, log
        self.base = f"http://127.0.0.1:{port}"

    def url(self, path: str, query: str = "") -> str:
        return f"{self.base}/{path.lstrip('/')}?{query + '&' if query else ''}token={self.token}"

    def api(self, path: str, method: str = "GET"):
        request = urllib.request.Request(f"{self.base}/api/{path}", method=method,
                                         headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
        return json.loads(body) if body else None

    def shutdown_kernels(self) -> None:
        """End every session's kernel (each test starts from fresh kernels, and memory stays low)."""
        for session in self.api("sessions"):
            self.api(f"sessions/{session['id']}", method="DELETE")

    def log_tail(self, n: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else ""


@pytest.fixture(scope="session")
def lab(course_copy, shots, tmp_path_factory):
    """JupyterLab from the course environment, serving the course copy, in fast mode."""
    config = tmp_path_factory.mktemp("lab-config")
    settings = config / "settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    # no "would you like news?" toast over the screenshots, no update check (there is no network)
    (settings / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    env = dict(os.environ)
    for name in ("MPLBACKEND", "COURSE_STATIC", "NBGRADER_EXECUTION", "JUPYTER_TOKEN"):
        env.pop(name, None)  # kernels get JupyterLab's inline figures, live widgets, a student's mode
    env.update({
        "COURSE_FAST": "1",
        "JUPYTERLAB_SETTINGS_DIR": str(config / "settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(config / "workspaces"),
        # as `make lab` does: nbgrader runs its helper `alembic` by name (formgrader's gradebook)
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
    })
    port, token = _free_port(), secrets.token_hex(16)
    log = shots / "jupyterlab.log"
    command = [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", "--ServerApp.ip=127.0.0.1",
               f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
               f"--ServerApp.root_dir={course_copy}", "--expose-app-in-browser",
               "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    with open(log, "w") as out:
        process = subprocess.Popen(command, cwd=course_copy, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL)
    server = Lab(course_copy, port, token, process, log)
    deadline = time.monotonic() + 120
    while True:
        if process.poll() is not None:
            pytest.fail(f"JupyterLab exited with {process.returncode}:\n{server.log_tail()}", pytrace=False)
        try:
            server.api("status")
            break
        except OSError:
            if time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"JupyterLab did not answer within 120 s:\n{server.log_tail()}", pytrace=False)
            time.sleep(0.5)
    yield server
    try:
        server.shutdown_kernels()
    except OSError:
        pass
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# ---------------------------------------------------------------------------
# The website
# ---------------------------------------------------------------------------
@pytest.fixture(scope="session")
def fast_site(tmp_path_factory):
    """The course website, built in fast mode (``make site`` builds it in default mode)."""
    from course_utils.website import build

    try:
        return build(fast=True, output=tmp_path_factory.mktemp("website") / "site", quiet=True)
    except RuntimeError as err:
        if "not installed" in str(err):
            unavailable(str(err))
        raise
