"""systemd's notify protocol (``sd_notify(3)``), no dependency: a datagram to ``$NOTIFY_SOCKET``.

With ``Type=notify`` and ``WatchdogSec=`` (the shipped unit; ``notify-reload`` needs systemd 253,
newer than Debian 12's) the daemon tells systemd when it is ready, reloading and stopping, shows
a one-line status in ``systemctl status``, and proves with ``WATCHDOG=1`` that its event loop
still turns. Outside systemd (``$NOTIFY_SOCKET`` unset) every
call does nothing, so the daemon calls these unconditionally.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Awaitable, Callable, Mapping

import anyio

from tcsms_poller.logs import get_logger

__all__ = ["Notifier", "run_watchdog"]

_log = get_logger(__name__)


def _socket_address(value: str) -> str | None:
    """``/run/systemd/notify`` as is, ``@name`` as the abstract ``\\0name``; others unsupported."""
    if value.startswith("/"):
        return value
    if value.startswith("@") and len(value) > 1:
        return "\0" + value[1:]
    return None  # e.g. vsock:CID:PORT, which a service on the host is never given


def _watchdog_interval(environ: Mapping[str, str]) -> float | None:
    """Half of ``$WATCHDOG_USEC`` in seconds, when the watchdog is meant for this process."""
    pid = environ.get("WATCHDOG_PID")
    try:
        usec = int(environ.get("WATCHDOG_USEC", ""))
        if pid is not None and int(pid) != os.getpid():
            return None  # set for a parent we were forked from, not for us
    except ValueError:
        return None
    return usec / 2 / 1_000_000 if usec > 0 else None


def _one_line(value: object) -> str:
    return str(value).replace("\n", " ")


class Notifier:
    """Sends notify messages to systemd; never raises and never blocks, as a courtesy must not."""

    def __init__(self, address: str | None, *, watchdog_interval: float | None = None) -> None:
        """``address`` as the kernel takes it (a leading NUL for an abstract socket), or None."""
        self._address = address
        self._watchdog_interval = watchdog_interval
        self._failure_logged = False

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] = os.environ) -> Notifier:
        """The notifier systemd's environment asks for; a no-op one outside systemd."""
        value = environ.get("NOTIFY_SOCKET", "")
        address = _socket_address(value)
        if value and address is None:
            _log.debug("sdnotify.unsupported_socket", notify_socket=value)
        return cls(address, watchdog_interval=_watchdog_interval(environ))

    @property
    def enabled(self) -> bool:
        """Whether messages go anywhere."""
        return self._address is not None

    @property
    def watchdog_interval(self) -> float | None:
        """Seconds between ``WATCHDOG=1`` pings (half the timeout), or None without a watchdog."""
        return self._watchdog_interval

    @property
    def watchdog_timeout(self) -> float | None:
        """systemd's ``WatchdogSec``: how long it waits for a ping before it restarts us."""
        return None if self._watchdog_interval is None else 2 * self._watchdog_interval

    def send(self, message: str) -> bool:
        """Send one datagram of ``KEY=value`` lines; whether it left, never an exception."""
        if self._address is None:
            return False
        try:
            # A socket per message, as libsystemd does: nothing to close, nothing to leak.
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.setblocking(False)  # a stalled systemd must not stall the event loop
                sock.sendto(message.encode(errors="replace"), self._address)
        except OSError as error:
            if not self._failure_logged:  # once: a missing socket would fail every few seconds
                self._failure_logged = True
                _log.debug("sdnotify.send_failed", error=str(error), message=message)
            return False
        return True

    def notify(self, **fields: object) -> bool:
        """Send ``KEY=value`` fields (keys upper-cased); a newline in a value becomes a space,
        since it would start a field of its own."""
        return self.send("\n".join(f"{key.upper()}={_one_line(v)}" for key, v in fields.items()))

    def ready(self) -> bool:
        """Every worker and sink has started (also: a reload has finished)."""
        return self.send("READY=1")

    def reloading(self) -> bool:
        """A reload begins; systemd 253+ (``notify-reload``) wants the monotonic time with it."""
        now_usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.send(f"RELOADING=1\nMONOTONIC_USEC={now_usec}")

    def stopping(self) -> bool:
        """Shutdown has begun."""
        return self.send("STOPPING=1")

    def status(self, text: str) -> bool:
        """The one line ``systemctl status`` shows."""
        return self.notify(STATUS=text)

    def watchdog(self) -> bool:
        """The main loop is alive and healthy."""
        return self.send("WATCHDOG=1")


async def run_watchdog(
    notifier: Notifier,
    is_healthy: Callable[[], bool],
    *,
    sleep: Callable[[float], Awaitable[object]] = anyio.sleep,
) -> None:
    """Ping every ``watchdog_interval`` while ``is_healthy()``; return at once without a watchdog.

    The pings run on the event loop, so a blocked loop stops them by itself and systemd restarts
    us. No drift correction: each ping restarts systemd's timer, only the gap matters.
    """
    interval = notifier.watchdog_interval
    if interval is None:
        return
    while True:
        if is_healthy():
            notifier.watchdog()
        await sleep(interval)
