"""A real HTTP server on loopback standing in for a webhook, answering from a script.

Usage::

    with http_receiver() as receiver:
        receiver.script(Reply(500), Reply(200))
        ... post to receiver.url ...
    assert [r.body for r in receiver.requests] == [...]

It runs ``http.server`` in threads of its own, so the code under test talks to it over a real
socket while the test's event loop stays free. Requests past the end of the script get
``receiver.fallback`` (200 unless changed, e.g. to 503 for an outage of unknown length).
``http_receiver(port=...)`` reopens a receiver on a port an earlier one used, so a downstream can
go away (connections refused) and come back at the same URL.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["Received", "Receiver", "Reply", "http_receiver", "posted_ids"]


@dataclass(frozen=True, slots=True)
class Received:
    """One request as it arrived, and when (``time.time()`` once its body was read)."""

    method: str
    path: str
    headers: Message
    body: bytes
    at: float = field(default_factory=time.time)


@dataclass(frozen=True, slots=True)
class Reply:
    """How to answer one request; ``body`` may be computed from the request (e.g. an echo)."""

    status: int = 200
    body: bytes | Callable[[Received], bytes] = b'{"ok":true}'
    headers: Mapping[str, str] = field(default_factory=dict)
    stall: bool = False  # never answer (until the receiver closes): a hung downstream


class Receiver:
    """The scripted server; ``requests`` lists what arrived, ``accepted`` those answered 2xx."""

    def __init__(self, port: int = 0) -> None:
        self.requests: list[Received] = []
        self.accepted: list[Received] = []
        self.fallback = Reply()
        self.closed = threading.Event()
        self._script: list[Reply] = []
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", port), _Handler)
        self._server.daemon_threads = True
        self._server.receiver = self  # type: ignore[attr-defined]  # (read by the handler)
        host, port = self._server.server_address[:2]
        self.url = f"http://{host!s}:{port}/hook"

    def script(self, *replies: Reply) -> None:
        """Answer the next requests with ``replies``, in order."""
        with self._lock:
            self._script.extend(replies)

    def take(self, request: Received) -> Reply:
        """Record ``request`` and pick its reply."""
        with self._lock:
            self.requests.append(request)
            reply = self._script.pop(0) if self._script else self.fallback
            if 200 <= reply.status < 300 and not reply.stall:
                self.accepted.append(request)
            return reply

    def serve(self) -> None:
        self._server.serve_forever(poll_interval=0.05)

    def close(self) -> None:
        """Gone for good: no new connections, and kept-alive ones are cut off too."""
        self.closed.set()  # releases stalled handlers
        self._server.shutdown()
        self._server.server_close()
        self._server.drop_connections()


class _Server(ThreadingHTTPServer):
    """Knows its open connections, so that closing it ends keep-alive connections as well."""

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(address, handler)
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._connections_lock:
                self._connections.discard(request)

    def drop_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with suppress(OSError):  # already closed by its handler
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away (killed, reset) is not the receiver's error: no traceback."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real webhooks do

    def do_POST(self) -> None:
        self._answer()

    def do_GET(self) -> None:
        self._answer()

    def do_HEAD(self) -> None:
        self._answer()

    def _answer(self) -> None:
        receiver: Receiver = self.server.receiver  # type: ignore[attr-defined]
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        if len(body) < length:  # the client went away mid-body (killed): no request arrived
            self.close_connection = True
            return
        request = Received(self.command, self.path, self.headers, body)
        reply = receiver.take(request)
        if reply.stall:
            receiver.closed.wait()
            self.close_connection = True
            return
        body = reply.body(request) if callable(reply.body) else reply.body
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":  # a HEAD answer has the headers of a body, never the body
            self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the test's assertions say what matters."""


@contextmanager
def http_receiver(port: int = 0) -> Iterator[Receiver]:
    """A running receiver on 127.0.0.1 and ``port`` (0: a free one), shut down on exit."""
    receiver = Receiver(port)
    thread = threading.Thread(target=receiver.serve, name="http-receiver", daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        receiver.close()
        thread.join(timeout=10)


def posted_ids(bodies: Iterable[bytes]) -> list[str]:
    """The record ids of the HTTP sink's ``{"records": [...]}`` batches, in order."""
    return [record["id"] for body in bodies for record in json.loads(body)["records"]]
