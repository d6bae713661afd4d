"""What the benchmarks share: temp dirs, CPU and memory readings, percentiles, the result line.

Every benchmark prints a human summary and, as its last stdout line, one JSON object with its
figures; logs of the code under test go to stderr so they never come after that line.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import signal
import sqlite3
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

__all__ = [
    "cpu_seconds",
    "exit_on_sigterm",
    "filesystem_of",
    "load_average",
    "machine",
    "percentile",
    "postgres_server",
    "print_result",
    "proc_status_mb",
    "self_peak_rss_mb",
    "temp_dir",
]


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages: other work on the machine skews every figure."""
    return [round(value, 2) for value in os.getloadavg()]


@contextmanager
def temp_dir(prefix: str, base: Path | None = None) -> Iterator[Path]:
    """A fresh directory, removed on the way out however the block ends."""
    with tempfile.TemporaryDirectory(prefix=prefix, dir=base, ignore_cleanup_errors=True) as name:
        yield Path(name)


@contextmanager
def postgres_server(state: str, parent: Path | None) -> Iterator[Callable[[], str] | None]:
    """For ``--state postgresql``: a local server (``initdb`` into a temp dir under ``parent``,
    ``fsync = on``); yields a maker of fresh database URLs, or None for ``sqlite``."""
    if state != "postgresql":
        yield None
        return
    from tests.support.postgres import running_server  # the test suite's throwaway server

    with running_server(fsync=True, parent=parent) as server:
        yield server.create_database


def exit_on_sigterm() -> None:
    """Turn SIGTERM into ``SystemExit``, so ``finally`` blocks still remove dirs and children."""

    def stop(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)


def cpu_seconds() -> float:
    """User plus system CPU time of this process, every thread included."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def self_peak_rss_mb() -> float:
    """This process's peak resident set size so far (``ru_maxrss`` is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def proc_status_mb(pid: int, field: str) -> float | None:
    """A memory line of ``/proc/PID/status`` (``VmHWM``, ``VmRSS``) in MiB; None once gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024  # the kernel writes "VmHWM:   12345 kB"
    return None


def percentile(values: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile (``fraction`` 0.5 is the median); 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * len(ordered) + 0.5) - 1))
    return ordered[index]


def filesystem_of(path: Path) -> str:
    """The type of the filesystem holding ``path`` (``ext4``, ``tmpfs``): fsync costs differ."""
    best, kind = "", "unknown"
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return kind
    resolved = str(path.resolve())
    for line in mounts:
        parts = line.split()
        if len(parts) < 3:
            continue
        point = parts[1]
        inside = resolved == point or resolved.startswith(point.rstrip("/") + "/")
        if inside and len(point) > len(best):
            best, kind = point, parts[2]
    return kind


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    model = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": model,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "kernel": platform.release(),
    }


def print_result(summary: Sequence[str], figures: Mapping[str, Any]) -> None:
    """The human summary, then the figures as one JSON object on the last line."""
    for line in summary:
        print(line)
    sys.stdout.flush()
    print(json.dumps(figures, ensure_ascii=False, sort_keys=False), flush=True)
