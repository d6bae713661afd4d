"""The rate limits audited twice: at the emulator, by when requests arrived, and at the daemons, by
when each says it sent them.

The emulator (``GET /_emulator/polls``'s ``requests``) counts arrivals as the kernel received
them; the daemons log each request's ``sent_monotonic`` (``tencent.request_completed`` and
``tencent.request_failed``, by ``request_id``). Both are ``CLOCK_MONOTONIC`` seconds of the same
machine. So a refusal can be set beside the daemons' own account: too many requests sent in one
second is the daemons' fault; a request timed later than it was sent, which squeezes the
window it opens, is the timing's.
"""

from __future__ import annotations

import json
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Sent", "busiest_second", "lateness", "refusal_report", "sent_requests"]

REQUEST_EVENTS = ("tencent.request_completed", "tencent.request_failed")


@dataclass(frozen=True, slots=True)
class Sent:
    """One request as a daemon logged it."""

    sender: str  # ``name.LIFE``
    action: str
    at: float  # monotonic


def log_entries(log: Path) -> Iterable[tuple[int, dict[str, Any]]]:
    """Each JSON line of a daemon's log with the life that wrote it (1, 2, ... in the order the
    lives started: ``daemon.starting``)."""
    life = 0
    for line in log.read_text().splitlines():
        # A life killed in the middle of a line leaves it unfinished, the next life's first
        # line right after it: read from the last line start.
        try:
            entry = json.loads(line[max(0, line.rfind('{"ts":')) :])
        except ValueError:
            continue  # not a log line (the daemon's own output)
        if entry.get("event") == "daemon.starting":
            life += 1
        yield life, entry


def sent_requests(logs: Mapping[str, Path]) -> dict[str, Sent]:
    """Every request the daemons logged as sent, by RequestId; ``logs`` by instance name."""
    sent: dict[str, Sent] = {}
    for name, log in logs.items():
        for life, entry in log_entries(log):
            at, request_id = entry.get("sent_monotonic"), entry.get("request_id")
            if entry.get("event") in REQUEST_EVENTS and at is not None and request_id:
                sent[request_id] = Sent(f"{name}.{life}", entry["action"], at)
    return sent


def busiest_second(times: Sequence[float]) -> tuple[int, float]:
    """The most of ``times`` (sorted) within any one second, and where that second starts."""
    best, start = 0, 0.0
    for i, at in enumerate(times):
        count = bisect_right(times, at + 1.0) - i
        if count > best:
            best, start = count, at
    return best, start


def lateness(requests: Sequence[Mapping[str, Any]], sent: Mapping[str, Sent]) -> list[float]:
    """How long after its send each request the emulator logged was timed, sorted (seconds; a
    little below 0 where the write's completion was seen after the server had the bytes)."""
    known = (r for r in requests if r["request_id"] in sent)
    return sorted(r["arrived"] - sent[r["request_id"]].at for r in known)


def refusal_report(
    requests: Sequence[Mapping[str, Any]], sent: Mapping[str, Sent], limits: Mapping[str, int]
) -> list[str]:
    """For each request the emulator refused for its limit: the two seconds of its action before
    it, each request with its sender, when it was sent and how late it was stamped, and whether
    the daemons had sent more than the action's limit in the second before it (their clocks)."""
    report = []
    for refused in (r for r in requests if not r["admitted"]):
        action, arrived = refused["action"], refused["arrived"]
        window = [
            r
            for r in requests
            if r["action"] == action
            and (r["admitted"] or r is refused)
            and arrived - 2.0 <= r["arrived"] <= arrived
        ]
        own = sent.get(refused["request_id"])
        times = sorted(sent[r["request_id"]].at for r in window if r["request_id"] in sent)
        if own is None:
            verdict = "its sender logged no send time (killed in flight?)"
        else:
            before = times[bisect_left(times, own.at - 1.0) : bisect_right(times, own.at)]
            over = len(before) > limits[action]
            fault = "the daemons' fault" if over else "within the limit when sent"
            verdict = f"{len(before)} sent in the second before it: {fault}"
        report.append(f"{action} refused at {arrived:.4f}: {verdict}")
        for r in window:
            mark = "REFUSED" if r is refused else "admitted"
            by = sent.get(r["request_id"])
            if by is None:
                report.append(f"  {mark} arrived {r['arrived']:.4f}, no send logged")
            else:
                late = (r["arrived"] - by.at) * 1000
                report.append(
                    f"  {mark} arrived {r['arrived']:.4f} from {by.sender}, "
                    f"sent {by.at:.4f}, stamped {late:.1f} ms later"
                )
    return report
