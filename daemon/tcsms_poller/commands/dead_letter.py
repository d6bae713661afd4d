"""``tcsms-poller dead-letter list|replay -c FILE [--sink NAME] [--since WHEN]``, and
``tcsms-poller dead-letter purge -c FILE --sink NAME (--older-than DURATION and/or --replayed |
--all) [--dry-run]``.

``list`` shows the batches each sink dead-lettered: when, why, how many records, and how many of
them a replay has since delivered or still queues. ``replay`` queues a sink's dead-lettered
records again, in front of its outbox, leaving out those a replay already delivered or queued;
the daemon delivers them when it starts (``run`` or ``once``), or at once when a running daemon
gets SIGHUP. ``replay`` never changes the dead letters; ``purge`` is the one thing that removes
them: those older than a duration and/or those a replay delivered (both given: both must
hold), or all, but never one whose record is queued for replay. It names what it selects, so
nothing goes by accident, and works beside a running daemon (and from any instance of a
cluster). ``--sink`` names a configured sink; ``list`` and ``purge`` also take one no longer
configured whose dead letters the state still holds (``purge`` then removes its replay queue
too: no drainer would deliver it). ``replay`` does not: nothing would deliver what it queued.

Run as root beside a daemon running as another user, ``replay`` and ``purge`` on the files of
a SQLite state act as the state directory's owner before they open any file
(``permissions.act_as_owner_of``), so what they write stays the daemon's and no link that user
planted leads root anywhere; a file that user may not write (one an earlier root run left
root's) is named, with the fix, in one line (exit 1), before anything changes.

Where they are (``DeadLetters``): files beside a SQLite state (``sinks/deadletter.py``), read
without opening the database; the tables of a PostgreSQL state, which any instance reads and
writes, whose sink's lease holder delivers a replay within seconds, SIGHUP or not. The output
is the same either way.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tcsms_poller.commands._common import (
    add_config_argument,
    duration_argument,
    load_and_configure,
    run_reporting,
)
from tcsms_poller.config import Config
from tcsms_poller.exits import EX_OK, UsageError
from tcsms_poller.permissions import act_as_owner_of
from tcsms_poller.records import format_received_at, record_ids
from tcsms_poller.sinks.deadletter import (
    DeadLetterFile,
    DeadLetterFiles,
    dead_letter_path,
    dead_letter_sinks,
)
from tcsms_poller.state.roles import DeadLetter, DeadLetters, StateError
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
        ("purge", "remove a sink's old or replayed dead letters (never those queued for replay)"),
    ):
        action = actions.add_parser(name, help=help_text, description=help_text)
        add_config_argument(action)
        action.add_argument(
            "--sink", required=name != "list", metavar="NAME", help="the sink's name"
        )
        if name == "purge":
            _add_purge_arguments(action)
            continue
        action.add_argument(
            "--since",
            type=since_argument,
            metavar="WHEN",
            help="only batches dead-lettered since WHEN: an RFC 3339 time or a duration ago (2h)",
        )
        if name == "list":
            action.add_argument("--json", action="store_true", help="one JSON object a line")


def _add_purge_arguments(action: argparse.ArgumentParser) -> None:
    """What ``purge`` removes: at least one selector, so nothing goes by accident."""
    action.add_argument(
        "--older-than",
        type=duration_argument,
        metavar="DURATION",
        help="only dead letters written more than DURATION ago (30d, 12h)",
    )
    action.add_argument(
        "--replayed",
        action="store_true",
        help="only dead letters whose record a replay delivered (the sink acknowledged it)",
    )
    action.add_argument(
        "--all", action="store_true", help="every dead letter (none of the above given)"
    )
    action.add_argument(
        "--dry-run", action="store_true", help="count what would be removed, remove nothing"
    )


def _check_purge_selectors(args: argparse.Namespace) -> datetime | None:
    """``UsageError`` unless ``purge`` names what it removes: ``--all`` or the others; returns
    the time ``--older-than`` means, if given (a duration too long for the calendar is a
    ``UsageError`` too)."""
    narrowed = args.older_than is not None or args.replayed
    if args.all and narrowed:
        raise UsageError("dead-letter purge: --all removes every dead letter, so give it alone")
    if not (args.all or narrowed):
        raise UsageError(
            "dead-letter purge: say which dead letters to remove: "
            "--older-than DURATION and/or --replayed (both given: both must hold), or --all"
        )
    if args.older_than is None:
        return None
    try:
        return datetime.now(UTC) - timedelta(seconds=args.older_than)
    except (OverflowError, ValueError):
        raise UsageError(
            "dead-letter purge: --older-than is too long (it reaches back before year 1)"
        ) from None


@asynccontextmanager
async def _dead_letters(
    config: Config, requested: str | None, state_dir: Path
) -> AsyncIterator[Callable[[str], DeadLetters]]:
    """Sink name -> its dead letters, where the daemon keeps them (with a SQLite state, the
    files under ``state_dir``: see ``_act_as_owner``); a ``requested`` sink not configured is
    checked in the database (``_sink_names``)."""
    if config.state.url is None:  # the files beside the database, which stays closed
        yield lambda sink: DeadLetterFile(dead_letter_path(state_dir, sink))
        return
    from tcsms_poller.state import open_state  # psycopg only when the state is PostgreSQL
    from tcsms_poller.state.postgres import PostgresStore

    store = await open_state(config.state)
    try:
        assert isinstance(store, PostgresStore)  # a state with a url
        if requested is not None and requested not in _configured(config):
            _check_held(config, requested, await store.dead_letter_sinks())
        yield store.dead_letters
    finally:
        await store.aclose()


def _configured(config: Config) -> list[str]:
    return [sink.sink_name for sink in config.sinks]


def _check_held(config: Config, requested: str, held: set[str]) -> None:
    """``UsageError`` unless the state holds dead letters of ``requested`` (not configured)."""
    if requested not in held:
        raise UsageError(
            f"--sink {requested[:60]!r} is not configured and has no dead letters"
            f" (sinks: {', '.join(_configured(config))})"
        )


def _sink_names(config: Config, requested: str | None, action: str) -> list[str]:
    """The configured sinks, or the one ``requested``: configured, or for ``list`` and
    ``purge`` one the state holds dead letters of (a sink since removed). The files are looked
    at here, before anything runs; the database once opened (``_dead_letters``)."""
    if requested is None:
        return _configured(config)
    if requested not in _configured(config):
        if action == "replay":  # no drainer would deliver what it queued
            raise UsageError(
                f"--sink {requested[:60]!r} is not configured"
                f" (sinks: {', '.join(_configured(config))})"
            )
        if config.state.url is None:
            _check_held(config, requested, dead_letter_sinks(config.state.path.parent))
    return [requested]


def _act_as_owner(config: Config, sink: str) -> Path:
    """Before ``replay`` or ``purge`` opens a dead-letter file: run as root, act as the owner
    of ``dead-letter/`` (of the state directory while it is root's or missing) in the state
    directory (``permissions.act_as_owner_of``); then ``StateError`` (one line, exit 1) if a
    file the command may change is not writable, before anything changed. Returns the state
    directory as the files are to be reached from now on (``.`` once moved into it). Called
    once the event loop runs: its modules are loaded, by root, wherever Python lives."""
    state_dir = config.state.path.parent
    letters_dir = dead_letter_path(state_dir, sink).parent
    try:
        held_by_user = letters_dir.is_dir() and letters_dir.stat().st_uid != 0
        owner = act_as_owner_of(state_dir, letters_dir if held_by_user else state_dir)
    except OSError as error:
        raise StateError(f"cannot act as the owner of {state_dir}: {error.strerror}") from None
    here = Path(".") if owner is not None else state_dir
    files = DeadLetterFiles(dead_letter_path(here, sink))
    if (path := files.unwritable()) is None:
        return here
    uid, gid = owner or (os.geteuid(), os.getegid())
    reason = (
        f"{state_dir / path if owner else path} is not writable by uid {os.geteuid()}; give"
        f" the dead letters to the state directory's owner: chown -R {uid}:{gid} {letters_dir}"
    )
    raise StateError(reason)


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


def _batches(letters: Sequence[DeadLetter], sink: str) -> Iterator[Batch]:
    current: list[DeadLetter] = []
    for letter in letters:
        if current and (letter.dead_lettered_at, letter.reason) != (
            current[0].dead_lettered_at,
            current[0].reason,
        ):
            yield Batch(sink, current)
            current = []
        current.append(letter)
    if current:
        yield Batch(sink, current)


async def _rows(
    dead_letters: DeadLetters, sink: str, since: datetime | None
) -> list[dict[str, object]]:
    """The dead-lettered batches of one sink, as ``list`` shows them."""
    letters = await dead_letters.letters(since=since)
    delivered = await dead_letters.replayed_ids()
    queued = set(record_ids(await dead_letters.queued()))
    return [batch.describe(delivered, queued) for batch in _batches(letters, sink)]


async def _list(
    config: Config, sinks: Sequence[str], args: argparse.Namespace, state_dir: Path
) -> int:
    async with _dead_letters(config, args.sink, state_dir) as dead_letters_of:
        rows = [
            row for sink in sinks for row in await _rows(dead_letters_of(sink), sink, args.since)
        ]
    for row in rows:
        if args.json:
            print(json.dumps(row, ensure_ascii=False))
        else:
            print(
                f"{row['dead_lettered_at']}  {row['sink']}  {row['records']} records  "
                f"{row['replayed']} replayed  {row['queued']} queued  {row['reason']}"
            )
    if not rows and not args.json:
        print("no dead-lettered batches")
    return EX_OK


async def _replay(
    config: Config, sinks: Sequence[str], args: argparse.Namespace, state_dir: Path
) -> int:
    [sink] = sinks
    async with _dead_letters(config, args.sink, state_dir) as dead_letters_of:
        dead_letters = dead_letters_of(sink)
        queued, skipped = await dead_letters.enqueue(await dead_letters.letters(since=args.since))
    print(
        f"queued {queued} dead-lettered records for sink {sink}"
        f" ({skipped} skipped: already replayed, queued, or listed twice);"
        " a daemon delivers them when it starts, a running one on SIGHUP"
    )
    return EX_OK


async def _purge(
    config: Config, sinks: Sequence[str], args: argparse.Namespace, state_dir: Path
) -> int:
    [sink] = sinks
    async with _dead_letters(config, args.sink, state_dir) as dead_letters_of:
        purged = await dead_letters_of(sink).purge(
            before=args.before,
            replayed=args.replayed,
            dry_run=args.dry_run,
            delivered=sink in _configured(config),
        )
    verb, keep = ("would remove", "would keep") if args.dry_run else ("removed", "kept")
    print(
        f"{verb} {purged.removed} dead letters of sink {sink}, {keep} {purged.kept}"
        f" ({purged.held} of them selected but queued for replay)"
    )
    return EX_OK


_ACTIONS = {"list": _list, "replay": _replay, "purge": _purge}


def execute(args: argparse.Namespace) -> int:
    if args.action == "purge":  # before the configuration: nothing to look up
        args.before = _check_purge_selectors(args)
    config = load_and_configure(args, prints_result=True)
    sinks = _sink_names(config, args.sink, args.action)
    action = _ACTIONS[args.action]

    async def run() -> int:
        state_dir = config.state.path.parent
        if args.action != "list" and config.state.url is None:  # only the files: written here
            state_dir = _act_as_owner(config, args.sink)
        return await action(config, sinks, args, state_dir)

    return run_reporting(run, event="dead_letter.failed")
