"""The daemon as a real child process: configured in a temp dir, watched over $NOTIFY_SOCKET.

Usage (async, so an in-process emulator keeps serving while the test waits)::

    async with running_daemon(tmp_path, config) as daemon:   # once READY=1 arrived
        ...
        await daemon.stop()                                    # SIGTERM, asserts exit 0

Its JSON log lines go to ``daemon.log`` in the temp dir (read them with ``log_events``), so a
failing test can show what the daemon was doing.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import yaml

from tests.support.notify_socket import NotifySocket, SenderGoneError, notify_socket

__all__ = ["DaemonProcess", "daemon_config", "running_daemon"]

SECRET_ID = "AKIDEMULATOR000000000000000000000000"
SECRET_KEY = "emulatorsecretkey000000000000000"
APP = "1400006666"
READY_TIMEOUT = 60.0
EXIT_TIMEOUT = 60.0


def daemon_config(
    endpoint: str,
    state_dir: Path,
    *,
    sinks: list[dict[str, Any]] | None = None,
    app: Mapping[str, Any] | None = None,
    server: Mapping[str, Any] | None = None,
    tencent: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A configuration for the emulator at ``endpoint`` with state under ``state_dir``."""
    config: dict[str, Any] = {
        "tencent": {
            "secret_id": SECRET_ID,
            "secret_key": SECRET_KEY,
            "endpoint": endpoint,
            "timeout": "5s",
            "retry": {"max_backoff": "1s"},
            "unhealthy_retry": "1s",
            **(tencent or {}),
        },
        "apps": [
            {
                "sms_sdk_app_id": APP,
                "replies": {"interval": "200ms"},
                "send_status": {"enabled": True, "interval": "200ms"},
                "by_number": {"enabled": False},
                "statistics": {"enabled": False},
                **(app or {}),
            }
        ],
        "state": {"path": str(state_dir / "state.db")},
        "sinks": sinks or [{"type": "file", "path": str(state_dir / "records.jsonl")}],
        "log": {"level": "debug", "format": "json"},
    }
    if server is not None:
        config["server"] = dict(server)
    return config


class DaemonProcess:
    """One running daemon and the socket it notifies."""

    def __init__(
        self, process: subprocess.Popen[bytes], notify: NotifySocket, log_path: Path
    ) -> None:
        self.process = process
        self.notify = notify
        self.log_path = log_path

    def signal(self, signum: int) -> None:
        """Send ``signum`` to the daemon."""
        self.process.send_signal(signum)

    async def wait(self) -> int:
        """The exit code, once the daemon has exited on its own (or by a signal sent)."""
        return await anyio.to_thread.run_sync(lambda: self.process.wait(timeout=EXIT_TIMEOUT))

    async def stop(self, *, expect: int = 0) -> None:
        """SIGTERM, then wait for the exit code ``expect``."""
        self.signal(signal.SIGTERM)
        code = await self.wait()
        assert code == expect, f"exit {code}; log tail:\n{self.log_tail()}"

    async def kill(self) -> None:
        """SIGKILL: no chance to clean up."""
        self.process.kill()
        await self.wait()

    async def wait_for_notify(
        self, line: str, timeout: float = READY_TIMEOUT, *, after: int = 0
    ) -> list[str]:
        """Every notify message so far, once one (from the ``after``-th on) has ``line``."""
        try:
            return await anyio.to_thread.run_sync(
                lambda: self.notify.wait_for(
                    line, timeout, after=after, gone=lambda: self.process.poll() is not None
                )
            )
        except (TimeoutError, SenderGoneError) as error:
            code = self.process.poll()
            exited = "" if code is None else f" (exit code {code})"
            raise AssertionError(f"{error}{exited}; log tail:\n{self.log_tail()}") from None

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        """The daemon's JSON log lines so far (only those named ``name`` if given)."""
        lines = self.log_path.read_text(errors="replace").splitlines()
        parsed = [json.loads(line) for line in lines if line.startswith("{")]
        return [event for event in parsed if name is None or event.get("event") == name]

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the log, for assertion messages."""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


@asynccontextmanager
async def running_daemon(
    directory: Path,
    config: Mapping[str, Any],
    *,
    command: str = "run",
    environ: Mapping[str, str] | None = None,
    wait_ready: bool = True,
    stdout: int | None = None,
    open_files: tuple[int, int] | None = None,
    umask: int | None = None,
    options: Sequence[str] = (),
) -> AsyncIterator[DaemonProcess]:
    """Start ``tcsms-poller <command>`` on ``config``; kill it on the way out if still running.

    Its output goes to ``daemon.log``, or to the file descriptor ``stdout`` when given; it starts
    with ``open_files`` (soft, hard) as its ``RLIMIT_NOFILE`` and with ``umask``, when given;
    ``options`` follow ``-c FILE`` on its command line.
    """
    directory.mkdir(parents=True, exist_ok=True)
    config_path = directory / "config.yaml"
    config_path.write_text(yaml.safe_dump(dict(config)))
    log_path = directory / "daemon.log"
    with notify_socket() as notify, log_path.open("ab") as log_file:
        env = {**os.environ, **notify.environ(), **(environ or {})}
        process = subprocess.Popen(
            [sys.executable, "-m", "tcsms_poller", command, "-c", str(config_path), *options],
            stdout=log_file if stdout is None else stdout,
            stderr=subprocess.STDOUT,
            env=env,
            preexec_fn=partial(_prepare_child, open_files, umask),
        )
        daemon = DaemonProcess(process, notify, log_path)
        try:
            if wait_ready:
                await daemon.wait_for_notify("READY=1")
            yield daemon
        finally:
            if process.poll() is None:
                process.kill()
                await daemon.wait()


def _prepare_child(open_files: tuple[int, int] | None, umask: int | None) -> None:
    """In the child before exec: the open-files limit and umask the daemon starts with."""
    if open_files is not None:
        resource.setrlimit(resource.RLIMIT_NOFILE, open_files)
    if umask is not None:
        os.umask(umask)
