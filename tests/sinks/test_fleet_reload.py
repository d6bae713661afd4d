"""A sink reload is all or nothing: one that fails leaves the sinks running as they were."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest

from tcsms_poller.health import HealthBoard
from tcsms_poller.metrics import Metrics
from tcsms_poller.sinks.base import SinkSettings
from tcsms_poller.sinks.file import FileSettings
from tcsms_poller.sinks.fleet import SinkFleet, SinkReloadError
from tcsms_poller.sinks.registry import load_sink_type
from tcsms_poller.state.store import SqliteStore
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
