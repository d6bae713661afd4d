"""``dead-letter replay`` and ``purge`` run as root beside a daemon running as another user act
as the state directory's owner: what they write stays the daemon's, a link that user planted
leads root nowhere, and a file an earlier root run left root's is named in one line.

The commands change the identity of their whole process, so they run as real subprocesses."""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
import yaml

from tcsms_poller.commands.dead_letter import _act_as_owner
from tcsms_poller.config import load_config
from tcsms_poller.sinks.deadletter import DeadLetterFile, dead_letter_path
from tcsms_poller.state.roles import StateError
from tests.support.cli import run_cli
from tests.support.daemon_process import daemon_config
from tests.support.sink_rig import outbox_records

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user"),
]
OWNER = 54321  # the daemon's user (systemd DynamicUser), not the root running the commands
SINK = "webhook"


@pytest.fixture
def state_dir() -> Iterator[Path]:
    """A state directory of ``OWNER``'s laid out as systemd's ``DynamicUser`` lays it out:
    ``public/state`` links to ``private/state`` and ``private`` is root's alone, so ``OWNER``
    cannot reach its own directory by its path. The configuration is beside the link."""
    base = Path(tempfile.mkdtemp(prefix="tcsms-owner-"))  # root's alone, as pytest's are
    try:
        (base / "private").mkdir(0o700)
        (base / "public").mkdir(0o755)
        state = base / "private" / "state"
        state.mkdir(0o700)
        os.chown(state, OWNER, OWNER)
        state = base / "public" / "state"
        state.symlink_to(base / "private" / "state")
        sinks = [{"type": "http", "name": SINK, "url": "http://127.0.0.1:9/"}]
        config = daemon_config("http://127.0.0.1:9", state, sinks=sinks)
        config["log"]["level"] = "info"  # the one line of a failure, alone
        (state.parent / "config.yaml").write_text(yaml.safe_dump(config))
        yield state
    finally:
        shutil.rmtree(base)


async def dead_letters(state: Path) -> Path:
    """The daemon's dead letters of ``SINK``: a and b two hours old, c and d new, a replayed
    and delivered; all of it ``OWNER``'s, as the daemon left it. Returns ``dead-letter/``."""
    dead = DeadLetterFile(dead_letter_path(state, SINK))
    now = time.time()
    await dead.write(outbox_records("a", "b"), reason="refused", now=now - 7200)
    await dead.write(outbox_records("c", "d"), reason="refused", now=now)
    await dead.enqueue((await dead.letters())[:1])
    await dead.finish(await dead.queued(), acknowledged=True)
    for path in [dead.path.parent, *dead.path.parent.iterdir()]:
        os.chown(path, OWNER, OWNER, follow_symlinks=False)
    return dead.path.parent


def command(state: Path, action: str, *args: str) -> tuple[int, str, str]:
    done = run_cli(
        "dead-letter", action, "-c", str(state.parent / "config.yaml"), "--sink", SINK, *args
    )
    return done.returncode, done.stdout, done.stderr


def snapshot(directory: Path) -> dict[str, tuple[int, int, int, bytes]]:
    """Each entry of ``directory``: owner, group, mode, content (a link's target)."""
    entries: dict[str, tuple[int, int, int, bytes]] = {}
    for path in [directory, *directory.iterdir()]:
        status = path.lstat()
        if path.is_symlink():
            content = os.readlink(path).encode()
        elif path.is_dir():
            content = b""
        else:
            content = path.read_bytes()
        entries[path.name] = (status.st_uid, status.st_gid, stat.S_IMODE(status.st_mode), content)
    return entries


async def test_replay_and_purge_write_as_the_state_directorys_owner(state_dir: Path) -> None:
    """Every file the commands create or replace is ``OWNER``'s with the daemon's modes, so
    the daemon can still take the lock, append and rewrite."""
    directory = await dead_letters(state_dir)
    code, out, err = await anyio.to_thread.run_sync(command, state_dir, "replay")
    assert (code, out.split(" (")[0]) == (0, f"queued 3 dead-lettered records for sink {SINK}"), err
    code, out, err = await anyio.to_thread.run_sync(
        command, state_dir, "purge", "--older-than", "1h"
    )
    assert code == 0, err
    assert out.startswith(f"removed 1 dead letters of sink {SINK}, kept 3 (1 of them"), out
    entries = snapshot(directory)
    assert sorted(entries) == [
        "dead-letter",
        f"{SINK}.jsonl",
        f"{SINK}.replay.jsonl",
        f"{SINK}.replay.lock",
    ]  # the ledger's only id went with its dead letter: the ledger is gone
    for name, (uid, gid, mode, _) in entries.items():
        expected = 0o750 if name == "dead-letter" else 0o640
        assert (uid, gid, mode) == (OWNER, OWNER, expected), name
    assert entries[f"{SINK}.replay.jsonl"][3].count(b"\n") == 3


@pytest.mark.parametrize(
    ("action", "planted"),
    [
        ("replay", f"{SINK}.replay.lock"),
        ("replay", f"{SINK}.replay.jsonl"),
        ("purge", f"{SINK}.jsonl.tmp"),
    ],
)
async def test_a_link_the_service_user_planted_is_not_followed_as_root(
    state_dir: Path, action: str, planted: str
) -> None:
    """A link in ``dead-letter/`` to a root file outside: the command, acting as the link's
    owner, may not write that file, says so in one line (exit 1), and leaves it as it was."""
    directory = await dead_letters(state_dir)
    target = state_dir.parent / "shadow"
    target.write_bytes(b"root:secret\n")
    target.chmod(0o644)
    (directory / planted).unlink(missing_ok=True)  # the service user replaces it
    (directory / planted).symlink_to(target)
    os.chown(directory / planted, OWNER, OWNER, follow_symlinks=False)
    before = snapshot(directory)
    args = ["--all"] if action == "purge" else []
    code, out, err = await anyio.to_thread.run_sync(command, state_dir, action, *args)
    assert (code, out) == (1, ""), err
    assert len(err.splitlines()) == 1, err
    [line] = err.splitlines()
    assert f"{directory / planted} is not writable by uid {OWNER}" in line
    assert "Traceback" not in err
    status = target.stat()
    assert (status.st_uid, stat.S_IMODE(status.st_mode)) == (0, 0o644)
    assert target.read_bytes() == b"root:secret\n"
    assert snapshot(directory) == before


async def test_a_dead_letter_directory_left_root_s_is_named_with_its_fix(state_dir: Path) -> None:
    """``dead-letter/`` an earlier root run made root's, under the service's state directory:
    each command says in one line what to chown (exit 1), and changes nothing."""
    directory = await dead_letters(state_dir)
    for path in [directory, *directory.iterdir()]:
        os.chown(path, 0, 0)
    before = snapshot(directory)
    for action, args in (("replay", []), ("purge", ["--all"])):
        code, out, err = await anyio.to_thread.run_sync(command, state_dir, action, *args)
        assert (code, out) == (1, ""), err
        assert len(err.splitlines()) == 1, err
        [line] = err.splitlines()
        assert f"chown -R {OWNER}:{OWNER} {directory}" in line, line
        assert snapshot(directory) == before


def test_ids_that_cannot_be_changed_are_one_line_and_touch_nothing(
    state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Root without ``CAP_SETGID`` (a container that dropped every capability): the command
    says so in one line and writes nothing, its ids part changed or not. In this process,
    with every id change faked: the test's own ids stay."""
    moved: list[str] = []
    monkeypatch.setattr(os, "chdir", moved.append)
    monkeypatch.setattr(os, "setgroups", lambda groups: None)

    def refuse(gid: int) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "setegid", refuse)
    config = load_config(state_dir.parent / "config.yaml")
    with pytest.raises(StateError) as refused:
        _act_as_owner(config, SINK)
    assert str(refused.value) == (
        f"cannot act as the owner of {state_dir}: Operation not permitted"
    )
    assert moved == [os.path.realpath(state_dir)]
    assert list(state_dir.iterdir()) == []
