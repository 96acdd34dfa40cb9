"""The grading sandbox: each protection is shown to hold by a tiny Python child that tries to break it.

The isolation tests need bubblewrap and namespaces (Linux); elsewhere they are
skipped with the reason, and the fallback tests still run.
"""

from __future__ import annotations

import errno
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
from course_utils.grading.sandbox import BASE_UID, Limits, Sandbox, bubblewrap_problem, default_readable

PROBLEM = bubblewrap_problem()
isolated = pytest.mark.skipif(PROBLEM is not None, reason=f"no isolation on this machine: {PROBLEM}")
# the kernel limits (setrlimit) are only checked where the grader runs: other systems refuse or ignore some
linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="resource limits are tested on Linux only")
COURSE_ROOT = Path(sandbox.__file__).resolve().parents[2]


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
    assert all(p.on for p in box.protections), box.unprotected()
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
    box = make(course, readable=[course / "shared"])
    targets = {"scratch": course / "scratch" / "out.txt", "readable": course / "shared" / "new.txt",
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
    assert seen["scratch"] == "written" and targets["scratch"].read_text() == "x"
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
@pytest.mark.parametrize("isolation", [pytest.param(True, marks=isolated), False], ids=["bubblewrap", "fallback"])
def test_killing_the_sandbox_ends_all_its_processes(course, monkeypatch, isolation):
    """A grader's timeout kills the process group it started; the student's own children must die with it."""
    if not isolation:
        monkeypatch.setattr(sandbox.shutil, "which", lambda name, *a, **k: None)
    box = make(course)
    code = """
        import os, time
        if os.fork() == 0:
            time.sleep(1)
            open("alive", "w").close()
        else:
            print("ready", flush=True)
            time.sleep(60)
    """
    proc = box.popen([sys.executable, "-c", textwrap.dedent(code)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    os.killpg(proc.pid, signal.SIGKILL)  # what the grader does on a timeout
    proc.wait(timeout=10)
    time.sleep(1.5)
    assert not (course / "scratch" / "alive").exists()


@pytest.mark.skipif(os.geteuid() != 0 or PROBLEM is not None, reason="the scratch folder is handed over only as root")
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
