"""The dead letters of a sink (``roles.DeadLetters``) on both kinds, the files beside a SQLite
state and the tables of a PostgreSQL one, through the store as the daemon gets them; and the
cluster case: what an instance that is gone dead-lettered is listed and replayed from another."""

from __future__ import annotations

import io
import json
import shutil
import time
from collections.abc import Sequence
from datetime import datetime
from functools import partial
from pathlib import Path

import anyio
import anyio.to_thread
import pytest
import yaml

from tcsms_poller.cluster.leases import sink_lease
from tcsms_poller.commands.status import render
from tcsms_poller.health import HealthBoard
from tcsms_poller.metrics import Metrics
from tcsms_poller.records import OutboxRecord, Record, format_received_at
from tcsms_poller.sinks import deadletter
from tcsms_poller.sinks.base import RejectedBatchError, SinkSettings
from tcsms_poller.sinks.deadletter import DeadLetterFile, dead_letter_counts
from tcsms_poller.sinks.drainer import Drainer
from tcsms_poller.state import StateStore
from tcsms_poller.state.postgres import PostgresStore
from tcsms_poller.state.postgres.connect import read_snapshot as read_postgres
from tcsms_poller.state.roles import DeadLetter, Fence, LeaseLostError, Purged
from tcsms_poller.state.status import read_snapshot
from tests.support.backends import Backend
from tests.support.cli import run_cli
from tests.support.daemon_process import daemon_config
from tests.support.log_capture import captured_logs
from tests.support.postgres import PostgresServer
from tests.support.records import FakeClock, record
from tests.support.waiting import wait_until

from .test_drainer import ScriptedSink

pytestmark = pytest.mark.anyio
SINK = "webhook"
LEASE = sink_lease(SINK)
PHONE = "+8613711112222"
REFUSED = RejectedBatchError("HTTP 400: bad")
NOT_CONFIGURED = "--sink 'nope' is not configured and has no dead letters (sinks: webhook)"


def outbox(*ids: str) -> list[OutboxRecord]:
    return [OutboxRecord(n + 1, record(i).to_json()) for n, i in enumerate(ids)]


def ids(items: Sequence[OutboxRecord | DeadLetter]) -> list[str]:
    return [
        item.record_id if isinstance(item, DeadLetter) else item.as_dict()["id"] for item in items
    ]


def receipt(record_id: str) -> Record:
    """A record that carries a phone number, as receipts and replies do."""
    plain = record(record_id)
    return plain._replace(fields={**plain.fields, "phone_number": PHONE})


async def drain(
    store: StateStore,
    sink: ScriptedSink,
    clock: FakeClock,
    *,
    commit: Sequence[Record] = (),
    fence: Fence | None = None,
) -> Drainer:
    """Commit ``commit``, then run a drainer of ``SINK`` until it emptied the outbox."""
    drainer = await make_drainer(store, sink, clock, fence=fence)
    await store.commit(commit)
    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            await tg.start(drainer.run)
            drainer.drain_and_stop()
    return drainer


async def make_drainer(
    store: StateStore, sink: ScriptedSink, clock: FakeClock, *, fence: Fence | None = None
) -> Drainer:
    """A drainer of ``SINK`` (batches of 2) from its cursor, its dead letters the store's."""
    settings = SinkSettings.model_validate({"type": "scripted", "name": SINK, "batch_size": 2})
    cursor = await store.sink_cursor(SINK)
    return Drainer(
        sink=sink,
        settings=settings,
        store=store,
        dead_letters=store.dead_letters(SINK),
        health=HealthBoard(clock).register(f"sink:{SINK}", "sink"),
        metrics=Metrics(),
        acked_seq=cursor.acked_seq,
        clock=clock,
        sleep=clock.sleep,
        fence=fence,
    )


# -- the contract, on both kinds ---------------------------------------------------------------


async def test_dead_letters_are_kept_in_order_with_their_reason_and_time(backend: Backend) -> None:
    """What ``write`` returned from is there after a restart, oldest first, per sink."""
    clock = FakeClock(1_700_000_000.1234)
    async with backend.open(clock) as store:
        dead = store.dead_letters(SINK)
        await dead.write(outbox("a", "b"), reason="rejected: HTTP 400: bad", now=clock.now)
        await dead.write(outbox("c"), reason="gave up after 60s: down", now=clock.now + 60)
    async with backend.open(clock) as store:
        dead = store.dead_letters(SINK)
        letters = await dead.letters()
        assert [(one.record_id, one.reason) for one in letters] == [
            ("a", "rejected: HTTP 400: bad"),
            ("b", "rejected: HTTP 400: bad"),
            ("c", "gave up after 60s: down"),
        ]
        assert letters[0].dead_lettered_at == datetime.fromisoformat("2023-11-14T22:13:20.123Z")
        assert letters[0].data == record("a").to_json()
        later = datetime.fromisoformat(format_received_at(clock.now + 60))
        assert ids(await dead.letters(since=later)) == ["c"]
        assert await store.dead_letters("other").letters() == []


async def test_replaying_twice_queues_nothing_twice(backend: Backend) -> None:
    """Queued or acknowledged ids are skipped; a batch refused again may be queued again."""
    async with backend.open(FakeClock()) as store:
        dead = store.dead_letters(SINK)
        await dead.write(outbox("a", "b", "c"), reason="rejected", now=0.0)
        letters = await dead.letters()
        assert await dead.enqueue([*letters, letters[0]]) == (3, 1)
        assert ids(await dead.queued()) == ["a", "b", "c"]
        assert [record.seq for record in await dead.queued()] == [0, 0, 0]
        assert await dead.enqueue(letters) == (0, 3)

        head = await dead.queued(limit=2)
        assert ids(head) == ["a", "b"]
        await dead.finish(head, acknowledged=True)
        assert ids(await dead.queued()) == ["c"]
        assert await dead.replayed_ids() == {"a", "b"}
        assert await dead.enqueue(letters) == (0, 3)

        await dead.finish(await dead.queued(), acknowledged=False)
        assert await dead.queued() == []
        assert await dead.replayed_ids() == {"a", "b"}
        assert await dead.enqueue(letters) == (1, 2)
        assert ids(await dead.queued()) == ["c"]


async def test_status_shows_each_sinks_dead_letters_and_replays_queued(backend: Backend) -> None:
    """Per sink with any, in the snapshot ``status`` prints (text and JSON); a sink whose
    dead letters were all replayed still shows them, none queued."""
    async with backend.open(FakeClock()) as store:
        await store.sink_cursor(SINK)
        dead = store.dead_letters(SINK)
        await dead.write(outbox("a", "b", "c"), reason="rejected", now=0.0)
        await dead.enqueue((await dead.letters())[:2])
        await store.dead_letters("old").write(outbox("d"), reason="rejected", now=0.0)
        snapshot = await store.snapshot()
    assert snapshot["dead_letters"] == {
        "old": {"count": 1, "replays_queued": 0},
        SINK: {"count": 3, "replays_queued": 2},
    }
    text = render(snapshot, [SINK, "quiet"])
    assert f"  {SINK}: 0 pending, acked up to 0; 3 dead letters, 2 queued for replay\n" in text
    assert "  old: no cursor; 1 dead letter, 0 queued for replay\n" in text
    assert "  quiet: not started yet\n" in text
    if backend.kind == "sqlite":  # read by ``status`` as a process beside the daemon reads it
        queue = backend.location.parent / "dead-letter" / f"{SINK}.replay.jsonl"
        with queue.open("ab") as file:
            file.write(b'{"id": "torn')  # a crash mid-append: not a record yet
        assert read_snapshot(backend.location, now=0.0)["dead_letters"] == snapshot["dead_letters"]
    else:
        assert (await read_postgres(backend.location, now=0.0))["dead_letters"] == snapshot[
            "dead_letters"
        ]


async def test_a_replay_is_delivered_once_before_the_outbox(backend: Backend) -> None:
    """The drainer dead-letters a refused batch, moves on, then delivers its replay first."""
    clock = FakeClock()
    async with backend.open(clock) as store:
        first = ScriptedSink([REFUSED])
        await drain(store, first, clock, commit=[record(i) for i in "abc"])
        dead = store.dead_letters(SINK)
        assert ids(await dead.letters()) == ["a", "b"]
        assert (await store.sink_cursor(SINK)).acked_seq == 3
        assert first.received == [["c"]]

        assert await dead.enqueue(await dead.letters()) == (2, 0)
        second = ScriptedSink()
        await drain(store, second, clock, commit=[record("d")])
        assert second.received == [["a", "b"], ["d"]]
        assert await dead.queued() == []
        assert await dead.replayed_ids() == {"a", "b"}
        assert await dead.enqueue(await dead.letters()) == (0, 2)


async def test_a_replay_refused_again_goes_back_to_the_dead_letters(backend: Backend) -> None:
    """Nothing is remembered as delivered, the queue is empty, the records are dead letters
    once more; nothing of them reaches the logs unmasked."""
    clock = FakeClock()
    async with backend.open(clock) as store:
        logs = io.StringIO()
        with captured_logs(level="debug", stream=logs):
            await drain(store, ScriptedSink([REFUSED]), clock, commit=[receipt("a")])
            dead = store.dead_letters(SINK)
            await dead.enqueue(await dead.letters())
            again = RejectedBatchError("HTTP 400: still bad")
            await drain(store, ScriptedSink([again]), clock)
        assert [(one.record_id, one.reason) for one in await dead.letters()] == [
            ("a", "rejected: HTTP 400: bad"),
            ("a", "rejected: HTTP 400: still bad"),
        ]
        assert await dead.queued() == []
        assert await dead.replayed_ids() == set()
    events = [json.loads(line)["event"] for line in logs.getvalue().splitlines()]
    assert events.count("sink.dead_lettered") == 2
    assert "sink.replayed" in events
    assert PHONE[-8:] not in logs.getvalue()


# -- purge, on both kinds ----------------------------------------------------------------------


def moment(seconds: float) -> datetime:
    return datetime.fromisoformat(format_received_at(seconds))


async def test_purge_by_age_removes_the_older_dead_letters_and_status_counts_the_rest(
    backend: Backend,
) -> None:
    """A dry run counts and changes nothing; the purge leaves the newer ones, on any sink but
    the one named untouched, and ``status`` counts what is left."""
    clock = FakeClock()
    async with backend.open(clock) as store:
        await store.sink_cursor(SINK)
        dead = store.dead_letters(SINK)
        await dead.write(outbox("a", "b"), reason="rejected", now=clock.now - 7200)
        await dead.write(outbox("c"), reason="rejected", now=clock.now)
        await store.dead_letters("other").write(outbox("d"), reason="rejected", now=0.0)
        cutoff = moment(clock.now - 3600)

        assert await dead.purge(before=cutoff, dry_run=True) == Purged(2, 1, 0)
        assert ids(await dead.letters()) == ["a", "b", "c"]
        assert await dead.purge(before=cutoff) == Purged(2, 1, 0)
        assert ids(await dead.letters()) == ["c"]
        assert await dead.purge(before=cutoff) == Purged(0, 1, 0)
        snapshot = await store.snapshot()
        assert snapshot["dead_letters"] == {
            "other": {"count": 1, "replays_queued": 0},
            SINK: {"count": 1, "replays_queued": 0},
        }
        assert await dead.purge() == Purged(1, 0, 0)
        assert "  webhook: 0 pending, acked up to 0\n" in render(await store.snapshot(), [SINK])
    async with backend.open(clock) as store:  # a restart finds it so
        assert await store.dead_letters(SINK).letters() == []
        assert ids(await store.dead_letters("other").letters()) == ["d"]


async def test_purge_of_replayed_dead_letters_never_takes_one_queued_for_replay(
    backend: Backend,
) -> None:
    """``--replayed`` takes only what the sink acknowledged; one queued but not delivered
    stays whatever selects it, and goes once its replay is delivered."""
    async with backend.open(FakeClock()) as store:
        dead = store.dead_letters(SINK)
        await dead.write(outbox("a", "b", "c", "d"), reason="rejected", now=0.0)
        await dead.write(outbox("e"), reason="rejected", now=0.0)
        assert await dead.enqueue((await dead.letters())[:4]) == (4, 0)
        await dead.finish(await dead.queued(limit=2), acknowledged=True)

        assert await dead.purge(replayed=True) == Purged(2, 3, 0)
        assert ids(await dead.letters()) == ["c", "d", "e"]
        assert await dead.purge() == Purged(1, 2, 2)  # --all: "e"; "c" and "d" are queued
        assert ids(await dead.letters()) == ["c", "d"]
        assert ids(await dead.queued()) == ["c", "d"]
        assert await dead.replayed_ids() == set()  # "a" and "b" are gone: nothing to skip

        await dead.finish(await dead.queued(), acknowledged=True)
        assert await dead.purge(replayed=True, before=moment(0.0)) == Purged(0, 2, 0)
        assert await dead.purge(replayed=True) == Purged(2, 0, 0)
        assert await dead.letters() == []
        assert await dead.replayed_ids() == set()


async def test_replay_after_a_purge_queues_what_it_would_have(backend: Backend) -> None:
    """A record dead-lettered twice, then delivered: purging its older dead letter keeps it
    acknowledged (its newer one is left), so ``replay`` skips it; a record whose dead letters
    are all gone is forgotten, so one dead-lettered again is queued."""
    async with backend.open(FakeClock()) as store:
        dead = store.dead_letters(SINK)
        await dead.write(outbox("a", "b"), reason="rejected", now=0.0)
        await dead.write(outbox("a", "c"), reason="refused again", now=7200.0)
        await dead.enqueue(await dead.letters())
        await dead.finish(await dead.queued(limit=2), acknowledged=True)  # a and b
        await dead.finish(await dead.queued(), acknowledged=False)  # c refused again
        await dead.write(outbox("c"), reason="refused again", now=7200.0)

        assert await dead.purge(before=moment(3600.0)) == Purged(2, 3, 0)
        assert [(one.record_id, one.reason) for one in await dead.letters()] == [
            ("a", "refused again"),
            ("c", "refused again"),
            ("c", "refused again"),
        ]
        assert await dead.replayed_ids() == {"a"}
        assert await dead.enqueue(await dead.letters()) == (1, 2)
        assert ids(await dead.queued()) == ["c"]

        await dead.write(outbox("b"), reason="rejected", now=9000.0)
        assert await dead.enqueue(await dead.letters()) == (1, 3)
        assert ids(await dead.queued()) == ["c", "b"]


async def test_a_replay_read_before_a_purge_queues_no_delivered_record_again(
    backend: Backend,
) -> None:
    """``replay`` reads the dead letters, ``purge --replayed`` takes the delivered ones (and
    forgets they were delivered), then ``replay`` queues what it read: nothing, as the
    records have no dead letter any more."""
    async with backend.open(FakeClock()) as store:
        dead = store.dead_letters(SINK)
        await dead.write(outbox("a", "b"), reason="rejected", now=0.0)
        await dead.enqueue(await dead.letters())
        await dead.finish(await dead.queued(), acknowledged=True)
        await dead.write(outbox("c"), reason="rejected", now=0.0)
        read = await dead.letters()
        assert await dead.purge(replayed=True) == Purged(2, 1, 0)
        assert await dead.replayed_ids() == set()
        assert await dead.enqueue(read) == (1, 2)
        assert ids(await dead.queued()) == ["c"]


async def test_a_torn_last_line_is_cut_off_by_the_next_append_and_a_purge_drops_it(
    tmp_path: Path,
) -> None:
    """A crash mid-append leaves a torn line: the next append cuts it off first (its batch is
    written again in full: the drainer retries the write, and after a crash the cursor had
    not moved past it), so ``status`` counts what ``list`` shows; a purge rewriting the file
    drops a torn last line. A torn line of the replay queue is not a record either, and one
    of the ledger is no id."""
    dead = DeadLetterFile(tmp_path / "dead-letter" / f"{SINK}.jsonl")
    torn = b'{"dead_lettered_at":"1970-01-01T00:00:00.000Z","sink":"webhook","rea'
    await dead.write(outbox("a"), reason="rejected", now=0.0)
    with dead.path.open("ab") as file:
        file.write(torn)
    await dead.write(outbox("b"), reason="rejected", now=7200.0)
    assert ids(await dead.letters()) == ["a", "b"]
    assert dead_letter_counts(tmp_path) == {SINK: (2, 0)}  # what ``status`` shows
    assert len(dead.path.read_bytes().splitlines()) == 2  # no line of its own

    with dead.path.open("ab") as file:
        file.write(torn)
    assert await dead.purge(before=moment(3600.0)) == Purged(1, 1, 0)
    assert dead.path.read_bytes().endswith(b"}\n")
    await dead.write(outbox("c"), reason="rejected", now=7200.0)
    assert ids(await dead.letters()) == ["b", "c"]

    queue = dead.path.with_name(f"{SINK}.replay.jsonl")
    queue.write_bytes(b'{"id": "to')
    assert await dead.enqueue(await dead.letters()) == (2, 0)
    assert ids(await dead.queued()) == ["b", "c"]
    assert dead_letter_counts(tmp_path) == {SINK: (2, 2)}

    await dead.finish(await dead.queued(limit=1), acknowledged=True)
    ledger = dead.path.with_name(f"{SINK}.replayed")
    with ledger.open("ab") as file:
        file.write(b"c")  # the id of a record never delivered, torn
    assert await dead.replayed_ids() == {"b"}
    assert await dead.purge(replayed=True, dry_run=True) == Purged(1, 1, 0)
    await dead.finish(await dead.queued(), acknowledged=True)  # now "c" is delivered
    assert ledger.read_bytes() == b"b\nc\n"


@pytest.mark.parametrize("chunk", [3, 4, 1 << 20], ids=["across-chunks", "at-an-edge", "one"])
async def test_a_torn_tail_is_cut_back_to_the_last_newline_whatever_the_chunks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    """The last newline is looked for backwards a chunk at a time: a torn tail longer than a
    chunk, and a newline right at a chunk's edge, are cut exactly after that newline."""
    monkeypatch.setattr(deadletter, "_CHUNK", chunk)
    dead = DeadLetterFile(tmp_path / "dead-letter" / f"{SINK}.jsonl")
    await dead.write(outbox("a"), reason="rejected", now=0.0)
    kept = dead.path.read_bytes()
    with dead.path.open("ab") as file:
        file.write(b'{"dead_lettered_at":"1970')  # 25 bytes: 8 chunks of 3, 6 of 4 and 1
    await dead.write(outbox("b"), reason="rejected", now=1.0)
    assert dead.path.read_bytes().startswith(kept)
    assert ids(await dead.letters()) == ["a", "b"]
    assert len(dead.path.read_bytes().splitlines()) == 2


async def test_a_purge_beside_a_daemon_appending_dead_letters_loses_none_of_them(
    tmp_path: Path,
) -> None:
    """The daemon's appends and the command's rewrites of the file take turns: every dead
    letter appended while purges rewrite the file is still there (SQLite state)."""
    dead = DeadLetterFile(tmp_path / "dead-letter" / f"{SINK}.jsonl")
    await dead.write(outbox(*(f"old{n}" for n in range(500))), reason="rejected", now=0.0)
    kept = [f"new{n}" for n in range(60)]
    purged = 0

    async def append() -> None:
        for n, record_id in enumerate(kept):
            await dead.write(outbox(record_id), reason="rejected", now=7200.0)
            await dead.write(outbox(f"again{n}"), reason="rejected", now=0.0)

    async def purge() -> None:
        nonlocal purged
        for _ in range(30):
            purged += (await dead.purge(before=moment(3600.0))).removed

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            tg.start_soon(append)
            tg.start_soon(purge)
    assert ids(await dead.letters(since=moment(3600.0))) == kept
    assert purged + len(await dead.letters()) == 500 + 2 * len(kept)
    assert not list(dead.path.parent.glob("*.tmp"))


async def test_purge_from_the_command_line(backend: Backend, tmp_path: Path) -> None:
    """``dead-letter purge``: one line of what it removed and kept, exit 0; a mistake is one
    line, exit 2, and nothing changed."""
    sinks = [{"type": "http", "name": SINK, "url": "http://127.0.0.1:9/"}]
    config = daemon_config("http://127.0.0.1:9", tmp_path, sinks=sinks)
    if backend.kind == "postgresql":
        config["state"]["url"] = backend.location
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    clock = FakeClock(time.time())
    async with backend.open(clock) as store:
        dead = store.dead_letters(SINK)
        await dead.write(outbox("a", "b", "c"), reason="rejected", now=clock.now - 7200)
        await dead.write(outbox("d"), reason="rejected", now=clock.now)
        await dead.enqueue((await dead.letters())[2:3])
        gone = store.dead_letters("gone")  # a sink since removed, with a replay queued
        await gone.write(outbox("e"), reason="rejected", now=0.0)
        assert await gone.enqueue(await gone.letters()) == (1, 0)

    async def command(action: str, *args: str) -> tuple[int, str, str]:
        done = await anyio.to_thread.run_sync(
            partial(run_cli, "dead-letter", action, "-c", str(tmp_path / "config.yaml"), *args)
        )
        return done.returncode, done.stdout, done.stderr

    purge = partial(command, "purge")

    if backend.kind == "sqlite":  # the same checks, made before the state is opened
        for args, problem in (
            (["--sink", SINK], "say which dead letters to remove"),
            (["--sink", SINK, "--all", "--replayed"], "--all removes every dead letter"),
            (["--sink", "nope", "--all"], NOT_CONFIGURED),
            (["--sink", SINK, "--older-than", "2 weeks"], "invalid duration '2 weeks'"),
            (["--sink", SINK, "--older-than", "800000d"], "--older-than is too long"),
            (["--sink", SINK, "--older-than", "9" * 400], "--older-than is too long"),
        ):
            code, out, err = await purge(*args)
            assert (code, out) == (2, ""), err
            *usage, line = err.strip().splitlines()  # argparse's own errors show the usage
            assert problem in line
            assert all(text.startswith(("usage:", " ")) for text in usage), err
    else:  # known only once the state is read
        code, out, err = await purge("--sink", "nope", "--all")
        assert (code, out) == (2, ""), err
        assert err.splitlines()[-1] == f"tcsms-poller: {NOT_CONFIGURED}", err
        assert "Traceback" not in err
    # No drainer delivers a removed sink's replay queue: replay refuses it, purge removes the
    # queue with the dead letters, and holds none back for it.
    code, out, err = await command("replay", "--sink", "gone")
    assert (code, out) == (2, ""), err
    assert err.splitlines()[-1] == "tcsms-poller: --sink 'gone' is not configured (sinks: webhook)"
    code, out, err = await purge("--sink", "gone", "--all", "--dry-run")
    assert (code, out) == (
        0,
        "would remove 1 dead letters of sink gone, would keep 0"
        " (0 of them selected but queued for replay)\n",
    ), err
    async with backend.open(clock) as store:
        assert ids(await store.dead_letters("gone").queued()) == ["e"]  # a dry run
    code, out, err = await purge("--sink", "gone", "--all")
    assert (code, out) == (
        0,
        "removed 1 dead letters of sink gone, kept 0 (0 of them selected but queued for replay)\n",
    ), err
    code, out, err = await purge("--sink", SINK, "--older-than", "1h", "--dry-run")
    assert (code, out) == (
        0,
        f"would remove 2 dead letters of sink {SINK}, would keep 2"
        " (1 of them selected but queued for replay)\n",
    ), err
    code, out, err = await purge("--sink", SINK, "--older-than", "1h")
    assert (code, out) == (
        0,
        f"removed 2 dead letters of sink {SINK}, kept 2"
        " (1 of them selected but queued for replay)\n",
    ), err
    async with backend.open(clock) as store:
        assert ids(await store.dead_letters(SINK).letters()) == ["c", "d"]
        assert (await store.snapshot())["dead_letters"] == {SINK: {"count": 2, "replays_queued": 1}}


# -- PostgreSQL: fenced by the sink's lease, shared by the cluster -------------------------------


async def test_an_instance_whose_lease_passed_on_writes_no_dead_letters(postgres_url: str) -> None:
    """A dead-letter write or a replay's finish fenced on a lost lease changes nothing."""
    store = await PostgresStore.open(postgres_url, dedupe_ttl=8 * 86_400.0)
    try:
        token = (await store.claim_leases("a", [LEASE], ttl=30.0))[LEASE]
        stale = Fence(LEASE, "a", token)
        dead = store.dead_letters(SINK)
        await dead.write(outbox("a"), reason="rejected", now=0.0, fence=stale)
        await dead.enqueue(await dead.letters())
        await store.release_leases("a", [LEASE])
        assert await store.claim_leases("b", [LEASE], ttl=30.0)
        with pytest.raises(LeaseLostError):
            await dead.write(outbox("b"), reason="rejected", now=0.0, fence=stale)
        with pytest.raises(LeaseLostError):
            await dead.finish(await dead.queued(), acknowledged=True, fence=stale)
        assert ids(await dead.letters()) == ["a"]
        assert ids(await dead.queued()) == ["a"]
        assert await dead.replayed_ids() == set()
    finally:
        await store.aclose()


async def test_the_cursor_moves_past_a_refused_batch_only_once_its_dead_letters_committed(
    postgres_url: str, postgres_server: PostgresServer
) -> None:
    """A database that refuses the dead-letter write keeps the batch in the outbox: the write
    is retried, and the cursor moves only after it committed."""
    database = postgres_url.rsplit("/", 1)[1]
    clock = FakeClock()
    store = await PostgresStore.open(postgres_url, dedupe_ttl=8 * 86_400.0, clock=clock)
    try:
        sink = ScriptedSink([REFUSED])
        drainer = await make_drainer(store, sink, clock)
        await store.commit([record("a")])
        postgres_server.execute("REVOKE INSERT ON dead_letters FROM tcsms", database)
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                await tg.start(drainer.run)
                await wait_until(lambda: len(clock.sleeps) >= 3, what="retried writes")
                assert (await store.sink_cursor(SINK)).acked_seq == 0
                assert await store.dead_letters(SINK).letters() == []
                postgres_server.execute("GRANT INSERT ON dead_letters TO tcsms", database)
                drainer.drain_and_stop()
        assert ids(await store.dead_letters(SINK).letters()) == ["a"]
        assert (await store.sink_cursor(SINK)).acked_seq == 1
    finally:
        await store.aclose()


async def test_dead_letters_of_a_gone_instance_are_listed_and_replayed_from_another(
    tmp_path: Path, postgres_url: str
) -> None:
    """A dead-letters while it holds the sink, then dies with its state directory; on B,
    ``dead-letter list`` shows the batch and ``replay`` queues it (another process), and B's
    drainer, holding the sink now, delivers it without a SIGHUP, once."""
    clock = FakeClock()
    a_dir, b_dir = tmp_path / "a", tmp_path / "b"
    a_dir.mkdir()
    a = await PostgresStore.open(postgres_url, dedupe_ttl=8 * 86_400.0, clock=clock)
    try:
        token = (await a.claim_leases("a", [LEASE], ttl=1.0))[LEASE]
        await drain(
            a,
            ScriptedSink([REFUSED]),
            clock,
            commit=[record(i) for i in "abc"],
            fence=Fence(LEASE, "a", token),
        )
    finally:
        await a.aclose()
    assert not (a_dir / "dead-letter").exists()
    shutil.rmtree(a_dir)

    sinks = [{"type": "http", "name": SINK, "url": "http://127.0.0.1:9/"}]
    config = daemon_config("http://127.0.0.1:9", b_dir, sinks=sinks)
    config["state"]["url"] = postgres_url
    b_dir.mkdir()
    (b_dir / "config.yaml").write_text(yaml.safe_dump(config))

    async def cli(*args: str) -> str:
        done = await anyio.to_thread.run_sync(
            partial(run_cli, "dead-letter", *args, "-c", str(b_dir / "config.yaml"))
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    [listed] = [json.loads(line) for line in (await cli("list", "--json")).splitlines()]
    assert (listed["sink"], listed["records"], listed["replayed"], listed["queued"]) == (
        SINK,
        2,
        0,
        0,
    )
    assert listed["reason"] == "rejected: HTTP 400: bad"

    b = await PostgresStore.open(postgres_url, dedupe_ttl=8 * 86_400.0, clock=clock)
    try:
        claimed: dict[str, int] = {}
        with anyio.fail_after(30):
            while not claimed:  # A's lease expires a second after its last renewal
                claimed = await b.claim_leases("b", [LEASE], ttl=30.0)
                await anyio.sleep(0.1)
        sink = ScriptedSink()
        drainer = await make_drainer(b, sink, clock, fence=Fence(LEASE, "b", claimed[LEASE]))
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                await tg.start(drainer.run)
                replayed = await cli("replay", "--sink", SINK)
                assert replayed.startswith(f"queued 2 dead-lettered records for sink {SINK} (0 ")
                await sink.delivered.wait()
                replayed = await cli("replay", "--sink", SINK)
                assert replayed.startswith(f"queued 0 dead-lettered records for sink {SINK} (2 ")
                drainer.drain_and_stop()
        assert sink.received == [["a", "b"]]
        listing = await cli("list")
        assert f"  {SINK}  2 records  2 replayed  0 queued  rejected: HTTP 400: bad" in listing
    finally:
        await b.aclose()
