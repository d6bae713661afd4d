"""The Tencent SMS API client: one pooled HTTP client, per-action limits, typed answers, retries.

Every call takes a slot from its action's process-wide limiter before each attempt (retries
included), is signed at send time, and is parsed defensively: whatever the server answers becomes
either a typed result or a ``TencentError`` (see ``errors.py``), never an unexpected exception.

Queue actions hand each record out once, so an answer lost after the request was sent (a read
timeout, a broken or truncated body) loses the records in it for good: no retry brings them back.
They get a longer timeout (``queue_timeout``, 60 s like the official SDK's default) than the other
actions, and each such loss is counted (``queue_answers_lost``) and logged as a warning.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio
import httpx
import orjson
import structlog

from tcsms_poller.backoff import Backoff
from tcsms_poller.metrics import Metrics
from tcsms_poller.tencent import API_VERSION, SERVICE
from tcsms_poller.tencent.api import PAGE_LIMIT, QUEUE_ACTIONS, Action
from tcsms_poller.tencent.errors import (
    MalformedResponseError,
    RateLimitedError,
    TencentError,
    TransientError,
    TransportError,
    error_from_code,
)
from tcsms_poller.tencent.models import (
    CallbackStatistics,
    ConversionStatus,
    Page,
    ReplyStatus,
    SendStatus,
    parse_conversion,
    parse_replies,
    parse_send_statuses,
    parse_statistics,
)
from tcsms_poller.tencent.ratelimit import RateLimiters, Slot, SlotLapsedError
from tcsms_poller.tencent.signing import TC3Auth

__all__ = ["Credentials", "RetryPolicy", "TencentClient"]

T = TypeVar("T")

log = structlog.get_logger("tcsms_poller.tencent")


def _as_is(answer: Mapping[str, Any]) -> Mapping[str, Any]:
    return answer


@dataclass(frozen=True, slots=True)
class Credentials:
    """What signs a request; ``repr`` never shows the key or token."""

    secret_id: str
    secret_key: str = field(repr=False)
    token: str = field(default="", repr=False)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How many attempts a transient failure gets, and how long to wait between them."""

    max_attempts: int = 5
    backoff: Backoff = field(default_factory=lambda: Backoff(initial=0.2, maximum=20.0))


class TencentClient:
    """Typed async access to the six SMS actions the daemon uses."""

    def __init__(
        self,
        *,
        endpoint: str,
        region: str,
        credentials: Credentials,
        limiters: RateLimiters,
        metrics: Metrics,
        timeout: float = 10.0,
        queue_timeout: float = 60.0,
        retry: RetryPolicy = RetryPolicy(),
        http: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.time,
        signed_headers: tuple[str, ...] = ("content-type", "host"),
    ) -> None:
        self._url = endpoint.rstrip("/") + "/"
        self._region = region
        self._limiters = limiters
        self._metrics = metrics
        self._retry = retry
        self._queue_timeout = httpx.Timeout(queue_timeout)
        self._owns_http = http is None
        self._http = http or httpx.AsyncClient(
            timeout=httpx.Timeout(timeout),
            limits=httpx.Limits(max_connections=200, max_keepalive_connections=100),
        )
        self._auth = TC3Auth(
            secret_id=credentials.secret_id,
            secret_key=credentials.secret_key,
            token=credentials.token,
            service=SERVICE,
            signed_headers=signed_headers,
            clock=clock,
        )

    @property
    def limiters(self) -> RateLimiters:
        """The process's per-action limiters."""
        return self._limiters

    def rate_limit(self, action: str) -> int:
        """Requests per second allowed for ``action`` on the account."""
        return self._limiters.for_action(action).limit

    def current_rate(self, action: str) -> int:
        """Requests per second this process may send of ``action`` now: the limit, or its share
        in a cluster (sizes concurrent work to what can be sent)."""
        return self._limiters.for_action(action).rate

    async def aclose(self) -> None:
        """Close the HTTP pool if this client created it."""
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> TencentClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # -- the six actions ---------------------------------------------------------------------

    async def pull_sms_reply_status(
        self, app_id: str, *, limit: int = PAGE_LIMIT
    ) -> Page[ReplyStatus]:
        """Queue mode: replies not handed out before; each is handed out once only."""
        return await self.call(
            Action.PULL_SMS_REPLY_STATUS, {"SmsSdkAppId": app_id, "Limit": limit}, parse_replies
        )

    async def pull_sms_send_status(
        self, app_id: str, *, limit: int = PAGE_LIMIT
    ) -> Page[SendStatus]:
        """Queue mode: receipts not handed out before; each is handed out once only."""
        return await self.call(
            Action.PULL_SMS_SEND_STATUS,
            {"SmsSdkAppId": app_id, "Limit": limit},
            parse_send_statuses,
        )

    async def pull_sms_send_status_by_phone_number(
        self,
        app_id: str,
        phone_number: str,
        *,
        begin: int,
        end: int | None = None,
        limit: int = PAGE_LIMIT,
    ) -> Page[SendStatus]:
        """Up to ``limit`` receipts of one number in ``[begin, end]``.

        Which time the window reads (send or receive) and the order are undocumented: see
        ``workers/windows.py``.
        """
        params = _window_params(app_id, phone_number, begin, end, limit)
        return await self.call(
            Action.PULL_SMS_SEND_STATUS_BY_PHONE_NUMBER, params, parse_send_statuses
        )

    async def pull_sms_reply_status_by_phone_number(
        self,
        app_id: str,
        phone_number: str,
        *,
        begin: int,
        end: int | None = None,
        limit: int = PAGE_LIMIT,
    ) -> Page[ReplyStatus]:
        """Up to ``limit`` replies of one number with ``begin <= ReplyTime <= end``, in an
        undocumented order."""
        params = _window_params(app_id, phone_number, begin, end, limit)
        return await self.call(Action.PULL_SMS_REPLY_STATUS_BY_PHONE_NUMBER, params, parse_replies)

    async def callback_status_statistics(
        self, app_id: str, *, begin_hour: str, end_hour: str
    ) -> CallbackStatistics:
        """Receipt counters from ``begin_hour`` to ``end_hour`` (``yyyymmddhh``, Beijing time)."""
        params = {
            "SmsSdkAppId": app_id,
            "BeginTime": begin_hour,
            "EndTime": end_hour,
            "Limit": 0,
            "Offset": 0,
        }
        return await self.call(Action.CALLBACK_STATUS_STATISTICS, params, parse_statistics)

    async def report_conversion(
        self, app_id: str, serial_no: str, *, conversion_time: int | None = None
    ) -> ConversionStatus:
        """Tell Tencent the message ``serial_no`` converted (e.g. its code was used)."""
        params: dict[str, Any] = {"SmsSdkAppId": app_id, "SerialNo": serial_no}
        if conversion_time is not None:
            params["ConversionTime"] = conversion_time
        return await self.call(Action.REPORT_CONVERSION, params, parse_conversion)

    # -- the generic call ----------------------------------------------------------------------

    async def call(
        self,
        action: Action,
        params: Mapping[str, Any],
        parse: Callable[[Mapping[str, Any]], T] = _as_is,  # type: ignore[assignment]
    ) -> T:
        """Call ``action`` and ``parse`` its ``Response``, retrying transient failures.

        Parsing is part of the attempt, so an answer that is well-formed JSON but of the wrong
        shape is retried like any other malformed answer.
        """
        attempt = 0
        while True:
            try:
                return await self._attempt(action, params, parse)
            except SlotLapsedError as lapse:  # nothing was written: not an attempt, no backoff
                log.info("tencent.request_held", action=action, reason=str(lapse))
            except TransientError as error:
                attempt += 1
                if attempt >= self._retry.max_attempts:
                    raise
                delay = self._retry.backoff.delay(attempt - 1)
                if isinstance(error, RateLimitedError):
                    # Others share the account's limit: slow every caller of this action down.
                    self._limiters.for_action(action).pause(delay)
                self._metrics.retries.labels(action).inc()
                log.warning(
                    "tencent.retry_scheduled",
                    action=action,
                    **error.log_fields,
                    attempt=attempt,
                    delay_s=round(delay, 3),
                    error=error.message,
                )
                await anyio.sleep(delay)

    async def _attempt(
        self, action: Action, params: Mapping[str, Any], parse: Callable[[Mapping[str, Any]], T]
    ) -> T:
        slot = await self._limiters.for_action(action).slot()
        self._metrics.limiter_wait_seconds.labels(action).inc(slot.waited)
        started = anyio.current_time()
        try:
            answer = await self._send(action, params, slot)
            result = _parse_with_context(action, answer, parse)
        except TencentError as error:
            self._metrics.requests.labels(action, error.code).inc()
            log.debug(
                "tencent.request_failed",
                action=action,
                **error.log_fields,
                sent_monotonic=_sent_monotonic(slot),
            )
            if error.answer_lost and action in QUEUE_ACTIONS:
                self._count_lost_answer(action, str(params.get("SmsSdkAppId", "")), error)
            raise
        finally:
            if not slot.refused:  # held back at the last moment: not a request
                self._metrics.request_seconds.labels(action).observe(anyio.current_time() - started)
        self._metrics.requests.labels(action, "ok").inc()
        if isinstance(result, Page) and result.pending:  # not receipts yet: see models.py
            self._metrics.receipts_pending.labels(action).inc(result.pending)
        log.debug(
            "tencent.request_completed",
            action=action,
            request_id=answer.get("RequestId"),
            duration_s=round(anyio.current_time() - started, 4),
            sent_monotonic=_sent_monotonic(slot),
        )
        return result

    def _count_lost_answer(self, action: Action, app_id: str, error: TencentError) -> None:
        """A queue answer failed after the request was sent: whatever it held is gone."""
        self._metrics.queue_answers_lost.labels(action, app_id).inc()
        log.warning(
            "tencent.queue_answer_lost",
            action=action,
            app_id=app_id,
            **error.log_fields,
            error=error.message,
            note="records Tencent handed out in this answer cannot be pulled again",
        )

    async def _send(
        self, action: Action, params: Mapping[str, Any], slot: Slot
    ) -> Mapping[str, Any]:
        body = json.dumps(params, separators=(",", ":")).encode("utf-8")
        headers = {
            "Content-Type": "application/json",
            "X-TC-Action": action,
            "X-TC-Version": API_VERSION,
            "X-TC-Region": self._region,
        }
        timeout = self._queue_timeout if action in QUEUE_ACTIONS else httpx.USE_CLIENT_DEFAULT

        async def trace(event: str, info: Mapping[str, Any]) -> None:
            # httpcore writes the headers, then the body, each right after its ``.started``
            # event with no await in between: the slot is checked the last moment before any
            # byte leaves, and again before the body (the loop may have run other tasks once
            # the headers were written). Raising here closes the connection. The request counts
            # from no earlier than when the body was seen written.
            if event.endswith(("send_request_headers.started", "send_request_body.started")):
                slot.leave()
            elif event.endswith("send_request_body.complete"):
                slot.sent()

        try:
            response = await self._http.post(
                self._url,
                content=body,
                headers=headers,
                auth=self._auth,
                timeout=timeout,
                extensions={"trace": trace},
            )
        except httpx.TimeoutException as error:
            raise TransportError(
                "Timeout",
                f"no answer in time ({type(error).__name__})",
                action=action,
                answer_lost=isinstance(error, httpx.ReadTimeout),
            ) from None
        except httpx.TransportError as error:
            raise TransportError(
                "TransportError",
                f"{type(error).__name__}: {error}",
                action=action,
                answer_lost=isinstance(error, _AFTER_SENDING),
            ) from None
        return _parse_answer(action, response)


# Failures while the answer was being read: the request had been sent whole.
_AFTER_SENDING = (httpx.ReadError, httpx.RemoteProtocolError)


def _sent_monotonic(slot: Slot) -> float | None:
    """When the request counts from (monotonic, ``CLOCK_MONOTONIC``, comparable with the
    server's arrival times on the same machine), or None when it never left."""
    return round(slot.at, 4) if slot.left else None


def _window_params(
    app_id: str, phone_number: str, begin: int, end: int | None, limit: int
) -> dict[str, Any]:
    params: dict[str, Any] = {
        "SmsSdkAppId": app_id,
        "PhoneNumber": phone_number,
        "BeginTime": begin,
        "Offset": 0,
        "Limit": limit,
    }
    if end is not None:
        params["EndTime"] = end
    return params


def _parse_with_context(
    action: str, answer: Mapping[str, Any], parse: Callable[[Mapping[str, Any]], T]
) -> T:
    """Parse a ``Response``; a shape error names the action and the request id."""
    try:
        return parse(answer)
    except MalformedResponseError as error:
        request_id = answer.get("RequestId")
        raise MalformedResponseError(
            error.code,
            error.message,
            action=action,
            request_id=request_id if isinstance(request_id, str) else "",
            answer_lost=True,
        ) from None


def _parse_answer(action: str, response: httpx.Response) -> Mapping[str, Any]:
    """Turn any HTTP answer into the ``Response`` object or a ``TencentError``.

    Every malformed answer counts as lost: something behind the endpoint received the request,
    and nothing here tells whether the action ran.
    """
    if response.status_code >= 500:
        raise MalformedResponseError(
            "HTTP" + str(response.status_code), "server error", action=action, answer_lost=True
        )
    if response.status_code != 200:
        raise MalformedResponseError(
            "HTTP" + str(response.status_code),
            "unexpected HTTP status",
            action=action,
            answer_lost=True,
        )
    try:
        document = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        raise MalformedResponseError(
            "MalformedResponse",
            f"answer is not JSON ({len(response.content)} bytes)",
            action=action,
            answer_lost=True,
        ) from None
    answer = document.get("Response") if isinstance(document, dict) else None
    if not isinstance(answer, dict):
        raise MalformedResponseError(
            "MalformedResponse", "answer has no Response object", action=action, answer_lost=True
        )
    request_id = answer.get("RequestId")
    request_id = request_id if isinstance(request_id, str) else ""
    error = answer.get("Error")
    if error is not None:
        if not isinstance(error, dict) or not isinstance(error.get("Code"), str):
            raise MalformedResponseError(
                "MalformedResponse",
                "Response.Error is malformed",
                action=action,
                request_id=request_id,
                answer_lost=True,
            )
        message = error.get("Message")
        raise error_from_code(
            error["Code"],
            message if isinstance(message, str) else "",
            action=action,
            request_id=request_id,
        )
    return answer
