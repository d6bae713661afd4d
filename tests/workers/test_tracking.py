"""Tracked messages: polled only while pending, resolved by any path, given up exactly once.

Real parts: the emulator over loopback under each reading of the per-number window, our
client, and each state backend (a SQLite file in a temp dir, a database of the session's
PostgreSQL server). The worker's clock is the test's, so schedules and the give-up are exact
without waiting.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tcsms_poller.cluster.claims import NumberClaimer
from tcsms_poller.config.model import TrackingSettings
from tcsms_poller.emulator import DEFAULT_APP_ID, EmulatorOptions, RunningEmulator, run_emulator
from tcsms_poller.emulator.store import SendStatusRecord
from tcsms_poller.records import format_received_at, send_status_record
from tcsms_poller.state.message_store import tracked_messages
from tcsms_poller.state.messages import NewMessage, Schedule, TrackedMessage
from tcsms_poller.state.roles import TrackedMessages
from tcsms_poller.tencent.models import SendStatus
from tcsms_poller.workers import WorkerContext
from tcsms_poller.workers.tracking import TrackingWorker, schedule_of
from tests.state.test_postgres import opened
from tests.support.backends import Backend
from tests.workers.support import Clock, committed, requests_of, worker_context

pytestmark = pytest.mark.anyio

NUMBER = "+8613711110001"
OTHER = "+8613711110002"
SETTINGS = TrackingSettings.model_validate(
    {"first_poll": "15s", "max_gap": "1h", "margin": "1m", "give_up_after": "72h"}
)


@pytest.fixture
def emulator(emulator_per_reading: RunningEmulator) -> RunningEmulator:
    """The emulator under each reading of the per-number window in turn."""
    return emulator_per_reading


@pytest.fixture
async def rig(
    tmp_path: Path, emulator: RunningEmulator, backend: Backend
) -> AsyncIterator[tuple[TrackingWorker, WorkerContext, Clock, TrackedMessages]]:
    """The tracking worker of the emulator's app, its state on each backend in turn."""
    clock = Clock()
    async with worker_context(tmp_path, emulator, clock=clock, backend=backend) as ctx:
        messages = tracked_messages(ctx.store, clock=clock)
        assert messages is not None
        worker = TrackingWorker(ctx, app_id=DEFAULT_APP_ID, settings=SETTINGS, messages=messages)
        yield worker, ctx, clock, messages


def receipt(
    serial: str, phone: str, sent: int, received: int, status: str = "SUCCESS"
) -> SendStatusRecord:
    return SendStatusRecord(
        app_id=DEFAULT_APP_ID,
        serial_no=serial,
        phone_number=phone,
        country_code="86",
        subscriber_number=phone.removeprefix("+86"),
        report_status=status,
        description="DELIVRD" if status == "SUCCESS" else "UNDELIV",
        user_receive_time=received,
        session_context=None,
        send_time=sent,
    )


async def track(store: TrackedMessages, *messages: tuple[str, str, int]) -> list[bool]:
    return await store.track(
        [NewMessage(DEFAULT_APP_ID, serial, phone, sent) for serial, phone, sent in messages],
        schedule=schedule_of(SETTINGS),
    )


async def state_of(store: TrackedMessages, serial: str) -> TrackedMessage:
    message = await store.get(serial)
    assert message is not None
    return message


async def test_a_message_resolves_at_its_first_poll_and_its_number_then_costs_nothing(
    rig: tuple[TrackingWorker, WorkerContext, Clock, TrackedMessages], emulator: RunningEmulator
) -> None:
    """One request per receipt: polled at sent_at + first_poll, resolved, then never again."""
    worker, ctx, clock, store = rig
    sent = int(clock.now)
    assert await track(store, ("s-1", NUMBER, sent), ("s-2", OTHER, sent)) == [True, True]
    assert await track(store, ("s-1", NUMBER, sent)) == [False]  # idempotent
    emulator.state.store.add_send_status(receipt("s-1", NUMBER, sent, sent + 3))
    emulator.state.store.add_send_status(receipt("s-2", OTHER, sent, sent + 4, "FAIL"))
    await worker.poll()
    assert requests_of(emulator) == 0  # not due before first_poll
    clock.now = sent + SETTINGS.first_poll
    await worker.poll()
    assert requests_of(emulator) == 2
    first, second = await state_of(store, "s-1"), await state_of(store, "s-2")
    assert (first.state, first.report_status, first.user_receive_time) == (
        "delivered",
        "SUCCESS",
        sent + 3,
    )
    assert (second.state, second.description) == ("failed", "UNDELIV")
    assert sorted(r["id"] for r in await committed(ctx)) == ["s-1", "s-2"]
    clock.now += 7 * 3600
    stats = await worker.poll()
    assert (stats.requests, requests_of(emulator)) == (0, 2)
    registry = ctx.metrics.registry
    assert (
        registry.get_sample_value("tcsms_poller_messages_resolved_total", {"outcome": "delivered"})
        == 1
    )
    assert (
        registry.get_sample_value("tcsms_poller_messages_resolved_total", {"outcome": "failed"})
        == 1
    )
    assert (
        registry.get_sample_value("tcsms_poller_messages_pending", {"app_id": DEFAULT_APP_ID}) == 0
    )
    assert (
        registry.get_sample_value(
            "tcsms_poller_receipt_latency_seconds_count", {"stage": "receipt"}
        )
        == 2
    )


async def test_a_pending_number_backs_off_doubling_and_resolves_late(
    rig: tuple[TrackingWorker, WorkerContext, Clock, TrackedMessages], emulator: RunningEmulator
) -> None:
    """No receipt yet: polled at +15 s, +30 s, +60 s ...; a receipt 100 s late is found at
    the +120 s poll, with the window reaching back to the send."""
    worker, _ctx, clock, store = rig
    sent = int(clock.now)
    await track(store, ("late", NUMBER, sent))
    polls = []
    for offset in (15, 30, 60):
        clock.now = sent + offset
        await worker.poll()
        polls.append(requests_of(emulator))
        clock.now = sent + offset + 1  # between scheduled polls nothing is due
        await worker.poll()
    assert polls == [1, 2, 3]
    assert requests_of(emulator) == 3
    assert (await state_of(store, "late")).state == "pending"
    emulator.state.store.add_send_status(receipt("late", NUMBER, sent, sent + 100))
    clock.now = sent + 120
    await worker.poll()
    assert (await state_of(store, "late")).state == "delivered"
    assert requests_of(emulator) == 4


async def test_a_receipt_by_another_path_resolves_the_message_without_a_request(
    rig: tuple[TrackingWorker, WorkerContext, Clock, TrackedMessages], emulator: RunningEmulator
) -> None:
    """A push or a queue pull commits the receipt: the message resolves in that commit."""
    worker, ctx, clock, store = rig
    sent = int(clock.now)
    await track(store, ("pushed", NUMBER, sent))
    status = SendStatus("pushed", NUMBER, "86", NUMBER[3:], "SUCCESS", "DELIVRD", sent + 2, None)
    record = send_status_record(
        DEFAULT_APP_ID, status, source="callback", received_at=format_received_at(clock.now)
    )
    result = await ctx.intake.commit([record], source="callback")
    assert [r.state for r in result.resolved] == ["delivered"]
    assert (await state_of(store, "pushed")).state == "delivered"
    clock.now = sent + 3600
    assert (await worker.poll()).requests == 0


async def test_a_message_tracked_after_its_receipt_resolves_when_the_poll_finds_it_again(
    rig: tuple[TrackingWorker, WorkerContext, Clock, TrackedMessages], emulator: RunningEmulator
) -> None:
    """The receipt was delivered before anyone tracked it: the repeat still resolves it."""
    worker, ctx, clock, store = rig
    sent = int(clock.now) - 30
    emulator.state.store.add_send_status(receipt("early", NUMBER, sent, sent + 2))
    status = SendStatus("early", NUMBER, "86", NUMBER[3:], "SUCCESS", "DELIVRD", sent + 2, None)
    record = send_status_record(
        DEFAULT_APP_ID, status, source="callback", received_at=format_received_at(clock.now)
    )
    await ctx.intake.commit([record], source="callback")
    await track(store, ("early", NUMBER, sent))
    stats = await worker.poll()  # first_poll already passed: due at once
    assert (stats.requests, stats.duplicates) == (1, 1)
    assert (await state_of(store, "early")).state == "delivered"
    assert [r["id"] for r in await committed(ctx)] == ["early"]  # delivered once


async def test_a_receipt_that_never_comes_yields_one_receipt_missing_record(
    rig: tuple[TrackingWorker, WorkerContext, Clock, TrackedMessages], emulator: RunningEmulator
) -> None:
    """After give_up_after: a receipt_missing record and the state missing, once."""
    worker, ctx, clock, store = rig
    sent = int(clock.now)
    await track(store, ("lost", NUMBER, sent), ("kept", OTHER, sent + 3600))
    clock.now = sent + SETTINGS.give_up_after - 1
    await worker.poll()
    assert (await state_of(store, "lost")).state == "pending"
    clock.now = sent + SETTINGS.give_up_after + 1
    await worker.poll()
    await worker.poll()
    lost = await state_of(store, "lost")
    assert (lost.state, lost.report_status) == ("missing", None)
    [record] = await committed(ctx)
    assert record == {
        "kind": "receipt_missing",
        "id": "missing:lost",
        "app_id": DEFAULT_APP_ID,
        "source": "tracking",
        "received_at": record["received_at"],
        "serial_no": "lost",
        "phone_number": NUMBER,
        "sent_at": sent,
    }
    assert (await state_of(store, "kept")).state == "pending"
    registry = ctx.metrics.registry
    assert (
        registry.get_sample_value("tcsms_poller_messages_resolved_total", {"outcome": "missing"})
        == 1
    )
    # A receipt that comes after all changes nothing: the message stays missing.
    emulator.state.store.add_send_status(receipt("lost", NUMBER, sent, int(clock.now)))
    status = SendStatus("lost", NUMBER, "86", NUMBER[3:], "SUCCESS", "DELIVRD", sent + 9, None)
    record_late = send_status_record(
        DEFAULT_APP_ID, status, source="callback", received_at=format_received_at(clock.now)
    )
    assert (await ctx.intake.commit([record_late], source="callback")).resolved == ()
    assert (await state_of(store, "lost")).state == "missing"


def test_the_schedule_doubles_from_the_first_poll_up_to_its_cap() -> None:
    schedule = Schedule(first_poll=15, max_gap=100)
    assert schedule.next_poll(1000, 1000) == 1015
    assert schedule.next_poll(1000, 1015) == 1030
    assert schedule.next_poll(1000, 1031) == 1060
    assert schedule.next_poll(1000, 1060) == 1120
    assert schedule.next_poll(1000, 1200) == 1240
    assert schedule.next_poll(1000, 1500) == 1600  # 1960 is more than max_gap away


async def test_resolved_messages_are_forgotten_after_the_dedupe_ttl(
    rig: tuple[TrackingWorker, WorkerContext, Clock, TrackedMessages], emulator: RunningEmulator
) -> None:
    """The purge drops a resolved message once ids of its age are forgotten, not a pending one."""
    _worker, ctx, clock, store = rig
    sent = int(clock.now)
    await track(store, ("done", NUMBER, sent), ("waiting", OTHER, sent))
    status = SendStatus("done", NUMBER, "86", NUMBER[3:], "SUCCESS", "DELIVRD", sent + 2, None)
    record = send_status_record(
        DEFAULT_APP_ID, status, source="callback", received_at=format_received_at(clock.now)
    )
    await ctx.intake.commit([record], source="callback")
    await ctx.store.purge([])
    assert await store.get("done") is not None
    clock.now += 86_400 + 1  # the rig's dedupe_ttl
    await ctx.store.purge([])
    assert await store.get("done") is None
    assert (await state_of(store, "waiting")).state == "pending"


async def test_the_worker_reports_its_own_health_beside_the_per_number_worker(
    tmp_path: Path, emulator: RunningEmulator, backend: Backend
) -> None:
    """``tracking:<app>`` joins the board; ``by_number:<app>`` stays the per-number worker's."""
    async with worker_context(tmp_path, emulator, backend=backend) as ctx:
        from tcsms_poller.workers import ByNumberWorker

        by_number = ByNumberWorker(
            ctx, app_id=DEFAULT_APP_ID, interval=60.0, lookback=3600.0, replies=False
        )
        messages = tracked_messages(ctx.store)
        assert messages is not None
        tracking = TrackingWorker(ctx, app_id=DEFAULT_APP_ID, settings=SETTINGS, messages=messages)
        by_number.health.failed("the per-number worker's own failure")
        assert tracking.name == f"tracking:{DEFAULT_APP_ID}"
        assert {h.name for h in ctx.board.unhealthy()} == {f"by_number:{DEFAULT_APP_ID}"}
        assert tracking.health.is_healthy


async def test_a_give_up_leaves_the_messages_of_a_number_another_instance_claims(
    tmp_path: Path, postgres_url: str
) -> None:
    """Cluster mode: the give-up claims the numbers of the expired messages first and gives up
    only those of the numbers it won; a number another instance is polling (its live claim)
    keeps its message pending until that claim ends, then it too gets its one receipt_missing.
    The give-up's claims are released when it is done."""
    backend = Backend("postgresql", postgres_url)
    clock = Clock()
    sent = int(clock.now)
    async with (
        run_emulator(EmulatorOptions(seed=7)) as emulator,
        opened(postgres_url) as cluster,
        worker_context(tmp_path, emulator, clock=clock, backend=backend) as ctx,
    ):
        ctx.claimer = NumberClaimer(cluster, "a", ttl=30.0)
        messages = tracked_messages(ctx.store, clock=clock)
        worker = TrackingWorker(ctx, app_id=DEFAULT_APP_ID, settings=SETTINGS, messages=messages)
        await track(messages, ("free", NUMBER, sent), ("busy", OTHER, sent))
        (polling,) = await cluster.claim_numbers(DEFAULT_APP_ID, [OTHER], holder="b", ttl=60.0)
        clock.now = sent + SETTINGS.give_up_after + 1
        await worker.poll()
        assert [(await state_of(messages, s)).state for s in ("free", "busy")] == [
            "missing",
            "pending",
        ]
        assert [r["id"] for r in await committed(ctx)] == ["missing:free"]
        assert (await cluster.cluster_snapshot())["number_claims"] == {"b": 1}
        await cluster.release_numbers([polling])
        await worker.poll()
        assert (await state_of(messages, "busy")).state == "missing"
        assert sorted(r["id"] for r in await committed(ctx)) == ["missing:busy", "missing:free"]
        assert ctx.claimer.held_count == 0
