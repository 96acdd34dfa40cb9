"""A real classroom on one machine: JupyterHub, Linux users, nbgrader's exchange, PostgreSQL (issue 18).

    with Classroom(course_root) as room:          # root only; about 10-20 s
        room.urls()                               # the hub's address, the users and their passwords
        ...                                       # drive it (rest.py), or leave it for people to use
    # on exit: the hub gets SIGTERM first (it stops the servers and the proxy), then anything left by PID,
    # PostgreSQL, the users, the run folder

Everything listens on 127.0.0.1 on free ports. The run folder (``/tmp/dl4cv-classroom-*``, mode 755, so the
classroom's users can reach their homes and the exchange in it) holds:

    python/     a copy of the course interpreter's runtime and env/ a venv on it with the course's packages:
                the servers' Python, runnable by every user (environment.py; not made when .venv's is)
    etc/jupyter the servers' shared Jupyter config (JUPYTER_CONFIG_PATH): exchange, course id, terminal shell
    exchange/   nbgrader's exchange (1777: release, fetch, submit and collect by file permissions)
    home/<user> each user's home, mode 700: the lectures; the instructor's course directory dl4cv/
    hub/        root's, mode 700: jupyterhub_config.py (600), cookie secret, logs, pid files
    pgdata/     PostgreSQL's data (postgres.py): the hub's database and the course's gradebook

The instructor's course directory (``~/dl4cv``) is a copy of the course's solutions/, assignments/ and
nbgrader_config.py; the instructor's ``~/.jupyter/nbgrader_config.py`` (mode 600) points nbgrader there and holds
the gradebook's URL with its password. The state of a running classroom is in ``run_dir/hub/classroom.json``;
:func:`stop_from_state` stops a classroom from it (``make classroom-stop``) when the process that started it is gone.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .environment import build_server_env, unreachable
from .users import ClassroomError, ClassroomUser, chown_tree, make_user, remove_user, stop_user_processes

if TYPE_CHECKING:
    from .postgres import PostgresCluster

__all__ = ["Classroom", "install_proxy", "stop_from_state", "PROXY_VERSION", "COURSE_ID"]

PROXY_VERSION = "4.6.3"  # configurable-http-proxy, from npm into <course>/.classroom/node_modules
COURSE_ID = "dl4cv"
HOST = "127.0.0.1"
STATE = "classroom.json"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def install_proxy(folder: Path) -> Path:
    """configurable-http-proxy (JupyterHub's proxy, a Node.js program) installed by npm into ``folder``."""
    binary = folder / "node_modules" / ".bin" / "configurable-http-proxy"
    if binary.exists():
        return binary
    if shutil.which("npm") is None or shutil.which("node") is None:
        raise ClassroomError("JupyterHub's proxy needs Node.js and npm (Debian: apt-get install nodejs npm)")
    folder.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--no-save", "--prefix", str(folder),
                             f"configurable-http-proxy@{PROXY_VERSION}"], capture_output=True, text=True)
    if result.returncode != 0 or not binary.exists():
        raise ClassroomError(f"npm could not install configurable-http-proxy@{PROXY_VERSION} into {folder}:\n"
                             f"{result.stderr[-2000:]}")
    return binary


def _hub_config(room: dict[str, Any], proxy: Path, server_python: Path) -> str:
    run = Path(room["run_dir"])
    env_bin = server_python.parent
    environment = {
        "PATH": f"{env_bin}:/usr/local/bin:/usr/bin:/bin",
        "JUPYTER_CONFIG_PATH": str(run / "etc" / "jupyter"),
        "PYTHONUNBUFFERED": "1",
    }
    students = [u["name"] for u in room["users"] if u["role"] == "student"]
    instructor = room["instructor"]
    return f"""# Written by course_utils.classroom (hub.py) for one run; holds the database password: mode 600.
c = get_config()  # noqa: F821

# Everything on 127.0.0.1, on ports chosen free at start.
c.JupyterHub.ip = {HOST!r}
c.JupyterHub.port = {room["ports"]["hub_public"]}
c.JupyterHub.hub_ip = {HOST!r}
c.JupyterHub.hub_port = {room["ports"]["hub_api"]}
# The proxy: configurable-http-proxy from npm in the course's .classroom/ folder, started and stopped by the hub.
c.ConfigurableHTTPProxy.command = [{str(proxy)!r}]
c.ConfigurableHTTPProxy.api_url = "http://{HOST}:{room["ports"]["proxy_api"]}"
c.ConfigurableHTTPProxy.auth_token = {room["proxy_token"]!r}
c.ConfigurableHTTPProxy.pid_file = {str(run / "hub" / "proxy.pid")!r}
c.JupyterHub.pid_file = {str(run / "hub" / "jupyterhub.pid")!r}
c.JupyterHub.cookie_secret_file = {str(run / "hub" / "jupyterhub_cookie_secret")!r}
# The hub's own state (users, servers, tokens) on the classroom's PostgreSQL, not in a SQLite file.
c.JupyterHub.db_url = {room["hub_db_url"]!r}

# Who may log in: DummyAuthenticator's successor with a password (any password would let every local user in
# as the instructor). Students share one password; the instructor (an admin) has their own.
c.JupyterHub.authenticator_class = "shared-password"
c.SharedPasswordAuthenticator.user_password = {room["passwords"]["student"]!r}
c.SharedPasswordAuthenticator.admin_password = {room["passwords"]["instructor"]!r}
c.Authenticator.allowed_users = {set(students)!r}
c.Authenticator.admin_users = {{{instructor!r}}}

# Each user's server runs as their own Linux user (nbgrader knows students by it), from the servers' Python.
c.JupyterHub.spawner_class = "localprocess"
c.Spawner.cmd = [{str(server_python)!r}, "-m", "jupyterhub.singleuser"]
c.Spawner.default_url = "/lab"
c.Spawner.notebook_dir = "~"
c.Spawner.environment = {environment!r}
c.Spawner.start_timeout = 120
c.Spawner.http_timeout = 120
# Stopping the hub stops the servers and the proxy (the defaults, stated).
c.JupyterHub.cleanup_servers = True
c.JupyterHub.cleanup_proxy = True

# The classroom's own REST client (tests, measurements): a service with the scopes to start servers and use them.
c.JupyterHub.services = [{{"name": "classroom-driver", "api_token": {room["driver_token"]!r}}}]
c.JupyterHub.load_roles = [{{
    "name": "classroom-driver",
    "scopes": ["admin:users", "admin:servers", "access:servers", "read:users"],
    "services": ["classroom-driver"],
}}]
"""


# What a student's server needs, run as a student before the hub starts (soupsieve: nbconvert's HTML export,
# which a Python with the 3.11.0-3.11.4 possessive-quantifier bug breaks).
SERVER_PROBE = ("import course_utils, nbgrader, jupyterhub.singleuser, jupyterlab, torch, soupsieve; "
                "soupsieve.compile('img:not([alt])')")

SERVER_CONFIG = """# The classroom's servers (course_utils.classroom): shared by every user, via JUPYTER_CONFIG_PATH.
c = get_config()  # noqa: F821
# A terminal's login shell would reset PATH (Debian's /etc/profile) and lose the course's environment.
c.ServerApp.terminado_settings = {"shell_command": ["/bin/bash"]}
"""


def _nbgrader_shared(exchange: Path) -> str:
    return f"""# The classroom's nbgrader settings for every user (course_utils.classroom), via JUPYTER_CONFIG_PATH.
c = get_config()  # noqa: F821
c.CourseDirectory.course_id = {COURSE_ID!r}
c.Exchange.root = {str(exchange)!r}
"""


class Classroom:
    """One instructor, students, their servers on JupyterHub, the exchange, PostgreSQL; see the module docstring.

    ``prefix`` starts every Linux user name (``dl4cv-teacher``, ``dl4cv-alice`` ...), so none clashes with the
    machine's own; ``course_root`` is the course (its ``.venv``, solutions/, assignments/, lectures/);
    ``record`` makes it the classroom ``make classroom-stop`` stops.
    """

    def __init__(self, course_root: Path, *, prefix: str = "dl4cv-", students: tuple[str, ...] = ("alice", "bob"),
                 venv: Path | None = None, record: bool = False, log=print) -> None:
        self.course_root = Path(course_root).resolve()
        self.venv = Path(venv) if venv else self.course_root / ".venv"
        self.prefix = prefix
        self.student_names = [prefix + s for s in students]
        self.instructor = prefix + "teacher"
        self.state: dict[str, Any] = {}
        self.pg: PostgresCluster | None = None
        self.hub: subprocess.Popen | None = None
        self.record = record  # write .classroom/current.json, for `make classroom-stop`
        self.log = log

    # -- paths and facts ------------------------------------------------------------------------------------
    @property
    def run_dir(self) -> Path:
        return Path(self.state["run_dir"])

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.state['ports']['hub_public']}"

    @property
    def driver_token(self) -> str:
        return self.state["driver_token"]

    def home(self, user: str) -> Path:
        return self.run_dir / "home" / user

    @property
    def course_dir(self) -> Path:
        """The instructor's course directory (nbgrader's CourseDirectory.root)."""
        return self.home(self.instructor) / COURSE_ID

    @property
    def server_python(self) -> Path:
        return Path(self.state["server_python"])

    def server_env(self, user: str) -> dict[str, str]:
        """The environment a user's server (and its terminals) has: for running a command as that user."""
        return {"HOME": str(self.home(user)), "USER": user, "LOGNAME": user, "SHELL": "/bin/bash",
                "PATH": f"{self.server_python.parent}:/usr/local/bin:/usr/bin:/bin",
                "JUPYTER_CONFIG_PATH": str(self.run_dir / "etc" / "jupyter"), "LANG": "C.UTF-8",
                "MPLBACKEND": "Agg"}

    def run_as(self, user: str, args: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None,
               timeout: float = 600) -> subprocess.CompletedProcess:
        """Run ``args`` as ``user`` with that user's server environment (as they would in a terminal)."""
        full_env = {**self.server_env(user), **(env or {})}
        command = ["runuser", "-u", user, "--", "env", "-i", *[f"{k}={v}" for k, v in full_env.items()], *args]
        return subprocess.run(command, cwd=cwd or self.home(user), capture_output=True, text=True,
                              timeout=timeout)

    def _save_state(self) -> None:
        path = self.run_dir / "hub" / STATE
        path.write_text(json.dumps(self.state, indent=1))
        path.chmod(0o600)
        if self.record:
            pointer = self.course_root / ".classroom" / "current.json"
            pointer.parent.mkdir(exist_ok=True)
            pointer.write_text(json.dumps({"run_dir": str(self.run_dir), "pid": os.getpid()}))

    # -- start ----------------------------------------------------------------------------------------------
    def start(self) -> Classroom:
        if os.geteuid() != 0:
            raise ClassroomError("the classroom makes Linux users and runs servers as them: run it as root")
        started = time.perf_counter()
        blocked = unreachable(self.course_root)
        if blocked is not None:
            raise ClassroomError(
                f"the course at {self.course_root} cannot be reached by other users: {blocked} has no o+x. "
                f"Clone it under a folder others can enter (e.g. /srv or /opt), or chmod o+x {blocked}")
        proxy = install_proxy(self.course_root / ".classroom")
        run = Path(tempfile.mkdtemp(prefix="dl4cv-classroom-", dir="/tmp"))
        run.chmod(0o755)
        (run / "hub").mkdir(mode=0o700)
        (run / "home").mkdir(mode=0o755)
        self.state = {
            "run_dir": str(run), "course_root": str(self.course_root), "instructor": self.instructor,
            "users": [], "pids": {}, "started_at": time.time(),
            "ports": {"hub_public": free_port(), "hub_api": free_port(), "proxy_api": free_port()},
            "proxy_token": secrets.token_hex(32), "driver_token": secrets.token_hex(32),
            "passwords": {"student": secrets.token_urlsafe(12), "instructor": secrets.token_urlsafe(32)},
        }
        self._save_state()
        try:
            self._start(proxy)
        except BaseException:
            self.stop()
            raise
        self.state["start_seconds"] = round(time.perf_counter() - started, 1)
        self._save_state()
        return self

    def _start(self, proxy: Path) -> None:
        from .postgres import PostgresCluster

        run = self.run_dir
        people = [(self.instructor, "instructor")] + [(name, "student") for name in self.student_names]
        users: dict[str, ClassroomUser] = {}
        for name, role in people:
            self.state["users"].append({"name": name, "role": role})  # recorded first: stop() removes it
            self._save_state()
            users[name] = make_user(name, role, run / "home" / name)
        self.log(f"classroom: users {', '.join(users)} (homes in {run / 'home'}, mode 700)")
        python = build_server_env(self.venv, run)
        self.state["server_python"] = str(python)
        self.log(f"classroom: the servers' Python {python} on the course's packages in {self.venv}")
        probe = self.run_as(self.student_names[0], [str(python), "-c", SERVER_PROBE], timeout=120)
        if probe.returncode != 0:
            raise ClassroomError(f"the servers' Python {python} does not work as {self.student_names[0]}:\n"
                                 f"{probe.stderr[-2000:]}\n(a SelectorSyntaxError from soupsieve means a Python "
                                 f"3.11 older than 3.11.5: rebuild .venv from a newer one, e.g. with pyenv)")

        self.pg = pg = PostgresCluster(run)
        pg.start()
        self.state["postgres"] = {"port": pg.port}
        self.state["hub_db_url"] = pg.create_database("jupyterhub", owner="hub", password=secrets.token_hex(16))
        self.state["gradebook_url"] = pg.create_database("gradebook", owner="grader", password=secrets.token_hex(16))
        self._save_state()
        self.log(f"classroom: PostgreSQL on {HOST}:{pg.port} (databases jupyterhub and gradebook)")

        exchange = run / "exchange"
        exchange.mkdir()
        exchange.chmod(0o1777)
        shared = run / "etc" / "jupyter"
        shared.mkdir(parents=True)
        (shared / "jupyter_server_config.py").write_text(SERVER_CONFIG)
        (shared / "nbgrader_config.py").write_text(_nbgrader_shared(exchange))
        for folder in (run / "etc", shared):
            folder.chmod(0o755)
        for user in users.values():
            self._furnish_home(user)

        config = run / "hub" / "jupyterhub_config.py"
        config.write_text(_hub_config(self.state, proxy, python))
        config.chmod(0o600)
        hub_log = open(run / "hub" / "jupyterhub.log", "ab")
        env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}"}
        self.hub = subprocess.Popen([sys.executable, "-m", "jupyterhub", "-f", str(config)], cwd=run / "hub",
                                    stdout=hub_log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        hub_log.close()
        self.state["pids"]["hub"] = self.hub.pid
        self._save_state()
        self._wait_for_hub()
        self.log(f"classroom: JupyterHub at {self.url} (log {run / 'hub' / 'jupyterhub.log'})")

    def _furnish_home(self, user: ClassroomUser) -> None:
        """The lectures for everyone; the course directory and the gradebook settings for the instructor."""
        home = user.home
        shutil.copytree(self.course_root / "lectures", home / "lectures",
                        ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
        jupyter_dir = home / ".jupyter"
        jupyter_dir.mkdir()
        if user.role == "instructor":
            course = home / COURSE_ID
            course.mkdir()
            for folder in ("solutions", "assignments"):
                shutil.copytree(self.course_root / folder, course / folder,
                                ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
            shutil.copy(self.course_root / "nbgrader_config.py", course / "nbgrader_config.py")
            # nbgrader's JupyterHub layout: the instructor's own config says where the course is and holds the
            # gradebook's URL with its password (mode 600); formgrader, `nbgrader ...` and the course's grading
            # command read it, then the course's nbgrader_config.py (loaded here too, for formgrader).
            user_config = jupyter_dir / "nbgrader_config.py"
            user_config.write_text(f"""# The classroom (course_utils.classroom): the gradebook's password: mode 600.
c = get_config()  # noqa: F821
c.CourseDirectory.root = {str(course)!r}
load_subconfig({str(course / "nbgrader_config.py")!r})  # noqa: F821  (the course's own settings)
# The gradebook on the classroom's PostgreSQL (nbgrader's default is a SQLite file in the course folder).
c.CourseDirectory.db_url = {self.state["gradebook_url"]!r}
""")
            user_config.chmod(0o600)
        else:  # a student has the assignment list, not formgrader or the course list
            (jupyter_dir / "jupyter_server_config.json").write_text(json.dumps({"ServerApp": {"jpserver_extensions": {
                "nbgrader.server_extensions.formgrader": False,
                "nbgrader.server_extensions.course_list": False}}}, indent=1))
        chown_tree(home, user)
        home.chmod(0o700)

    def _wait_for_hub(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.hub is not None and self.hub.poll() is not None:
                raise ClassroomError(f"JupyterHub exited with {self.hub.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/hub/api/", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.3)
        raise ClassroomError(f"JupyterHub did not answer within {timeout:.0f} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        path = self.run_dir / "hub" / "jupyterhub.log"
        if not path.exists():
            return "(no hub log)"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def urls(self) -> str:
        """What to tell people: the address, the users and their passwords."""
        students = ", ".join(self.student_names)
        return (f"JupyterHub: {self.url}\n"
                f"  instructor {self.instructor} password {self.state['passwords']['instructor']}\n"
                f"  students   {students} password {self.state['passwords']['student']}\n"
                f"  run folder {self.run_dir}")

    # -- stop -----------------------------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop everything started, in order, even after a failed start; remove the users and the run folder."""
        if not self.state:
            return
        _stop(self.state, self.log)
        self.state = {}

    def __enter__(self) -> Classroom:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of ours counts as gone
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False


def _terminate(pid: int, grace: float) -> None:
    """SIGTERM ``pid``, SIGKILL after ``grace`` seconds."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while _alive(pid) and time.monotonic() < deadline:
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        time.sleep(0.1)
    if _alive(pid):
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass


def _stop(state: dict[str, Any], log) -> None:
    run = Path(state["run_dir"])
    problems = []
    hub_pid = state.get("pids", {}).get("hub")
    if hub_pid:  # the hub first: it stops the users' servers and its proxy
        _terminate(hub_pid, grace=30)
    proxy_pid_file = run / "hub" / "proxy.pid"
    if proxy_pid_file.exists():
        try:
            _terminate(int(proxy_pid_file.read_text().strip()), grace=5)
        except ValueError:
            pass
    for user in state.get("users", []):
        try:
            import pwd

            stop_user_processes(pwd.getpwnam(user["name"]).pw_uid)
        except KeyError:
            pass
    if state.get("postgres"):
        from .postgres import stop_cluster

        try:
            stop_cluster(run)
        except Exception as err:  # noqa: BLE001 - keep cleaning up
            problems.append(f"PostgreSQL: {err}")
    for user in state.get("users", []):
        try:
            remove_user(user["name"])
        except ClassroomError as err:
            problems.append(str(err))
    shutil.rmtree(run, ignore_errors=True)
    pointer = Path(state["course_root"]) / ".classroom" / "current.json"
    try:
        if json.loads(pointer.read_text()).get("run_dir") == str(run):
            pointer.unlink()
    except (OSError, ValueError):
        pass
    log(f"classroom: stopped; users {', '.join(u['name'] for u in state.get('users', []))} removed, {run} removed")
    if problems:
        raise ClassroomError("the classroom stopped, with problems:\n" + "\n".join(problems))


def stop_from_state(course_root: Path, log=print) -> bool:
    """Stop the classroom recorded in ``course_root/.classroom/current.json`` (``make classroom-stop``).

    If the process that started it still runs (``make classroom`` in another terminal), it gets SIGTERM and
    cleans up itself; otherwise everything is stopped from the recorded state. False if none was recorded.
    """
    pointer = Path(course_root) / ".classroom" / "current.json"
    if not pointer.exists():
        return False
    info = json.loads(pointer.read_text())
    owner = info.get("pid")
    if owner and owner != os.getpid() and _alive(owner):
        os.kill(owner, signal.SIGTERM)
        deadline = time.monotonic() + 90
        while _alive(owner) and time.monotonic() < deadline:
            time.sleep(0.2)
        if not _alive(owner) and not pointer.exists():
            return True
    state_file = Path(info["run_dir"]) / "hub" / STATE
    if not state_file.exists():
        pointer.unlink(missing_ok=True)
        return False
    _stop(json.loads(state_file.read_text()), log)
    return True
