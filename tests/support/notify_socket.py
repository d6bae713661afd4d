"""A datagram socket standing in for systemd's ``$NOTIFY_SOCKET``, bound by the test.

Usage, with the daemon (or any code using ``tcsms_poller.sdnotify``) in a subprocess::

    with notify_socket() as sock:
        process = subprocess.Popen([...], env={**os.environ, **sock.environ()})
        sock.wait_for("READY=1", timeout=30)

Waits block the calling thread (bounded by ``timeout``); from async tests call them through
``anyio.to_thread.run_sync``.
"""

from __future__ import annotations

import socket
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["NotifySocket", "SenderGoneError", "notify_socket"]

SENDER_CHECK = 0.25  # seconds between looks at whether the sender is still alive


class SenderGoneError(AssertionError):
    """The process that was to send the message exited without sending it."""


class NotifySocket:
    """The receiving end: every datagram it has read so far, in order, in ``messages``."""

    def __init__(self, sock: socket.socket, address: str) -> None:
        self.address = address  # the value of $NOTIFY_SOCKET: a path or "@name"
        self.messages: list[str] = []
        self._socket = sock

    def environ(self, **extra: str) -> dict[str, str]:
        """Environment variables that point a process at this socket."""
        return {"NOTIFY_SOCKET": self.address, **extra}

    def receive(self, timeout: float = 5.0) -> str:
        """The next datagram, waiting at most ``timeout`` seconds (then ``TimeoutError``)."""
        self._socket.settimeout(timeout)
        message = self._socket.recv(65536).decode()
        self.messages.append(message)
        return message

    def wait_for(
        self,
        line: str,
        timeout: float = 10.0,
        *,
        after: int = 0,
        gone: Callable[[], bool] = lambda: False,
    ) -> list[str]:
        """Receive until a datagram (from the ``after``-th on) has ``line`` among its lines.

        Returns every message read so far. ``gone`` says the sender has exited: then whatever it
        sent is read and, if ``line`` is not there, the wait fails at once, not at the timeout.
        """
        deadline = time.monotonic() + timeout
        while not any(line in message.split("\n") for message in self.messages[after:]):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no {line!r} within {timeout}s; received {self.messages!r}")
            if gone():
                self.pending()
                if not any(line in message.split("\n") for message in self.messages[after:]):
                    raise SenderGoneError(f"no {line!r}: the sender exited; got {self.messages!r}")
                break
            try:
                self.receive(min(remaining, SENDER_CHECK))
            except TimeoutError:
                continue  # the loop condition reports what was received
        return list(self.messages)

    def pending(self) -> list[str]:
        """The datagrams already queued, without waiting for more."""
        self._socket.setblocking(False)
        try:
            while True:
                self.messages.append(self._socket.recv(65536).decode())
        except BlockingIOError:
            pass
        return list(self.messages)


@contextmanager
def notify_socket(*, abstract: bool = False) -> Iterator[NotifySocket]:
    """Bind a datagram socket (a path in a short temp dir, or an abstract name) and yield it."""
    with (
        tempfile.TemporaryDirectory(prefix="tcsms-notify-") as directory,
        socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock,
    ):
        if abstract:
            name = f"tcsms-poller-test-{uuid.uuid4().hex}"
            sock.bind("\0" + name)
            address = "@" + name
        else:
            # A temp dir of our own keeps the path under the 108-byte limit of sun_path.
            address = str(Path(directory) / "notify")
            sock.bind(address)
        yield NotifySocket(sock, address)
