"""Shared fixtures. Unit tests run headless (matplotlib's Agg backend) and in fast mode."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")

HEAVY = Path(__file__).resolve().parent / "heavy"


@pytest.hookimpl(tryfirst=True)  # before pytest's own -m selection, which reads the markers
def pytest_collection_modifyitems(config, items):
    """Everything under tests/heavy/ is the slow tier (`make test-heavy`), whatever its file says."""
    for item in items:
        if HEAVY in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.heavy)


@pytest.fixture
def fast_mode(monkeypatch):
    monkeypatch.setenv("COURSE_FAST", "1")
    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)


@pytest.fixture
def default_mode(monkeypatch):
    monkeypatch.setenv("COURSE_FAST", "0")
    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)


class NetworkBlocked(OSError):
    pass


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to resolve or connect to a host outside this machine raises NetworkBlocked."""
    attempts: list[str] = []
    real_connect = socket.socket.connect

    def guarded_connect(self, address):
        host = address[0] if isinstance(address, tuple) else address
        if isinstance(host, str) and (host.startswith("127.") or host in ("::1", "localhost")) or \
                self.family == getattr(socket, "AF_UNIX", None):
            return real_connect(self, address)
        attempts.append(str(host))
        raise NetworkBlocked(f"network access blocked by the test: connect to {host}")

    def guarded_getaddrinfo(host, *args, **kwargs):
        if host in ("localhost", "127.0.0.1", "::1", None):
            return real_getaddrinfo(host, *args, **kwargs)
        attempts.append(str(host))
        raise NetworkBlocked(f"network access blocked by the test: resolve {host}")

    real_getaddrinfo = socket.getaddrinfo
    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    monkeypatch.setattr(socket, "getaddrinfo", guarded_getaddrinfo)
    return attempts


@pytest.fixture
def make_submission(tmp_path):
    """make_submission(answers, name=...) -> a copy of an assignment's release with cells replaced.

    answers: {grade_id: new source}; a grade_id of a test cell edits the test cell (tampering).
    after:   {grade_id: source of a new code cell inserted right after that cell}.
    """
    import nbformat

    from course_utils.grading import COURSE_ROOT

    def make(answers: dict[str, str], assignment: str = "a0_warmup", name: str = "student",
             after: dict[str, str] | None = None) -> Path:
        nb = nbformat.read(COURSE_ROOT / "assignments" / assignment / f"{assignment}.ipynb", as_version=4)
        cells = []
        for cell in nb.cells:
            grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
            if grade_id in answers:
                cell.source = answers[grade_id]
            cells.append(cell)
            if grade_id in (after or {}):  # a student's own extra cell right after this one
                cells.append(nbformat.v4.new_code_cell(after[grade_id]))
        nb.cells = cells
        folder = tmp_path / "submissions" / name
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{assignment}.ipynb"
        nbformat.write(nb, path)
        return path

    return make
