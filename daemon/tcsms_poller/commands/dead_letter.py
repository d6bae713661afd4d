"""``tcsms-poller dead-letter list|replay -c FILE [--sink NAME] [--since WHEN]``.

``list`` shows the batches each sink dead-lettered: when, why, how many records, and how many of
them a replay has since delivered or still queues. ``replay`` queues a sink's dead-lettered
records again, in front of its outbox (``sinks/deadletter.py``), leaving out those a replay
already delivered or queued; the daemon delivers them when it starts (``run`` or ``once``), or
at once when a running daemon gets SIGHUP. The dead-letter file itself is never changed.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tcsms_poller.commands._common import add_config_argument, load_and_configure
from tcsms_poller.config import Config
from tcsms_poller.exits import EX_OK, UsageError
from tcsms_poller.records import format_received_at
from tcsms_poller.sinks.deadletter import DeadLetter, ReplayQueue, read_dead_letters
from tcsms_poller.units import parse_duration

__all__ = ["add_arguments", "execute"]


def since_argument(text: str) -> datetime:
    """``--since``: an RFC 3339 time (``2026-12-07T04:00:00Z``) or a duration ago (``2h``)."""
    try:
        return datetime.now(UTC) - timedelta(seconds=parse_duration(text))
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text[:40]!r} is neither a time like 2026-12-07T04:00:00Z nor a duration like 2h"
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    for name, help_text in (
        ("list", "the dead-lettered batches of every sink (or one), with their reasons"),
        ("replay", "queue a sink's dead-lettered records again, in front of its outbox"),
    ):
        action = actions.add_parser(name, help=help_text, description=help_text)
        add_config_argument(action)
        action.add_argument(
            "--sink", required=name == "replay", metavar="NAME", help="the sink's name"
        )
        action.add_argument(
            "--since",
            type=since_argument,
            metavar="WHEN",
            help="only batches dead-lettered since WHEN: an RFC 3339 time or a duration ago (2h)",
        )
        if name == "list":
            action.add_argument("--json", action="store_true", help="one JSON object a line")


def _dead_letter_file(config: Config, sink: str) -> Path:
    # The fleet's layout (sinks/fleet.py): <state dir>/dead-letter/<sink name>.jsonl.
    return config.state.path.parent / "dead-letter" / f"{sink}.jsonl"


def _sink_names(config: Config, requested: str | None) -> list[str]:
    names = [sink.sink_name for sink in config.sinks]
    if requested is None:
        return names
    if requested not in names:
        raise UsageError(f"--sink {requested[:60]!r} is not configured (sinks: {', '.join(names)})")
    return [requested]


@dataclass(frozen=True, slots=True)
class Batch:
    """Consecutive dead letters of one sink with the same time and reason: one refused batch."""

    sink: str
    letters: list[DeadLetter]

    def describe(self, delivered: set[str], queued: set[str]) -> dict[str, object]:
        ids = [letter.record_id for letter in self.letters]
        return {
            "dead_lettered_at": format_received_at(self.letters[0].dead_lettered_at),
            "sink": self.sink,
            "records": len(ids),
            "replayed": sum(1 for record_id in ids if record_id in delivered),
            "queued": sum(1 for record_id in ids if record_id in queued),
            "reason": self.letters[0].reason,
        }


def _batches(path: Path, sink: str, since: datetime | None) -> Iterator[Batch]:
    current: list[DeadLetter] = []
    for letter in read_dead_letters(path):
        if since is not None and letter.dead_lettered_at < since:
            continue
        if current and (letter.dead_lettered_at, letter.reason) != (
            current[0].dead_lettered_at,
            current[0].reason,
        ):
            yield Batch(sink, current)
            current = []
        current.append(letter)
    if current:
        yield Batch(sink, current)


def _list(config: Config, args: argparse.Namespace) -> int:
    shown = 0
    for sink in _sink_names(config, args.sink):
        path = _dead_letter_file(config, sink)
        replays = ReplayQueue(path)
        delivered = replays.acknowledged_ids()
        queued = {record.as_dict()["id"] for record in replays.queued()}
        for batch in _batches(path, sink, args.since):
            row = batch.describe(delivered, queued)
            shown += 1
            if args.json:
                print(json.dumps(row, ensure_ascii=False))
            else:
                print(
                    f"{row['dead_lettered_at']}  {sink}  {row['records']} records  "
                    f"{row['replayed']} replayed  {row['queued']} queued  {row['reason']}"
                )
    if not shown and not args.json:
        print("no dead-lettered batches")
    return EX_OK


def _replay(config: Config, args: argparse.Namespace) -> int:
    [sink] = _sink_names(config, args.sink)
    path = _dead_letter_file(config, sink)
    letters = [letter for batch in _batches(path, sink, args.since) for letter in batch.letters]
    queued, skipped = ReplayQueue(path).enqueue(letters)
    print(
        f"queued {queued} dead-lettered records for sink {sink}"
        f" ({skipped} skipped: already replayed, queued, or listed twice);"
        " a daemon delivers them when it starts, a running one on SIGHUP"
    )
    return EX_OK


def execute(args: argparse.Namespace) -> int:
    config = load_and_configure(args, prints_result=True)
    return _list(config, args) if args.action == "list" else _replay(config, args)
