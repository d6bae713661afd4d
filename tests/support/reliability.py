"""What the reliability runs share: traffic, fault rules at runtime, health probes, webhooks.

The runs drive the real daemon (a subprocess, ``tests.support.daemon_process``) against the real
emulator over loopback. Two kinds of traffic serve them: ``live_traffic`` injects small seeded
batches through the emulator's control endpoint, so its truth lists exactly what was sent; the
chaos and outage runs need the emulator's own generator at high rates and must stop it to wait
for quiescence, so ``generated_traffic`` drives that ``TrafficGenerator`` from a task group of
their own, and ``posted_traffic`` drives it into an emulator in another process
(``tests.support.emulator_process``) through the control endpoint.
"""

from __future__ import annotations

import random
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

import anyio
import httpx
from anyio.abc import TaskStatus

from tcsms_poller.emulator import EmulatorOptions, RunningEmulator, TrafficOptions
from tcsms_poller.emulator.state import make_serial
from tcsms_poller.emulator.store import ReplyRecord, SendStatusRecord
from tcsms_poller.emulator.traffic import TrafficGenerator
from tests.support.emulator import Reachable
from tests.support.http_receiver import Received, Receiver, posted_ids

# The live traffic both chaos tests (one daemon, a cluster) run under: three numbers, steady sends
# and replies, receipts within two seconds.
CHAOS_NUMBERS = ("+8613711112222", "+8613722223333", "+8613733334444")
CHAOS_TRAFFIC = TrafficOptions(
    phone_numbers=CHAOS_NUMBERS,
    heavy_numbers=0,
    send_rate=15.0,
    reply_rate=10.0,
    receipt_delay_min=0.2,
    receipt_delay_max=2.0,
    backfill=20.0,
)

__all__ = [
    "CHAOS_NUMBERS",
    "CHAOS_TRAFFIC",
    "HealthProbe",
    "LiveTraffic",
    "PostedTraffic",
    "RunningTraffic",
    "Tally",
    "batch_ids",
    "generated_traffic",
    "listener",
    "live_traffic",
    "posted_traffic",
    "reason_of",
    "replayed_batches",
    "rss_kib",
]

TOKEN = "reliability-token-0123456789"
CALLBACK_SECRET = "reliability-callback-0123456789"
NUMBERS = ("+8613711112222", "+8613722223333", "+8613733334444", "+8615544445555")


def listener(port: int) -> dict[str, Any]:
    """The daemon's ``server`` settings: its listener (``/healthz``, ``/metrics``) on ``port``."""
    return {"listen": f"127.0.0.1:{port}", "token": TOKEN, "callback_secret": CALLBACK_SECRET}


class LiveTraffic:
    """Receipts and replies arriving in small seeded batches, the way real traffic trickles in.

    Injected through ``POST /_emulator/records`` (without pushes), so the emulator's truth lists
    exactly what was sent; ``batches`` counts what has arrived so far.
    """

    def __init__(self, emulator: RunningEmulator, *, seed: int, period: float) -> None:
        self._emulator = emulator
        self._rng = random.Random(f"live-traffic:{seed}")
        self._period = period
        self._replies = 0
        self.batches = 0

    async def inject_batch(self, client: httpx.AsyncClient) -> None:
        """One batch: a few receipts and perhaps a reply, spread over the numbers."""
        now = int(time.time())
        receipts = [
            {
                "phone_number": self._rng.choice(NUMBERS),
                "report_status": "SUCCESS" if self._rng.random() < 0.9 else "FAIL",
                "user_receive_time": now - self._rng.randrange(0, 30),
            }
            for _ in range(self._rng.randint(3, 12))
        ]
        replies = []
        for _ in range(self._rng.randint(0, 2)):
            self._replies += 1
            replies.append(
                {
                    "phone_number": self._rng.choice(NUMBERS),
                    "reply_content": f"live reply {self._replies}",
                    "reply_time": now,
                }
            )
        response = await client.post(
            f"{self._emulator.url}/_emulator/records",
            json={"send_statuses": receipts, "replies": replies, "push": False},
        )
        response.raise_for_status()
        self.batches += 1

    async def run(self, *, batches: int | None = None) -> None:
        """Inject a batch every ``period`` seconds (``batches`` of them, or until cancelled)."""
        async with httpx.AsyncClient() as client:
            while batches is None or self.batches < batches:
                await self.inject_batch(client)
                await anyio.sleep(self._period)  # pacing the traffic, not waiting on the daemon


@asynccontextmanager
async def live_traffic(
    emulator: RunningEmulator, *, seed: int, period: float = 0.1
) -> AsyncIterator[LiveTraffic]:
    """Traffic flows while the block runs and stops (between batches) when it is left."""
    traffic = LiveTraffic(emulator, seed=seed, period=period)
    async with anyio.create_task_group() as tg:
        tg.start_soon(traffic.run)
        try:
            yield traffic
        finally:
            tg.cancel_scope.cancel()


class HealthProbe:
    """``GET /healthz`` of a running daemon, polled until it answers what a test waits for."""

    def __init__(self, client: httpx.AsyncClient, port: int) -> None:
        self._client = client
        self.url = f"http://127.0.0.1:{port}/healthz"
        self.last: tuple[int, dict[str, Any]] | None = None

    async def get(self) -> tuple[int, dict[str, Any]]:
        """One probe: the status code and the JSON body."""
        response = await self._client.get(self.url)
        self.last = (response.status_code, dict(response.json()))
        return self.last

    async def wait_for(
        self,
        code: int,
        *,
        unhealthy: Sequence[str] = (),
        timeout: float = 60.0,  # noqa: ASYNC109 (polls another process, like e2e's wait_until)
    ) -> dict[str, Any]:
        """The body of the first answer with ``code`` whose ``unhealthy`` list has ``unhealthy``."""
        try:
            with anyio.fail_after(timeout):
                while True:
                    status, body = await self.get()
                    if status == code and set(unhealthy) <= set(body["unhealthy"]):
                        return body
                    await anyio.sleep(0.05)
        except TimeoutError:
            raise AssertionError(
                f"/healthz never answered {code} naming {list(unhealthy)} within {timeout}s; "
                f"last answer: {self.last}"
            ) from None


def reason_of(body: Mapping[str, Any], name: str) -> str:
    """The reason ``/healthz`` gives for the part ``name`` (empty if it has none)."""
    for part in body["parts"]:
        if part["name"] == name:
            return str(part["reason"] or "")
    raise AssertionError(f"/healthz names no part {name!r}: {body}")


# -- generated traffic, webhooks, memory: the chaos and outage runs ------------------------------


class RunningTraffic:
    """Traffic flowing into the emulator until ``stop()`` (or the end of its block)."""

    def __init__(self, generator: TrafficGenerator) -> None:
        self.generator = generator
        self._scope = anyio.CancelScope()

    async def run(self) -> None:
        with self._scope:
            await self.generator.run()

    def stop(self) -> None:
        """No record arrives after this returns (the generator's steps are synchronous)."""
        self._scope.cancel()


@asynccontextmanager
async def generated_traffic(
    emulator: RunningEmulator, options: TrafficOptions, *, seed: int
) -> AsyncIterator[RunningTraffic]:
    """Seeded live traffic into ``emulator`` (its history at once) until stopped or left."""
    generator = TrafficGenerator(
        options,
        app_ids=emulator.state.options.app_ids,
        sink=emulator.state,
        seed=seed,
        clock=time.time,
    )
    generator.backfill()
    traffic = RunningTraffic(generator)
    async with anyio.create_task_group() as tg:
        tg.start_soon(traffic.run)
        try:
            yield traffic
        finally:
            traffic.stop()


FLUSH_PERIOD = 0.1  # seconds between two posts of what the generator made meanwhile


class _Outbox:
    """A ``TrafficSink`` that keeps what the generator makes until it is posted to
    ``/_emulator/records`` (the receiving emulator then counts each receipt as sent)."""

    def __init__(self, seed: int) -> None:
        self._serials = random.Random(f"posted-serials:{seed}")
        self.send_statuses: list[dict[str, Any]] = []
        self.replies: list[dict[str, Any]] = []

    def make_serial(self) -> str:
        return make_serial(self._serials)

    def record_send(self, app_id: str, serial_no: str, sent_at: int) -> None:
        """Nothing to post: the receipt will carry its send time."""

    def add_send_status(self, record: SendStatusRecord, *, push: bool = True) -> None:
        self.send_statuses.append(_posted(record))

    def add_placeholder(
        self, receipt: SendStatusRecord, *, sent_at: int, push: bool = True
    ) -> object:
        raise AssertionError("posted traffic has no pending receipts (pending_share = 0)")

    def add_reply(self, record: ReplyRecord, *, push: bool = True) -> None:
        self.replies.append(_posted(record))

    def take(self) -> dict[str, Any] | None:
        """The body of the next ``POST /_emulator/records``; None if nothing is waiting."""
        if not self.send_statuses and not self.replies:
            return None
        body = {"send_statuses": self.send_statuses, "replies": self.replies, "push": False}
        self.send_statuses, self.replies = [], []
        return body


def _posted(record: SendStatusRecord | ReplyRecord) -> dict[str, Any]:
    """A record as ``POST /_emulator/records`` takes it (the emulator splits the number)."""
    fields = asdict(record)
    del fields["subscriber_number"]
    return fields


class PostedTraffic:
    """Traffic posted to an emulator in another process until ``await stop()``."""

    def __init__(self, generator: TrafficGenerator, outbox: _Outbox) -> None:
        self.generator = generator
        self._outbox = outbox
        self._running = RunningTraffic(generator)
        self._client = httpx.AsyncClient()
        self._url = ""
        self._stopped = anyio.Event()
        self._posting = anyio.Lock()

    async def post(self) -> None:
        """Post what the generator made since the last post (in order: one post at a time)."""
        async with self._posting:
            body = self._outbox.take()
            if body is not None:
                response = await self._client.post(self._url, json=body)
                response.raise_for_status()

    async def run(self, url: str, *, task_status: TaskStatus[None]) -> None:
        self._url = f"{url}/_emulator/records"
        async with self._client, anyio.create_task_group() as tg:
            await self.post()  # the history, before anything polls
            task_status.started()
            tg.start_soon(self._running.run)
            while not self._stopped.is_set():
                with anyio.move_on_after(FLUSH_PERIOD):
                    await self._stopped.wait()
                await self.post()
            tg.cancel_scope.cancel()

    async def stop(self) -> None:
        """No record arrives after this returns: the generator stops, the rest is posted."""
        self._running.stop()
        self._stopped.set()
        await self.post()


@asynccontextmanager
async def posted_traffic(
    emulator: Reachable, options: TrafficOptions, *, seed: int
) -> AsyncIterator[PostedTraffic]:
    """``generated_traffic`` for an emulator in another process (with the default apps): the
    same seeded records, posted to its ``/_emulator/records`` every ``FLUSH_PERIOD`` (its history
    before the block starts)."""
    outbox = _Outbox(seed)
    app_ids = EmulatorOptions().app_ids
    generator = TrafficGenerator(options, app_ids=app_ids, sink=outbox, seed=seed, clock=time.time)
    generator.backfill()
    traffic = PostedTraffic(generator, outbox)
    async with anyio.create_task_group() as tg:
        await tg.start(traffic.run, emulator.url)
        try:
            yield traffic
        finally:
            await traffic.stop()


class Tally:
    """The record ids a webhook accepted so far; each batch is parsed once, however often asked."""

    def __init__(self, receiver: Receiver) -> None:
        self.receiver = receiver
        self.ids: set[str] = set()
        self._counted = 0

    def update(self) -> set[str]:
        """Count the batches accepted since the last call; every id so far."""
        fresh = self.receiver.accepted[self._counted :]  # a copy: the server thread appends
        for request in fresh:
            self.ids.update(batch_ids(request))
        self._counted += len(fresh)
        return self.ids


def batch_ids(request: Received) -> list[str]:
    """The record ids of one ``{"records": [...]}`` batch the HTTP sink posted, in order."""
    return posted_ids([request.body])


def replayed_batches(
    segments: Sequence[Sequence[Received]],
    *,
    sender: Callable[[Received], str] = lambda request: "",
    refused: Mapping[str, Sequence[float]] | None = None,
) -> tuple[int, list[str]]:
    """How many batches a webhook got again as replays, and every repeat that is not one.

    A segment is what one daemon process posted, or what one life of the webhook accepted. The
    drainer sends one batch at a time and commits its cursor after the 2xx, so a kill (or a
    connection cut) can only cost the ack of the last batch before it; the first batch after it
    then starts with exactly those records, in the same order. Any other repeat is a bug.

    In a cluster the sink's lease can also pass on and come back with no batch of the other
    holder in between (it was killed or paused before it sent one): the ack of the batch in hand
    is then refused by the lease's fence, and the same sender, holding the lease again, drains
    from the shared cursor, so its segment goes on with a replay. ``refused`` names, per sender,
    when its log says an ack was refused that way (``sink.lease_lost``, "write refused"); a
    replay inside a segment counts only with such a refusal between the batch it repeats and
    itself.

    Each problem names the batch's records, its ``sender`` and arrival time, and where (segment,
    batch, sender, time) each repeated record was delivered before, so a failure can be traced
    in the daemons' logs.
    """
    seen: dict[str, tuple[int, int, Received]] = {}  # record id -> where it was first delivered
    previous: list[str] = []
    replays = 0
    problems: list[str] = []
    for number, segment in enumerate(segments):
        for position, request in enumerate(segment):
            ids = batch_ids(request)
            again = [record_id for record_id in ids if record_id in seen]
            if len(set(ids)) != len(ids):
                problems.append(f"segment {number}, batch {position} holds a record twice")
            if again:
                replay = ids[: len(previous)] == previous and set(again) == set(previous)
                if replay and (
                    position == 0
                    or _refused_between(segment[position - 1], request, sender, refused or {})
                ):
                    replays += 1
                else:
                    problems.append(
                        f"segment {number}, batch {position}: {len(again)} records again, "
                        "not a replay of the last batch before; "
                        + _repeat_detail(request, ids, again, seen, sender)
                    )
            for record_id in ids:
                seen.setdefault(record_id, (number, position, request))
            previous = ids
    return replays, problems


def _refused_between(
    before: Received,
    request: Received,
    sender: Callable[[Received], str],
    refused: Mapping[str, Sequence[float]],
) -> bool:
    """Whether the sender's ack was refused by the lease's fence between the two batches (it
    follows the 2xx to ``before``; log times are to the millisecond)."""
    return any(before.at - 0.001 <= at <= request.at for at in refused.get(sender(request), ()))


def _repeat_detail(
    request: Received,
    ids: Sequence[str],
    again: Sequence[str],
    seen: Mapping[str, tuple[int, int, Received]],
    sender: Callable[[Received], str],
) -> str:
    """The batch (its sender, arrival time, records) and where its repeats were delivered."""
    before = []
    for record_id in again:
        number, position, first = seen[record_id]
        before.append(
            f"{record_id} in segment {number}, batch {position} from {sender(first)!r} "
            f"at {first.at:.3f}"
        )
    return (
        f"the batch from {sender(request)!r} at {request.at:.3f} holds {list(ids)}; "
        f"delivered before: {before}"
    )


def rss_kib(pid: int) -> int:
    """Resident memory of process ``pid`` in KiB (``VmRSS`` of ``/proc/PID/status``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for process {pid}")
