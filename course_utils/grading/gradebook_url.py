"""Where the course's gradebook is: nbgrader's ``CourseDirectory.db_url``, read as nbgrader reads it.

The default is nbgrader's, ``sqlite:///<course>/gradebook.db``. A shared gradebook (several graders, a JupyterHub
classroom) lives on PostgreSQL: ``postgresql://USER:PASSWORD@HOST:5432/DATABASE`` (SQLAlchemy 2.1 runs a plain
``postgresql://`` with psycopg 3, from requirements-classroom.txt; ``postgresql+psycopg://`` is the same). An
instructor sets it, strongest first:

    COURSE_GRADEBOOK_URL=postgresql://...        the environment (the course's nbgrader_config.py reads it)
    <course>/nbgrader_config.py                  c.CourseDirectory.db_url = "..."
    ~/.jupyter/nbgrader_config.py                c.CourseDirectory.db_url = "..."   (mode 600: it holds a password)

:func:`course_config` loads the files in nbgrader's own order (Jupyter's config folders, then the course's), so the
grading command, ``nbgrader`` and formgrader all use the same gradebook.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["URL_VAR", "course_config", "course_directory", "gradebook_url", "redact", "url_problem",
           "connection_problem"]

URL_VAR = "COURSE_GRADEBOOK_URL"
CONFIG_NAME = "nbgrader_config"
EXAMPLE = "sqlite:////path/to/gradebook.db or postgresql://USER:PASSWORD@HOST:5432/DATABASE"


def course_config(root: Path):
    """The traitlets Config nbgrader would see for the course at ``root``: ``nbgrader_config.py``/``.json`` from
    Jupyter's config folders (``jupyter --paths``; the first one wins), then from ``root`` (wins over all)."""
    from jupyter_core.paths import jupyter_config_path
    from traitlets.config import Config
    from traitlets.config.loader import JSONFileConfigLoader, PyFileConfigLoader

    config = Config()
    folders = [*reversed(jupyter_config_path()), str(root)]  # weakest first: each merge overrides the ones before
    for folder in dict.fromkeys(folders):
        for loader in (JSONFileConfigLoader, PyFileConfigLoader):
            name = CONFIG_NAME + (".json" if loader is JSONFileConfigLoader else ".py")
            if (Path(folder) / name).is_file():
                config.merge(loader(name, path=folder).load_config())
    return config


def course_directory(root: Path):
    """nbgrader's ``CourseDirectory`` for the course at ``root`` (its ``db_url``, ``course_id``, folders)."""
    from nbgrader.coursedir import CourseDirectory

    config = course_config(root)
    config.CourseDirectory.root = str(root)
    return CourseDirectory(config=config)


def gradebook_url(root: Path) -> str:
    """The course's ``CourseDirectory.db_url`` (nbgrader's default: ``sqlite:///<root>/gradebook.db``)."""
    return course_directory(root).db_url


def redact(url: str) -> str:
    """``url`` with its password replaced by ``***`` (for messages and logs)."""
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not sep or not at or ":" not in credentials:
        return url
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"


def url_problem(url: str) -> str | None:
    """Why ``url`` cannot be a gradebook here, without connecting (bad form, unknown database, driver missing),
    or None."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    shown = redact(url)
    try:
        parsed = make_url(url)
    except ArgumentError:
        return f"the gradebook URL {shown!r} is not a database URL: expected e.g. {EXAMPLE}"
    if parsed.drivername in ("postgres", "postgres+psycopg"):
        return f"the gradebook URL {shown!r} starts with postgres://: SQLAlchemy needs postgresql:// (with 'ql')"
    try:
        dialect = parsed.get_dialect()
    except NoSuchModuleError:
        return f"the gradebook URL {shown!r} names an unknown database {parsed.drivername!r}: expected e.g. {EXAMPLE}"
    if parsed.get_backend_name() == "postgresql" and not parsed.database:
        return f"the gradebook URL {shown!r} names no database: expected e.g. {EXAMPLE}"
    try:
        dialect.import_dbapi()
    except ImportError as error:
        if parsed.get_backend_name() != "postgresql":
            hint = f"install the Python driver for {parsed.drivername}"
        elif dialect.driver == "psycopg":
            hint = "pip install -r requirements-classroom.txt (psycopg 3)"
        else:  # e.g. postgresql+psycopg2:// or an older SQLAlchemy whose plain postgresql:// means psycopg2
            hint = ("the course uses psycopg 3: pip install -r requirements-classroom.txt (SQLAlchemy 2.1 and psycopg "
                    "3) and write postgresql:// or postgresql+psycopg://")
        return (f"the gradebook URL {shown!r} needs the Python driver {dialect.driver!r}, which is not installed "
                f"({error}): {hint}")
    return None  # another database nbgrader supports (MySQL...) may well work: the course tested SQLite and PostgreSQL


def connection_problem(url: str, timeout: float = 10) -> str | None:
    """:func:`url_problem`, then (for a server database, not SQLite's file) whether the server answers and accepts
    the login; None if the gradebook can be used."""
    problem = url_problem(url)
    if problem is not None or url.startswith("sqlite"):
        return problem
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import SQLAlchemyError

    connect_args = {"connect_timeout": int(timeout)} if url.startswith("postgresql") else {}
    engine = create_engine(url, connect_args=connect_args)
    try:
        with engine.connect() as connection:
            connection.execute(text("select 1"))
    except SQLAlchemyError as error:
        cause = str(getattr(error, "orig", None) or error).strip().splitlines()
        return (f"cannot reach the gradebook at {redact(url)}: {cause[0] if cause else type(error).__name__}\n"
                f"Is the database server running, and are host, port, user, password and database right? "
                f"(the URL is nbgrader's CourseDirectory.db_url, or {URL_VAR} in the environment)")
    finally:
        engine.dispose()
    return None

