"""A throwaway PostgreSQL server for the tests: ``initdb`` into a temp dir, a free port, a Unix
socket in the temp dir; no system service, no container.

One server per test session (``postgres_server``: ``initdb`` and start take about 4 s), a fresh
database per test (``postgres_url``: ``CREATE DATABASE ... TEMPLATE``, about 0.1 s). PostgreSQL
refuses to run as root, so under root the server runs as the ``postgres`` user (the Debian
package creates it; ``.ci/run`` installs the package when the binaries are missing). The data
directory lives under ``TMPDIR`` with ``fsync = off``: a test's durability checks restart the
server cleanly (a fast shutdown writes everything), they do not pull the power.

Why not ``pytest-postgresql``: it runs ``initdb`` and ``pg_ctl`` as the current user, and CI
runs as root, which PostgreSQL refuses; switching users is the one thing this module adds."""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import psycopg
import pytest

__all__ = [
    "CuttableLink",
    "PostgresServer",
    "find_bin_dir",
    "postgres_server",
    "postgres_url",
    "running_server",
]

USER = "tcsms"
PASSWORD = "pg-secret-4d1f"
_names = itertools.count(1)


def find_bin_dir() -> Path:
    """The newest ``/usr/lib/postgresql/<version>/bin`` with ``initdb`` (or ``$PG_BIN_DIR``)."""
    if explicit := os.environ.get("PG_BIN_DIR"):
        return Path(explicit)
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda path: int(Path(path).parts[-3].split(".")[0]),
    )
    if not found:
        raise RuntimeError(
            "no PostgreSQL server binaries under /usr/lib/postgresql/*/bin: "
            "apt-get install postgresql (.ci/run does)"
        )
    return Path(found[-1]).parent


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class PostgresServer:
    """One ``postgres`` process on a data directory of its own; ``stop``/``start`` restart it."""

    def __init__(self, root: Path, *, fsync: bool = False) -> None:
        self.bin = find_bin_dir()
        self.root = root
        self.data = root / "data"
        self.port = _free_port()
        self._fsync = fsync
        self._process: subprocess.Popen[bytes] | None = None
        self._as: dict[str, Any] = {}
        if os.geteuid() == 0:
            entry = pwd.getpwnam("postgres")
            os.chown(root, entry.pw_uid, entry.pw_gid)
            self._as = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
        initdb = [str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust"]
        subprocess.run(
            [*initdb, "-E", "UTF8", "--no-sync", "--no-instructions"],
            check=True,
            capture_output=True,
            **self._as,
        )

    def url(self, database: str = "postgres", *, user: str = USER) -> str:
        """A TCP URL (what an operator writes), with the password when it is ours."""
        login = f"{user}:{PASSWORD}" if user == USER else user
        return f"postgresql://{login}@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        process = self._process = subprocess.Popen(
            [
                *(str(self.bin / "postgres"), "-D", str(self.data), "-p", str(self.port)),
                *("-k", str(self.root), "-c", "listen_addresses=127.0.0.1"),
                *("-c", f"fsync={'on' if self._fsync else 'off'}", "-c", "max_connections=200"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            **self._as,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                psycopg.connect(self.url(user="postgres"), connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the test PostgreSQL server did not start") from None
                time.sleep(0.05)  # a process we cannot wait on otherwise: bounded by deadline

    def stop(self) -> None:
        """Fast shutdown: connections are cut, committed data is kept."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGINT)
            self._process.wait(timeout=60)
        self._process = None

    def execute(self, sql: str, database: str = "postgres") -> None:
        """Run ``sql`` as the superuser, outside a transaction."""
        with psycopg.connect(self.url(database, user="postgres"), autocommit=True) as connection:
            connection.execute(sql.encode())

    def create_database(self) -> str:
        """A fresh, empty database owned by the application's user; its URL."""
        name = f"test_{os.getpid()}_{next(_names)}"
        # FILE_COPY: 0.1 s against WAL_LOG's 0.3 s for an empty database (fsync off).
        self.execute(f'CREATE DATABASE "{name}" OWNER {USER} TEMPLATE template0 STRATEGY FILE_COPY')
        return self.url(name)


@contextlib.contextmanager
def running_server(*, fsync: bool = False, parent: Path | None = None) -> Iterator[PostgresServer]:
    """A started server with the application's user, in a temp dir under ``parent`` (which
    the ``postgres`` user must be able to enter), removed afterwards."""
    root = Path(tempfile.mkdtemp(prefix="tcsms-pg-", dir=parent))
    server = PostgresServer(root, fsync=fsync)
    try:
        server.start()
        server.execute(f"CREATE ROLE {USER} LOGIN PASSWORD '{PASSWORD}'")
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the whole test session."""
    with running_server() as server:
        yield server


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """The URL of a fresh database for this test."""
    return postgres_server.create_database()


class CuttableLink:
    """A TCP proxy to the server whose connections a test can cut, as a network failure would.

    ``cut()`` closes every connection through it and refuses new ones until ``restore()``.
    Run ``serve`` in a task group (``await tg.start(link.serve)``).
    """

    def __init__(self, server: PostgresServer) -> None:
        self._server = server
        self._streams: set[anyio.abc.ByteStream] = set()
        self._cut = False
        self.port = 0

    def url(self, database: str) -> str:
        """The URL of ``database`` through the link."""
        return self._server.url(database).replace(f":{self._server.port}/", f":{self.port}/")

    async def serve(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
        async with listener:
            port = anyio.abc.SocketAttribute.local_port
            self.port = listener.extra(port)  # noqa: S610 (anyio's typed attributes, not SQL)
            task_status.started()
            await listener.serve(self._relay)

    async def _relay(self, client: anyio.abc.SocketStream) -> None:
        async with client:
            if self._cut:
                return
            upstream = await anyio.connect_tcp("127.0.0.1", self._server.port)
            async with upstream:
                self._streams |= {client, upstream}
                try:
                    async with anyio.create_task_group() as tg:
                        tg.start_soon(_pipe, client, upstream, tg.cancel_scope)
                        tg.start_soon(_pipe, upstream, client, tg.cancel_scope)
                finally:
                    self._streams -= {client, upstream}

    async def cut(self) -> None:
        """Close every connection through the link; refuse new ones."""
        self._cut = True
        for stream in list(self._streams):
            await stream.aclose()

    def restore(self) -> None:
        """Let connections through again."""
        self._cut = False


async def _pipe(
    source: anyio.abc.ByteStream, target: anyio.abc.ByteStream, scope: anyio.CancelScope
) -> None:
    try:
        async for chunk in source:
            await target.send(chunk)
    except (anyio.ClosedResourceError, anyio.BrokenResourceError, OSError):
        pass
    scope.cancel()  # one side ended: end the other
