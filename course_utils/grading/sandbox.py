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
and kernel resource limits (Limits) on each process and on the sandbox as a whole.

The scratch folder inside is the sandbox's own size-limited space (a tmpfs of
``Limits.scratch_bytes``, in memory): the files and folders that are in the real
scratch folder when the command starts are there too, each file bound to the real
one (writes reach it, up to ``file_bytes`` each), but what the command creates stays
inside and is gone when it ends. A caller that wants a file back (a log) creates it,
even empty, before ``popen``.

Why each piece:

- bubblewrap (Debian's ``bubblewrap``) builds the mount, pid, network, ipc and uts
  namespaces. As root it runs privileged (no user namespace: one made by root maps
  no other uid, so ``setpriv`` could not switch to one); as a user it needs
  unprivileged user namespaces (``--unshare-user``).
- A cgroup per sandbox caps all its processes together: memory (``memory.max``,
  no swap), tasks (``pids.max``) and CPU share (``cpu.max``), so several forked
  processes cannot exhaust the machine. Made directly inside this process's own
  cgroup where it may (cgroup v2 at the hierarchy's root, e.g. root in a VM, which
  enables the controllers for children as systemd does; cgroup v1 as root), else
  by ``systemd-run --scope`` (``--user`` as a user) where systemd delegates the
  controllers; each way is checked once by a probe. Where none works, only the
  per-process limits below hold, and ``unprotected()`` says so. A sandbox that
  cannot make its cgroup at the start refuses to run the command (exit 125).
- RLIMIT_NPROC counts all tasks (threads too) of a real uid and does not bind root,
  so as root the command runs as uid 61000 + slot (``setpriv``), one uid per
  parallel grader, and the scratch folder is handed to that uid.
- RLIMIT_AS below ~4 GiB breaks ``import torch``, hence the 8 GiB default.
- The limits and the environment are set by a tiny Python trampoline that then
  execs bubblewrap: the grader's own limits never change, ``preexec_fn`` (unsafe in
  a threaded grader) is not needed, and ``command()`` is complete on its own, so a
  Jupyter kernel manager can launch it too. With a cgroup made directly, the
  trampoline stays as the command's parent (outside the cgroup), and when the
  command ends it kills what is left in the cgroup and removes it; a cgroup left
  by a trampoline killed with SIGKILL is removed by the next sandbox's trampoline.

Where isolation cannot be had (no bubblewrap, namespaces not allowed, macOS), the
command still runs, with the limits only, and ``protections`` says what is off and
why (without bubblewrap the scratch folder is the real one, with no cap on its
total size). No GPU inside by default: the minimal /dev has no /dev/nvidia*, so
grading runs on the CPU. ``gpu=True`` (the grading command's ``--gpu``) binds the
machine's NVIDIA device files (``nvidia_devices()``) into that /dev and its /sys
read-only (the driver reads /sys/module/nvidia* when CUDA starts), lets
``CUDA_VISIBLE_DEVICES`` through, and lifts RLIMIT_AS (CUDA reserves far more
address space than it uses; the cgroup's memory limit still holds); the
protections then say the GPU is shared with student code, and
``cuda_problem()`` tells whether CUDA starts inside. Not covered: system
call filtering (seccomp), disk bandwidth, and, as root, user namespaces the
command makes itself.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Limits", "Protection", "Sandbox", "python_paths", "default_readable", "bubblewrap_problem",
           "cgroup_problem", "nvidia_devices", "cuda_problem", "BASE_UID", "GROUP_PREFIX"]

BASE_UID = 61000  # as root, slot k runs as uid/gid BASE_UID + k
GROUP_PREFIX = "course-sandbox-"  # a cgroup made directly is named GROUP_PREFIX + the trampoline's pid
_SLOTS = 1000
_BWRAP_TASKS = 2  # bubblewrap's own processes in the cgroup: the monitor and the pid namespace's init
_NAMESPACES = ["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try"]
# as a user: an unprivileged user namespace, in which the command cannot make more (less kernel to attack)
_USER_NAMESPACE = ["--unshare-user", "--disable-userns"]
# what programs need from /etc (the dynamic linker's cache, users, time zone, fonts), nothing else of it
_ETC = ["alternatives", "fonts", "group", "hosts", "ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime",
        "nsswitch.conf", "passwd", "ssl"]
# what systemd-run --user needs to reach the user's manager; removed again (env -u) before the command starts
_BUS = ("XDG_RUNTIME_DIR", "DBUS_SESSION_BUS_ADDRESS")

# Runs in the child before bubblewrap: lower the limits (never above the grader's hard limits), restore
# the signals Python ignores (a C program must die on SIGPIPE/SIGXFSZ as usual), replace the environment.
# With cgroups (spec["cgroups"]: [parent folder, [[file, value], ...]] each; "?file" only where it exists):
# make one per parent, fork, move the child into them, exec; then wait, kill what is left, remove them.
_TRAMPOLINE = """\
import json, os, resource, signal, sys, time
spec = json.loads(sys.argv[1])
for name, (soft, hard) in spec["rlimits"].items():
    kind = getattr(resource, "RLIMIT_" + name)
    old = resource.getrlimit(kind)[1]
    hard = hard if old == resource.RLIM_INFINITY else min(hard, old)
    resource.setrlimit(kind, (min(soft, hard), hard))
for name in ("SIGPIPE", "SIGXFSZ"):
    signal.signal(getattr(signal, name), signal.SIG_DFL)
os.chdir(spec["cwd"])
if not spec["cgroups"]:
    os.execvpe(sys.argv[2], sys.argv[2:], spec["env"])
PREFIX, me = spec["prefix"], os.getpid()
groups = [os.path.join(parent, PREFIX + str(me)) for parent, _ in spec["cgroups"]]

def write(path, value):
    with open(path, "w") as f:
        f.write(value)

def remove(group, tries=250):
    for _ in range(tries):
        try:
            write(os.path.join(group, "cgroup.kill"), "1")
        except OSError:
            try:
                with open(os.path.join(group, "cgroup.procs")) as f:
                    for pid in f.read().split():
                        try:
                            os.kill(int(pid), signal.SIGKILL)
                        except OSError:
                            pass
            except OSError:
                pass
        try:
            os.rmdir(group)
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.02)
    sys.stderr.write("sandbox: could not remove the cgroup %s\\n" % group)

def sweep(parent):  # the cgroups of trampolines killed by SIGKILL: end what is left in them, remove them
    for name in os.listdir(parent):
        if name.startswith(PREFIX) and name[len(PREFIX):].isdigit():
            try:
                os.kill(int(name[len(PREFIX):]), 0)
            except ProcessLookupError:
                remove(os.path.join(parent, name), tries=25)
            except OSError:
                pass

try:
    for (parent, limits), group in zip(spec["cgroups"], groups):
        sweep(parent)
        os.mkdir(group)
        for name, value in limits:
            path = os.path.join(group, name.lstrip("?"))
            if not name.startswith("?") or os.path.exists(path):
                write(path, value)
except OSError as e:
    for group in groups:
        remove(group)
    sys.stderr.write("sandbox: refusing to run without its cgroup limits: %s\\n" % e)
    sys.exit(125)
child = os.fork()
if child == 0:
    try:
        for group in groups:
            write(os.path.join(group, "cgroup.procs"), "0")
        import ctypes
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: die with the trampoline
        if os.getppid() != me:
            os._exit(125)
        os.execvpe(sys.argv[2], sys.argv[2:], spec["env"])
    except BaseException as e:
        sys.stderr.write("sandbox: could not start in its cgroup: %s\\n" % e)
    os._exit(125)
for name in ("SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT"):
    signal.signal(getattr(signal, name), lambda number, frame: os.kill(child, number))
null = os.open(os.devnull, os.O_RDWR)
os.dup2(null, 0)
os.dup2(null, 1)
os.closerange(3, 65536)
_, status = os.waitpid(child, 0)
for group in groups:
    remove(group)
if os.WIFSIGNALED(status):
    number = os.WTERMSIG(status)
    signal.signal(number, signal.SIG_DFL)
    os.kill(me, number)
    sys.exit(128 + number)
sys.exit(os.WEXITSTATUS(status))
"""


@dataclass(frozen=True)
class Limits:
    """Kernel resource limits: per process (setrlimit) and for the whole sandbox (its cgroup, its scratch tmpfs)."""

    memory_bytes: int = 8 * 2**30  # RLIMIT_AS, address space per process: below ~4 GiB `import torch` fails
    cpu_seconds: int = 1800  # RLIMIT_CPU, per process: SIGXCPU at the limit, SIGKILL one second later
    processes: int = 128  # tasks (threads count; torch starts some): RLIMIT_NPROC beyond the uid's own, pids.max
    file_bytes: int = 256 * 2**20  # RLIMIT_FSIZE, the largest file it may write; also the size of its private /tmp
    open_files: int = 1024  # RLIMIT_NOFILE
    total_memory_bytes: int = 4 * 2**30  # cgroup memory.max: all processes together, their tmpfs files too; no swap
    cpu_percent: int = 100  # cgroup cpu.max: CPU share of all processes together, 100 = one core
    scratch_bytes: int = 512 * 2**20  # size of the scratch space (a tmpfs, counted in total_memory_bytes)

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"Limits.{f.name} must be a positive integer, got {value!r}")


@dataclass(frozen=True)
class Protection:
    """One protection of the sandbox, on or off, with how it is done or why it is missing."""

    name: str  # "filesystem", "network", "processes", "memory", "cpu", "file size", "scratch space", "non-root uid"
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
    # site folders a .pth file added (the JupyterHub classroom's server environment layers the course's .venv so)
    candidates += [Path(p) for p in sys.path if Path(p).name == "site-packages" and Path(p).is_dir()]
    unique = sorted({Path(os.path.abspath(p)) for p in candidates}, key=lambda p: len(p.parts))
    # a path inside another one is already readable through it
    return [p for i, p in enumerate(unique) if not any(q in p.parents for q in unique[:i])]


def nvidia_devices(dev: Path = Path("/dev")) -> list[Path]:
    """The NVIDIA device files of this machine: /dev/nvidia0..N, nvidiactl, nvidia-uvm(-tools), nvidia-modeset,
    and the /dev/nvidia-caps folder (MIG); empty without an NVIDIA GPU (or driver)."""
    return sorted(p for p in dev.glob("nvidia*") if p.is_char_device() or p.is_dir())


def cuda_problem(scratch: os.PathLike | str, gpu_devices: Sequence[os.PathLike | str] | None = None) -> str | None:
    """None if PyTorch finds a CUDA device inside a ``gpu=True`` sandbox in ``scratch``, else why not
    (without it the grading worker silently runs on the CPU)."""
    box = Sandbox(scratch, readable=default_readable(), gpu=True, gpu_devices=gpu_devices)
    if not box.gpu_devices:
        return "this machine has no NVIDIA device (/dev/nvidia*)"
    code = "import torch; torch.cuda.init(); print(torch.cuda.device_count(), torch.cuda.get_device_name(0))"
    proc = box.popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return "CUDA did not start within 120 s inside the sandbox"
    if proc.returncode != 0:
        lines = err.strip().splitlines()
        return f"CUDA does not start inside the sandbox: {lines[-1] if lines else f'exit status {proc.returncode}'}"
    return None


def default_readable() -> list[Path]:
    """What a grading command needs besides its scratch folder: Python and the course's package."""
    return python_paths()


@functools.cache
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


# ---- cgroups: one per sandbox, for all its processes together ----

@dataclass(frozen=True)
class _Cgroups:
    """How this machine lets each sandbox have its own cgroup.

    Either ``parents`` (made directly: [(folder, controllers)], one folder for cgroup
    v2, one per hierarchy for v1), or ``systemd_run`` (the argv that starts a scope).
    """

    how: str  # for messages: "cgroup v1", "cgroup v2", "systemd-run --user --scope"
    version: int  # 1 or 2
    controllers: frozenset[str]  # of "memory", "pids", "cpu"
    parents: tuple[tuple[str, frozenset[str]], ...] = ()
    systemd_run: tuple[str, ...] = ()


_WANTED = ("memory", "pids", "cpu")  # memory and pids are required, cpu where the machine has it


def _mounts() -> list[tuple[str, str, str, set[str]]]:
    """The cgroup file systems: (type, mount point, root inside the hierarchy, controllers of a v1 mount)."""
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        fields, fstype = left.split(), right.split()
        if fstype and fstype[0] in ("cgroup", "cgroup2"):
            options = set(fstype[2].split(",")) if len(fstype) > 2 else set()
            found.append((fstype[0], fields[4].replace("\\040", " "), fields[3], options))
    return found


def _own_groups() -> dict[str, str]:
    """This process's cgroup per hierarchy: "" for the v2 one, else each v1 controller name -> path."""
    groups = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for name in controllers.split(",") if controllers else [""]:
            groups[name] = path
    return groups


def _folder(mount: str, root: str, path: str) -> str:
    """The folder of cgroup ``path`` in a hierarchy mounted at ``mount`` (which shows it from ``root``)."""
    if root != "/" and (path == root or path.startswith(root + "/")):
        path = path[len(root):]
    return os.path.normpath(os.path.join(mount, path.lstrip("/")))


def _try_group(parent: str, limits: list[tuple[str, str]]) -> str | None:
    """None if a child cgroup can be made in ``parent`` and given ``limits`` (then removed), else why not."""
    probe = os.path.join(parent, f"{GROUP_PREFIX}probe-{os.getpid()}")
    try:
        os.mkdir(probe)
    except OSError as e:
        return f"cannot make a cgroup in {parent}: {e.strerror}"
    why = None
    for name, value in limits:
        try:
            Path(probe, name).write_text(value)
        except OSError as e:
            why = f"cannot set {name} in {probe}: {e.strerror}"
            break
    try:
        os.rmdir(probe)
    except OSError as e:
        why = why or f"cannot remove the cgroup {probe}: {e.strerror}"
    return why


def _direct_v2(mounts, own: dict[str, str]) -> tuple[_Cgroups | None, str]:
    """cgroup v2 where this process is at the hierarchy's root (a VM or a container with its own root)."""
    v2 = [(mount, root) for kind, mount, root, _ in mounts if kind == "cgroup2"]
    if not v2 or "" not in own:
        return None, "no cgroup v2 hierarchy"
    mount, root = v2[0]
    folder = _folder(mount, root, own[""])
    try:
        available = set(Path(folder, "cgroup.controllers").read_text().split())
        enabled = set(Path(folder, "cgroup.subtree_control").read_text().split())
    except OSError as e:
        return None, f"cgroup v2 at {folder} unreadable: {e.strerror}"
    wanted = {c for c in _WANTED if c in available}
    if not {"memory", "pids"} <= wanted:
        return None, f"cgroup v2 at {folder} offers {' '.join(sorted(available)) or 'no controllers'}, not memory+pids"
    if not wanted <= enabled and own[""] != "/":  # a cgroup with processes (this one) cannot hand them down
        return None, f"cgroup v2: this process's cgroup {own['']} is not delegated (not its hierarchy's root)"
    for controller in sorted(wanted - enabled):  # at the root: enable them for its children, as systemd does
        try:
            Path(folder, "cgroup.subtree_control").write_text(f"+{controller}")
        except OSError as e:
            if controller != "cpu":
                return None, f"cgroup v2: cannot enable {controller} in {folder}: {e.strerror}"
            wanted.discard("cpu")  # e.g. with realtime processes: the sandbox goes without a CPU share
    why = _try_group(folder, [("memory.max", str(2**30)), ("pids.max", "64")]
                     + ([("cpu.max", "100000 100000")] if "cpu" in wanted else []))
    if why:
        return None, f"cgroup v2: {why}"
    return _Cgroups("cgroup v2", 2, frozenset(wanted), parents=((folder, frozenset(wanted)),)), ""


def _direct_v1(mounts, own: dict[str, str]) -> tuple[_Cgroups | None, str]:
    """cgroup v1 (one hierarchy per controller), where this process may make groups (normally as root)."""
    parents = []
    for controller in _WANTED:
        where = [(mount, root) for kind, mount, root, options in mounts if kind == "cgroup" and controller in options]
        if not where or controller not in own:
            continue
        folder = _folder(*where[0], own[controller])
        test = {"memory": ("memory.limit_in_bytes", str(2**30)), "pids": ("pids.max", "64"),
                "cpu": ("cpu.cfs_quota_us", "100000")}[controller]
        if _try_group(folder, [test]) is None:
            parents.append((folder, frozenset([controller])))
    got = frozenset(c for _, cs in parents for c in cs)
    if not {"memory", "pids"} <= got:
        return None, "cgroup v1: no memory and pids hierarchies this process may make groups in (root needed)"
    return _Cgroups("cgroup v1", 1, got, parents=tuple(parents)), ""


# Run inside a probe scope: the limits systemd gave it, read from its own cgroup (v2).
_SCOPE_PROBE = """\
import os, sys
path = open("/proc/self/cgroup").read().split("0::", 1)[1].split()[0]
folder = os.path.join(sys.argv[1], path.lstrip("/"))
print(" ".join(open(os.path.join(folder, name)).read().strip() for name in ("memory.max", "pids.max")))
"""


def _systemd_scope(mounts) -> tuple[_Cgroups | None, str]:
    """``systemd-run --scope`` (``--user`` as a user), if systemd runs and really applies the limits."""
    tool = shutil.which("systemd-run")
    v2 = [mount for kind, mount, root, _ in mounts if kind == "cgroup2" and root == "/"]
    if tool is None or not os.path.isdir("/run/systemd/system") or not v2:
        return None, "no systemd-run --scope (systemd with cgroup v2 not running)"
    argv = (tool, *([] if os.geteuid() == 0 else ["--user"]), "--scope", "--quiet", "--collect")
    probe = [*argv, "-p", "MemoryMax=1073741824", "-p", "TasksMax=64", "--",
             sys.executable, "-I", "-S", "-c", _SCOPE_PROBE, v2[0]]
    try:
        done = subprocess.run(probe, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return None, f"systemd-run --scope failed: {e}"
    if done.returncode != 0 or done.stdout.split() != ["1073741824", "64"]:
        why = done.stderr.strip().splitlines()[-1:] or [f"its cgroup has memory.max, pids.max = {done.stdout.strip()}"]
        return None, f"systemd-run {'--user ' if os.geteuid() else ''}--scope does not limit memory and tasks: {why[0]}"
    return _Cgroups(f"systemd-run {'--user ' if os.geteuid() else ''}--scope", 2,
                    frozenset(_WANTED), systemd_run=argv), ""


@functools.cache
def _cgroups() -> tuple[_Cgroups | None, str]:
    """How sandboxes get their cgroup here, or (None, why not). Probed once per process."""
    if not sys.platform.startswith("linux"):
        return None, "cgroups are Linux only"
    try:
        mounts, own = _mounts(), _own_groups()
    except (OSError, ValueError, IndexError) as e:
        return None, f"cannot read this process's cgroups: {e}"
    reasons = []
    for attempt in (functools.partial(_direct_v2, mounts, own), functools.partial(_direct_v1, mounts, own),
                    functools.partial(_systemd_scope, mounts)):
        found, why = attempt()
        if found is not None:
            return found, ""
        reasons.append(why)
    return None, "; ".join(reasons)


def cgroup_problem() -> str | None:
    """None if each sandbox here gets a cgroup limiting all its processes together, else why not."""
    found, why = _cgroups()
    return None if found else why


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


def _gib(n: int) -> str:
    return f"{n / 2**30:.2f} GiB"


class Sandbox:
    """Runs a command so it sees only ``readable`` paths (read-only), ``scratch`` (read-write) and a private /tmp.

    Inputs:
    - scratch: an existing folder, seen at the same absolute path inside
      (``self.scratch``, resolved), also its HOME and working directory. Inside it
      is a tmpfs of ``limits.scratch_bytes`` holding what the folder holds at the
      start (its files bound to the real ones: writes to them reach the folder);
      new files stay inside. As root the folder is chowned (recursively) to the
      sandbox uid.
    - readable: existing files or folders it may read, at the same paths inside;
      pass ``default_readable()`` (plus the submission's inputs) to run Python.
    - limits: Limits; slot: 0..999, one per parallel grader (its uid as root).
    - env: added to the fixed environment below; nothing of the caller's leaks in
      (with ``gpu``, ``CUDA_VISIBLE_DEVICES`` does, if set).
    - gpu: expose the NVIDIA devices (``gpu_devices``, default ``nvidia_devices()``) inside,
      with RLIMIT_AS lifted (CUDA reserves more address space than it uses); off by default.
    """

    def __init__(self, scratch: os.PathLike | str, *, readable: Sequence[os.PathLike | str] = (),
                 limits: Limits = Limits(), slot: int = 0, env: Mapping[str, str] | None = None,
                 gpu: bool = False, gpu_devices: Sequence[os.PathLike | str] | None = None) -> None:
        self.scratch = _existing(scratch, "scratch folder", folder=True).resolve()
        self.readable = [_existing(p, "readable path") for p in readable]
        if isinstance(slot, bool) or not isinstance(slot, int) or not 0 <= slot < _SLOTS:
            raise ValueError(f"slot must be an integer in 0..{_SLOTS - 1} (as root the uid is {BASE_UID} + slot), "
                             f"got {slot!r}")
        self.limits, self.slot = limits, slot
        path = os.pathsep.join([str(Path(sys.executable).parent), "/usr/local/bin", "/usr/bin", "/bin"])
        self.env = {"PATH": path, "HOME": str(self.scratch), "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
                    "MPLBACKEND": "Agg", "PYTHONDONTWRITEBYTECODE": "1", "OMP_NUM_THREADS": "1", **(env or {})}
        self.gpu = bool(gpu)
        self.gpu_devices = [Path(os.path.abspath(p)) for p in
                            (gpu_devices if gpu_devices is not None else nvidia_devices())] if self.gpu else []
        if self.gpu and "CUDA_VISIBLE_DEVICES" in os.environ:
            self.env.setdefault("CUDA_VISIBLE_DEVICES", os.environ["CUDA_VISIBLE_DEVICES"])
        self._root = os.geteuid() == 0
        problem = bubblewrap_problem()
        self._bwrap = None if problem else shutil.which("bwrap")
        self._setpriv = shutil.which("setpriv") if self._bwrap and self._root else None
        self.uid = BASE_UID + slot if self._setpriv else os.getuid()
        tasks = _tasks_of(self.uid)
        # RLIMIT_NPROC caps all tasks of the real uid, not those of this command: allow what the uid
        # runs now plus `processes` (as root the slot's uid normally runs nothing: 0 + processes).
        self._nproc = None if tasks is None else tasks + limits.processes
        self._cgroups, cgroup_why = _cgroups()
        self.protections = self._protections(problem, cgroup_why)

    def _protections(self, problem: str | None, cgroup_why: str) -> list[Protection]:
        lim, on, cg = self.limits, problem is None, self._cgroups
        has = cg.controllers if cg else frozenset()
        # as root outside bubblewrap the command could write its own cgroup's files
        lifted = " (but it runs as root outside bubblewrap: it could lift them)" if self.uid == 0 and not on else ""
        whole = f"{cg.how}{lifted}" if cg else ""
        if self.uid == 0:
            procs = f"RLIMIT_NPROC does not bind root, and it runs as root: {problem}"
        elif self._nproc is None:
            procs = "no /proc to count the uid's tasks: no RLIMIT_NPROC set"
        else:
            procs = f"RLIMIT_NPROC {self._nproc}: {lim.processes} tasks (threads too) beyond uid {self.uid}'s own"
        if "pids" in has:
            procs = f"{whole}: {self._pids_max()} tasks for the whole sandbox; {procs}"
        memory = (f"RLIMIT_AS {_gib(lim.memory_bytes)} of address space per process" if not self.gpu else
                  "no RLIMIT_AS (--gpu: CUDA reserves more address space than it uses)")
        cpu = f"RLIMIT_CPU {lim.cpu_seconds} s per process: SIGXCPU, SIGKILL 1 s later"
        return [
            Protection("filesystem", on, f"bubblewrap: {len(self.readable)} readable paths (read-only), the "
                       "scratch folder and a private /tmp" if on else f"{problem}; it can use all uid {self.uid} can"),
            Protection("network", on, "own, empty network namespace" if on else f"{problem}; full network access"),
            Protection("processes", not lifted and ("pids" in has or (self._nproc is not None and self.uid != 0)),
                       procs),
            Protection("memory", "memory" in has and not lifted,
                       f"{whole}: {_gib(lim.total_memory_bytes)} for all its processes together (their /tmp and "
                       f"scratch files too), no swap; {memory}" if "memory" in has else
                       f"only per process: {memory}, so several processes together can use all the machine's "
                       f"memory (no cgroup for the whole sandbox: {cgroup_why})"),
            Protection("cpu time", True, cpu),
            Protection("cpu share", "cpu" in has and not lifted,
                       f"{whole}: {lim.cpu_percent}% of one core for all its processes together" if "cpu" in has else
                       "none for the whole sandbox: N processes can keep N cores busy until the grader's timeout "
                       f"({'no cpu controller in ' + cg.how if cg else 'no cgroup: ' + cgroup_why})"),
            Protection("file size", True, f"RLIMIT_FSIZE {lim.file_bytes} bytes per file"
                       + (", /tmp and /dev/shm as large" if on else "")),
            Protection("scratch space", on, f"a tmpfs of {lim.scratch_bytes} bytes: only the files there at the start "
                       "are the real folder's" if on else f"the real folder, no cap on its total size: {problem}"),
            Protection("non-root uid", self.uid != 0, f"runs as uid {self.uid}" if self.uid else f"root: {problem}"),
            self._gpu_protection(on),
        ]

    def _gpu_protection(self, isolated: bool) -> Protection:
        """Whether student code can reach the machine's GPU (only with ``gpu=True``, i.e. ``--gpu``)."""
        if not self.gpu:
            return Protection("gpu", True, "no GPU device inside: student code runs on the CPU" if isolated else
                              "not exposed on purpose (without bubblewrap the command sees the machine's /dev)")
        if not self.gpu_devices:
            return Protection("gpu", True, "--gpu, but this machine has no NVIDIA device (/dev/nvidia*): "
                              "student code runs on the CPU")
        shown = ", ".join(str(p) for p in self.gpu_devices)
        return Protection("gpu", False, f"--gpu: the machine's NVIDIA devices are shared with student code "
                          f"({shown}): it can use (and fill) the GPUs' memory and time, with no limit per sandbox, "
                          f"and reaches the NVIDIA driver's kernel interface; it reads /sys; no RLIMIT_AS (the "
                          f"cgroup memory limit still holds)")

    def unprotected(self) -> list[Protection]:
        """The protections that are off: the caller must print them."""
        return [p for p in self.protections if not p.on]

    def _pids_max(self) -> int:
        return self.limits.processes + (_BWRAP_TASKS if self._bwrap else 0)

    def _group_limits(self, controllers: frozenset[str], version: int) -> list[tuple[str, str]]:
        """The cgroup files to write, in order; "?name": only where the kernel has the file (swap accounting)."""
        lim, memory = self.limits, str(self.limits.total_memory_bytes)
        quota = str(lim.cpu_percent * 1000)  # microseconds per 100 ms period
        files = {
            2: {"memory": [("memory.max", memory), ("?memory.swap.max", "0"), ("?memory.oom.group", "1")],
                "pids": [("pids.max", str(self._pids_max()))], "cpu": [("cpu.max", f"{quota} 100000")]},
            1: {"memory": [("memory.limit_in_bytes", memory), ("?memory.memsw.limit_in_bytes", memory)],
                "pids": [("pids.max", str(self._pids_max()))],
                "cpu": [("cpu.cfs_period_us", "100000"), ("cpu.cfs_quota_us", quota)]},
        }[version]
        return [item for c in _WANTED if c in controllers for item in files[c]]

    def command(self, argv: Sequence[os.PathLike | str]) -> list[str]:
        """The full command line: trampoline (limits, environment, cgroup), bwrap, setpriv, then ``argv``.

        As root this hands the scratch folder to the sandbox uid first.
        """
        if not argv:
            raise ValueError("argv is empty: expected a program and its arguments, e.g. [sys.executable, 'grade.py']")
        lim, cg, env = self.limits, self._cgroups, dict(self.env)
        rlimits = {"CPU": [lim.cpu_seconds, lim.cpu_seconds + 1],
                   "FSIZE": [lim.file_bytes] * 2, "NOFILE": [lim.open_files] * 2, "CORE": [0, 0]}
        if not self.gpu:  # CUDA reserves tens of GiB of address space: under a cap, it does not start
            rlimits["AS"] = [lim.memory_bytes] * 2
        if self._nproc is not None:
            rlimits["NPROC"] = [self._nproc] * 2
        inner = [os.fspath(a) for a in argv]
        if self._bwrap:
            if self._setpriv:
                self._hand_scratch_to(self.uid)
                inner = [self._setpriv, f"--reuid={self.uid}", f"--regid={self.uid}", "--clear-groups",
                         "--no-new-privs", "--inh-caps=-all", "--bounding-set=-all", "--", *inner]
            inner = [*self._bwrap_args(), "--", *inner]
        groups = [[folder, self._group_limits(cs, cg.version)] for folder, cs in cg.parents] if cg else []
        if cg and cg.systemd_run:
            bus = {k: os.environ[k] for k in _BUS if k in os.environ}
            properties = [f"MemoryMax={lim.total_memory_bytes}", "MemorySwapMax=0", f"TasksMax={self._pids_max()}",
                          f"CPUQuota={lim.cpu_percent}%"]
            unset = [item for k in bus for item in ("-u", k)]
            inner = [*cg.systemd_run, *(a for p in properties for a in ("-p", p)), "--",
                     shutil.which("env") or "/usr/bin/env", *unset, *inner]
            env.update(bus)
        spec = json.dumps({"rlimits": rlimits, "env": env, "cwd": str(self.scratch), "cgroups": groups,
                           "prefix": GROUP_PREFIX})
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
        assert self._bwrap is not None
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
        if self.gpu_devices:  # only with gpu=True: the devices, and /sys for the driver's start-up
            mounts += [(p, ["--dev-bind", str(p), str(p)]) for p in self.gpu_devices]
            mounts.append((Path("/sys"), ["--ro-bind", "/sys", "/sys"]))
        # private /tmp, and /dev/shm for multiprocessing's semaphores (joblib, DataLoader workers)
        mounts += [(Path(d), ["--perms", "1777", "--size", str(self.limits.file_bytes), "--tmpfs", d])
                   for d in ("/tmp", "/dev/shm")]
        mounts += [(p, ["--ro-bind", str(p), str(p)]) for p in self.readable]
        mounts.append((self.scratch, ["--perms", "0777", "--size", str(self.limits.scratch_bytes),
                                      "--tmpfs", str(self.scratch)]))
        mounts += self._scratch_entries()
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

    def _scratch_entries(self) -> list[tuple[Path, list[str]]]:
        """What the scratch folder holds now, rebuilt in its tmpfs: folders made, files bound, links copied."""
        entries: list[tuple[Path, list[str]]] = []
        for folder, dirs, files in os.walk(self.scratch):  # never into a symlinked folder
            for name in sorted(dirs) + sorted(files):
                path = Path(folder, name)
                if path.is_symlink():
                    entries.append((path, ["--symlink", os.readlink(path), str(path)]))
                elif path.is_dir():
                    entries.append((path, ["--perms", "0777", "--dir", str(path)]))
                elif path.is_file():
                    entries.append((path, ["--bind", str(path), str(path)]))
        return entries

    def _hand_scratch_to(self, uid: int) -> None:
        """chown -R the scratch folder to ``uid``, never following a symlink a previous run may have left."""
        os.chown(self.scratch, uid, uid)
        for _, dirs, files, fd in os.fwalk(self.scratch, follow_symlinks=False):
            for name in dirs + files:
                os.chown(name, uid, uid, dir_fd=fd, follow_symlinks=False)
