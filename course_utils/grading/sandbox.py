"""Run untrusted code (a student's submission) in a sandbox: bubblewrap for isolation, kernel limits for resources.

    box = Sandbox(scratch, readable=default_readable(), limits=Limits(cpu_seconds=600))
    for p in box.unprotected():
        print(f"WARNING: sandbox {p}")            # the caller must say what is missing
    proc = box.popen([sys.executable, "grade.py"], stdout=subprocess.PIPE)

Inside, the command sees a minimal system (/usr, a few files of /etc, a minimal /dev,
its own /proc), the ``readable`` paths read-only and the scratch folder read-write,
each at its own absolute path (so paths need no translation), a private /tmp, and
nothing else: not the course's solutions/, not the gradebook, not other submissions.
It has no network (an empty network namespace), only the environment given here,
and kernel resource limits (Limits).

Why each piece:

- bubblewrap (Debian's ``bubblewrap``) builds the mount, pid, network, ipc and uts
  namespaces. As root it runs privileged (no user namespace: one made by root maps
  no other uid, so ``setpriv`` could not switch to one); as a user it needs
  unprivileged user namespaces (``--unshare-user``).
- RLIMIT_NPROC counts all tasks (threads too) of a real uid and does not bind root,
  so as root the command runs as uid 61000 + slot (``setpriv``), one uid per
  parallel grader, and the scratch folder is handed to that uid.
- RLIMIT_AS below ~4 GiB breaks ``import torch``, hence the 8 GiB default.
- The limits and the environment are set by a tiny Python trampoline that then
  execs bubblewrap: the grader's own limits never change, ``preexec_fn`` (unsafe in
  a threaded grader) is not needed, and ``command()`` is complete on its own, so a
  Jupyter kernel manager can launch it too.

Where isolation cannot be had (no bubblewrap, namespaces not allowed, macOS), the
command still runs, with the limits only, and ``protections`` says what is off and
why. No GPU inside: the minimal /dev has no /dev/nvidia*; grading runs on the CPU.
Not covered: the scratch folder's total disk use (only each file's size), system
call filtering (seccomp), and, as root, user namespaces the command makes itself.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Limits", "Protection", "Sandbox", "python_paths", "default_readable", "bubblewrap_problem", "BASE_UID"]

BASE_UID = 61000  # as root, slot k runs as uid/gid BASE_UID + k
_SLOTS = 1000
_NAMESPACES = ["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try"]
# as a user: an unprivileged user namespace, in which the command cannot make more (less kernel to attack)
_USER_NAMESPACE = ["--unshare-user", "--disable-userns"]
# what programs need from /etc (the dynamic linker's cache, users, time zone, fonts), nothing else of it
_ETC = ["alternatives", "fonts", "group", "hosts", "ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime",
        "nsswitch.conf", "passwd", "ssl"]

# Runs in the child before bubblewrap: lower the limits (never above the grader's hard limits), restore
# the signals Python ignores (a C program must die on SIGPIPE/SIGXFSZ as usual), replace the environment.
_TRAMPOLINE = """\
import json, os, resource, signal, sys
spec = json.loads(sys.argv[1])
for name, (soft, hard) in spec["rlimits"].items():
    kind = getattr(resource, "RLIMIT_" + name)
    old = resource.getrlimit(kind)[1]
    hard = hard if old == resource.RLIM_INFINITY else min(hard, old)
    resource.setrlimit(kind, (min(soft, hard), hard))
for name in ("SIGPIPE", "SIGXFSZ"):
    signal.signal(getattr(signal, name), signal.SIG_DFL)
os.chdir(spec["cwd"])
os.execvpe(sys.argv[2], sys.argv[2:], spec["env"])
"""


@dataclass(frozen=True)
class Limits:
    """Kernel resource limits (setrlimit) of the sandboxed command and each of its children."""

    memory_bytes: int = 8 * 2**30  # RLIMIT_AS, address space: below ~4 GiB `import torch` fails
    cpu_seconds: int = 1800  # RLIMIT_CPU, per process: SIGXCPU at the limit, SIGKILL one second later
    processes: int = 128  # RLIMIT_NPROC, tasks beyond those the uid runs already; threads count (torch starts some)
    file_bytes: int = 256 * 2**20  # RLIMIT_FSIZE, the largest file it may write; also the size of its private /tmp
    open_files: int = 1024  # RLIMIT_NOFILE

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"Limits.{f.name} must be a positive integer, got {value!r}")


@dataclass(frozen=True)
class Protection:
    """One protection of the sandbox, on or off, with how it is done or why it is missing."""

    name: str  # "filesystem", "network", "processes", "memory", "cpu time", "file size", "non-root uid"
    on: bool
    detail: str

    def __str__(self) -> str:
        return f"[{'on' if self.on else 'OFF'}] {self.name}: {self.detail}"


def python_paths() -> list[Path]:
    """What a Python child needs to read: this environment, its base interpreter, course_utils.

    A venv's ``python`` is a symlink into the base interpreter (``sys.base_prefix``,
    resolved: it may lie under a 0700 /root, which the sandbox replaces by fresh
    0755 folders), and course_utils is installed editable: imported from where it lies.
    """
    candidates = [Path(sys.prefix), Path(sys.exec_prefix), Path(sys.base_prefix).resolve(),
                  Path(sys.base_exec_prefix).resolve(), Path(sys.executable).resolve().parent,
                  Path(__file__).resolve().parents[1]]
    unique = sorted({Path(os.path.abspath(p)) for p in candidates}, key=lambda p: len(p.parts))
    # a path inside another one is already readable through it
    return [p for i, p in enumerate(unique) if not any(q in p.parents for q in unique[:i])]


def default_readable() -> list[Path]:
    """What a grading command needs besides its scratch folder: Python and the course's package."""
    return python_paths()


@functools.lru_cache(maxsize=None)
def _probe(bwrap: str, as_root: bool) -> str | None:
    """None if bubblewrap can build our namespaces here, else why not (cached: one probe per process)."""
    user = [] if as_root else _USER_NAMESPACE
    argv = [bwrap, *user, *_NAMESPACES, "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev",
            "--size", "1000000", "--tmpfs", "/tmp", "true"]  # --size, --disable-userns: bubblewrap 0.8 or newer
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"{bwrap} could not be run: {e}"
    if done.returncode != 0:
        why = done.stderr.strip() or f"exit status {done.returncode}"
        return f"{bwrap} cannot build the sandbox here (it needs bubblewrap 0.8+ and namespaces): {why}"
    return None


def bubblewrap_problem() -> str | None:
    """None if this machine can isolate a command with bubblewrap, else why not (and what to install)."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return "bubblewrap not found: install it (Debian/Ubuntu: apt install bubblewrap; it needs Linux)"
    if os.geteuid() == 0 and shutil.which("setpriv") is None:
        return "setpriv not found: as root the sandbox needs it (util-linux) to run as a non-root uid"
    return _probe(bwrap, os.geteuid() == 0)


def _tasks_of(uid: int) -> int | None:
    """How many tasks (processes and threads) the real uid runs now, read from /proc; None without /proc."""
    if not os.path.isdir("/proc/self/task"):
        return None
    count = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
        except (OSError, ValueError):  # ended meanwhile
            continue
        if int(status["Uid"].split()[0]) == uid:
            count += int(status["Threads"])
    return count


def _existing(path: os.PathLike | str, what: str, *, folder: bool = False) -> Path:
    p = Path(os.path.abspath(path))
    if not p.exists() or (folder and not p.is_dir()):
        kind = "an existing folder" if folder else "an existing file or folder"
        found = f"{p} is a file" if p.exists() else f"there is nothing at {p}"
        raise ValueError(f"the {what} must be {kind}, but {found}")
    return p


class Sandbox:
    """Runs a command so it sees only ``readable`` paths (read-only), ``scratch`` (read-write) and a private /tmp.

    Inputs:
    - scratch: an existing folder, the only place the command can write to; seen
      at the same absolute path inside (``self.scratch``, resolved), also its HOME
      and working directory. As root it is chowned (recursively) to the sandbox uid.
    - readable: existing files or folders it may read, at the same paths inside;
      pass ``default_readable()`` (plus the submission's inputs) to run Python.
    - limits: Limits; slot: 0..999, one per parallel grader (its uid as root).
    - env: added to the fixed environment below; nothing of the caller's leaks in.
    """

    def __init__(self, scratch: os.PathLike | str, *, readable: Sequence[os.PathLike | str] = (),
                 limits: Limits = Limits(), slot: int = 0, env: Mapping[str, str] | None = None) -> None:
        self.scratch = _existing(scratch, "scratch folder", folder=True).resolve()
        self.readable = [_existing(p, "readable path") for p in readable]
        if isinstance(slot, bool) or not isinstance(slot, int) or not 0 <= slot < _SLOTS:
            raise ValueError(f"slot must be an integer in 0..{_SLOTS - 1} (as root the uid is {BASE_UID} + slot), "
                             f"got {slot!r}")
        self.limits, self.slot = limits, slot
        path = os.pathsep.join([str(Path(sys.executable).parent), "/usr/local/bin", "/usr/bin", "/bin"])
        self.env = {"PATH": path, "HOME": str(self.scratch), "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
                    "MPLBACKEND": "Agg", "PYTHONDONTWRITEBYTECODE": "1", "OMP_NUM_THREADS": "1", **(env or {})}
        self._root = os.geteuid() == 0
        problem = bubblewrap_problem()
        self._bwrap = None if problem else shutil.which("bwrap")
        self._setpriv = shutil.which("setpriv") if self._bwrap and self._root else None
        self.uid = BASE_UID + slot if self._setpriv else os.getuid()
        tasks = _tasks_of(self.uid)
        # RLIMIT_NPROC caps all tasks of the real uid, not those of this command: allow what the uid
        # runs now plus `processes` (as root the slot's uid normally runs nothing: 0 + processes).
        self._nproc = None if tasks is None else tasks + limits.processes
        self.protections = self._protections(problem)

    def _protections(self, problem: str | None) -> list[Protection]:
        lim, on = self.limits, problem is None
        if self.uid == 0:
            procs = f"RLIMIT_NPROC does not bind root, and it runs as root: {problem}"
        elif self._nproc is None:
            procs = "no /proc to count the uid's tasks: no RLIMIT_NPROC set"
        else:
            procs = f"RLIMIT_NPROC {self._nproc}: {lim.processes} tasks (threads too) beyond uid {self.uid}'s own"
        return [
            Protection("filesystem", on, f"bubblewrap: {len(self.readable)} readable paths (read-only), the "
                       "scratch folder and a private /tmp" if on else f"{problem}; it can use all uid {self.uid} can"),
            Protection("network", on, "own, empty network namespace" if on else f"{problem}; full network access"),
            Protection("processes", self._nproc is not None and self.uid != 0, procs),
            Protection("memory", True, f"RLIMIT_AS {lim.memory_bytes / 2**30:.2f} GiB of address space per process"),
            Protection("cpu time", True, f"RLIMIT_CPU {lim.cpu_seconds} s per process: SIGXCPU, SIGKILL 1 s later"),
            Protection("file size", True, f"RLIMIT_FSIZE {lim.file_bytes} bytes per file"
                       + (", /tmp and /dev/shm as large" if on else "")),
            Protection("non-root uid", self.uid != 0, f"runs as uid {self.uid}" if self.uid else f"root: {problem}"),
        ]

    def unprotected(self) -> list[Protection]:
        """The protections that are off: the caller must print them."""
        return [p for p in self.protections if not p.on]

    def command(self, argv: Sequence[os.PathLike | str]) -> list[str]:
        """The full command line: trampoline (limits, environment), bwrap, setpriv, then ``argv``.

        As root this hands the scratch folder to the sandbox uid first.
        """
        if not argv:
            raise ValueError("argv is empty: expected a program and its arguments, e.g. [sys.executable, 'grade.py']")
        lim = self.limits
        rlimits = {"AS": [lim.memory_bytes] * 2, "CPU": [lim.cpu_seconds, lim.cpu_seconds + 1],
                   "FSIZE": [lim.file_bytes] * 2, "NOFILE": [lim.open_files] * 2, "CORE": [0, 0]}
        if self._nproc is not None:
            rlimits["NPROC"] = [self._nproc] * 2
        spec = json.dumps({"rlimits": rlimits, "env": self.env, "cwd": str(self.scratch)})
        inner = [os.fspath(a) for a in argv]
        if self._bwrap:
            if self._setpriv:
                self._hand_scratch_to(self.uid)
                inner = [self._setpriv, f"--reuid={self.uid}", f"--regid={self.uid}", "--clear-groups",
                         "--no-new-privs", "--inh-caps=-all", "--bounding-set=-all", "--", *inner]
            inner = [*self._bwrap_args(), "--", *inner]
        return [sys.executable, "-I", "-S", "-c", _TRAMPOLINE, spec, *inner]

    def popen(self, argv: Sequence[os.PathLike | str], **popen_kwargs) -> subprocess.Popen:
        """Start ``argv`` in the sandbox; ``popen_kwargs`` (stdin, stdout, pass_fds, ...) go to Popen.

        It starts in its own session, so ``os.killpg(proc.pid, SIGKILL)`` ends it with
        its children even without bubblewrap (with it, killing bwrap ends them all).
        """
        for own in ("env", "cwd", "preexec_fn"):
            if own in popen_kwargs:
                raise TypeError(f"popen({own}=...) is the sandbox's job: give variables as Sandbox(env=...); "
                                f"the command runs in the scratch folder")
        popen_kwargs.setdefault("start_new_session", True)
        return subprocess.Popen(self.command(argv), **popen_kwargs)

    def _bwrap_args(self) -> list[str]:
        """bubblewrap's options: namespaces, then every mount, parents before children."""
        args = [self._bwrap, *_NAMESPACES, "--die-with-parent", "--new-session", "--hostname", "sandbox"]
        if not self._root:
            args += _USER_NAMESPACE
        mounts: list[tuple[Path, list[str]]] = [(Path("/usr"), ["--ro-bind", "/usr", "/usr"])]
        for top in (Path("/", name) for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32")):
            if top.is_symlink():  # merged /usr: /lib -> usr/lib
                mounts.append((top, ["--symlink", os.readlink(top), str(top)]))
            elif top.is_dir():
                mounts.append((top, ["--ro-bind", str(top), str(top)]))
        mounts += [(p, ["--ro-bind", str(p), str(p)]) for p in (Path("/etc", n) for n in _ETC) if os.path.lexists(p)]
        mounts += [(Path("/dev"), ["--dev", "/dev"]), (Path("/proc"), ["--proc", "/proc"])]
        # private /tmp, and /dev/shm for multiprocessing's semaphores (joblib, DataLoader workers)
        mounts += [(Path(d), ["--perms", "1777", "--size", str(self.limits.file_bytes), "--tmpfs", d])
                   for d in ("/tmp", "/dev/shm")]
        mounts += [(p, ["--ro-bind", str(p), str(p)]) for p in self.readable]
        mounts.append((self.scratch, ["--bind", str(self.scratch), str(self.scratch)]))
        made: set[Path] = set()
        for dest, options in sorted(mounts, key=lambda m: len(m[0].parts)):  # stable: parents first
            # bwrap would create missing parents with mode 0700, closed to the sandbox uid
            for parent in reversed(dest.parents[:-1]):
                if parent not in made:
                    args += ["--perms", "0755", "--dir", str(parent)]
                    made.add(parent)
            args += options
            made.add(dest)
        # the rest of the new root (the folders made above) read-only too: only scratch and /tmp are writable
        return [*args, "--remount-ro", "/", "--chdir", str(self.scratch)]

    def _hand_scratch_to(self, uid: int) -> None:
        """chown -R the scratch folder to ``uid``, never following a symlink a previous run may have left."""
        os.chown(self.scratch, uid, uid)
        for _, dirs, files, fd in os.fwalk(self.scratch, follow_symlinks=False):
            for name in dirs + files:
                os.chown(name, uid, uid, dir_fd=fd, follow_symlinks=False)
