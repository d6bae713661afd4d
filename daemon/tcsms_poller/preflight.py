"""``check-config --connect``: does a valid configuration also work? Asked without side effects.

Per app, one signed ``CallbackStatusStatistics`` call for the past hour (read-only: it consumes no
queue record, unlike the two queue pulls, and costs one request of its limit): it proves the
endpoint answers, the credentials sign, the account may read the app, and, from the answer's
``Date`` header, how far this machine's clock is from the server's (Tencent refuses requests more
than 5 minutes off). No retry: one request, one verdict.

Per sink: the HTTP sink's URL must answer a ``HEAD`` (with the configured headers; any status
but 502, 503 and 504 counts, since many webhooks refuse ``HEAD`` itself); a file sink's
directory (or the nearest existing parent it would create the rest under) must take a new file;
the state's directory likewise. A third-party sink is named as not probed.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path

import anyio
import httpx

from tcsms_poller.backoff import Backoff
from tcsms_poller.config import Config
from tcsms_poller.metrics import Metrics
from tcsms_poller.sinks.base import SinkSettings
from tcsms_poller.sinks.file import FileSettings
from tcsms_poller.sinks.http import HttpSettings, redact_url
from tcsms_poller.sinks.stdout import StdoutSettings
from tcsms_poller.tencent.api import Action
from tcsms_poller.tencent.client import Credentials, RetryPolicy, TencentClient
from tcsms_poller.tencent.errors import (
    AuthError,
    ClockSkewError,
    RequestError,
    TencentError,
    TransportError,
)
from tcsms_poller.tencent.ratelimit import RateLimiters
from tcsms_poller.workers.statistics import hours_back

__all__ = ["Verdict", "preflight"]

ACTION = Action.CALLBACK_STATUS_STATISTICS
SKEW_WARNING = 30.0  # seconds; Tencent refuses at 300
# What says nothing is behind the URL; any other status (405, 501 to HEAD) is an answer.
_UNAVAILABLE = frozenset({502, 503, 504})
_ONE_ATTEMPT = RetryPolicy(max_attempts=1, backoff=Backoff(initial=0.2, maximum=0.2))


@dataclass(frozen=True, slots=True)
class Verdict:
    """What one probe found: ``target`` (``app 1400006666``, ``sink http``), ok or not, why."""

    target: str
    ok: bool
    detail: str

    def line(self) -> str:
        """``app 1400006666: ok: ...`` or ``sink http: FAILED: ...``."""
        return f"{self.target}: {'ok' if self.ok else 'FAILED'}: {self.detail}"


async def preflight(config: Config, *, clock: Callable[[], float] = time.time) -> list[Verdict]:
    """Every probe of ``config``, apps first, in configuration order."""
    verdicts = [await _probe_app(config, app.sms_sdk_app_id, clock) for app in config.apps]
    verdicts.append(await _probe_directory("state", config.state.path.parent))
    verdicts.extend([await _probe_sink(sink) for sink in config.sinks])
    return verdicts


async def _probe_app(config: Config, app_id: str, clock: Callable[[], float]) -> Verdict:
    tencent = config.tencent
    dates: list[str] = []

    async def keep_date(response: httpx.Response) -> None:
        dates.append(response.headers.get("date", ""))

    target = f"app {app_id}"
    hour = hours_back(clock(), 3600)[-1]
    begin, end = (moment.strftime("%Y%m%d%H") for moment in (hour - timedelta(hours=1), hour))
    async with httpx.AsyncClient(
        timeout=httpx.Timeout(tencent.timeout), event_hooks={"response": [keep_date]}
    ) as http:
        client = TencentClient(
            endpoint=tencent.endpoint,
            region=tencent.region,
            credentials=Credentials(
                tencent.secret_id.reveal(), tencent.secret_key.reveal(), tencent.token.reveal()
            ),
            limiters=RateLimiters(tencent.rate_limits.model_dump()),
            metrics=Metrics(),
            timeout=tencent.timeout,
            retry=_ONE_ATTEMPT,
            http=http,
            clock=clock,
        )
        started = anyio.current_time()
        try:
            await client.callback_status_statistics(app_id, begin_hour=begin, end_hour=end)
        except ClockSkewError as error:
            return Verdict(target, False, f"clock skew: {error.describe()}{_skew(dates, clock)}")
        except AuthError as error:
            return Verdict(target, False, f"authentication failed: {error.describe()}")
        except TransportError as error:
            return Verdict(target, False, f"unreachable: {tencent.endpoint}: {error.message}")
        except RequestError as error:
            return Verdict(
                target, False, f"authenticated, but the request was refused: {error.describe()}"
            )
        except TencentError as error:
            return Verdict(target, False, f"no usable answer: {error.describe()}")
        took = anyio.current_time() - started
    skew = _skew(dates, clock)
    return Verdict(
        target,
        True,
        f"authenticated and authorized at {tencent.endpoint}, answered in {took * 1000:.0f}ms"
        f"{skew}",
    )


def _skew(dates: list[str], clock: Callable[[], float]) -> str:
    """``, clock N s off the server's`` from the last answer's ``Date``, if it had one."""
    try:
        server = parsedate_to_datetime(dates[-1]).timestamp()
    except (IndexError, TypeError, ValueError):
        return ", clock not compared (no Date header)"
    offset = clock() - server
    if abs(offset) < 2:  # Date has whole seconds, and the answer took some time
        return ", clock in step with the server's"
    words = "ahead of" if offset > 0 else "behind"
    warning = " (more than 30s: check NTP)" if abs(offset) > SKEW_WARNING else ""
    return f", clock {abs(offset):.0f}s {words} the server's{warning}"


async def _probe_sink(sink: SinkSettings) -> Verdict:
    target = f"sink {sink.sink_name}"
    if isinstance(sink, StdoutSettings):
        return Verdict(target, True, "stdout, nothing to probe")
    if isinstance(sink, FileSettings):
        verdict = await _probe_directory(target, sink.path.parent)
        if verdict.ok and sink.path.exists() and not os.access(sink.path, os.W_OK):
            return Verdict(target, False, f"{sink.path} exists and is not writable")
        return verdict
    if isinstance(sink, HttpSettings):
        return await _probe_url(target, sink)
    return Verdict(target, True, f"type {getattr(sink, 'type', '?')!r} is not probed")


async def _probe_directory(target: str, directory: Path) -> Verdict:
    """Whether a new file can be made in ``directory``, or in its nearest existing parent."""
    existing = directory
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent

    def try_a_file() -> None:
        with tempfile.TemporaryFile(dir=existing, prefix=".tcsms-poller-probe-"):
            pass

    try:
        await anyio.to_thread.run_sync(try_a_file)
    except OSError as error:
        return Verdict(target, False, f"cannot create a file in {existing}: {error.strerror}")
    created = "" if existing == directory else f" ({directory} will be created)"
    return Verdict(target, True, f"{existing} is writable{created}")


async def _probe_url(target: str, sink: HttpSettings) -> Verdict:
    headers = {name: value.reveal() for name, value in sink.headers.items()}
    url = redact_url(str(sink.url), path=sink.secret_path)  # as check-config prints it
    try:
        async with httpx.AsyncClient(timeout=sink.timeout) as http:
            response = await http.head(str(sink.url), headers=headers)
    except httpx.HTTPError as error:
        reason = " ".join((str(error) or type(error).__name__).split())
        return Verdict(target, False, f"{url} does not answer: {reason}")
    if response.status_code in _UNAVAILABLE:
        return Verdict(target, False, f"{url} answers HEAD with HTTP {response.status_code}")
    return Verdict(target, True, f"{url} answers (HTTP {response.status_code} to HEAD)")
