"""The grading sandbox: each protection is shown to hold by a tiny Python child that tries to break it.

The isolation tests need bubblewrap and namespaces (Linux): elsewhere they are
skipped with the reason, but under CI (``CI=true``) that is a failure, since CI must
run them. The whole-sandbox limits need a cgroup this process may make (see
``cgroup_problem``): elsewhere those tests are skipped, and the tests of the
fallback show that the sandbox then says only per-process limits hold. Every child
here is bounded in time and memory (caps of a few hundred MiB at most).
"""

from __future__ import annotations

import errno
import functools
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from course_utils.grading import sandbox
from course_utils.grading.sandbox import (BASE_UID, GROUP_PREFIX, Limits, Sandbox, bubblewrap_problem,
                                          cgroup_problem, default_readable)

PROBLEM = bubblewrap_problem()
CGROUP_PROBLEM = cgroup_problem()
CGROUPS = sandbox._cgroups()[0]  # how each sandbox gets its cgroup here (None: it does not)
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
# the kernel limits (setrlimit) are only checked where the grader runs: other systems refuse or ignore some
linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="resource limits are tested on Linux only")
whole_sandbox = pytest.mark.skipif(CGROUP_PROBLEM is not None, reason=f"no cgroup for a sandbox: {CGROUP_PROBLEM}")
COURSE_ROOT = Path(sandbox.__file__).resolve().parents[2]


def require_bubblewrap() -> None:
    """Skip where bubblewrap cannot isolate; under CI fail instead: the sandbox must be tested there."""
    if PROBLEM is None:
        return
    if IN_CI:
        pytest.fail(f"no isolation on this machine: {PROBLEM} (CI must run the sandbox tests)", pytrace=False)
    pytest.skip(f"no isolation on this machine: {PROBLEM}")


def isolated(test):
    """A test that needs bubblewrap (see ``require_bubblewrap``): it fails under CI, never silently skips."""
    @functools.wraps(test)
    def needs_bubblewrap(*args, **kwargs):
        require_bubblewrap()
        return test(*args, **kwargs)
    return needs_bubblewrap


@pytest.fixture
def course(tmp_path):
    """A throw-away course: scratch/ for the child, a secret beside it, and a world-writable readable folder."""
    (tmp_path / "scratch").mkdir()
    (tmp_path / "other_student").mkdir()
    (tmp_path / "other_student" / "answer.txt").write_text("secret answer")
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "data.txt").write_text("shared data")
    os.chmod(tmp_path / "shared", 0o777)  # only the read-only mount can stop a write here
    return tmp_path


def run(box: Sandbox, code: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run Python ``code`` in ``box``; its stdout, stderr and exit status."""
    proc = box.popen([sys.executable, "-c", textwrap.dedent(code)], stdout=subprocess.PIPE,
                     stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def run_json(box: Sandbox, code: str) -> dict:
    done = run(box, code)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def make(course, **kwargs) -> Sandbox:
    readable = [*default_readable(), *kwargs.pop("readable", [])]
    return Sandbox(course / "scratch", readable=readable, **kwargs)


PROBE_FILES = """
    import json, sys
    seen = {}
    for path in sys.argv[1:]:
        try:
            seen[path] = open(path).read()
        except OSError as e:
            seen[path] = type(e).__name__
    print(json.dumps(seen))
"""


def probe_files(box: Sandbox, *paths) -> dict:
    proc = box.popen([sys.executable, "-c", textwrap.dedent(PROBE_FILES), *map(str, paths)], stdout=subprocess.PIPE)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0
    return json.loads(out)


@isolated
def test_child_cannot_read_a_sibling_of_scratch_nor_the_course_solutions(course):
    box = make(course)
    on = {p.name for p in box.protections if p.on}
    assert {"filesystem", "network", "processes", "scratch space", "non-root uid"} <= on, box.unprotected()
    secret = course / "other_student" / "answer.txt"
    solution = next((COURSE_ROOT / "solutions").rglob("*.ipynb"))
    seen = probe_files(box, secret, solution, "/etc/shadow", COURSE_ROOT / "pyproject.toml")
    assert set(seen.values()) == {"FileNotFoundError"}, seen  # not merely forbidden: not there at all


@isolated
def test_child_reads_course_utils_and_readable_paths_and_imports_numpy(course):
    box = make(course, readable=[course / "shared"])
    seen = run_json(box, """
        import json, multiprocessing, numpy, course_utils
        multiprocessing.Lock()  # a semaphore in /dev/shm: what joblib and DataLoader workers need
        print(json.dumps({"numpy": int(numpy.arange(4).sum()), "data": open(%r).read()}))
    """ % str(course / "shared" / "data.txt"))
    assert seen == {"numpy": 6, "data": "shared data"}


@isolated
def test_torch_imports_under_the_default_memory_limit(course):
    box = make(course)
    assert box.limits.memory_bytes == Limits().memory_bytes
    seen = run_json(box, "import json, torch; print(json.dumps(torch.ones(3).sum().item()))")
    assert seen == 3.0


@isolated
def test_child_writes_in_scratch_only(course):
    """Files in scratch at the start are the real ones (a log the grader reads); new ones stay in the sandbox."""
    (course / "scratch" / "out.txt").write_text("")
    box = make(course, readable=[course / "shared"])
    targets = {"scratch": course / "scratch" / "out.txt", "new in scratch": course / "scratch" / "new.txt",
               "readable": course / "shared" / "new.txt",
               "beside": course / "escaped.txt", "tmp": Path("/tmp") / f"escaped-{os.getpid()}.txt"}
    seen = run_json(box, """
        import json, sys
        result = {}
        for name, path in %r.items():
            try:
                with open(path, "w") as f:
                    f.write("x")
                result[name] = "written"
            except OSError as e:
                result[name] = e.errno
        print(json.dumps(result))
    """ % {k: str(v) for k, v in targets.items()})
    assert seen["scratch"] == seen["new in scratch"] == "written" and targets["scratch"].read_text() == "x"
    assert not targets["new in scratch"].exists()  # in the sandbox's own scratch space, gone with it
    assert seen["readable"] == errno.EROFS  # the folder is 0777: only the read-only mount stops it
    assert not targets["readable"].exists() and not targets["beside"].exists()
    assert not targets["tmp"].exists()  # its /tmp is private (the write itself may succeed there)


@isolated
def test_child_has_no_network(course):
    with socket.socket() as server:  # reachable from any process on this machine's own loopback
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        seen = run_json(make(course), """
            import json, socket
            result = {}
            for name, address in {"host loopback": ("127.0.0.1", %d), "internet": ("1.1.1.1", 53)}.items():
                try:
                    socket.create_connection(address, timeout=3).close()
                    result[name] = "connected"
                except OSError as e:
                    result[name] = type(e).__name__
            try:
                socket.getaddrinfo("pypi.org", 443)
                result["dns"] = "resolved"
            except OSError as e:
                result["dns"] = type(e).__name__
            print(json.dumps(result))
        """ % port)
    assert "connected" not in seen.values() and "resolved" not in seen.values(), seen


@isolated
def test_child_cannot_start_more_than_processes(course):
    box = make(course, limits=Limits(processes=16), slot=7)  # own uid: parallel tests must not count
    seen = run_json(box, """
        import json, os
        r, w = os.pipe()
        started, refused = 0, False
        try:
            for _ in range(200):
                if os.fork() == 0:
                    os.close(w)
                    os.read(r, 1)  # wait until the parent is done
                    os._exit(0)
                started += 1
        except BlockingIOError:
            refused = True
        os.close(w)
        for _ in range(started):
            os.wait()
        print(json.dumps({"started": started, "refused": refused}))
    """)
    assert seen["refused"] and seen["started"] < 16, seen


@isolated
def test_child_runs_as_a_non_root_uid_without_groups(course):
    box = make(course, slot=3)
    seen = run_json(box, "import json, os; print(json.dumps([os.getuid(), os.geteuid(), os.getgid(), os.getgroups()]))")
    uid = BASE_UID + 3 if os.geteuid() == 0 else os.getuid()
    assert box.uid == uid and seen[:3] == [uid, uid, uid] and 0 not in seen[3]


@linux
def test_memory_limit_raises_memory_error(course):
    box = make(course, limits=Limits(memory_bytes=2**30))
    done = run(box, """
        small = bytearray(64 * 2**20)  # well under the limit: fine
        try:
            bytearray(2 * 2**30)
        except MemoryError:
            print("MemoryError")
    """)
    assert done.returncode == 0 and done.stdout.strip() == "MemoryError", done.stderr


@linux
def test_cpu_limit_kills_a_busy_loop(course):
    box = make(course, limits=Limits(cpu_seconds=1))
    proc = box.popen([sys.executable, "-c", "while True: pass"])
    status = proc.wait(timeout=20)
    # killed by SIGXCPU (or SIGKILL a second later); bwrap reports a child's signal as 128 + signal
    assert status in {-signal.SIGXCPU, -signal.SIGKILL, 128 + signal.SIGXCPU, 128 + signal.SIGKILL}, status


@linux
def test_file_size_limit(course):
    (course / "scratch" / "big.bin").write_bytes(b"")  # the real file, also inside bubblewrap
    box = make(course, limits=Limits(file_bytes=2**20))
    done = run(box, """
        try:
            with open("big.bin", "wb") as f:
                f.write(bytes(2 * 2**20))
        except OSError as e:
            print(e.errno)
    """)
    assert done.stdout.strip() == str(errno.EFBIG), done.stderr
    assert (course / "scratch" / "big.bin").stat().st_size == 2**20


@linux
def test_environment_is_clean(course, monkeypatch):
    monkeypatch.setenv("COURSE_GRADING_SEED", "271828")
    box = make(course, env={"COURSE_FAST": "1"})
    seen = run_json(box, "import json, os; print(json.dumps(dict(os.environ)))")
    assert "COURSE_GRADING_SEED" not in seen and "271828" not in json.dumps(seen)
    assert seen["COURSE_FAST"] == "1" and seen["HOME"] == str(box.scratch) and seen["MPLBACKEND"] == "Agg"
    assert set(seen) <= {"PATH", "HOME", "LANG", "LC_ALL", "MPLBACKEND", "PYTHONDONTWRITEBYTECODE",
                         "OMP_NUM_THREADS", "COURSE_FAST", "PWD"}


@linux
def test_grader_limits_are_untouched(course):
    kinds = [resource.RLIMIT_AS, resource.RLIMIT_CPU, resource.RLIMIT_NPROC, resource.RLIMIT_FSIZE]
    before = [resource.getrlimit(k) for k in kinds]
    run(make(course, limits=Limits(memory_bytes=2**30, cpu_seconds=5, processes=8, file_bytes=1000)), "pass")
    assert [resource.getrlimit(k) for k in kinds] == before


@linux
def test_without_bubblewrap_it_runs_and_says_what_is_off(course, monkeypatch):
    real_which = shutil.which
    monkeypatch.setattr(sandbox.shutil, "which", lambda name, *a, **k: None if name == "bwrap" else real_which(name))
    box = make(course)
    off = {p.name: p.detail for p in box.unprotected()}
    assert {"filesystem", "network"} <= set(off) and "bubblewrap not found" in off["filesystem"]
    if os.geteuid() == 0:
        assert {"processes", "non-root uid"} <= set(off)
    assert "bwrap" not in " ".join(box.command(["true"]))
    # the control: unprotected, the child does read the secret, under the limits still
    secret = course / "other_student" / "answer.txt"
    assert probe_files(box, secret) == {str(secret): "secret answer"}
    assert any("[OFF] filesystem" in str(p) for p in box.protections)


@linux
def test_a_failed_probe_falls_back(course, monkeypatch):
    monkeypatch.setattr(sandbox.shutil, "which", lambda name, *a, **k: f"/usr/bin/{name}")  # found, whatever the PATH
    monkeypatch.setattr(sandbox, "_probe", lambda bwrap, as_root: "bwrap: No permissions to create new namespace")
    box = make(course)
    assert "No permissions" in {p.name: p.detail for p in box.unprotected()}["network"]
    assert run(box, "print('ran')").stdout.strip() == "ran"


def test_bad_inputs_say_what_was_expected(course):
    with pytest.raises(ValueError, match="scratch folder must be an existing folder"):
        Sandbox(course / "missing")
    with pytest.raises(ValueError, match="existing folder, but .*data.txt is a file"):
        Sandbox(course / "shared" / "data.txt")
    with pytest.raises(ValueError, match="readable path must be an existing file or folder, but there is nothing at"):
        Sandbox(course / "scratch", readable=[course / "nope"])
    with pytest.raises(ValueError, match="slot"):
        Sandbox(course / "scratch", slot=-1)
    with pytest.raises(ValueError, match="Limits.memory_bytes must be a positive integer"):
        Limits(memory_bytes=0)
    box = Sandbox(course / "scratch")
    with pytest.raises(ValueError, match="argv is empty"):
        box.command([])
    with pytest.raises(TypeError, match="Sandbox\\(env="):
        box.popen(["true"], env={})


@linux
@pytest.mark.parametrize("isolation", [True, False], ids=["bubblewrap", "fallback"])
def test_killing_the_sandbox_ends_all_its_processes(course, monkeypatch, isolation):
    """A grader's timeout kills the process group it started; the student's own children must die with it."""
    if isolation:
        require_bubblewrap()
    else:
        monkeypatch.setattr(sandbox.shutil, "which", lambda name, *a, **k: None)
    (course / "scratch" / "alive").write_text("")  # the real file: a survivor's write would show
    box = make(course)
    code = """
        import os, time
        if os.fork() == 0:
            time.sleep(1)
            open("alive", "w").write("survived")
        else:
            print("ready", flush=True)
            time.sleep(60)
    """
    proc = box.popen([sys.executable, "-c", textwrap.dedent(code)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    os.killpg(proc.pid, signal.SIGKILL)  # what the grader does on a timeout
    proc.wait(timeout=10)
    time.sleep(1.5)
    assert (course / "scratch" / "alive").read_text() == ""


@isolated
@pytest.mark.skipif(os.geteuid() != 0, reason="the scratch folder is handed over only as root")
def test_handing_scratch_over_never_follows_a_symlink(course):
    target = course / "shared" / "data.txt"  # a file a previous run must not be able to claim
    (course / "scratch" / "sub").mkdir()
    (course / "scratch" / "sub" / "link").symlink_to(target)
    (course / "scratch" / "dirlink").symlink_to(course / "shared")
    box = make(course, slot=5)
    box.command(["true"])
    assert (course / "scratch" / "sub").stat().st_uid == BASE_UID + 5
    assert (course / "scratch" / "sub" / "link").lstat().st_uid == BASE_UID + 5
    assert target.stat().st_uid == 0 and (course / "shared").stat().st_uid == 0


# ---- the scratch space: capped in total, not only per file ----

@isolated
def test_scratch_space_is_capped_in_total(course):
    """Many files each under the file-size limit cannot fill the disk: the scratch space runs out (ENOSPC)."""
    (course / "scratch" / "data").mkdir()
    (course / "scratch" / "data" / "release.csv").write_text("1,2,3")  # what the grader copies in before
    (course / "scratch" / "worker.log").write_text("")  # what the grader reads back after
    box = make(course, limits=Limits(scratch_bytes=4 * 2**20, file_bytes=64 * 2**20))
    seen = run_json(box, """
        import errno, json
        result = {"data": open("data/release.csv").read(), "written": 0}
        open("worker.log", "a").write("a line for the grader")
        open("data/mine.txt", "w").write("a new file beside the data")
        try:
            for i in range(4):  # 4 files of 2 MiB: each far under file_bytes, together over the cap
                with open(f"part{i}.bin", "wb") as f:
                    f.write(bytes(2 * 2**20))
                result["written"] += 2
        except OSError as e:
            result["error"] = errno.errorcode[e.errno]
        print(json.dumps(result))
    """)
    assert seen["data"] == "1,2,3" and seen.get("error") in ("ENOSPC", "EFBIG"), seen
    assert seen["written"] < 4, seen  # stopped before 4 MiB, although no single file reached file_bytes
    assert (course / "scratch" / "worker.log").read_text() == "a line for the grader"
    assert sorted(p.name for p in (course / "scratch").rglob("*")) == ["data", "release.csv", "worker.log"]


def test_without_bubblewrap_the_scratch_space_is_said_to_be_uncapped(course, monkeypatch):
    monkeypatch.setattr(sandbox, "bubblewrap_problem", lambda: "bubblewrap not found (test)")
    off = {p.name: p.detail for p in make(course).unprotected()}
    assert "no cap on its total size" in off["scratch space"], off


# ---- the whole sandbox: one cgroup for all its processes ----

HOGS = """
    import json, os, time
    each = %d
    kids = []
    for _ in range(3):
        pid = os.fork()
        if pid == 0:
            block = bytearray(each)
            block[::4096] = b"\\1" * len(range(0, each, 4096))  # touch every page: resident, not only reserved
            time.sleep(2)  # the three hold their memory at the same time
            os._exit(0)
        kids.append(pid)
    print(json.dumps([os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in kids]))
"""


def hogs(box: Sandbox, each: int) -> tuple[int, list[int] | None]:
    """Three forked processes touching ``each`` bytes at once: the sandbox's exit status and theirs."""
    done = run(box, HOGS % each, timeout=120)
    lines = done.stdout.strip().splitlines()
    return done.returncode, json.loads(lines[-1]) if lines else None


@linux
@whole_sandbox
def test_three_forked_memory_hogs_are_stopped_together(course, monkeypatch):
    """3 x 200 MiB under a 320 MiB cap for the whole sandbox: not all three get their memory (each would alone)."""
    limits = Limits(total_memory_bytes=320 * 2**20)
    code, children = hogs(make(course, limits=limits), 200 * 2**20)
    killed = code != 0 or children is None or -signal.SIGKILL in children  # the OOM killer; v2: the whole group
    assert killed and children != [0, 0, 0], (code, children)
    # the control: with only the per-process limits (8 GiB of address space each), all three get it
    monkeypatch.setattr(sandbox, "_cgroups", lambda: (None, "switched off for the test"))
    assert hogs(make(course, limits=limits), 200 * 2**20) == (0, [0, 0, 0])


FORKS = """
    import json, os
    r, w = os.pipe()
    started, refused = 0, False
    try:
        for _ in range(100):
            if os.fork() == 0:
                os.close(w)
                os.read(r, 1)  # wait until the parent is done
                os._exit(0)
            started += 1
    except BlockingIOError:
        refused = True
    os.close(w)
    for _ in range(started):
        os.wait()
    print(json.dumps({"started": started, "refused": refused}))
"""


@linux
@whole_sandbox
def test_the_task_limit_holds_for_the_whole_sandbox(course):
    box = make(course, limits=Limits(processes=16), slot=9)
    box._nproc = None  # no RLIMIT_NPROC: only the cgroup's pids limit can stop the loop
    assert "RLIMIT_NPROC" not in " ".join(box.command(["true"]))
    seen = run_json(box, FORKS)
    assert seen["refused"] and seen["started"] < 16, seen


SPIN = """
    import json, os, resource, time
    end = time.monotonic() + 2
    kids = []
    for _ in range(2):
        pid = os.fork()
        if pid == 0:
            while time.monotonic() < end:
                pass
            os._exit(0)
        kids.append(pid)
    for pid in kids:
        os.waitpid(pid, 0)
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(json.dumps(used.ru_utime + used.ru_stime))
"""


@linux
@whole_sandbox
@pytest.mark.skipif(CGROUPS is None or "cpu" not in CGROUPS.controllers, reason="no cpu controller for a sandbox here")
def test_forked_cpu_hogs_share_the_sandbox_cpu_limit(course):
    """Two processes spinning for 2 s under a 5% cap: the kernel throttles them to about 0.1 s of CPU together."""
    box = make(course, limits=Limits(cpu_percent=5))
    proc = box.popen([sys.executable, "-c", textwrap.dedent(SPIN)], stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(1.5)  # starting Python alone takes more than 5 ms of CPU per 100 ms
        stats = [g / "cpu.stat" for g in groups_of(proc.pid)] if not CGROUPS.systemd_run else []
        throttled = [int(dict(line.split() for line in p.read_text().splitlines())["nr_throttled"])
                     for p in stats if p.is_file()]
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert CGROUPS.systemd_run or (throttled and throttled[0] > 0), throttled
    assert json.loads(out) < 0.05 * 2 + 0.3  # unlimited, each would get up to 2 s


def groups_of(pid: int) -> list[Path]:
    """The cgroups the trampoline with process id ``pid`` makes (one per hierarchy)."""
    assert CGROUPS is not None
    return [Path(folder, f"{GROUP_PREFIX}{pid}") for folder, _ in CGROUPS.parents]


@linux
@whole_sandbox
@pytest.mark.skipif(bool(CGROUPS and CGROUPS.systemd_run), reason="systemd removes its scopes itself")
def test_the_cgroup_holds_the_command_and_is_removed_after_it(course):
    box = make(course, limits=Limits(total_memory_bytes=300 * 2**20, processes=20))
    proc = box.popen([sys.executable, "-c", "import os, time; print(os.getpid(), flush=True); time.sleep(60)"],
                     stdout=subprocess.PIPE, text=True)
    try:
        proc.stdout.readline()
        groups = groups_of(proc.pid)
        assert all(g.is_dir() and (g / "cgroup.procs").read_text().split() for g in groups), groups
        memory = [(g / name).read_text().strip() for g in groups for name in ("memory.max", "memory.limit_in_bytes")
                  if (g / name).is_file()]
        assert memory == [str(300 * 2**20)], memory
        assert any((g / "pids.max").is_file() and (g / "pids.max").read_text().strip() == str(box._pids_max())
                   for g in groups)
        proc.terminate()  # forwarded to the command; then the trampoline removes the cgroup
        assert proc.wait(timeout=10) in (-signal.SIGTERM, 128 + signal.SIGTERM)
        assert not any(g.exists() for g in groups), groups
        # killed with SIGKILL, the trampoline cannot clean up: the next sandbox removes what it left
        proc = box.popen([sys.executable, "-c", "import time; print(1, flush=True); time.sleep(60)"],
                         stdout=subprocess.PIPE, text=True)
        proc.stdout.readline()
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        left = groups_of(proc.pid)
        deadline = time.monotonic() + 5
        while any(g.exists() for g in left) and time.monotonic() < deadline:
            run(box, "pass")
        assert not any(g.exists() for g in left), left
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@linux
def test_without_a_cgroup_it_says_only_per_process_limits_hold(course, monkeypatch):
    monkeypatch.setattr(sandbox, "_cgroups", lambda: (None, "no cgroup v2 hierarchy (test)"))
    box = make(course)
    off = {p.name: p.detail for p in box.unprotected()}
    assert "only per process" in off["memory"] and "no cgroup v2 hierarchy (test)" in off["memory"], off
    assert "cpu share" in off
    assert json.loads(box.command(["true"])[5])["cgroups"] == []
    assert run(box, "print('ran')").stdout.strip() == "ran"


@linux
def test_a_cgroup_that_cannot_be_made_stops_the_command_before_it_runs(course, monkeypatch):
    """Fail closed: a sandbox that promised whole-sandbox limits never runs the command without them."""
    missing = course / "no-such-cgroup"
    found = sandbox._Cgroups("cgroup v2", 2, frozenset({"memory", "pids"}), parents=((str(missing),
                                                                                    frozenset({"memory", "pids"})),))
    monkeypatch.setattr(sandbox, "_cgroups", lambda: (found, ""))
    box = make(course)
    assert {"memory", "processes"} <= {p.name for p in box.protections if p.on} or box.uid == 0
    done = run(box, "open('ran', 'w').write('yes')")
    assert done.returncode == 125 and "refusing to run without its cgroup limits" in done.stderr, done
    assert not (course / "scratch" / "ran").exists()


def test_systemd_scope_gets_the_limits_and_the_command_not_the_bus(course, monkeypatch):
    found = sandbox._Cgroups("systemd-run --user --scope", 2, frozenset({"memory", "pids", "cpu"}),
                             systemd_run=("/usr/bin/systemd-run", "--user", "--scope", "--quiet", "--collect"))
    monkeypatch.setattr(sandbox, "_cgroups", lambda: (found, ""))
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/1000")
    box = make(course, limits=Limits(total_memory_bytes=2**30, processes=50, cpu_percent=150))
    argv = box.command(["true"])
    start = argv.index("/usr/bin/systemd-run")
    properties = argv[start + 5:argv.index("--", start)]
    assert properties == ["-p", "MemoryMax=1073741824", "-p", "MemorySwapMax=0", "-p", f"TasksMax={box._pids_max()}",
                          "-p", "CPUQuota=150%"]
    after = argv[argv.index("--", start) + 1:]
    assert after[1:3] == ["-u", "XDG_RUNTIME_DIR"]  # env -u: systemd-run needs it, the command must not see it
    assert json.loads(argv[5])["env"]["XDG_RUNTIME_DIR"] == "/run/user/1000"


def fake_v2(tmp_path, own: str, controllers: str, enabled: str = "") -> tuple[object, str]:
    """``_direct_v2`` on a fake cgroup v2 tree (plain files; making a group is assumed to work)."""
    folder = tmp_path / own.lstrip("/")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "cgroup.controllers").write_text(controllers)
    (folder / "cgroup.subtree_control").write_text(enabled)
    return sandbox._direct_v2([("cgroup2", str(tmp_path), "/", set())], {"": own})


def test_cgroup_v2_is_used_at_the_hierarchy_root_only(tmp_path, monkeypatch):
    monkeypatch.setattr(sandbox, "_try_group", lambda parent, limits: None)
    found, _ = fake_v2(tmp_path, "/", "cpuset cpu io memory pids")
    assert found.version == 2 and found.parents == ((str(tmp_path), frozenset({"memory", "pids", "cpu"})),)
    assert (tmp_path / "cgroup.subtree_control").read_text() == "+pids"  # each missing one enabled (the last here)
    found, why = fake_v2(tmp_path, "/user.slice/user-1000.slice/session-3.scope", "cpu memory pids")
    assert found is None and "not delegated" in why, why
    found, why = fake_v2(tmp_path, "/", "cpu io")
    assert found is None and "not memory+pids" in why, why
    # a cgroup v2 sandbox writes these files, in this order (swap and OOM-group only where the kernel has them)
    monkeypatch.setattr(sandbox, "_cgroups", lambda: fake_v2(tmp_path, "/", "cpu memory pids"))
    box = Sandbox(tmp_path, limits=Limits(total_memory_bytes=2**30, processes=10, cpu_percent=50))
    (groups,) = json.loads(box.command(["true"])[5])["cgroups"]
    assert groups == [str(tmp_path), [["memory.max", str(2**30)], ["?memory.swap.max", "0"],
                                      ["?memory.oom.group", "1"], ["pids.max", str(box._pids_max())],
                                      ["cpu.max", "50000 100000"]]]


# --- the GPU: none inside unless asked for (--gpu) -------------------------------------------------------------------
FAKE_GPU = [Path("/dev/nvidia0"), Path("/dev/nvidiactl"), Path("/dev/nvidia-uvm"), Path("/dev/nvidia-caps")]


def test_nvidia_devices_are_the_char_devices_and_the_caps_folder(tmp_path):
    dev = tmp_path / "dev"
    dev.mkdir()
    for name in ("nvidia0", "nvidiactl", "null"):
        (dev / name).symlink_to("/dev/null")  # a character device
    (dev / "nvidia-caps").mkdir()
    (dev / "nvidia-notes.txt").write_text("a plain file")
    assert sandbox.nvidia_devices(dev) == [dev / "nvidia-caps", dev / "nvidia0", dev / "nvidiactl"]
    assert sandbox.nvidia_devices(tmp_path) == []


@isolated
def test_without_gpu_the_sandbox_binds_no_device_and_caps_the_address_space(course):
    box = make(course)
    args, spec = box._bwrap_args(), json.loads(box.command(["true"])[5])
    assert "--dev-bind" not in args and "/sys" not in args and not box.gpu_devices
    assert spec["rlimits"]["AS"][0] == box.limits.memory_bytes
    assert {p.name: p.on for p in box.protections}["gpu"] is True


@isolated
def test_with_gpu_the_devices_are_bound_into_its_dev_and_the_report_says_so(course, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    box = make(course, gpu=True, gpu_devices=FAKE_GPU)
    args, spec = box._bwrap_args(), json.loads(box.command(["true"])[5])
    for device in FAKE_GPU:
        at = args.index(str(device))
        assert args[at - 1:at + 2] == ["--dev-bind", str(device), str(device)]
        assert at > args.index("--dev")  # after the minimal /dev is made, inside it
    assert args[args.index("/sys") - 1:args.index("/sys") + 2] == ["--ro-bind", "/sys", "/sys"]  # for the driver
    assert "AS" not in spec["rlimits"] and spec["env"]["CUDA_VISIBLE_DEVICES"] == "1"
    off = {p.name: p.detail for p in box.unprotected()}
    assert "/dev/nvidia0" in off["gpu"] and "shared with student code" in off["gpu"]
    assert "no RLIMIT_AS" in {p.name: p.detail for p in box.protections}["memory"]


LIST_DEV = """
    import json, os
    print(json.dumps(sorted(os.listdir("/dev"))))
"""


@isolated
def test_the_sandbox_sees_no_gpu_device_without_gpu(course):
    seen = json.loads(run(make(course), LIST_DEV).stdout)
    assert "null" in seen and not [name for name in seen if name.startswith(("nvidia", "dri"))], seen
    # asked for, on a machine with no NVIDIA device: nothing to bind, and the report says it runs on the CPU
    box = make(course, gpu=True, gpu_devices=[])
    seen = json.loads(run(box, LIST_DEV).stdout)
    assert not [name for name in seen if name.startswith("nvidia")]
    assert "no NVIDIA device" in {p.name: p.detail for p in box.protections}["gpu"]
    assert sandbox.cuda_problem(course / "scratch", gpu_devices=[]) == \
        "this machine has no NVIDIA device (/dev/nvidia*)"


@isolated
@pytest.mark.skipif(not sandbox.nvidia_devices(), reason="no NVIDIA GPU on this machine")
def test_with_gpu_pytorch_finds_the_gpu_inside(course):
    assert sandbox.cuda_problem(course / "scratch") is None
