"""``python -m course_utils.classroom start|stop`` (``make classroom`` / ``make classroom-stop``).

    start   start the classroom and keep it running in the foreground; Ctrl-C (or SIGTERM, or
            ``make classroom-stop`` from another terminal) stops everything it started and removes its users
    install configurable-http-proxy from npm into .classroom/ and check PostgreSQL (``make classroom-env``)
    stop    stop the classroom recorded in .classroom/current.json (its starter is asked first; if that
            process is gone, everything is stopped from the recorded state)
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from .hub import Classroom, install_proxy, stop_from_state
from .users import ClassroomError

COURSE_ROOT = Path(__file__).resolve().parents[2]


def _start(args: argparse.Namespace) -> int:
    room = Classroom(COURSE_ROOT, prefix=args.prefix, students=tuple(args.students), record=True)
    stopping, ready = threading.Event(), threading.Event()

    def on_signal(signum, frame):  # Ctrl-C, SIGTERM (`make classroom-stop`), the terminal closing: stop everything
        if not ready.is_set():
            raise KeyboardInterrupt  # while starting: Classroom.start() stops what it started
        stopping.set()

    for name in ("SIGINT", "SIGTERM", "SIGHUP"):  # set even where a shell started us with SIGINT ignored
        signal.signal(getattr(signal, name), on_signal)
    try:
        room.start()
    except KeyboardInterrupt:
        print("classroom: interrupted while starting; everything started was stopped", file=sys.stderr)
        return 130
    ready.set()
    print(f"classroom: ready in {room.state['start_seconds']} s\n{room.urls()}\n"
          f"Log in at the address above; Ctrl-C (or make classroom-stop) stops everything.", flush=True)
    try:
        while not stopping.wait(1.0):
            if room.hub is not None and room.hub.poll() is not None:
                print(f"classroom: JupyterHub exited ({room.hub.returncode}):\n{room.log_tail()}", file=sys.stderr)
                break
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not interrupt the clean-up
        room.stop()
    return 0


def _stop(args: argparse.Namespace) -> int:
    if stop_from_state(COURSE_ROOT):
        print("classroom: stopped")
    else:
        print("classroom: none is running (no .classroom/current.json)")
    return 0


def _install(args: argparse.Namespace) -> int:
    from .postgres import PostgresUnavailable, find_postgres_bin

    print(f"classroom: configurable-http-proxy at {install_proxy(COURSE_ROOT / '.classroom')}")
    try:
        print(f"classroom: PostgreSQL's programs in {find_postgres_bin()}")
    except PostgresUnavailable as err:
        print(f"classroom: {err}", file=sys.stderr)
        return 2
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course_utils.classroom", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    start = sub.add_parser("start", help="start the classroom in the foreground (Ctrl-C stops it)")
    start.add_argument("--prefix", default="dl4cv-", help="start of every Linux user name (default: dl4cv-)")
    start.add_argument("--students", nargs="+", default=["alice", "bob"], help="student names (after the prefix)")
    sub.add_parser("stop", help="stop the running classroom")
    sub.add_parser("install", help="install the proxy (npm) into .classroom/ and check PostgreSQL")
    args = parser.parse_args(argv)
    try:
        return {"start": _start, "stop": _stop, "install": _install}[args.command](args)
    except ClassroomError as err:
        print(f"classroom: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
