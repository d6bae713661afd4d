"""The file sink on real files: positions, exactly-once across crashes, rotation, fsync, errors."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from tcsms_poller.sinks.base import RetryableSinkError, SinkContext
from tcsms_poller.sinks.file import FileSettings, FileSink
from tests.support.jsonl import ids_in
from tests.support.records import FakeClock, record, records
from tests.support.sink_driver import run_sink_driver
from tests.support.sink_rig import drain, outbox, outbox_records


def settings(path: Path, **extra: Any) -> FileSettings:
    """A validated file sink configuration writing to ``path``."""
    return FileSettings.model_validate({"type": "file", "path": str(path), **extra})


def make_sink(path: Path, position: Mapping[str, Any] | None = None, **extra: Any) -> FileSink:
    """A file sink as the daemon builds it, resuming from ``position``."""
    context = SinkContext(name="file", state_dir=path.parent, position=position)
    return FileSink(settings(path, **extra), context)


def lines(*ids: str) -> bytes:
    """What the file holds after records ``ids`` were written."""
    return b"".join(record(i).to_json() + b"\n" for i in ids)


@pytest.mark.anyio
async def test_appends_json_lines_and_acks_offset_inode_and_device(tmp_path: Path) -> None:
    """Each ack names the file and the byte offset its batch reaches."""
    path = tmp_path / "records.jsonl"
    sink = make_sink(path)
    await sink.open()
    first = await sink.send(outbox_records("a", "b"))
    second = await sink.send(outbox_records("c", first_seq=3))
    await sink.aclose()
    assert path.read_bytes() == lines("a", "b", "c")
    info = path.stat()
    assert first.position == {
        "offset": len(lines("a", "b")),
        "inode": info.st_ino,
        "device": info.st_dev,
    }
    assert second.position == {"offset": info.st_size, "inode": info.st_ino, "device": info.st_dev}


@pytest.mark.anyio
async def test_without_a_position_it_appends_to_what_is_there(tmp_path: Path) -> None:
    """A first start keeps an existing file's content and continues at its end."""
    path = tmp_path / "records.jsonl"
    path.write_bytes(b'{"earlier":true}\n')
    sink = make_sink(path)
    await sink.open()
    ack = await sink.send(outbox_records("a"))
    await sink.aclose()
    assert path.read_bytes() == b'{"earlier":true}\n' + lines("a")
    assert ack.position is not None
    assert ack.position["offset"] == path.stat().st_size


@pytest.mark.anyio
async def test_creates_missing_parent_directories(tmp_path: Path) -> None:
    """A path under directories that do not exist yet is created, not refused."""
    path = tmp_path / "deep" / "er" / "records.jsonl"
    sink = make_sink(path)
    await sink.open()
    await sink.send(outbox_records("a"))
    await sink.aclose()
    assert path.read_bytes() == lines("a")
    assert path.stat().st_mode & 0o777 == 0o640 & ~_umask()


@pytest.mark.anyio
async def test_a_crash_before_the_ack_commit_leaves_no_duplicate(tmp_path: Path) -> None:
    """Written but uncommitted records are cut off at restart and replayed exactly once."""
    path, clock = tmp_path / "records.jsonl", FakeClock()
    config = settings(path, batch_size=2)
    async with outbox(tmp_path / "state.db", clock) as store:
        await store.sink_cursor("file")
        await store.commit(records("a", "b", "c"))
        cursor = await store.sink_cursor("file")
        await drain(store, make_sink(path, cursor.position), config, tmp_path, clock)
        committed = (await store.sink_cursor("file")).position
        assert committed is not None
        assert committed["offset"] == len(lines("a", "b", "c"))

        # The crash: a batch reaches the file, the daemon dies before committing the ack.
        await store.commit(records("d", "e"))
        doomed = make_sink(path, committed)
        await doomed.open()
        await doomed.send(await store.read_outbox(after=3, limit=2))
        await doomed.aclose()
        assert ids_in(path) == ["a", "b", "c", "d", "e"]

        # The restart: back to the committed offset, then the outbox replays d and e.
        cursor = await store.sink_cursor("file")
        assert cursor.position == committed
        await drain(store, make_sink(path, cursor.position), config, tmp_path, clock)
        final = (await store.sink_cursor("file")).position
    assert ids_in(path) == ["a", "b", "c", "d", "e"]
    assert final is not None
    assert final["offset"] == path.stat().st_size


@pytest.mark.anyio
async def test_open_truncates_back_to_the_committed_offset(tmp_path: Path) -> None:
    """Bytes beyond the committed position of the same file are removed at open."""
    path = tmp_path / "records.jsonl"
    path.write_bytes(lines("a", "b") + b'{"torn":')
    info = path.stat()
    position = {"offset": len(lines("a")), "inode": info.st_ino, "device": info.st_dev}
    sink = make_sink(path, position)
    await sink.open()
    ack = await sink.send(outbox_records("b"))
    await sink.aclose()
    assert path.read_bytes() == lines("a", "b")
    assert ack.position == {**position, "offset": len(lines("a", "b"))}


@pytest.mark.anyio
async def test_a_file_replaced_while_down_is_appended_to_as_it_is(tmp_path: Path) -> None:
    """A position naming another inode (rotated while stopped) truncates nothing."""
    path = tmp_path / "records.jsonl"
    path.write_bytes(lines("a", "b", "c"))
    old = path.stat()
    position = {"offset": len(lines("a")), "inode": old.st_ino, "device": old.st_dev}
    path.rename(tmp_path / "records.jsonl.1")
    path.write_bytes(lines("x"))  # the new file logrotate created
    assert path.stat().st_ino != old.st_ino
    sink = make_sink(path, position)
    await sink.open()
    ack = await sink.send(outbox_records("d"))
    await sink.aclose()
    assert path.read_bytes() == lines("x", "d")
    assert (tmp_path / "records.jsonl.1").read_bytes() == lines("a", "b", "c")
    new = path.stat()
    assert ack.position == {"offset": new.st_size, "inode": new.st_ino, "device": new.st_dev}


@pytest.mark.anyio
async def test_a_file_shorter_than_the_position_is_appended_to(tmp_path: Path) -> None:
    """A file truncated by someone else (copytruncate) is continued at its end, not padded."""
    path = tmp_path / "records.jsonl"
    path.write_bytes(lines("a"))
    info = path.stat()
    position = {"offset": 10_000, "inode": info.st_ino, "device": info.st_dev}
    sink = make_sink(path, position)
    await sink.open()
    ack = await sink.send(outbox_records("b"))
    await sink.aclose()
    assert path.read_bytes() == lines("a", "b")
    assert ack.position is not None
    assert ack.position["offset"] == path.stat().st_size


@pytest.mark.anyio
async def test_an_unreadable_position_is_ignored(tmp_path: Path) -> None:
    """A position of another shape (say, another sink's) means: no position."""
    path = tmp_path / "records.jsonl"
    path.write_bytes(lines("a"))
    sink = make_sink(path, {"offset": "12", "inode": None})
    await sink.open()
    await sink.send(outbox_records("b"))
    await sink.aclose()
    assert path.read_bytes() == lines("a", "b")


@pytest.mark.anyio
async def test_reopen_follows_logrotate_create_mode(tmp_path: Path) -> None:
    """After the file is moved away, reopen() writes to a new file at the path."""
    path = tmp_path / "records.jsonl"
    sink = make_sink(path)
    await sink.open()
    await sink.send(outbox_records("a"))
    path.rename(tmp_path / "records.jsonl.1")
    await sink.send(outbox_records("b", first_seq=2))  # still into the moved file
    await sink.reopen()
    ack = await sink.send(outbox_records("c", first_seq=3))
    await sink.aclose()
    assert (tmp_path / "records.jsonl.1").read_bytes() == lines("a", "b")
    assert path.read_bytes() == lines("c")
    info = path.stat()
    assert ack.position == {"offset": len(lines("c")), "inode": info.st_ino, "device": info.st_dev}


@pytest.mark.anyio
async def test_a_batch_after_the_file_is_deleted_goes_to_a_new_file(tmp_path: Path) -> None:
    """Removed with its directory: the next batch creates both again, never writing into the
    deleted file, and its ack names the new file."""
    path = tmp_path / "out" / "records.jsonl"
    sink = make_sink(path)
    await sink.open()
    await sink.send(outbox_records("a"))
    shutil.rmtree(path.parent)
    ack = await sink.send(outbox_records("b", first_seq=2))
    await sink.aclose()
    assert path.read_bytes() == lines("b")
    info = path.stat()
    assert ack.position == {"offset": len(lines("b")), "inode": info.st_ino, "device": info.st_dev}


@pytest.mark.anyio
async def test_reopen_of_the_same_file_continues_where_it_was(tmp_path: Path) -> None:
    """A SIGHUP without rotation changes nothing in the file."""
    path = tmp_path / "records.jsonl"
    sink = make_sink(path)
    await sink.open()
    await sink.send(outbox_records("a"))
    await sink.reopen()
    ack = await sink.send(outbox_records("b", first_seq=2))
    await sink.aclose()
    assert path.read_bytes() == lines("a", "b")
    assert ack.position is not None
    assert ack.position["offset"] == path.stat().st_size


@pytest.mark.anyio
async def test_a_file_changed_behind_its_back_is_continued_at_its_real_end(
    tmp_path: Path,
) -> None:
    """Bytes appended or cut by someone else move the offset; nothing is padded or overwritten."""
    path = tmp_path / "records.jsonl"
    sink = make_sink(path)
    await sink.open()
    await sink.send(outbox_records("a"))
    with path.open("ab") as other:
        other.write(b'{"foreign":1}\n')
    grown = await sink.send(outbox_records("b", first_seq=2))
    assert path.read_bytes() == lines("a") + b'{"foreign":1}\n' + lines("b")
    assert grown.position is not None
    assert grown.position["offset"] == path.stat().st_size
    os.truncate(path, 0)  # copytruncate
    shrunk = await sink.send(outbox_records("c", first_seq=3))
    await sink.aclose()
    assert path.read_bytes() == lines("c")
    assert shrunk.position is not None
    assert shrunk.position["offset"] == len(lines("c"))


@pytest.mark.anyio
@pytest.mark.parametrize("fsync", ["batch", "never"])
async def test_both_fsync_policies_write_the_same_records(tmp_path: Path, fsync: str) -> None:
    """The fsync policy changes durability, never content or positions."""
    path = tmp_path / "records.jsonl"
    sink = make_sink(path, fsync=fsync)
    await sink.open()
    ack = await sink.send(outbox_records("a", "b"))
    await sink.aclose()
    assert path.read_bytes() == lines("a", "b")
    assert ack.position is not None
    assert ack.position["offset"] == len(lines("a", "b"))


def _strace() -> str:
    """The strace binary if it can trace here (containers may forbid ptrace)."""
    strace = shutil.which("strace")
    if strace is None:
        pytest.skip("strace is not installed")
    probe = subprocess.run(
        [strace, "-o", os.devnull, "true"], capture_output=True, timeout=30, check=False
    )
    if probe.returncode != 0:
        pytest.skip(f"strace cannot trace here: {probe.stderr.decode().strip()}")
    return strace


@pytest.mark.parametrize(("fsync", "file_syncs", "dir_syncs"), [("batch", 3, 1), ("never", 0, 0)])
def test_fsync_policy_as_seen_by_the_kernel(
    tmp_path: Path, fsync: str, file_syncs: int, dir_syncs: int
) -> None:
    """batch syncs the file once per batch and its directory on creation; never syncs nothing."""
    strace = _strace()
    path = tmp_path / "out" / "records.jsonl"
    trace = tmp_path / "trace.txt"
    run_sink_driver(
        {
            "type": "file",
            "config": {"type": "file", "path": str(path), "fsync": fsync},
            "steps": [{"send": ["a"]}, {"send": ["b"]}, {"send": ["c"]}],
        },
        tmp_path,
        wrapper=[strace, "-f", "-qq", "-y", "-e", "trace=fsync,fdatasync", "-o", str(trace)],
    )
    calls = trace.read_text().splitlines()
    assert sum(f"<{path}>" in call for call in calls) == file_syncs
    assert sum(f"<{path.parent}>" in call for call in calls) == dir_syncs
    assert path.read_bytes() == lines("a", "b", "c")


def test_a_full_disk_leaves_no_torn_line_and_the_retry_succeeds(tmp_path: Path) -> None:
    """A write cut short (EFBIG past a file-size limit) is retryable and fully removed."""
    path = tmp_path / "records.jsonl"
    limit = len(lines("a")) + 10  # the second batch gets 10 bytes in, then the "disk" is full
    out = run_sink_driver(
        {
            "type": "file",
            "config": {"type": "file", "path": str(path)},
            "steps": [
                {"send": ["a"]},
                {"file_size_limit": limit},
                {"send": ["b", "c"]},
                {"file_size_limit": None},
                {"send": ["b", "c"]},
            ],
        },
        tmp_path,
    )
    assert "ack" in out[0]
    assert out[2]["retryable"].startswith(f"cannot write {len(lines('b', 'c'))} bytes to {path}")
    assert "File too large" in out[2]["retryable"]
    assert out[4]["ack"]["offset"] == len(lines("a", "b", "c"))
    assert path.read_bytes() == lines("a", "b", "c")


@pytest.mark.anyio
async def test_a_write_error_is_retryable_and_reopen_recovers(tmp_path: Path) -> None:
    """An OSError while writing becomes RetryableSinkError; the file keeps only acked bytes."""
    path = tmp_path / "records.jsonl"
    sink = make_sink(path)
    await sink.open()
    await sink.send(outbox_records("a"))
    # Make the next write fail for real: replace the open descriptor with a read-only one.
    assert sink._fd is not None
    read_only = os.open(path, os.O_RDONLY)
    os.dup2(read_only, sink._fd)
    os.close(read_only)
    with pytest.raises(RetryableSinkError, match="Bad file descriptor"):
        await sink.send(outbox_records("b", first_seq=2))
    await sink.reopen()  # a reopen recovers the sink
    await sink.send(outbox_records("b", first_seq=2))
    await sink.aclose()
    assert path.read_bytes() == lines("a", "b")


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("make_path", "reason"),
    [
        (lambda tmp: tmp, "not a regular file"),
        (lambda tmp: _file(tmp / "plain") / "records.jsonl", "Not a directory"),
        (lambda tmp: _fifo(tmp / "pipe"), "not a regular file"),
    ],
    ids=["a directory", "under a file", "a fifo"],
)
async def test_an_unusable_path_is_a_clear_error_at_open(
    tmp_path: Path, make_path: Any, reason: str
) -> None:
    """open() names the sink, the path and the reason; nothing is half-opened."""
    path: Path = make_path(tmp_path)
    sink = make_sink(path)
    with pytest.raises(OSError, match=reason) as caught:
        await sink.open()
    assert str(caught.value).startswith(f"file sink 'file': cannot open {path}: ")


def _file(path: Path) -> Path:
    path.write_text("")
    return path


def _fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def _umask() -> int:
    """This process's umask, read without changing it (os.umask would, for every thread)."""
    status = Path("/proc/self/status").read_text()
    return int(
        next(line.split()[1] for line in status.splitlines() if line.startswith("Umask:")), 8
    )
