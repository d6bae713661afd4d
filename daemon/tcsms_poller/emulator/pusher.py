"""Tencent-style push callbacks of new receipts and replies.

Receipts go out as JSON arrays of at most 100 (exactly ``SendStatusCallback.txt``'s fields,
Beijing-time strings; a SessionContext is not among them), batched for up to ``interval``
seconds after the first one waiting; each reply goes out alone as one object (``extend``,
``mobile``, ``nationcode``, ``sign``, ``text``, ``time``). A push counts as delivered only when
answered 2xx with ``{"result": 0}``; otherwise it is retried ``retries`` times (Tencent retries
twice) and then given up. Pushing never removes anything: a pushed receipt is still there to
pull, so a client's dedupe gets exercised.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import anyio
import httpx
import structlog

from tcsms_poller.emulator.options import PushOptions
from tcsms_poller.emulator.outcomes import outcome_of
from tcsms_poller.emulator.store import PlaceholderRecord, ReplyRecord, SendStatusRecord
from tcsms_poller.tencent.api import BEIJING
from tcsms_poller.tencent.push import MAX_STATUS_BATCH

__all__ = ["PushStats", "Pusher", "reply_payload", "status_payload"]

log = structlog.get_logger("tcsms_poller.emulator")


def status_payload(record: SendStatusRecord) -> dict[str, Any]:
    """One receipt as Tencent pushes it: the documented fields only (no SessionContext).

    A placeholder, before the carrier reported, has its time and texts empty.
    """
    final = not record.is_placeholder
    moment = datetime.fromtimestamp(record.user_receive_time, BEIJING)
    item = {
        "user_receive_time": moment.strftime("%Y-%m-%d %H:%M:%S") if final else "",
        "nationcode": record.country_code,
        "mobile": record.subscriber_number,
        "report_status": record.report_status,
        "errmsg": record.description,
        "description": outcome_of(record.report_status, record.description).text if final else "",
        "sid": record.serial_no,
    }
    if isinstance(record, PlaceholderRecord):
        record.show_status(item, "report_status")
    return item


def reply_payload(record: ReplyRecord) -> dict[str, Any]:
    """One reply as Tencent pushes it."""
    return {
        "extend": record.extend_code,
        "mobile": record.subscriber_number,
        "nationcode": record.country_code,
        "sign": record.sign_name,
        "text": record.reply_content,
        "time": record.reply_time,
    }


@dataclass(slots=True)
class PushStats:
    """Counters of one kind of push."""

    pushes: int = 0  # bodies to push (a batch of receipts or one reply)
    items: int = 0
    attempts: int = 0
    delivered: int = 0
    given_up: int = 0


class Pusher:
    """Queues new records and pushes them from ``run``; ``offer_*`` never block."""

    def __init__(self, options: PushOptions) -> None:
        self._options = options
        self._status_in, self._status_out = anyio.create_memory_object_stream[SendStatusRecord](
            math.inf
        )
        self._reply_in, self._reply_out = anyio.create_memory_object_stream[ReplyRecord](math.inf)
        self.status_stats = PushStats()
        self.reply_stats = PushStats()

    def offer_status(self, record: SendStatusRecord) -> None:
        """Push this receipt soon, if a status URL is configured."""
        if self._options.status_url:
            self._status_in.send_nowait(record)

    def offer_reply(self, record: ReplyRecord) -> None:
        """Push this reply soon, if a reply URL is configured."""
        if self._options.reply_url:
            self._reply_in.send_nowait(record)

    def snapshot(self) -> dict[str, Any]:
        """The counters, JSON-ready."""
        return {"status": asdict(self.status_stats), "reply": asdict(self.reply_stats)}

    async def run(self) -> None:
        """Push until cancelled."""
        options = self._options
        with self._status_in, self._status_out, self._reply_in, self._reply_out:
            async with (
                httpx.AsyncClient(timeout=options.timeout) as http,
                anyio.create_task_group() as tg,
            ):
                if options.status_url:
                    tg.start_soon(self._push_statuses, http, options.status_url)
                if options.reply_url:
                    tg.start_soon(self._push_replies, http, options.reply_url)

    async def _push_statuses(self, http: httpx.AsyncClient, url: str) -> None:
        while True:
            batch = [await self._status_out.receive()]
            with anyio.move_on_after(self._options.interval):
                while len(batch) < MAX_STATUS_BATCH:
                    batch.append(await self._status_out.receive())
            body = [status_payload(record) for record in batch]
            await self._deliver(http, url, body, len(batch), self.status_stats)

    async def _push_replies(self, http: httpx.AsyncClient, url: str) -> None:
        async for record in self._reply_out:
            await self._deliver(http, url, reply_payload(record), 1, self.reply_stats)

    async def _deliver(
        self, http: httpx.AsyncClient, url: str, body: Any, items: int, stats: PushStats
    ) -> None:
        stats.pushes += 1
        stats.items += items
        for attempt in range(1 + self._options.retries):
            if attempt:
                await anyio.sleep(self._options.retry_delay)
            stats.attempts += 1
            try:
                response = await http.post(url, json=body)
                if response.is_success and _acknowledged(response):
                    stats.delivered += 1
                    return
                reason = f"HTTP {response.status_code}, not acknowledged with result 0"
            except httpx.HTTPError as error:
                reason = f"{type(error).__name__}: {error}"
            log.warning("emulator.push_failed", url=url, attempt=attempt + 1, reason=reason)
        stats.given_up += 1


def _acknowledged(response: httpx.Response) -> bool:
    """Whether the receiver answered Tencent's ``{"result": 0, ...}``."""
    try:
        answer = response.json()
    except ValueError:
        return False
    return isinstance(answer, dict) and answer.get("result") == 0
