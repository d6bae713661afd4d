"""The drainer: in order, in batches, retries with backoff, dead letters, health, shutdown."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import anyio
import pytest

from tcsms_poller.health import HealthBoard
from tcsms_poller.metrics import Metrics
from tcsms_poller.sinks.base import (
    Ack,
    OutboxRecord,
    RejectedBatchError,
    RetryableSinkError,
    SinkSettings,
)
from tcsms_poller.sinks.deadletter import DeadLetterFile, DeadLetterFiles, read_dead_letters
from tcsms_poller.sinks.drainer import Drainer, LeaseExpiredHereError
from tcsms_poller.state.store import SqliteStore
from tests.support.records import FakeClock, record


class ScriptedSink:
    """A sink whose outcomes follow a script: None acks, an exception is raised."""

    def __init__(self, script: Sequence[Exception | None] = ()) -> None:
        self.script = list(script)
        self.received: list[list[str]] = []
        self.opened = self.closed = False
        self.delivered = anyio.Event()

    async def open(self) -> None:
        self.opened = True

    async def send(self, batch: Sequence[OutboxRecord]) -> Ack:
        outcome = self.script.pop(0) if self.script else None
        if outcome is not None:
            raise outcome
        self.received.append([r.as_dict()["id"] for r in batch])
        self.delivered.set()
        return Ack(position={"batches": len(self.received)})

    async def reopen(self) -> None:
        pass

    async def aclose(self) -> None:
        self.closed = True


class Rig:
    """A store, a sink and its drainer on real files."""

    def __init__(
        self,
        store: SqliteStore,
        sink: ScriptedSink,
        drainer: Drainer,
        board: HealthBoard,
        dead: Path,
        clock: FakeClock,
    ) -> None:
        self.store, self.sink, self.drainer = store, sink, drainer
        self.board, self.dead, self.clock = board, dead, clock


async def make_rig(
    tmp_path: Path,
    sink: ScriptedSink,
    *,
    sleep: Callable[[float], Awaitable[None]] | None = None,
    holds: Callable[[], bool] = lambda: True,
    **settings: object,
) -> Rig:
    """Build a drainer for ``sink`` with a fake clock and (unless given) sleep."""
    clock = FakeClock()
    store = await SqliteStore.open(tmp_path / "state.db", dedupe_ttl=8 * 86400.0, clock=clock)
    config = SinkSettings.model_validate({"type": "scripted", "batch_size": 2, **settings})
    cursor = await store.sink_cursor(config.sink_name)
    board = HealthBoard(clock)
    dead = tmp_path / "dead" / "scripted.jsonl"
    drainer = Drainer(
        sink=sink,
        settings=config,
        store=store,
        dead_letters=DeadLetterFile(dead),
        health=board.register("sink:scripted", "sink"),
        metrics=Metrics(),
        acked_seq=cursor.acked_seq,
        clock=clock,
        sleep=sleep or clock.sleep,
        holds=holds,
    )
    return Rig(store, sink, drainer, board, dead, clock)


async def drain(
    rig: Rig, ids: Sequence[str], *, before_stop: Callable[[], None] | None = None
) -> None:
    """Commit ``ids``, run the drainer until it has emptied the outbox, then stop it."""
    await rig.store.commit([record(i) for i in ids])
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            await tg.start(rig.drainer.run)
            rig.drainer.drain_and_stop()
    assert rig.sink.closed


@pytest.mark.anyio
async def test_delivers_in_order_in_batches_and_commits_the_cursor(tmp_path: Path) -> None:
    """Records arrive in commit order, batch_size at a time; the cursor and position persist."""
    rig = await make_rig(tmp_path, ScriptedSink())
    await drain(rig, ["a", "b", "c", "d", "e"])
    assert rig.sink.received == [["a", "b"], ["c", "d"], ["e"]]
    cursor = await rig.store.sink_cursor("scripted")
    assert (cursor.acked_seq, cursor.position) == (5, {"batches": 3})
    assert rig.drainer.depth == 0


@pytest.mark.anyio
async def test_failures_retry_with_growing_capped_backoff(tmp_path: Path) -> None:
    """Transient failures are retried with jittered backoff, then the batch goes through."""
    failures: list[Exception | None] = [RetryableSinkError("down")] * 4 + [OSError("reset")]
    rig = await make_rig(tmp_path, ScriptedSink(failures), max_backoff="2s")
    await drain(rig, ["a"])
    assert rig.sink.received == [["a"]]
    assert len(rig.clock.sleeps) == 5
    assert all(0 <= s <= 2 for s in rig.clock.sleeps)


@pytest.mark.anyio
async def test_a_retry_is_not_sent_once_the_lease_expired_here(tmp_path: Path) -> None:
    """Cluster mode: the wait before a retry may outlast the sink's lease (held here until the
    first wait, in this test). The retry is not sent then: another instance may drain the sink
    already, from the cursor, and both would post the batch."""
    rig: Rig = await make_rig(
        tmp_path,
        ScriptedSink([RetryableSinkError("down")]),
        holds=lambda: not rig.clock.sleeps,
    )
    await rig.store.commit([record("a")])
    with anyio.fail_after(10), pytest.raises(LeaseExpiredHereError):
        await rig.drainer.run()
    assert len(rig.clock.sleeps) == 1  # one failed send, one wait
    assert rig.sink.received == []
    assert (await rig.store.sink_cursor("scripted")).acked_seq == 0


@pytest.mark.anyio
async def test_retry_after_is_honoured(tmp_path: Path) -> None:
    """A Retry-After from the downstream is a lower bound on the wait."""
    rig = await make_rig(tmp_path, ScriptedSink([RetryableSinkError("429", retry_after=42)]))
    await drain(rig, ["a"])
    assert rig.clock.sleeps[0] >= 42


@pytest.mark.anyio
async def test_rejected_batches_go_to_the_dead_letter_file(tmp_path: Path) -> None:
    """A refused batch is written out with its reason and the cursor moves on."""
    rig = await make_rig(tmp_path, ScriptedSink([RejectedBatchError("HTTP 400: bad")]))
    await drain(rig, ["a", "b", "c"])
    lines = [json.loads(line) for line in rig.dead.read_text().splitlines()]
    assert [(e["sink"], e["reason"], e["record"]["id"]) for e in lines] == [
        ("scripted", "rejected: HTTP 400: bad", "a"),
        ("scripted", "rejected: HTTP 400: bad", "b"),
    ]
    assert rig.sink.received == [["c"]]
    assert (await rig.store.sink_cursor("scripted")).acked_seq == 3


@pytest.mark.anyio
async def test_retrying_past_max_retry_duration_dead_letters(tmp_path: Path) -> None:
    """A sink down longer than max_retry_duration loses nothing: the batch is dead-lettered."""
    rig = await make_rig(
        tmp_path,
        ScriptedSink([RetryableSinkError("down")] * 1000),
        max_retry_duration="1m",
        max_backoff="10s",
    )
    await drain(rig, ["a"])
    [entry] = [json.loads(line) for line in rig.dead.read_text().splitlines()]
    assert entry["reason"].startswith("gave up after 60s")
    assert sum(rig.clock.sleeps) == pytest.approx(60)


@pytest.mark.anyio
async def test_health_turns_bad_only_after_the_grace_period(tmp_path: Path) -> None:
    """Short hiccups keep the sink healthy; long retrying makes it unhealthy until success."""
    states: list[bool] = []
    rig = await make_rig(
        tmp_path,
        ScriptedSink([RetryableSinkError("down")] * 30),
        unhealthy_after="30s",
        max_backoff="5s",
    )
    original = rig.clock.sleep

    async def observing_sleep(seconds: float) -> None:
        states.append(rig.board.is_healthy)
        await original(seconds)

    rig.drainer._sleep = observing_sleep
    await drain(rig, ["a"])
    assert states[0] is True
    assert False in states
    assert rig.board.is_healthy


@pytest.mark.anyio
async def test_waits_for_commits_instead_of_polling(tmp_path: Path) -> None:
    """An idle drainer sleeps until a commit wakes it, and then delivers at once."""
    rig = await make_rig(tmp_path, ScriptedSink())
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            await tg.start(rig.drainer.run)
            await anyio.wait_all_tasks_blocked()
            assert rig.sink.received == []
            assert rig.clock.sleeps == []
            await rig.store.commit([record("a")])
            await rig.sink.delivered.wait()
            rig.drainer.drain_and_stop()
    assert rig.sink.received == [["a"]]


async def dead_letter_then_replay(
    tmp_path: Path, second: ScriptedSink, *, then: Sequence[str] = ("d",)
) -> tuple[Rig, list[str]]:
    """Dead-letter ``a``, ``b`` (then deliver ``c``), queue them for replay, and run a new
    drainer on ``second`` (as ``dead-letter replay`` then a restart would)."""
    first = await make_rig(tmp_path, ScriptedSink([RejectedBatchError("HTTP 400: bad")]))
    await drain(first, ["a", "b", "c"])
    await first.store.aclose()
    queued, skipped = DeadLetterFiles(first.dead).enqueue(list(read_dead_letters(first.dead)))
    assert (queued, skipped) == (2, 0)
    rig = await make_rig(tmp_path, second)
    await drain(rig, then)
    return rig, rig.dead.read_text().splitlines()


@pytest.mark.anyio
async def test_replayed_dead_letters_go_first_and_are_not_queued_twice(tmp_path: Path) -> None:
    """The replay queue is delivered before the outbox, remembered, and its position kept."""
    rig, dead_lines = await dead_letter_then_replay(tmp_path, ScriptedSink())
    assert rig.sink.received == [["a", "b"], ["d"]]
    replays = DeadLetterFiles(rig.dead)
    assert replays.acknowledged_ids() == {"a", "b"}
    assert not replays.queue_path.exists()
    assert len(dead_lines) == 2  # the dead-letter file is left as it was
    assert replays.enqueue(list(read_dead_letters(rig.dead))) == (0, 2)


@pytest.mark.anyio
async def test_a_replayed_batch_commits_the_sinks_position(tmp_path: Path) -> None:
    """The file sink's offset after a replayed batch is kept, though the cursor does not move."""
    second = ScriptedSink()
    second.received = [["earlier"]] * 6  # so that its position differs from the first sink's
    rig, _ = await dead_letter_then_replay(tmp_path, second, then=())
    cursor = await rig.store.sink_cursor("scripted")
    assert (cursor.acked_seq, cursor.position) == (3, {"batches": 7})


@pytest.mark.anyio
async def test_a_replay_refused_again_is_dead_lettered_again(tmp_path: Path) -> None:
    """Nothing is remembered as delivered; the records are in the dead-letter file once more."""
    rig, dead_lines = await dead_letter_then_replay(
        tmp_path, ScriptedSink([RejectedBatchError("HTTP 400: still bad")])
    )
    assert rig.sink.received == [["d"]]
    assert DeadLetterFiles(rig.dead).acknowledged_ids() == set()
    assert [json.loads(line)["reason"] for line in dead_lines[2:]] == [
        "rejected: HTTP 400: still bad"
    ] * 2


@pytest.mark.anyio
async def test_a_retryable_sink_error_is_reported_by_its_message_alone(tmp_path: Path) -> None:
    """Health reasons (shown by /healthz) name no class of ours."""
    rig = await make_rig(tmp_path, ScriptedSink([RetryableSinkError("HTTP 503")]))
    reasons: list[str | None] = []
    original = rig.clock.sleep

    async def observing_sleep(seconds: float) -> None:
        reasons.append(rig.board.describe()[0]["reason"])
        await original(seconds)

    rig.drainer._sleep = observing_sleep
    await drain(rig, ["a"])
    assert reasons == ["HTTP 503"]


class HeldSink(ScriptedSink):
    """A sink whose send waits until the test releases it."""

    def __init__(self) -> None:
        super().__init__()
        self.entered, self.release = anyio.Event(), anyio.Event()

    async def send(self, batch: Sequence[OutboxRecord]) -> Ack:
        self.entered.set()
        await self.release.wait()
        return await super().send(batch)


async def stop_during_a_send(rig: Rig, sink: HeldSink) -> bool:
    """Run the drainer, stop it while ``sink`` holds its first send, then let the send end;
    what stop() returned (it must not have returned before the send ended)."""
    stopped: list[bool] = []

    async def stop() -> None:
        stopped.append(await rig.drainer.stop(30))

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(rig.drainer.run)
            await sink.entered.wait()
            tg.start_soon(stop)
            await anyio.wait_all_tasks_blocked()
            assert stopped == []  # the send is in hand
            sink.release.set()
    [result] = stopped
    return result


@pytest.mark.anyio
async def test_stop_lets_the_batch_in_hand_be_acknowledged_first(tmp_path: Path) -> None:
    """A stop during a send waits for its ack to be committed: restarted, nothing comes twice."""
    sink = HeldSink()
    rig = await make_rig(tmp_path, sink)
    await rig.store.commit([record("a"), record("b"), record("c")])
    assert await stop_during_a_send(rig, sink)
    assert rig.sink.received == [["a", "b"]]  # not the next batch
    assert (await rig.store.sink_cursor("scripted")).acked_seq == 2
    assert rig.sink.closed


@pytest.mark.anyio
async def test_stop_abandons_the_wait_before_a_retry(tmp_path: Path) -> None:
    """A sink waiting to retry stops at once; the batch stays in the outbox."""
    rig = await make_rig(
        tmp_path, ScriptedSink([RetryableSinkError("down")]), sleep=lambda _: anyio.sleep(3600)
    )
    await rig.store.commit([record("a")])
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(rig.drainer.run)
            await anyio.wait_all_tasks_blocked()  # failed once, waiting for the retry
            assert await rig.drainer.stop(30)
    assert rig.sink.received == []
    assert (await rig.store.sink_cursor("scripted")).acked_seq == 0
    assert rig.sink.closed


@pytest.mark.anyio
async def test_stop_during_a_replay_leaves_the_rest_of_the_queue(tmp_path: Path) -> None:
    """A stop while a replayed batch is sent ends the replay after it: the rest stays queued."""
    sink = HeldSink()
    rig = await make_rig(tmp_path, sink)
    batch = [OutboxRecord(0, record(i).to_json()) for i in ("a", "b", "c")]
    await DeadLetterFile(rig.dead).write(batch, reason="rejected", now=0.0)
    letters = list(read_dead_letters(rig.dead))
    assert DeadLetterFiles(rig.dead).enqueue(letters) == (3, 0)
    assert await stop_during_a_send(rig, sink)
    assert rig.sink.received == [["a", "b"]]  # not the next replayed batch
    assert [r.as_dict()["id"] for r in DeadLetterFiles(rig.dead).queued()] == ["c"]
