"""``run`` that cannot start says why in one JSON line, ``daemon.failed``, and exits 1."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

import pytest
import yaml

from tcsms_poller.exits import EX_CONFIG, EX_FAILURE
from tcsms_poller.state.lock import state_lock
from tests.support.cli import run_cli
from tests.support.daemon_process import running_daemon


def base_config(tmp_path: Path) -> dict[str, Any]:
    return {
        "tencent": {
            "secret_id": "AKIDEXAMPLE0000000000000000000000000",
            "secret_key": "examplesecretkey0000000000000000",
            "endpoint": "http://127.0.0.1:9",
        },
        # Nothing to poll: these tests are about starting, reloading and stopping.
        "apps": [
            {
                "sms_sdk_app_id": "1400006666",
                "replies": {"enabled": False},
                "by_number": {"enabled": False},
                "statistics": {"enabled": False},
                "conversions": {"enabled": False},
            }
        ],
        "state": {"path": str(tmp_path / "state" / "state.db")},
        "sinks": [{"type": "file", "path": str(tmp_path / "records.jsonl")}],
        "log": {"format": "json"},
    }


def run_daemon(tmp_path: Path, config: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return run_cli("run", "-c", str(path))


@contextmanager
def state_held_elsewhere(tmp_path: Path, config: dict[str, Any]) -> Iterator[str]:
    with state_lock(Path(config["state"]["path"])):
        yield "is in use by another tcsms-poller"


@contextmanager
def port_in_use(tmp_path: Path, config: dict[str, Any]) -> Iterator[str]:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config["server"] = {
            "listen": f"127.0.0.1:{port}",
            "token": "a-bearer-token-of-32-characters!",
            "callback_secret": "callback-secret-0123456789",
        }
        yield "Address already in use"


def file_sink_cannot_open(tmp_path: Path, config: dict[str, Any]) -> AbstractContextManager[str]:
    (tmp_path / "plain-file").write_text("")
    config["sinks"] = [{"type": "file", "path": str(tmp_path / "plain-file" / "records.jsonl")}]
    return nullcontext("Not a directory")


def state_dir_cannot_be_created(
    tmp_path: Path, config: dict[str, Any]
) -> AbstractContextManager[str]:
    (tmp_path / "plain-file").write_text("")
    config["state"]["path"] = str(tmp_path / "plain-file" / "state" / "state.db")
    return nullcontext("Not a directory")


Failure = Callable[[Path, dict[str, Any]], AbstractContextManager[str]]


@pytest.mark.parametrize(
    "failure",
    [state_held_elsewhere, port_in_use, file_sink_cannot_open, state_dir_cannot_be_created],
)
def test_a_startup_failure_is_one_json_line_and_exit_1(tmp_path: Path, failure: Failure) -> None:
    """Exactly one error line, daemon.failed with the reason; every line JSON, no traceback."""
    config = base_config(tmp_path)
    with failure(tmp_path, config) as reason:
        result = run_daemon(tmp_path, config)
    assert result.returncode == EX_FAILURE, result.stdout + result.stderr
    assert result.stderr == ""
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    errors = [line for line in lines if line["level"] == "error"]
    assert [line["event"] for line in errors] == ["daemon.failed"]
    assert reason in errors[0]["error"]
    assert "exception" not in errors[0]
    assert "Traceback" not in result.stdout


@pytest.mark.parametrize("broken", ["x: !!int notanumber\n", "x: &a [*a]\n"])
def test_a_broken_file_at_start_exits_78(tmp_path: Path, broken: str) -> None:
    """A file PyYAML cannot construct is a configuration error: 78 stops systemd's restarts."""
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(base_config(tmp_path)) + broken)
    result = run_cli("run", "-c", str(path))
    assert result.returncode == EX_CONFIG
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith(f"tcsms-poller: configuration error: {path}:")


@pytest.mark.anyio
@pytest.mark.parametrize(
    "broken", ["x: !!int notanumber\n", "x: &a [*a]\n", "x: " + "[" * 20_000 + "]" * 20_000]
)
async def test_sighup_with_a_broken_file_keeps_the_daemon_running(
    tmp_path: Path, broken: str
) -> None:
    """daemon.reload_failed, the old configuration stays, and SIGTERM still drains (exit 0)."""
    config = base_config(tmp_path)
    async with running_daemon(tmp_path / "daemon", config) as daemon:
        config_path = tmp_path / "daemon" / "config.yaml"
        config_path.write_text(config_path.read_text() + broken)
        seen = len(daemon.notify.messages)
        daemon.signal(signal.SIGHUP)
        await daemon.wait_for_notify("READY=1", timeout=30, after=seen)
        [failed] = daemon.events("daemon.reload_failed")
        assert "invalid YAML" in failed["error"] or "is not an integer" in failed["error"]
        await daemon.stop(expect=0)
    assert daemon.events("daemon.stopped")
