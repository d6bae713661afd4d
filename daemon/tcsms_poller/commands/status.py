"""``tcsms-poller status -c FILE``: the state at a glance, beside a running daemon or not."""

from __future__ import annotations

import argparse
import json
import sqlite3
import time
from datetime import UTC, datetime
from functools import partial
from typing import Any

import anyio

from tcsms_poller.commands._common import add_config_argument
from tcsms_poller.config import load_config
from tcsms_poller.exits import EX_FAILURE, EX_OK
from tcsms_poller.state import StateError
from tcsms_poller.state.status import read_snapshot

__all__ = ["add_arguments", "execute", "render"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument("--json", action="store_true", help="print the snapshot as JSON")


def _when(moment: float | None) -> str:
    if moment is None:
        return "never"
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def render(snapshot: dict[str, Any], configured_sinks: list[str]) -> str:
    """A human summary of ``read_snapshot``'s result."""
    lines = [f"state: {snapshot['database']}", f"outbox head: {snapshot['outbox_head']}", "sinks:"]
    cursors = {sink["name"]: sink for sink in snapshot["sinks"]}
    dead_letters = snapshot.get("dead_letters", {})
    for name in sorted(set(cursors) | set(configured_sinks) | set(dead_letters)):
        sink = cursors.get(name)
        note = (
            ""
            if name in configured_sinks
            else "  (not configured: backlog kept for state.dedupe_ttl)"
        )
        dead = _dead_letters(dead_letters.get(name))
        if sink is None:
            started = "not started yet" if name in configured_sinks else "no cursor"
            lines.append(f"  {name}: {started}{dead}")
        else:
            lines.append(
                f"  {name}: {sink['depth']} pending, acked up to {sink['acked_seq']}{dead}{note}"
            )
    lines.append("tracked numbers:")
    for n in snapshot["numbers"]:
        lines.append(
            f"  {n['app_id']}: {n['tracked']} numbers, most overdue by {n['oldest_overdue_s']}s"
        )
        for kind, cursor in n["cursors"].items():
            lines.append(
                f"    {kind} cursors: {cursor['numbers']} numbers, newest record "
                f"{_when(cursor['newest'])}, stalest number's {_when(cursor['oldest'])}"
            )
    if not snapshot["numbers"]:
        lines.append("  none")
    lines.append("tracked messages:")
    lines.extend(
        f"  {m['app_id']}: {m['pending']} pending, the oldest sent {m['oldest_pending_age_s']}s ago"
        for m in snapshot.get("messages", [])
    )
    if not snapshot.get("messages"):
        lines.append("  none pending")
    lines.append("workers:")
    for worker in snapshot["workers"]:
        state = "healthy" if worker["healthy"] else f"UNHEALTHY: {worker['last_error']}"
        lines.append(
            f"  {worker['name']}: {state}; last success {_when(worker['last_success_at'])}"
        )
    if not snapshot["workers"]:
        lines.append("  none has run yet")
    lines.append(f"pending conversions: {snapshot['pending_conversions']}")
    lines.append(f"quarantined API items: {snapshot['rejected_items']}")
    lines.append(f"seen ids (dedupe window): {snapshot['seen_ids']}")
    if "cluster" in snapshot:
        lines.extend(_render_cluster(snapshot["cluster"]))
    return "\n".join(lines)


def _dead_letters(counts: dict[str, int] | None) -> str:
    """``; 3 dead letters, 1 queued for replay`` for a sink with any, else nothing."""
    if not counts:
        return ""
    letters = counts["count"]
    return (
        f"; {letters} dead letter{'' if letters == 1 else 's'}, "
        f"{counts['replays_queued']} queued for replay"
    )


def _render_cluster(cluster: dict[str, Any]) -> list[str]:
    """The instances sharing a PostgreSQL state, who holds which lease, the rate shares and how
    many numbers each instance is polling."""
    lines = ["cluster instances:"]
    for one in cluster["instances"]:
        state = "healthy" if one["healthy"] else f"UNHEALTHY: {one['detail']}"
        lines.append(
            f"  {one['id']}: {state}; last heartbeat {one['heartbeat_age_s']}s ago; "
            f"version {one['version']}"
        )
    if not cluster["instances"]:
        lines.append("  none running")
    lines.append("cluster leases:")
    lines.extend(
        f"  {lease['name']}: {lease['holder']} (token {lease['token']}, "
        f"expires in {lease['expires_in_s']}s)"
        for lease in cluster["leases"]
    )
    if not cluster["leases"]:
        lines.append("  none held")
    lines.append("cluster rate shares (requests per second):")
    lines.extend(
        f"  {share['action']}: {share['instance']} {share['rate']} "
        f"(expires in {share['expires_in_s']}s)"
        for share in cluster.get("rate_shares", [])
    )
    if not cluster.get("rate_shares"):
        lines.append("  none granted")
    claims = cluster.get("number_claims", {})
    lines.append("cluster number claims (polls in progress):")
    lines.extend(f"  {holder}: {count}" for holder, count in sorted(claims.items()))
    if not claims:
        lines.append("  none")
    return lines


def execute(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    try:
        if config.state.url is not None:
            from tcsms_poller.state.postgres.connect import read_snapshot as read_postgres

            url = config.state.url.reveal()
            snapshot = anyio.run(partial(read_postgres, url, now=time.time()))
        else:
            snapshot = read_snapshot(config.state.path, now=time.time())
    except (FileNotFoundError, sqlite3.Error, StateError) as error:
        print(f"tcsms-poller: cannot read the state: {error}")
        return EX_FAILURE
    if args.json:
        print(json.dumps(snapshot, indent=2))
    else:
        print(render(snapshot, [sink.sink_name for sink in config.sinks]))
    return EX_OK
