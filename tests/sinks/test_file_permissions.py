"""Record files are 0640 or stricter whatever the umask: they carry phone numbers."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from tcsms_poller.sinks.deadletter import DeadLetterFile, read_dead_letters
from tcsms_poller.state.roles import Purged
from tests.sinks.test_file_sink import make_sink
from tests.support.permissions import mode, no_umask
from tests.support.sink_rig import outbox_records

__all__ = ["no_umask"]  # a fixture

pytestmark = pytest.mark.anyio


async def test_a_new_sink_file_and_its_directory_are_not_world_readable(
    tmp_path: Path, no_umask: None
) -> None:
    path = tmp_path / "out" / "records.jsonl"
    sink = make_sink(path)
    await sink.open()
    await sink.send(outbox_records("a"))
    await sink.aclose()
    assert mode(path) == 0o640
    assert mode(path.parent) == 0o750


@pytest.mark.parametrize(("before", "after"), [(0o666, 0o640), (0o600, 0o600)])
async def test_an_existing_sink_file_loses_permissions_beyond_0640(
    tmp_path: Path, before: int, after: int
) -> None:
    """A looser file is restricted to 0640; a stricter one stays as strict."""
    path = tmp_path / "records.jsonl"
    path.touch()
    path.chmod(before)
    sink = make_sink(path)
    await sink.open()
    await sink.aclose()
    assert mode(path) == after


async def test_dead_letters_are_not_world_readable(tmp_path: Path, no_umask: None) -> None:
    path = tmp_path / "dead" / "file.deadletter.jsonl"
    await DeadLetterFile(path).write(outbox_records("a"), reason="refused", now=0.0)
    assert mode(path) == 0o640
    assert mode(path.parent) == 0o750
    path.chmod(0o644)
    await DeadLetterFile(path).write(outbox_records("b"), reason="refused", now=0.0)
    assert mode(path) == 0o640
    assert len(path.read_bytes().splitlines()) == 2


async def test_a_purged_dead_letter_file_stays_0640(tmp_path: Path, no_umask: None) -> None:
    """``dead-letter purge`` rewrites the file and the ledger with the mode the daemon gives
    them, leaving no temporary file behind."""
    path = tmp_path / "dead" / "file.jsonl"
    dead = DeadLetterFile(path)
    await dead.write(outbox_records("a", "b"), reason="refused", now=0.0)
    await dead.write(outbox_records("c"), reason="refused", now=7200.0)
    await dead.enqueue(await dead.letters())
    await dead.finish(await dead.queued(), acknowledged=True)
    ledger = path.with_name("file.replayed")
    path.chmod(0o644)
    ledger.chmod(0o644)
    purged = await dead.purge(before=datetime.fromtimestamp(3600.0, UTC), replayed=True)
    assert (purged.removed, purged.kept) == (2, 1)
    assert ledger.read_text().split() == ["c"]
    assert (mode(path), mode(ledger)) == (0o640, 0o640)
    assert sorted(child.name for child in path.parent.iterdir()) == [
        "file.jsonl",
        "file.replay.lock",
        "file.replayed",
    ]


async def test_a_dry_run_or_a_purge_with_nothing_to_purge_creates_nothing(tmp_path: Path) -> None:
    """No directory, lock or temporary file appears for nothing."""
    path = tmp_path / "dead-letter" / "file.jsonl"
    dead = DeadLetterFile(path)
    assert await dead.purge() == Purged(removed=0, kept=0, held=0)
    assert await dead.purge(dry_run=True) == Purged(removed=0, kept=0, held=0)
    assert not path.parent.exists()
    path.parent.mkdir()
    path.write_bytes(outbox_letter_lines(2))
    assert await dead.purge(dry_run=True) == Purged(removed=2, kept=0, held=0)
    assert [child.name for child in path.parent.iterdir()] == ["file.jsonl"]
    assert len(list(read_dead_letters(path))) == 2


def outbox_letter_lines(count: int) -> bytes:
    """``count`` dead-letter lines as the daemon writes them."""
    return b"".join(
        b'{"dead_lettered_at":"1970-01-01T00:00:00.000Z","sink":"file","reason":"refused",'
        b'"record":' + record.data + b"}\n"
        for record in outbox_records(*(f"r{n}" for n in range(count)))
    )
