"""Run notebooks headless and check that stored notebooks are clean.

    python -m course_utils.notebooks run lectures/00_getting_started.ipynb           # fast mode
    python -m course_utils.notebooks run --default --output out.ipynb NOTEBOOK       # as a student sees it
    python -m course_utils.notebooks check-clean                                     # every stored notebook

A notebook is run top to bottom in a fresh kernel, in its own folder, with
``COURSE_FAST=1`` unless asked otherwise. A failing cell raises
:class:`NotebookError`, which names the cell, shows its first lines and the
traceback.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

import nbformat
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

__all__ = ["NotebookError", "run_notebook", "clean_problems", "stored_notebooks", "COURSE_ROOT"]

COURSE_ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_FOLDERS = ("lectures", "solutions", "assignments")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class NotebookError(RuntimeError):
    """A cell failed: ``path``, ``cell`` (index among all cells), ``source`` and ``traceback``."""

    def __init__(self, path: Path, cell: int | None, source: str, traceback: str) -> None:
        self.path, self.cell, self.source, self.traceback = path, cell, source, traceback
        where = f"cell {cell}" if cell is not None else "an unknown cell"
        excerpt = "\n".join("    " + line for line in source.splitlines()[:8])
        super().__init__(f"{path}: {where} failed.\n  source:\n{excerpt}\n  traceback:\n{traceback}")


def _failed_cell(nb) -> tuple[int | None, str]:
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and any(o.get("output_type") == "error" for o in cell.get("outputs", [])):
            return index, cell.source
    return None, ""


def run_notebook(path: str | Path, *, fast: bool = True, timeout: int = 600, output: str | Path | None = None,
                 env: dict[str, str] | None = None, kernel_name: str = "python3"):
    """Execute a notebook top to bottom in a fresh kernel; return the executed notebook.

    fast:    sets ``COURSE_FAST=1`` (``0`` otherwise) in the kernel's environment.
    timeout: seconds allowed per cell.
    output:  where to write the executed notebook (never over the source).
    env:     extra environment variables for the kernel.
    """
    path = Path(path)
    if not path.is_file() or path.suffix != ".ipynb":
        raise FileNotFoundError(f"expected an existing .ipynb file, got {path}")
    if output is not None and Path(output).resolve() == path.resolve():
        raise ValueError("output must not be the source notebook: notebooks are stored without outputs")
    nb = nbformat.read(path, as_version=4)
    kernel_env = dict(os.environ)
    kernel_env["COURSE_FAST"] = "1" if fast else "0"
    # figures show as in JupyterLab, whatever backend the caller uses (tests run with Agg)
    kernel_env["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    kernel_env.update(env or {})
    # Kernel and client talk over Unix sockets in a private folder, not TCP ports: kernels started
    # at the same moment (tests in parallel) can then never pick the same port and talk to each
    # other's client, a race that hangs or mixes up notebooks.
    sockets = tempfile.mkdtemp(prefix="course-kernel-")
    km = KernelManager(kernel_name=kernel_name, transport="ipc", ip=os.path.join(sockets, "kernel"))
    client = NotebookClient(nb, km=km, timeout=timeout, startup_timeout=120,
                            resources={"metadata": {"path": str(path.parent.resolve())}})
    try:
        client.execute(env=kernel_env)
    except (CellExecutionError, CellTimeoutError, DeadKernelError) as err:
        cell, source = _failed_cell(nb)
        if isinstance(err, CellExecutionError):
            trace = _ANSI.sub("", getattr(err, "traceback", "") or str(err))
        else:
            trace = f"{type(err).__name__}: {err}"
        raise NotebookError(path, cell, source, trace.strip()[-4000:]) from None
    finally:
        # the client does not shut down a kernel it did not start itself (we hand it `km`)
        if km.has_kernel:
            km.shutdown_kernel(now=True)
        shutil.rmtree(sockets, ignore_errors=True)
        if output is not None:
            nbformat.write(nb, output)
    return nb


def clean_problems(path: str | Path) -> list[str]:
    """Why a stored notebook is not clean (empty list if it is).

    Clean means: valid nbformat 4, kernelspec ``python3``, no outputs, no
    execution counts.
    """
    path = Path(path)
    try:
        nb = nbformat.read(path, as_version=nbformat.NO_CONVERT)
    except Exception as err:  # unreadable JSON or not a notebook at all
        return [f"{path}: not a readable notebook ({type(err).__name__}: {err})"]
    problems = []
    if nb.get("nbformat") != 4:
        problems.append(f"{path}: nbformat {nb.get('nbformat')}, expected 4")
    try:
        nbformat.validate(nb)
    except nbformat.ValidationError as err:
        problems.append(f"{path}: invalid nbformat ({err.message})")
    kernel = nb.get("metadata", {}).get("kernelspec", {}).get("name")
    if kernel != "python3":
        problems.append(f"{path}: kernelspec {kernel!r}, expected 'python3'")
    for index, cell in enumerate(nb.get("cells", [])):
        if cell.get("cell_type") != "code":
            continue
        if cell.get("outputs"):
            problems.append(f"{path}: cell {index} is stored with outputs")
        if cell.get("execution_count") is not None:
            problems.append(f"{path}: cell {index} is stored with an execution count")
    return problems


def stored_notebooks(root: Path = COURSE_ROOT, folders: Iterable[str] = NOTEBOOK_FOLDERS) -> list[Path]:
    """Every .ipynb under the given course folders (checkpoint copies excluded), sorted."""
    found = []
    for folder in folders:
        found += [p for p in (root / folder).rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts]
    return sorted(found)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course_utils.notebooks", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="execute notebooks top to bottom in a fresh kernel")
    run.add_argument("paths", nargs="+", type=Path)
    run.add_argument("--default", action="store_true", help="default mode (full size) instead of COURSE_FAST=1")
    run.add_argument("--timeout", type=int, default=600, help="seconds per cell (default 600)")
    run.add_argument("--output", type=Path, help="write the executed notebook here (one input only)")
    check = sub.add_parser("check-clean", help="fail if a stored notebook has outputs or is invalid")
    check.add_argument("paths", nargs="*", type=Path)
    args = parser.parse_args(argv)

    if args.command == "run":
        if args.output and len(args.paths) > 1:
            parser.error("--output takes one notebook")
        failed = 0
        for path in args.paths:
            start = time.perf_counter()
            try:
                run_notebook(path, fast=not args.default, timeout=args.timeout, output=args.output)
                print(f"ok     {path}  ({time.perf_counter() - start:.1f} s)")
            except (NotebookError, FileNotFoundError, ValueError) as err:
                failed += 1
                print(f"FAILED {err}", file=sys.stderr)
        return 1 if failed else 0

    paths = args.paths or stored_notebooks()
    problems = [problem for path in paths for problem in clean_problems(path)]
    for problem in problems:
        print(problem, file=sys.stderr)
    print(f"{len(paths)} notebooks checked, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
