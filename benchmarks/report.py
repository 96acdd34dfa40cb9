"""Tabulate every benchmark: benchmarks/results/*.json -> benchmarks/results/README.md and all.json.

    .venv/bin/python benchmarks/report.py           # after the benchmarks (make bench runs both)

Measures nothing: it reads what the bench_*.py scripts wrote (a missing file is
said to be missing), puts the issue's goals beside the figures and says whether
each is met, judged on the median; a min-max range that crosses the goal is
pointed out. GPU rows appear only where a result was taken on a GPU.
"""
from __future__ import annotations

import datetime
import json
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
SOURCES = ("notebooks", "suite", "conv", "training", "grading", "autograde")
TRAINING_GOAL = 1.1   # fit may be at most 10% slower than a minimal loop
GRADING_GOAL = 1.6    # stock nbgrader / course command, on 2 cores
SUITE_GOAL = 600.0    # make test, seconds


def spread(s: dict, digits: int = 1, unit: str = "") -> str:
    """'3.2 s (3.0-3.5)': the median, then min-max when there was more than one run."""
    median = f"{s['median']:,.{digits}f}{unit}"
    if s["min"] == s["max"]:
        return median
    return f"{median} ({s['min']:,.{digits}f}-{s['max']:,.{digits}f})"


def verdict(s: dict, meets) -> str:
    """Whether the median meets the goal (``meets(value) -> bool``); notes a min-max range that crosses it."""
    crosses = meets(s["min"]) != meets(s["max"])
    return ("yes" if meets(s["median"]) else "**no**") + (" (range crosses the goal)" if crosses else "")


def when(name: str, result: dict) -> str:
    """Where a section's figures come from: file, date, runs, load average at the start and the end."""
    date = result.get("date") or datetime.datetime.fromtimestamp(
        (RESULTS / f"{name}.json").stat().st_mtime).astimezone().isoformat(timespec="seconds")
    load = result.get("load_average")
    if isinstance(load, dict):
        shown = f"load average (1 min) {load['start'][0]:.1f} at the start, {load['end'][0]:.1f} at the end"
    elif load:
        shown = f"load average (1 min) {load[0]:.1f} at the end"
    else:
        shown = "load not recorded"
    runs = f"{result['runs']} run(s), " if "runs" in result else ""
    return f"_From `{name}.json`, {date[:16].replace('T', ' ')}, {runs}{shown}._"


def duration(s: dict) -> str:
    """A spread of seconds in ms below a second, in s above."""
    if s["median"] >= 1:
        return spread(s, 2) + " s"
    return spread({k: s[k] * 1e3 for k in ("median", "min", "max")}, 2) + " ms"


def missing(name: str, script: str) -> list[str]:
    return [f"Not measured: `benchmarks/results/{name}.json` is missing (run `{script}`).", ""]


def notebooks(r: dict) -> tuple[list[str], list]:
    lines = ["| notebook | fast: total | fast: cells only | default: total | default: cells only "
             "| kernel start |", "|---|---:|---:|---:|---:|---:|"]
    for e in r["notebooks"]:
        cols = []
        for mode in ("fast", "default"):
            cols += [spread(e[mode]["total"]), spread(e[mode]["cells"])] if mode in e else ["not run"] * 2
        start = sorted(f"{e[m]['kernel_start']['median']:.1f}" for m in ("fast", "default") if m in e)
        lines.append(f"| `{e['notebook']}` | " + " | ".join(cols) + f" | {' / '.join(dict.fromkeys(start))} |")
    lines += ["", "Seconds. *Total* is `run_notebook` from call to return (kernel start and shutdown included); "
              "*cells only* excludes them. Kernel start: until the new kernel answers (median per mode)."]
    lines += [f"- FAILED: `{f['notebook']}` ({f['mode']}, run {f['run']}): {f['error'][:200]}"
              for f in r.get("failures", [])]
    return lines, []


def suite(r: dict) -> tuple[list[str], list]:
    lines = ["| target | wall time | goal | met | pytest (last run) |", "|---|---:|---|---|---|"]
    goals = []
    for target, e in r["targets"].items():
        s = e["seconds"]
        minutes = {k: s[k] / 60 for k in ("median", "min", "max")}
        goal = e.get("goal_seconds")
        met = verdict(s, lambda x, g=goal: x < g) if goal else ""
        shown = f"< {goal / 60:.0f} min" if goal else ""
        lines.append(f"| `make {target}` | {spread(minutes)} min | {shown} | {met} | {e['raw'][-1]['pytest']} |")
        if goal:
            goals.append((f"`make {target}` under {goal / 60:.0f} minutes", f"{spread(minutes)} min", met))
    return lines, goals


def conv(r: dict) -> tuple[list[str], list]:
    lines = ["| operation | layer | version | time per call | x PyTorch (same run) |", "|---|---|---|---:|---:|"]
    for op, e in r["operations"].items():
        if "not_measured" in e:
            lines.append(f"| {op} | | | {e['not_measured']} | |")
            continue
        for layer, m in e.items():
            if layer == "assignment":
                continue
            shape = m["shape"]
            size = f"{layer} ({shape['N']}, {shape['C']}, {shape['H']}x{shape['W']}) -> {shape['F']}, K={shape['K']}"
            for label, s in m["seconds"].items():
                ratio = m["ratio_to_pytorch"].get(label)
                lines.append(f"| {op} | {size} | {label} | {duration(s)} | "
                             f"{spread(ratio, 1) if ratio else '1 (reference)'} |")
    lines += ["", f"CPU, {r.get('threads', '?')} PyTorch thread(s), float32, stride 1, padding 1. The ratio is taken "
              "within each run (the version's time / PyTorch's), then the median over runs."]
    return lines, []


def training(r: dict) -> tuple[list[str], list]:
    lines, goals = [], []
    for device in ("cpu", "cuda"):
        rows = [e for e in r["results"] if e["device"] == device]
        if not rows:
            continue
        if device == "cuda":
            lines += ["", f"On the GPU: {rows[0]['device_name']}.", ""]
        lines += ["| device | CPU threads | mixed precision | `fit` images/s | minimal loop images/s "
                  "| overhead (minimal / fit) | goal | met |", "|---|---:|---|---:|---:|---:|---|---|"]
        for e in rows:
            met = verdict(e["overhead_ratio"], lambda x: x <= TRAINING_GOAL)
            name = "CPU" if device == "cpu" else e["device_name"]
            lines.append(f"| {name} | {e.get('threads', '?')} | {'on' if e['amp'] else 'off'} "
                         f"| {spread(e['fit_images_per_s'], 0)} "
                         f"| {spread(e['minimal_images_per_s'], 0)} | {spread(e['overhead_ratio'], 3)}x "
                         f"| <= {TRAINING_GOAL}x | {met} |")
            goals.append((f"`fit` overhead <= {TRAINING_GOAL}x ({device}{', AMP' if e['amp'] else ''})",
                          f"{spread(e['overhead_ratio'], 3)}x", met))
    if not any(e["device"] == "cuda" for e in r["results"]):
        lines += ["", "No GPU result: the GPU rows appear when `bench_training.py` runs on a machine with one."]
    return lines, goals


def grading(r: dict) -> tuple[list[str], list]:
    per = r["seconds_per_submission"]
    cpus = r.get("machine", {}).get("cpus") or r.get("environment", {}).get("cpus")
    mix = ", ".join(f"{v} {k}" for k, v in r["mix"].items())
    lines = [f"{r['submissions']} `{r['assignment']}` submissions ({mix}), sandbox {r['sandbox']}, {cpus} CPUs.", "",
             "| seconds per submission | median (min-max) |", "|---|---:|",
             f"| (a) stock `nbgrader autograde`, sequential | {spread(per['stock'], 2)} |",
             f"| (b) `python -m course_utils.grading`, one job per core | {spread(per['pipeline'], 2)} |",
             f"| of (b): nbgrader's gradebook recording | "
             f"{spread(r['pipeline_nbgrader_autograde_seconds_per_submission'], 2)} |",
             f"| (b): one notebook, sandbox start to last check, per job | "
             f"{spread(r['pipeline_seconds_per_notebook_graded'], 2)} |", ""]
    ratio = r.get("speedup_per_run") or {"median": r["speedup"], "min": r["speedup"], "max": r["speedup"]}
    met = verdict(ratio, lambda x: x >= GRADING_GOAL)
    note = "" if cpus == 2 else f" (the goal is for 2 cores; measured on {cpus})"
    lines.append(f"Speed-up (a)/(b) within each run: **{spread(ratio, 2)}x**; goal at least {GRADING_GOAL}x on "
                 f"2 cores: {met}{note}.")
    return lines, [(f"grading speed-up >= {GRADING_GOAL}x on 2 cores", f"{spread(ratio, 2)}x", met + note)]


def autograde(r: dict) -> tuple[list[str], list]:
    lines = ["| assignment | one submission: solution | one submission: blank | class wall time / N | goal | met |",
             "|---|---:|---:|---:|---|---|"]
    goals = []
    for a, e in r["assignments"].items():
        one = e["one_submission_seconds"]
        goal = e.get("goal_seconds")
        met = verdict(one["solution"], lambda x, g=goal: x < g) if goal else "no goal set"
        lines.append(f"| {a} | {spread(one['solution'])} | {spread(one['blank'])} | "
                     f"{spread(e['class_seconds_per_submission'])} | {f'< {goal} s' if goal else ''} | {met} |")
        if goal:
            goals.append((f"{a} autograde under {goal} s per submission", f"{spread(one['solution'])} s", met))
        lines += [f"- unexpected score: {problem}" for problem in e.get("unexpected_scores", [])]
    lines += ["", f"Seconds. A class of {2 * r['copies']} per assignment ({r['copies']} solution, {r['copies']} "
              f"untouched release), graded by the course's command, sandbox {r['sandbox']}, one job per core. "
              "*One submission* is the grader's own time for one notebook (sandbox start to last check), on which "
              "the goal is judged; *class wall time / N* includes the parallel jobs, intake, the gradebook and "
              "the CSV."]
    return lines, goals


SECTIONS = {  # name: (title, script, tabulate)
    "notebooks": ("Notebooks: wall time per run", "benchmarks/bench_notebooks.py", notebooks),
    "suite": ("Test suite", "benchmarks/bench_suite.py", suite),
    "conv": ("Layers: from scratch vs PyTorch", "benchmarks/bench_conv.py", conv),
    "training": ("Training: the course's `fit` vs a minimal loop", "benchmarks/bench_training.py", training),
    "grading": ("Grading a class: stock nbgrader vs the course's command", "benchmarks/bench_grading.py", grading),
    "autograde": ("Autograde time per assignment", "benchmarks/bench_autograde.py", autograde),
}


def machine(results: dict) -> str:
    env = next((r["environment"] for r in results.values() if "environment" in r), None)
    if env is None:
        return "unknown (no result records it)"
    gpu = f"GPU {env['gpu']}" if env.get("gpu") else "no GPU"
    return (f"{env['cpu']}, {env['cpus']} CPUs, {env['memory_gib']} GiB; {env['platform']}; Python {env['python']}, "
            f"torch {env['torch']}; {gpu}")


def main() -> int:
    results = {p.stem: json.loads(p.read_text()) for p in sorted(RESULTS.glob("*.json")) if p.stem != "all"}
    now = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    body, goals = [], []
    for name, (title, script, tabulate) in SECTIONS.items():
        body += [f"## {title}", ""]
        if name not in results:
            body += missing(name, script)
            continue
        lines, found = tabulate(results[name])
        body += [when(name, results[name]), "", *lines, ""]
        goals += found
    others = sorted(set(results) - set(SECTIONS))
    if others:
        body += ["## Other results", "", "In all.json, not tabulated: " + ", ".join(f"`{o}.json`" for o in others), ""]

    head = ["# Benchmark results", "",
            "Written by `benchmarks/report.py` from `benchmarks/results/*.json` (`make bench` measures, then writes "
            "this). Each figure is the median of several runs with (min-max); ratios are taken side by side within "
            "a run. The machine is shared with other work: each section gives the load average when its benchmark "
            "started and ended, to judge the noise. Benchmarks are not tests: nothing fails on a missed goal.", "",
            f"- Machine (all figures but the GPU rows): {machine(results)}",
            f"- Tabulated: {now[:16].replace('T', ' ')}", "",
            "## Goals (issue #6)", "", "| goal | measured (median, min-max) | met |", "|---|---|---|",
            *[f"| {g} | {m} | {v} |" for g, m, v in goals],
            "| BatchNorm forward/backward vs PyTorch (ratios only, no goal) | not measured: needs a3's solution | |"
            if "not_measured" in results.get("conv", {}).get("operations", {}).get("batchnorm_forward", {}) else "",
            ""]
    text = "\n".join(head + body).replace("\n\n\n", "\n\n").rstrip() + "\n"
    (RESULTS / "README.md").write_text(text)
    (RESULTS / "all.json").write_text(json.dumps({"tabulated": now, "results": results}, indent=1) + "\n")
    print(text)
    print(f"wrote {RESULTS / 'README.md'} and {RESULTS / 'all.json'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
