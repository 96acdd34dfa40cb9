"""A private PostgreSQL cluster in a run folder: the classroom's hub database and the course's gradebook.

    with PostgresCluster(run_dir) as pg:                        # initdb + pg_ctl start, 127.0.0.1 only
        url = pg.create_database("gradebook", owner="grader", password=secret)
        # url == "postgresql://grader:...@127.0.0.1:PORT/gradebook", for nbgrader's CourseDirectory.db_url
        rows = pg.sql("gradebook", "select student_id, score from ...")   # list[tuple], for tests
    # on exit: pg_ctl stop -m fast

Debian's ``postgresql`` package provides the server (``/usr/lib/postgresql/<version>/bin``); no systemd service,
no cluster of the system's: the data directory is ``run_dir/pgdata`` and everything is stopped by it. The server
listens on TCP at 127.0.0.1 only (no Unix socket: a socket path under a deep run folder can exceed the 107-byte
limit) and every login needs a password (scram-sha-256). PostgreSQL refuses to run as root, so as root the cluster
belongs to an unprivileged OS user (``postgres``, made by Debian's package); when that user cannot reach
``run_dir`` (a parent folder of mode 700, as pytest's), the data directory is a private folder under the system's
temporary folder instead, removed on stop. ``run_dir/postgres.json`` records where it is, so another process can
stop the cluster with :func:`stop_cluster`.

The Python side talks to the server with psycopg 3 (requirements-classroom.txt).
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import quote

__all__ = ["PostgresCluster", "PostgresUnavailable", "find_postgres_bin", "stop_cluster"]

SUPERUSER = "postgres"  # the cluster's own superuser role (not the OS user)
HOST = "127.0.0.1"
STATE_FILE = "postgres.json"
PASSWORD_FILE = "course-superuser-password"  # in the data directory (mode 700): the superuser's password
_INSTALL_HINT = ("install Debian's `postgresql` package (apt-get install -y postgresql) or set COURSE_POSTGRES_BIN "
                 "to the folder that holds initdb, pg_ctl and postgres")
_DRIVER_HINT = "install the PostgreSQL driver psycopg 3: .venv/bin/pip install -r requirements-classroom.txt"


class PostgresUnavailable(RuntimeError):
    """PostgreSQL cannot be used here: binaries, OS user or driver missing, or the server did not start."""


def _has_server(folder: Path) -> bool:
    return all((folder / name).is_file() for name in ("initdb", "pg_ctl", "postgres"))


def find_postgres_bin() -> Path:
    """The folder with PostgreSQL's server programs (initdb, pg_ctl, postgres).

    Looked for in this order: ``$COURSE_POSTGRES_BIN``; the folder ``pg_ctl`` on PATH really lives in; the newest
    ``/usr/lib/postgresql/<version>/bin`` (Debian's layout, which puts none of them on PATH).
    """
    if os.environ.get("COURSE_POSTGRES_BIN"):
        folder = Path(os.environ["COURSE_POSTGRES_BIN"])
        if not _has_server(folder):
            raise PostgresUnavailable(f"COURSE_POSTGRES_BIN={folder} does not hold initdb, pg_ctl and postgres")
        return folder
    on_path = shutil.which("pg_ctl")
    if on_path and _has_server(Path(on_path).resolve().parent):
        return Path(on_path).resolve().parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin"),
                      key=lambda p: [int(x) for x in p.parent.name.split(".") if x.isdigit()])
    for folder in reversed(versions):
        if _has_server(folder):
            return folder
    raise PostgresUnavailable(f"PostgreSQL's server programs were not found: {_INSTALL_HINT}")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError as error:
        raise PostgresUnavailable(f"the PostgreSQL driver is missing: {_DRIVER_HINT}") from error
    return psycopg


class PostgresCluster:
    """One PostgreSQL server of our own, from ``initdb`` to ``pg_ctl stop``; a context manager.

    ``run_dir`` is the caller's folder (created if missing, never removed); ``port`` a TCP port on 127.0.0.1
    (default: a free one); ``os_user`` the OS user that owns and runs the cluster when this process is root
    (default ``postgres``; ignored otherwise, the cluster then runs as the current user); ``durable=False`` skips
    every fsync (initdb --no-sync, fsync off): seconds faster on a busy disk, for tests whose data may be lost.
    """

    def __init__(self, run_dir: Path, port: int | None = None, *, os_user: str = "postgres",
                 durable: bool = True) -> None:
        self.run_dir = Path(run_dir).resolve()
        self.port = port or 0  # the real one once started
        self._requested_port = port
        self.host = HOST
        self.bin = find_postgres_bin()
        self.os_user: str | None = os_user if os.geteuid() == 0 else None
        self.data_dir = self.run_dir / "pgdata"
        self._private_dir: Path | None = None  # a temporary parent of data_dir, when run_dir is out of reach
        self._password = secrets.token_urlsafe(24)  # the superuser's (a new cluster's; then read from its data dir)
        self.durable = durable
        self.running = False

    # -- life cycle ---------------------------------------------------------------------------------------
    def __enter__(self) -> PostgresCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """initdb (unless ``run_dir/pgdata`` holds a cluster already: it is reused) and start the server; wait
        until it accepts connections."""
        if self.running:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._prepare_data_dir()
            if not (self.data_dir / "PG_VERSION").exists():
                self._initdb()
            self._password = (self.data_dir / PASSWORD_FILE).read_text().strip()
            self._start_server()
        except BaseException:
            self.stop()  # a private data folder is removed, a half-started server stopped
            raise
        self.running = True
        state = {"data_dir": str(self.data_dir), "port": self.port, "pid": self.pid, "os_user": self.os_user,
                 "bin": str(self.bin), "private_dir": str(self._private_dir or "")}
        (self.run_dir / STATE_FILE).write_text(json.dumps(state, indent=1) + "\n")

    def _start_server(self) -> None:
        fixed = self._requested_port is not None
        for attempt in range(3):  # a free port can be taken between the check and the bind
            self.port = self._requested_port if self._requested_port is not None else _free_port()
            self._write_config()
            result = self._run([self.bin / "pg_ctl", "-D", self.data_dir, "-l", self.log_file, "-w", "-t", "60",
                                "start"], check=False)
            if result.returncode == 0:
                return
            if fixed or attempt == 2 or "could not bind" not in self._log_tail():
                raise PostgresUnavailable(f"PostgreSQL did not start (pg_ctl exit {result.returncode}):\n"
                                          f"{result.stdout}{result.stderr}\n--- {self.log_file}:\n{self._log_tail()}")

    def stop(self) -> None:
        """``pg_ctl stop -m fast`` (ends open sessions); remove a private data folder. Safe to call twice."""
        if self.running or (self.data_dir / "postmaster.pid").exists():
            self._run([self.bin / "pg_ctl", "-D", self.data_dir, "-m", "fast", "-w", "-t", "60", "stop"], check=False)
        self.running = False
        if self._private_dir is not None:
            shutil.rmtree(self._private_dir, ignore_errors=True)
            self._private_dir = None
        (self.run_dir / STATE_FILE).unlink(missing_ok=True)

    @property
    def log_file(self) -> Path:
        """The server's log (inside the data directory, where the OS user can write)."""
        return self.data_dir / "server.log"

    @property
    def pid(self) -> int | None:
        """The postmaster's process id while it runs (first line of postmaster.pid)."""
        try:
            return int((self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None

    # -- databases ----------------------------------------------------------------------------------------
    def url(self, database: str, user: str, password: str) -> str:
        """``postgresql://USER:PASSWORD@127.0.0.1:PORT/DATABASE`` (user and password percent-encoded)."""
        return f"postgresql://{quote(user, safe='')}:{quote(password, safe='')}@{self.host}:{self.port}/{database}"

    def create_database(self, name: str, owner: str, password: str) -> str:
        """Create login role ``owner`` (or set its password) and database ``name`` owned by it; return its URL."""
        _psycopg()
        from psycopg import sql
        with self._connect("postgres") as db:
            exists = db.execute("select 1 from pg_roles where rolname = %s", (owner,)).fetchone()
            verb = "alter" if exists else "create"
            db.execute(sql.SQL(verb + " role {} login password {}").format(sql.Identifier(owner),
                                                                           sql.Literal(password)))
            if not db.execute("select 1 from pg_database where datname = %s", (name,)).fetchone():
                db.execute(sql.SQL("create database {} owner {} encoding 'UTF8'").format(
                    sql.Identifier(name), sql.Identifier(owner)))
        return self.url(name, owner, password)

    def sql(self, database: str, query: str, params: tuple | dict | None = None) -> list[tuple]:
        """Run one statement as the superuser in ``database``; the rows it returns (``[]`` if none)."""
        with self._connect(database) as db:
            cursor = db.execute(query, params)
            return cursor.fetchall() if cursor.description is not None else []

    def _connect(self, database: str) -> Any:
        if not self.running:
            raise PostgresUnavailable("the cluster is not running: use `with PostgresCluster(...) as pg:`")
        return _psycopg().connect(host=self.host, port=self.port, user=SUPERUSER, password=self._password,
                                  dbname=database, autocommit=True, connect_timeout=10)

    # -- the data directory ------------------------------------------------------------------------------
    def _run(self, args: list[Any], *, check: bool = True) -> subprocess.CompletedProcess:
        """Run one of PostgreSQL's programs, as the cluster's OS user when we are root."""
        kwargs: dict[str, Any] = {}
        if self.os_user is not None:
            entry = pwd.getpwnam(self.os_user)
            kwargs = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "LANG": "C"}
        result = subprocess.run([str(a) for a in args], capture_output=True, text=True, env=env,
                                cwd="/", timeout=120, **kwargs)
        if check and result.returncode != 0:
            raise PostgresUnavailable(f"{Path(str(args[0])).name} failed (exit {result.returncode}):\n"
                                      f"{result.stdout}{result.stderr}")
        return result

    def _chown(self, path: Path) -> None:
        """Give ``path`` to the cluster's OS user (as root; nothing to do otherwise)."""
        if self.os_user is not None:
            entry = pwd.getpwnam(self.os_user)
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def _prepare_data_dir(self) -> None:
        if self.os_user is None:
            self.data_dir.mkdir(mode=0o700, exist_ok=True)
            return
        try:
            pwd.getpwnam(self.os_user)
        except KeyError as error:
            raise PostgresUnavailable(
                f"running as root, PostgreSQL needs an unprivileged OS user to own the cluster, and "
                f"{self.os_user!r} does not exist: {_INSTALL_HINT} (its package creates `postgres`)") from error
        self.data_dir.mkdir(mode=0o700, exist_ok=True)
        self._chown(self.data_dir)
        if self._run(["test", "-w", self.data_dir, "-a", "-x", self.data_dir], check=False).returncode != 0:
            # a parent of run_dir is closed to the OS user: keep the cluster in a private folder of its own
            self.data_dir.rmdir()
            self._private_dir = Path(tempfile.mkdtemp(prefix="course-postgres-"))
            os.chmod(self._private_dir, 0o711)
            self.data_dir = self._private_dir / "pgdata"
            self.data_dir.mkdir(mode=0o700)
            self._chown(self.data_dir)

    def _initdb(self) -> None:
        # the password goes in a file only its owner can read, removed at once (never on a command line)
        handle, pwfile = tempfile.mkstemp(prefix="course-postgres-pw-")
        try:
            with os.fdopen(handle, "w") as f:
                f.write(self._password + "\n")
            self._chown(Path(pwfile))
            self._run([self.bin / "initdb", "-D", self.data_dir, "-U", SUPERUSER, f"--pwfile={pwfile}",
                       "--auth=scram-sha-256", "-E", "UTF8", "--no-locale", "--no-instructions",
                       *([] if self.durable else ["--no-sync"])])
        finally:
            os.unlink(pwfile)
        # kept for a later start on the same data directory, readable by its owner (and root) only
        secret = self.data_dir / PASSWORD_FILE
        secret.write_text(self._password + "\n")
        secret.chmod(0o600)
        self._chown(secret)
        # TCP on 127.0.0.1 with a password, nothing else (no Unix socket, so no `local` lines)
        (self.data_dir / "pg_hba.conf").write_text(
            "# written by course_utils.classroom.postgres: TCP from this machine only, password (scram) logins\n"
            "host all all 127.0.0.1/32 scram-sha-256\n")

    def _write_config(self) -> None:
        """The settings this module owns, in postgresql.auto.conf (rewritten on every start)."""
        (self.data_dir / "postgresql.auto.conf").write_text(
            "# written by course_utils.classroom.postgres on every start\n"
            f"listen_addresses = '{HOST}'\n"
            f"port = {self.port}\n"
            "unix_socket_directories = ''\n"
            "password_encryption = 'scram-sha-256'\n"
            + ("" if self.durable else "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"))

    def _log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def stop_cluster(run_dir: Path) -> bool:
    """Stop the cluster a :class:`PostgresCluster` started in ``run_dir`` from another process (``pg_ctl stop -m
    fast`` on the data directory recorded in ``run_dir/postgres.json``); False if none was recorded."""
    state_file = Path(run_dir) / STATE_FILE
    if not state_file.exists():
        return False
    state = json.loads(state_file.read_text())
    cluster = PostgresCluster.__new__(PostgresCluster)
    cluster.run_dir, cluster.bin = Path(run_dir).resolve(), Path(state["bin"])
    cluster.data_dir, cluster.os_user = Path(state["data_dir"]), state["os_user"]
    cluster._private_dir = Path(state["private_dir"]) if state["private_dir"] else None
    cluster.running, cluster._requested_port = True, None
    cluster.stop()
    return True
