"""Real Linux users for the classroom: one instructor and students, made and removed by the classroom.

nbgrader knows a student by the operating-system user that runs their server (``JUPYTERHUB_USER`` only counts
for ``jovyan``), so a classroom where every server ran as one user would file every submission under one name:
each person here is a Linux account, their server runs as them (JupyterHub's LocalProcessSpawner), and the
exchange's and homes' permissions are the ones a real class has.

Every account made here carries :data:`MARKER` in its comment (GECOS) field; :func:`remove_user` and
:func:`make_user` only ever delete an account that carries it, so an existing user of the machine with the same
name is refused, never touched. Homes live in the classroom's run folder (mode 700), so removing the run folder
leaves nothing a re-created user of the same name could inherit.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["MARKER", "ClassroomUser", "ClassroomError", "chown_tree", "make_user", "remove_user", "remove_user_files",
           "stop_user_processes", "user_pids"]

MARKER = "dl4cv classroom"


class ClassroomError(RuntimeError):
    """The classroom cannot start or stop here; the message says what was expected and what to do."""


@dataclass(frozen=True)
class ClassroomUser:
    """One person of the classroom: ``name`` is their Linux and JupyterHub user name."""

    name: str
    role: str  # "instructor" or "student"
    uid: int
    gid: int
    home: Path


def _run(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, check=False)


def _is_ours(name: str) -> bool | None:
    """True: ours (carries the marker); False: someone else's account; None: no such user."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return None
    return MARKER in entry.pw_gecos


def user_pids(uid: int) -> list[int]:
    """The ids of the processes that run as ``uid`` (real uid), from /proc."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:  # gone meanwhile
            continue
        for line in status.splitlines():
            if line.startswith("Uid:"):
                if int(line.split()[1]) == uid:
                    pids.append(int(entry.name))
                break
    return pids


def stop_user_processes(uid: int, grace: float = 5.0) -> list[int]:
    """SIGTERM, then SIGKILL after ``grace`` seconds, every process of ``uid`` (all started by the classroom)."""
    pids = user_pids(uid)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    while user_pids(uid) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in user_pids(uid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return pids


def remove_user_files(uid: int, folders: tuple[str, ...] = ("/tmp", "/var/tmp", "/dev/shm")) -> list[Path]:
    """Remove what ``uid`` left at the top of the shared temporary folders (torch's compile cache, sockets)."""
    removed = []
    for folder in folders:
        try:
            entries = list(Path(folder).iterdir())
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.lstat().st_uid != uid:
                    continue
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink()
                removed.append(entry)
            except OSError:
                continue
    return removed


def remove_user(name: str) -> bool:
    """Remove a classroom account (its processes first); False if there was none. Refuses other accounts."""
    ours = _is_ours(name)
    if ours is None:
        return False
    if not ours:
        raise ClassroomError(f"refusing to remove user {name!r}: it was not made by the classroom "
                             f"(its comment field lacks {MARKER!r})")
    uid = pwd.getpwnam(name).pw_uid
    stop_user_processes(uid)
    remove_user_files(uid)
    result = _run(["userdel", name])
    if result.returncode != 0 and _is_ours(name) is not None:
        raise ClassroomError(f"userdel {name} failed (exit {result.returncode}): {result.stderr.strip()}")
    return True


def make_user(name: str, role: str, home: Path) -> ClassroomUser:
    """Create Linux user ``name`` with its home at ``home`` (mode 700, owned by it) and a private group.

    A leftover classroom account of that name (a run that was killed) is removed first; an account of the
    machine's own is refused.
    """
    if os.geteuid() != 0:
        raise ClassroomError("the classroom makes Linux users and runs their servers as them: run it as root")
    if _is_ours(name) is False:
        raise ClassroomError(f"a user {name!r} already exists on this machine and was not made by the classroom; "
                             f"choose other names (--prefix)")
    remove_user(name)
    result = _run(["useradd", "--no-create-home", "--home-dir", str(home), "--shell", "/bin/bash",
                   "--user-group", "--comment", f"{MARKER} {role}", name])
    if result.returncode != 0:
        raise ClassroomError(f"useradd {name} failed (exit {result.returncode}): {result.stderr.strip()}")
    entry = pwd.getpwnam(name)
    home.mkdir(parents=True, exist_ok=True)
    os.chown(home, entry.pw_uid, entry.pw_gid)
    home.chmod(0o700)
    return ClassroomUser(name=name, role=role, uid=entry.pw_uid, gid=entry.pw_gid, home=home)


def chown_tree(path: Path, user: ClassroomUser) -> None:
    """Give ``path`` and everything under it to ``user`` (symbolic links themselves, not their targets)."""
    os.chown(path, user.uid, user.gid, follow_symlinks=False)
    for folder, dirs, files in os.walk(path):
        for name in dirs + files:
            os.chown(os.path.join(folder, name), user.uid, user.gid, follow_symlinks=False)
