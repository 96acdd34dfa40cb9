"""Where the gradebook is (course_utils/grading/gradebook_url.py): nbgrader's config order, the environment variable,
URLs that cannot work named before any grading, passwords never shown. No database server needed."""

from __future__ import annotations

import importlib.util
import shutil
import sys

import pytest

from course_utils.grading import COURSE_ROOT, TempCourse
from course_utils.grading.gradebook_url import (URL_VAR, connection_problem, course_directory, gradebook_url, redact,
                                                url_problem)

PG = "postgresql://grader:s3cret@127.0.0.1:5432/gradebook"


@pytest.fixture
def course(tmp_path, monkeypatch):
    """A course folder with the course's nbgrader_config.py, an empty Jupyter config folder, no URL variable."""
    root = tmp_path / "course"
    root.mkdir()
    shutil.copy(COURSE_ROOT / "nbgrader_config.py", root / "nbgrader_config.py")
    monkeypatch.setenv("JUPYTER_CONFIG_DIR", str(tmp_path / "jupyter"))  # stands for ~/.jupyter
    monkeypatch.delenv(URL_VAR, raising=False)
    return root


def user_config(course, text: str) -> None:
    folder = course.parent / "jupyter"
    folder.mkdir(exist_ok=True)
    (folder / "nbgrader_config.py").write_text(text)


def test_the_default_is_nbgraders_sqlite_file_in_the_course(course):
    assert gradebook_url(course) == f"sqlite:///{course / 'gradebook.db'}"
    assert course_directory(course).course_id == "dl4cv"  # the course's own settings are loaded too


def test_the_instructors_jupyter_config_sets_the_url(course):
    user_config(course, f'c.CourseDirectory.db_url = "{PG}"\nc.CourseDirectory.course_id = "other"\n')
    assert gradebook_url(course) == PG
    assert course_directory(course).course_id == "dl4cv"  # the course's file wins over ~/.jupyter, as in nbgrader


def test_the_environment_variable_wins_over_every_file(course, monkeypatch):
    user_config(course, 'c.CourseDirectory.db_url = "sqlite:////elsewhere/gradebook.db"\n')
    monkeypatch.setenv(URL_VAR, PG)
    assert gradebook_url(course) == PG
    monkeypatch.setenv(URL_VAR, "")  # set but empty: as if unset
    assert gradebook_url(course) == "sqlite:////elsewhere/gradebook.db"


def test_the_grading_command_reads_the_instructors_jupyter_config_as_formgrader_does(course):
    from course_utils.grading.gradebook import nbgrader_api

    user_config(course, f'c.CourseDirectory.db_url = "{PG}"\n')
    assert nbgrader_api(course, course / "results").coursedir.db_url == PG


def test_temp_course_writes_its_url_into_its_own_config(monkeypatch):
    monkeypatch.delenv(URL_VAR, raising=False)
    with TempCourse("a0_warmup", db_url=PG) as given, TempCourse("a0_warmup", env={URL_VAR: PG}) as from_env, \
            TempCourse("a0_warmup") as default:
        assert given.db_url == PG and PG in (given.root / "nbgrader_config.py").read_text()
        assert from_env.db_url == PG  # nbgrader's tools (env) and scores() (in this process) agree
        assert default.db_url == f"sqlite:///{default.root / 'gradebook.db'}"


@pytest.mark.parametrize("url, expected", [
    ("postgresql://grader:s3cret@db.example.org:5432/gradebook", "postgresql://grader:***@db.example.org:5432/gradebook"),
    ("postgresql://grader:p@ss@host/gb", "postgresql://grader:***@host/gb"),  # an unencoded @ in the password
    ("postgresql+psycopg://grader:%2Fx@host/gb", "postgresql+psycopg://grader:***@host/gb"),
    ("postgresql://grader@host/gb", "postgresql://grader@host/gb"),            # no password: nothing to hide
    ("sqlite:////home/me/course/gradebook.db", "sqlite:////home/me/course/gradebook.db"),
])
def test_redact_hides_only_the_password(url, expected):
    assert redact(url) == expected


@pytest.mark.parametrize("url", ["sqlite:////tmp/gradebook.db", "sqlite:///relative.db", PG,
                                 "postgresql+psycopg://grader:x@127.0.0.1/gb"])
def test_urls_the_course_supports_have_no_problem(url):
    if url.startswith("postgresql"):
        pytest.importorskip("psycopg", reason="the PostgreSQL driver (requirements-classroom.txt)")
    assert url_problem(url) is None


@pytest.mark.parametrize("url, words", [
    ("gradebook.db", ["is not a database URL", "sqlite:////", "postgresql://USER"]),
    ("postgres://grader:s3cret@host/gb", ["needs postgresql://"]),
    ("postgresql://grader:s3cret@host", ["names no database"]),
    ("nosuchdb://grader:s3cret@host/gb", ["unknown database 'nosuchdb'"]),
    ("postgresql+psycopg2://grader:s3cret@host/gb", ["driver 'psycopg2'", "postgresql+psycopg://"]),
])
def test_urls_that_cannot_work_say_why_without_the_password(url, words):
    if "psycopg2" in url and importlib.util.find_spec("psycopg2") is not None:
        pytest.skip("psycopg2 is installed here: that URL would work")
    problem = url_problem(url)
    assert problem is not None and all(w in problem for w in words), problem
    assert "s3cret" not in problem


def test_a_missing_postgresql_driver_names_the_requirements_file(monkeypatch):
    monkeypatch.setitem(sys.modules, "psycopg", None)  # `import psycopg` raises ImportError
    problem = url_problem(PG)
    assert problem is not None and "needs the Python driver 'psycopg'" in problem
    assert "requirements-classroom.txt" in problem and "s3cret" not in problem


def test_sqlite_is_not_connected_to_before_grading(tmp_path):
    assert connection_problem(f"sqlite:///{tmp_path / 'gradebook.db'}") is None
    assert list(tmp_path.iterdir()) == []  # no empty gradebook left behind by the check



def fake_postgres(folder):
    folder.mkdir()
    for name in ("initdb", "pg_ctl", "postgres"):
        (folder / name).write_text("")
    return folder


def test_postgres_binaries_missing_say_which_package(tmp_path, monkeypatch):
    from course_utils.classroom.postgres import PostgresUnavailable, find_postgres_bin

    monkeypatch.setenv("COURSE_POSTGRES_BIN", str(tmp_path))
    with pytest.raises(PostgresUnavailable, match="does not hold initdb, pg_ctl and postgres"):
        find_postgres_bin()
    monkeypatch.setenv("COURSE_POSTGRES_BIN", str(fake_postgres(tmp_path / "bin")))
    assert find_postgres_bin() == tmp_path / "bin"


def test_a_clusters_url_survives_any_password(tmp_path, monkeypatch):
    """The password is percent-encoded in the URL and SQLAlchemy (nbgrader's database layer) reads it back whole."""
    from sqlalchemy.engine import make_url

    from course_utils.classroom.postgres import PostgresCluster

    monkeypatch.setenv("COURSE_POSTGRES_BIN", str(fake_postgres(tmp_path / "bin")))
    cluster = PostgresCluster(tmp_path / "run", port=5544)
    url = cluster.url("gradebook", "grader", "p@ss/w:rd%?#")
    assert url.startswith("postgresql://grader:") and url.endswith("@127.0.0.1:5544/gradebook")
    parsed = make_url(url)
    assert (parsed.username, parsed.password, parsed.host, parsed.port, parsed.database) == \
        ("grader", "p@ss/w:rd%?#", "127.0.0.1", 5544, "gradebook")
    assert "p@ss" not in redact(url)
