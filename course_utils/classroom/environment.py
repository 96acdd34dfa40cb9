"""The single-user servers' Python: the course's environment, executable by every classroom user.

When the course's ``.venv`` interpreter can be run by everyone (made from ``/usr/bin/python3``, the course in a
folder others can enter), the servers use it as it is. Often it cannot: a venv's ``bin/python`` is a link to the
Python it was made from, and a pyenv Python under ``/root`` (mode 700) gives "Permission denied" on
``jupyterhub-singleuser`` to every other user. Copying the environment (6 GB with torch) or opening up root's home
are both wrong, and a venv from the *system* Python of the same ``major.minor`` is not enough either: Debian 12's
Python 3.11.2 has the regular-expression bug with possessive quantifiers fixed in 3.11.5, which breaks soupsieve
and with it nbconvert's HTML export (nbgrader's feedback). So the classroom builds, in its run folder:

- ``python/``: a copy of the course interpreter's own runtime (its binary, ``libpython`` and standard library,
  about 80 MB, no site-packages), so the servers run the very Python the course's packages were installed and
  tested with; the binary's library search path (RUNPATH, absolute under the original prefix) is rewritten in
  the copy to ``$ORIGIN/../lib``, which fits in the same bytes;
- ``env/``: a virtual environment made from that copy, with no packages of its own but a ``.pth`` file that adds
  the course's ``.venv`` site-packages with :func:`site.addsitedir` (so their own ``.pth`` files, e.g. the
  editable install of ``course_utils``, are processed too); ``share/jupyter`` and ``etc/jupyter`` linked to the
  course environment's (JupyterLab, its extensions, the enabled server extensions); every console script of
  ``.venv/bin`` (``jupyter``, ``nbgrader``, ``alembic`` ...) copied with its first line pointing at the new
  interpreter, for terminals and for nbgrader, which runs ``alembic`` by name.

What cannot be fixed here is a course folder that other users cannot reach at all (a clone under ``/root``):
:func:`unreachable` names the folder that blocks and the classroom refuses with that message.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

from .users import ClassroomError

__all__ = ["build_server_env", "copy_runtime", "site_packages", "unreachable"]


def site_packages(prefix: Path, version: tuple[int, int] | None = None) -> Path:
    """``prefix/lib/pythonX.Y/site-packages`` of an environment."""
    major, minor = version or sys.version_info[:2]
    return prefix / "lib" / f"python{major}.{minor}" / "site-packages"


def unreachable(path: Path) -> Path | None:
    """The first folder on the way to ``path`` that other users cannot enter (no ``o+x``), or None."""
    path = path.resolve()
    for folder in [*reversed(path.parents), path] if path.is_dir() else reversed(path.parents):
        mode = folder.stat().st_mode
        if not mode & stat.S_IXOTH:
            return folder
    return None


def _world_executable(path: Path) -> bool:
    real = path.resolve()
    return real.is_file() and bool(real.stat().st_mode & stat.S_IXOTH) and unreachable(real) is None


def _runpath_patched(binary: Path, old_lib: Path) -> bool:
    """Rewrite ``old_lib`` (absolute) as ``$ORIGIN/../lib`` in ``binary``'s dynamic string table, in place."""
    data = binary.read_bytes()
    old, new = str(old_lib).encode() + b"\0", b"$ORIGIN/../lib\0"
    if data.count(old) != 1 or len(new) > len(old):
        return False
    binary.write_bytes(data.replace(old, new.ljust(len(old), b"\0")))
    return True


def copy_runtime(prefix: Path, target: Path, version: tuple[int, int]) -> Path:
    """The interpreter at ``prefix`` (binary, libpython, standard library; no site-packages) copied to ``target``."""
    major, minor = version
    name = f"python{major}.{minor}"
    skip = shutil.ignore_patterns("site-packages", "test", "idlelib", "tkinter", "turtledemo", "ensurepip",
                                  f"config-{major}.{minor}*", "*.a")
    (target / "bin").mkdir(parents=True)
    shutil.copy2(prefix / "bin" / name, target / "bin" / name)
    shutil.copytree(prefix / "lib", target / "lib", ignore=skip, symlinks=True)
    (target / "lib" / name / "site-packages").mkdir(exist_ok=True)
    binary = target / "bin" / name
    if "libpython" in subprocess.run(["ldd", str(prefix / "bin" / name)], capture_output=True, text=True).stdout \
            and not _runpath_patched(binary, prefix / "lib"):
        raise ClassroomError(f"{prefix / 'bin' / name} links libpython by an absolute path that cannot be "
                             f"rewritten in a copy; build the course's .venv from a Python every user can run")
    return binary


def _base_prefix(course_venv: Path) -> Path:
    """The prefix of the Python the course's venv was made from (pyvenv.cfg's ``home`` is its bin/)."""
    for line in (course_venv / "pyvenv.cfg").read_text().splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "home":
            return Path(value.strip()).resolve().parent
    raise ClassroomError(f"{course_venv / 'pyvenv.cfg'} has no 'home': is {course_venv} a virtual environment?")


def build_server_env(course_venv: Path, run_dir: Path, version: tuple[int, int] | None = None) -> Path:
    """The servers' ``python``: the course's own when everyone can run it, else ``run_dir/env`` (see above)."""
    course_venv = course_venv.absolute()
    version = version or sys.version_info[:2]
    packages = site_packages(course_venv, version)
    if not packages.is_dir():
        raise ClassroomError(f"{course_venv} is not the course's environment: {packages} is missing (run make env)")
    blocked = unreachable(packages)
    if blocked is not None:
        raise ClassroomError(
            f"the course's environment {course_venv} cannot be reached by other users: {blocked} is mode "
            f"{stat.filemode(blocked.stat().st_mode)} (no o+x). The classroom's users run the course from there; "
            f"clone the course under a folder others can enter (e.g. /srv or /opt), or allow entering with "
            f"chmod o+x {blocked}")
    own = course_venv / "bin" / "python"
    if _world_executable(own) and unreachable(_base_prefix(course_venv) / "lib") is None:
        return own
    runtime = copy_runtime(_base_prefix(course_venv), run_dir / "python", version)
    target = run_dir / "env"
    subprocess.run([str(runtime), "-m", "venv", "--without-pip", str(target)], check=True, capture_output=True)
    (site_packages(target, version) / "course-env.pth").write_text(
        f"import site; site.addsitedir({str(packages)!r})\n")
    for sub in ("share", "etc"):
        source, link = course_venv / sub / "jupyter", target / sub / "jupyter"
        if source.is_dir():
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(source)
    new_python = target / "bin" / "python"
    for script in sorted((course_venv / "bin").iterdir()):
        destination = target / "bin" / script.name
        if destination.exists() or destination.is_symlink() or not script.is_file():
            continue
        try:
            first, rest = script.read_bytes().split(b"\n", 1)
        except (ValueError, OSError):
            continue
        if first.startswith(b"#!") and first[2:].strip().startswith(str(course_venv).encode()):
            destination.write_bytes(b"#!" + str(new_python).encode() + b"\n" + rest)
            destination.chmod(0o755)
    for root in (run_dir / "python", target):
        for folder, dirs, files in os.walk(root):
            for name in dirs + files:
                path = Path(folder) / name
                if not path.is_symlink():
                    mode = path.stat().st_mode
                    path.chmod(mode | 0o044 | (0o011 if path.is_dir() or mode & 0o100 else 0))
        root.chmod(0o755)
    return new_python
