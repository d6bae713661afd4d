"""A sink reload is all or nothing: one that fails leaves the sinks running as they were."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest

from tcsms_poller.cluster.leases import Membership
from tcsms_poller.health import HealthBoard
from tcsms_poller.metrics import Metrics
from tcsms_poller.sinks.base import SinkSettings
from tcsms_poller.sinks.file import FileSettings
from tcsms_poller.sinks.fleet import SinkFleet, SinkReloadError
from tcsms_poller.sinks.registry import load_sink_type
from tcsms_poller.state import StateError
from tcsms_poller.state.postgres import PostgresStore
from tcsms_poller.state.store import SqliteStore
from tests.state.test_postgres import opened
from tests.support.jsonl import ids_in
from tests.support.log_capture import captured_logs, json_lines
from tests.support.records import records
from tests.support.state import open_store
from tests.support.waiting import wait_until

pytestmark = pytest.mark.anyio


def file_sink(name: str, path: Path, *, batch_size: int = 500) -> FileSettings:
    return FileSettings(type="file", name=name, path=path, batch_size=batch_size)


PROBE = """
import os

from tcsms_poller.sinks.base import Ack, SinkSettings


class ProbeSettings(SinkSettings):
    type: str = "probe"
    refuse: bool = False
    refuse_open: bool = False
    refuse_open_while: str | None = None  # a path: open fails while it exists


class ProbeSink:
    Config = ProbeSettings

    def __init__(self, config, context):
        if config.refuse:
            raise RuntimeError("probe refused to be built")
        self._refuse_open = config.refuse_open
        self._refuse_while = config.refuse_open_while

    async def open(self):
        if self._refuse_open or (self._refuse_while and os.path.exists(self._refuse_while)):
            raise RuntimeError("probe refused to open")

    async def send(self, batch):
        return Ack()

    async def reopen(self):
        pass

    async def aclose(self):
        pass
"""


@pytest.fixture
def probe_sink(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> type[SinkSettings]:
    """A plugin sink type ``probe`` whose construction fails with ``refuse: true``, its
    ``open`` with ``refuse_open: true`` (or while the file ``refuse_open_while`` exists)."""
    site = tmp_path / "site"
    (site / "tcsms_reload_probe-1.0.dist-info").mkdir(parents=True)
    (site / "tcsms_reload_probe.py").write_text(PROBE)
    (site / "tcsms_reload_probe-1.0.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: tcsms-reload-probe\nVersion: 1.0\n"
    )
    (site / "tcsms_reload_probe-1.0.dist-info" / "entry_points.txt").write_text(
        "[tcsms_poller.sinks]\nprobe = tcsms_reload_probe:ProbeSink\n"
    )
    monkeypatch.syspath_prepend(str(site))
    return load_sink_type("probe").factory.Config


def unopenable(tmp_path: Path) -> Path:
    """A path under a regular file: no process, root included, can create it (ENOTDIR)."""
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    return blocker / "records.jsonl"


@asynccontextmanager
async def running_fleet(
    tmp_path: Path, sinks: Sequence[SinkSettings]
) -> AsyncIterator[tuple[SinkFleet, SqliteStore]]:
    """A fleet on a real SQLite outbox, running ``sinks``; drained and stopped on exit."""
    store = await open_store(tmp_path / "state.db")
    board = HealthBoard()
    fleet = SinkFleet(store=store, metrics=Metrics(), board=board, state_dir=tmp_path)
    try:
        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                await tg.start(fleet.run, sinks)
                yield fleet, store
                assert await fleet.drain(30)
    finally:
        await store.aclose()


async def delivered(path: Path, ids: list[str], what: str) -> None:
    """Wait until ``path`` holds at least ``ids``; then it must hold exactly them, in order."""
    await wait_until(lambda: len(ids_in(path)) >= len(ids), what=what, timeout=30)
    assert ids_in(path) == ids


async def test_an_added_sink_that_cannot_open_fails_the_reload_before_any_sink_stops(
    tmp_path: Path,
) -> None:
    """Nothing stops or changes: the running sink keeps its old file and gets every record once."""
    old, new = tmp_path / "a.jsonl", tmp_path / "a2.jsonl"
    async with running_fleet(tmp_path, [file_sink("a", old)]) as (fleet, store):
        await store.commit(records("r1"))
        await delivered(old, ["r1"], "r1 in the old file")
        with captured_logs() as out, pytest.raises(SinkReloadError) as failed:
            await fleet.reload([file_sink("a", new), file_sink("b", unopenable(tmp_path))])
        assert "cannot open" in str(failed.value)
        assert failed.value.restored == []
        assert not [e for e in json_lines(out) if e["event"] == "sink.stopped"]
        assert fleet.names == ["a"]

        await store.commit(records("r2", "r3"))
        await delivered(old, ["r1", "r2", "r3"], "r2 and r3 in the old file")
        assert not new.exists()

        # A good reload later applies: the changed sink moves, the added one starts at the head.
        await fleet.reload([file_sink("a", new), file_sink("b", tmp_path / "b.jsonl")])
        await store.commit(records("r4"))
        await delivered(new, ["r4"], "r4 in the new file")
        await delivered(tmp_path / "b.jsonl", ["r4"], "r4 in the added sink")
        assert fleet.names == ["a", "b"]
    assert ids_in(old) == ["r1", "r2", "r3"]


async def test_a_changed_sink_that_cannot_open_restarts_the_stopped_sinks_as_they_were(
    tmp_path: Path,
) -> None:
    """The sinks stopped for the reload run again from their cursors: every record once."""
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a2 = tmp_path / "a2.jsonl"
    ids = [f"r{n:03}" for n in range(300)]
    sinks = [file_sink("a", a, batch_size=1), file_sink("b", b, batch_size=1)]
    async with running_fleet(tmp_path, sinks) as (fleet, store):
        await store.commit(records(*ids))  # a backlog: the reload stops both mid-delivery
        with captured_logs() as out, pytest.raises(SinkReloadError) as failed:
            await fleet.reload(
                [file_sink("a", a2, batch_size=1), file_sink("b", unopenable(tmp_path))]
            )
        assert failed.value.restored == ["a", "b"]
        assert failed.value.unrestored == []
        events = json_lines(out)
        assert [e["sink"] for e in events if e["event"] == "sink.stopped"] == ["a", "b", "a"]
        assert fleet.names == ["a", "b"]

        await store.commit(records("late"))
        await delivered(a, [*ids, "late"], "every record in a's old file")
        await delivered(b, [*ids, "late"], "every record in b's old file")
        assert ids_in(a2) == []  # opened for the switch, closed unused

        # A good reload later applies, from where the old settings left off.
        await fleet.reload([file_sink("a", a2), file_sink("b", b)])
        await store.commit(records("after"))
        await delivered(a2, ["after"], "the record after the good reload in a's new file")
        await delivered(b, [*ids, "late", "after"], "the record after the good reload in b")


async def test_a_changed_sink_that_cannot_be_built_fails_the_reload_before_any_sink_stops(
    tmp_path: Path, probe_sink: type[SinkSettings]
) -> None:
    """A changed plugin sink is built once before anything stops: its error stops nothing."""
    old, new = tmp_path / "a.jsonl", tmp_path / "a2.jsonl"
    probe = probe_sink(type="probe", name="p")
    async with running_fleet(tmp_path, [file_sink("a", old), probe]) as (fleet, store):
        refusing = probe_sink.model_validate({"type": "probe", "name": "p", "refuse": True})
        with captured_logs() as out, pytest.raises(SinkReloadError) as failed:
            await fleet.reload([file_sink("a", new), refusing])
        assert str(failed.value) == "RuntimeError: probe refused to be built"
        assert failed.value.restored == []
        assert not [e for e in json_lines(out) if e["event"] == "sink.stopped"]

        await store.commit(records("r1"))
        await delivered(old, ["r1"], "r1 in the old file")
        assert not new.exists()


@asynccontextmanager
async def clustered_fleet(
    postgres_url: str, tmp_path: Path, sinks: Sequence[SinkSettings]
) -> AsyncIterator[tuple[SinkFleet, PostgresStore]]:
    """A fleet of the one instance of a cluster on a real PostgreSQL, holding every lease."""
    async with opened(postgres_url) as store:
        membership = Membership(store, "a", ttl=30.0)
        fleet = SinkFleet(
            store=store,
            metrics=Metrics(),
            board=HealthBoard(),
            state_dir=tmp_path,
            membership=membership,
        )
        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                await tg.start(membership.run)
                await tg.start(fleet.run, sinks)
                yield fleet, store
                assert await fleet.drain(30)
                tg.cancel_scope.cancel()


async def test_in_a_cluster_an_added_sink_that_cannot_be_built_fails_the_reload(
    postgres_url: str, tmp_path: Path, probe_sink: type[SinkSettings]
) -> None:
    """An added sink opens only with its lease, but is built at the reload: its error fails it."""
    path = tmp_path / "a.jsonl"
    async with clustered_fleet(postgres_url, tmp_path, [file_sink("a", path)]) as (fleet, store):
        refusing = probe_sink.model_validate({"type": "probe", "name": "p", "refuse": True})
        with pytest.raises(SinkReloadError) as failed:
            await fleet.reload([file_sink("a", path), refusing])
        assert str(failed.value) == "RuntimeError: probe refused to be built"
        assert fleet.names == ["a"]
        await store.commit(records("r1"))
        await delivered(path, ["r1"], "r1 in the running sink's file")


async def test_in_a_cluster_a_failed_reload_keeps_the_cursors_it_created(
    postgres_url: str, tmp_path: Path, probe_sink: type[SinkSettings]
) -> None:
    """Another instance reloaded with the same sink may drain from its new cursor already: a
    failed reload here leaves it (and the acks it holds) in place."""
    path = tmp_path / "a.jsonl"
    async with clustered_fleet(postgres_url, tmp_path, [file_sink("a", path)]) as (fleet, store):
        refusing = probe_sink.model_validate({"type": "probe", "name": "p", "refuse": True})
        with pytest.raises(SinkReloadError):
            await fleet.reload([file_sink("a", path), file_sink("x", tmp_path / "x"), refusing])
        assert not (await store.sink_cursor("x")).created


async def test_an_unchanged_sink_that_cannot_reopen_fails_nothing_once_switched(
    tmp_path: Path,
) -> None:
    """The switch is done when unchanged sinks reopen: one that cannot is logged, the reload
    stands, and the sink opens its file again before its next write."""
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    async with running_fleet(tmp_path, [file_sink("a", a)]) as (fleet, store):
        await store.commit(records("r1"))
        await delivered(a, ["r1"], "r1 in a's file")
        a.rename(tmp_path / "a.rotated")
        a.mkdir()  # not a regular file: the reopen fails
        with captured_logs() as out:
            await fleet.reload([file_sink("a", a), file_sink("b", b)])
        assert fleet.names == ["a", "b"]
        [failed] = [e for e in json_lines(out) if e["event"] == "sink.reopen_failed"]
        assert failed["sink"] == "a"
        a.rmdir()
        await store.commit(records("r2"))
        await delivered(b, ["r2"], "r2 in the added sink")
        await delivered(a, ["r2"], "r2 in a's file, opened again")


async def test_a_cursor_that_cannot_be_forgotten_does_not_keep_the_stopped_sinks_down(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A state that fails as a failed reload forgets its new cursors (the failure that may
    have failed the reload) is logged: the stopped sinks still start again."""
    a = tmp_path / "a.jsonl"
    async with running_fleet(tmp_path, [file_sink("a", a)]) as (fleet, store):

        async def failing_forget(name: str, *, acked_seq: int) -> None:
            raise StateError("disk I/O error")

        monkeypatch.setattr(store, "forget_sink", failing_forget)
        with captured_logs() as out, pytest.raises(SinkReloadError) as failed:
            await fleet.reload(
                [file_sink("a", unopenable(tmp_path)), file_sink("b", tmp_path / "b.jsonl")]
            )
        assert failed.value.restored == ["a"]
        [kept] = [e for e in json_lines(out) if e["event"] == "sink.forget_failed"]
        assert (kept["sink"], kept["error"]) == ("b", "disk I/O error")
        assert fleet.names == ["a"]
        await store.commit(records("r1"))
        await delivered(a, ["r1"], "r1 in a's file")
