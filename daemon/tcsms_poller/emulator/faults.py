"""Fault injection: per action, each rule with a probability, replaceable at runtime.

Faults strike after authentication and the rate limit. All but the ``lost_*`` kinds strike
**before** the action runs, so they never consume queue records: what a client did not receive is
still in the queue. The ``lost_*`` kinds strike **after** it, as a network or gateway failure on
the way back does: a queue action has handed its records out, and the client never gets them
(the emulator counts them in the stats' ``lost_items``).

=============== ==========================================================================
kind            what the client sees
=============== ==========================================================================
latency         the answer comes ``seconds`` late (default 0.5); then the action runs normally
timeout         the connection is held ``seconds`` (default 30, longer than a sane client
                timeout; cut short when the emulator stops), then ``InternalError.
                SendAndRecvFail``; the action does not run
http_error      HTTP ``status`` (default 503) with an HTML body
malformed       HTTP 200, ``application/json``, a body that is not JSON
truncated       HTTP 200, a well-framed body holding the first half of a JSON answer
internal_error  ``Response.Error`` with ``code`` or a random documented ``InternalError.*``
rate_limit      ``RequestLimitExceeded`` for this request and every request of the action
                for the next ``seconds`` (default 1): a burst, as when others share the account
lost_timeout    the action runs, then the answer is held ``seconds`` (default 90, longer than
                the daemon's queue timeout; cut short when the emulator stops) and sent late
lost_truncated  the action runs, then HTTP 200 with the first half of its real answer
=============== ==========================================================================

Rules are tried in order; every latency rule that strikes adds its delay, and the first other
rule that strikes decides the answer.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import anyio
from starlette.responses import Response

from tcsms_poller.emulator.answers import ApiError, json_answer, success_body
from tcsms_poller.emulator.options import Fault, FaultKind

__all__ = ["INTERNAL_ERRORS", "FaultInjector", "Strike"]

INTERNAL_ERRORS = (
    "InternalError.SendAndRecvFail",
    "InternalError.Timeout",
    "InternalError.OtherError",
    "InternalError.UnknownError",
)


@dataclass(frozen=True, slots=True)
class Strike:
    """What faults do to one request: a delay, then perhaps a fault instead of the action."""

    delay: float = 0.0
    fault: Fault | None = None


class FaultInjector:
    """Decides which faults strike each request and renders their answers."""

    def __init__(self, rules: Sequence[Fault], rng: random.Random) -> None:
        self.rules: tuple[Fault, ...] = tuple(rules)
        self._rng = rng
        self._burst_until: dict[str, float] = {}

    def replace(self, rules: Sequence[Fault]) -> None:
        """Use ``rules`` from now on; a burst in progress ends."""
        self.rules = tuple(rules)
        self._burst_until.clear()

    def strike(self, action: str, now: float) -> Strike:
        """Roll the rules for one request of ``action`` at monotonic time ``now``."""
        if self._burst_until.get(action, now) > now:
            return Strike(fault=Fault(action=action, kind=FaultKind.RATE_LIMIT))
        delay = 0.0
        for rule in self.rules:
            if rule.action not in ("*", action) or self._rng.random() >= rule.probability:
                continue
            if rule.kind is FaultKind.LATENCY:
                delay += rule.duration
                continue
            if rule.kind is FaultKind.RATE_LIMIT:
                self._burst_until[action] = now + rule.duration
            return Strike(delay, rule)
        return Strike(delay)

    def error_of(self, fault: Fault) -> ApiError | None:
        """The API error a fault answers with, if it answers with one."""
        if fault.kind is FaultKind.INTERNAL_ERROR:
            code = fault.code or self._rng.choice(INTERNAL_ERRORS)
            return ApiError(code, "An internal error occurred (injected fault).")
        if fault.kind is FaultKind.RATE_LIMIT:
            return ApiError(
                "RequestLimitExceeded", "The request frequency exceeded the limit (burst)."
            )
        if fault.kind is FaultKind.TIMEOUT:
            return ApiError(
                "InternalError.SendAndRecvFail", "The backend timed out (injected fault)."
            )
        return None

    async def hold(self, fault: Fault, closing: anyio.Event) -> None:
        """Hold the line for a timeout fault's ``seconds``, or until the emulator stops."""
        with anyio.move_on_after(fault.duration):
            await closing.wait()

    def broken_answer(
        self, fault: Fault, request_id: str, payload: Mapping[str, Any] | None = None
    ) -> Response:
        """The answer of a fault that is not an API error: a bad status or a bad body.

        ``payload`` is what the action answered, for the faults that strike after it.
        """
        if fault.kind is FaultKind.HTTP_ERROR:
            page = f"<html><body><h1>{fault.status} Server Error</h1></body></html>"
            return Response(page, status_code=fault.status, media_type="text/html")
        if fault.kind is FaultKind.MALFORMED:
            return json_answer(b"<html><body>upstream connect error</body></html>")
        if fault.kind is FaultKind.LOST_TIMEOUT:  # held already: the answer comes too late
            return json_answer(success_body(payload or {}, request_id))
        assert fault.kind in (FaultKind.TRUNCATED, FaultKind.LOST_TRUNCATED), fault.kind
        whole = json.dumps(success_body(payload or {}, request_id)).encode("utf-8")
        return json_answer(whole[: len(whole) // 2])
