"""What every benchmark records beside its timings: median/min/max, the machine, the load, the date.

The machine is shared, so each script notes the load average (1, 5 and 15
minutes) when it starts and when it ends: a reader can then judge the noise.
"""
from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def spread(values: list[float]) -> dict:
    """Median, min and max of several runs (and how many)."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": len(values)}


def load() -> list[float]:
    """The load average over 1, 5 and 15 minutes."""
    return [round(x, 2) for x in os.getloadavg()]


def environment() -> dict:
    """The machine and software the figures were taken on."""
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        memory = None
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"cpu": cpu, "cpus": os.cpu_count(), "memory_gib": memory and round(memory, 1),
            "platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
            "gpu": gpu}


def write(name: str, report: dict, load_at_start: list[float]) -> Path:
    """Write ``report`` to benchmarks/results/<name>.json with the date, the environment and the load."""
    report = {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
              "environment": environment(), "load_average": {"start": load_at_start, "end": load()}, **report}
    path = RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1) + "\n")
    return path
