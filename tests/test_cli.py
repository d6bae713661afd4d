"""The command line as operators meet it: a real ``tcsms-poller`` process each time."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest
import yaml

from tcsms_poller.cli import COMMANDS
from tcsms_poller.emulator import DEFAULT_APP_ID, DEFAULT_SECRET_ID, DEFAULT_SECRET_KEY
from tcsms_poller.exits import EX_CONFIG, EX_FAILURE, EX_OK, EX_USAGE
from tcsms_poller.state.lock import state_lock
from tests.support.cli import BASE_ENV, run_cli

VALID = {
    "tencent": {"secret_id": "AKIDtest", "secret_key": "s3cr3t-key-value"},
    "apps": [{"sms_sdk_app_id": "1400006666"}],
}


def daemon_at(tmp_path: Path, sink: str = "file") -> tuple[Path, Path]:
    """A configuration whose state is ``state.db`` in ``tmp_path``: its path and the state's.

    The tests hold the state's lock: ``run`` then fails at once, with one ``daemon.failed``.
    """
    state = tmp_path / "state.db"
    sinks = [{"type": "file", "path": str(tmp_path / "records.jsonl")}]
    data = {
        **VALID,
        "state": {"path": str(state)},
        "sinks": sinks if sink == "file" else [{"type": sink}],
    }
    return write(tmp_path, data), state


def write(tmp_path: Path, data: object, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def test_version_is_the_installed_package_version() -> None:
    result = run_cli("--version")
    assert result.returncode == EX_OK
    assert result.stdout.strip() == f"tcsms-poller {version('tcsms-poller')}"


def test_the_config_comes_from_tcsms_poller_config_without_c(tmp_path: Path) -> None:
    """As with Telegraf's and Vector's variables: no -c, the variable names the file."""
    path = write(tmp_path, VALID, "elsewhere.yaml")
    result = run_cli("check-config", env={"TCSMS_POLLER_CONFIG": str(path)})
    assert (result.returncode, result.stderr) == (EX_OK, "")
    assert result.stdout.startswith(f"# {path}: valid\n")


def test_c_wins_over_tcsms_poller_config(tmp_path: Path) -> None:
    path = write(tmp_path, VALID)
    result = run_cli("check-config", "-q", "-c", str(path), env={"TCSMS_POLLER_CONFIG": "/nope"})
    assert (result.returncode, result.stderr) == (EX_OK, "")


def test_without_c_or_variable_the_default_path_is_read() -> None:
    """/etc/tcsms-poller/config.yaml, named in the error when it is not there."""
    assert not Path("/etc/tcsms-poller/config.yaml").exists()
    result = run_cli("check-config")
    assert result.returncode == EX_CONFIG
    assert result.stderr == (
        "tcsms-poller: configuration error: /etc/tcsms-poller/config.yaml: "
        "cannot read the configuration: No such file or directory\n"
    )


@pytest.mark.parametrize(("option", "levels"), [([], {"info", "error"}), (["error"], {"error"})])
def test_log_level_overrides_the_configuration(
    tmp_path: Path, option: list[str], levels: set[str]
) -> None:
    """log.level says info; --log-level error leaves only the error line of a failed start."""
    path, state = daemon_at(tmp_path)  # log.level: info, the default
    flags = [f"--log-level={level}" for level in option]
    with state_lock(state):
        result = run_cli("run", "-c", str(path), *flags)
    assert result.returncode == EX_FAILURE
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert {line["level"] for line in lines} == levels
    assert lines[-1]["event"] == "daemon.failed"


def test_an_unknown_log_level_is_a_usage_error(tmp_path: Path) -> None:
    result = run_cli("run", "-c", str(write(tmp_path, VALID)), "--log-level", "loud")
    assert result.returncode == EX_USAGE
    assert "invalid choice: 'loud'" in result.stderr


def test_the_top_level_help_says_what_the_program_does() -> None:
    result = run_cli("--help")
    assert result.returncode == EX_OK
    assert "Tencent Cloud SMS delivery receipts" in result.stdout
    assert "argv" not in result.stdout
    for fact in ("TCSMS_POLLER_CONFIG", "/etc/tcsms-poller/config.yaml", "NO_COLOR", "78"):
        assert fact in result.stdout


@pytest.mark.parametrize("command", list(COMMANDS))
def test_each_command_explains_itself_with_an_example(command: str) -> None:
    result = run_cli(command, "--help")
    assert result.returncode == EX_OK
    assert f"example:\n  tcsms-poller {command}" in result.stdout


def test_the_emulators_help_has_its_credentials_app_id_and_control_routes() -> None:
    result = run_cli("emulator", "--help")
    assert result.returncode == EX_OK
    for fact in (DEFAULT_SECRET_ID, DEFAULT_SECRET_KEY, DEFAULT_APP_ID):
        assert fact in result.stdout
    for route in ("/_emulator/stats", "/_emulator/truth", "/_emulator/records"):
        assert route in result.stdout


def test_logs_go_to_stderr_when_a_stdout_sink_owns_stdout(tmp_path: Path) -> None:
    """stdout carries records only, so a pipe into jq never sees a log line."""
    path, state = daemon_at(tmp_path, sink="stdout")
    with state_lock(state):
        result = run_cli("run", "-c", str(path))
    assert result.returncode == EX_FAILURE
    assert result.stdout == ""
    assert json.loads(result.stderr.splitlines()[-1])["event"] == "daemon.failed"


@pytest.mark.parametrize(("no_color", "coloured"), [("1", False), ("", True)])
def test_no_color_keeps_the_terminals_log_lines_plain(
    tmp_path: Path, no_color: str, coloured: bool
) -> None:
    """At a terminal (a pseudo-terminal here) log lines are coloured unless NO_COLOR is set."""
    path, state = daemon_at(tmp_path)
    controller, terminal = pty.openpty()
    try:
        with state_lock(state):
            done = subprocess.run(
                [sys.executable, "-m", "tcsms_poller", "run", "-c", str(path)],
                stdout=terminal,
                stderr=subprocess.PIPE,
                env={**BASE_ENV, "NO_COLOR": no_color},
                timeout=60,
                check=False,
            )
        os.close(terminal)
        terminal = -1
        output = read_all(controller)
    finally:
        os.close(controller)
        if terminal >= 0:
            os.close(terminal)
    assert done.returncode == EX_FAILURE
    assert "daemon.failed" in output
    assert ("\x1b[" in output) is coloured


def read_all(fd: int) -> str:
    """What a pseudo-terminal's controller holds once the other side is closed."""
    chunks: list[bytes] = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the other side is closed and everything was read
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")


@pytest.mark.timeout(60)
@pytest.mark.parametrize("where", ["config", "secret", "numbers"])
@pytest.mark.parametrize("special", ["fifo", "/dev/zero"])
def test_a_fifo_or_device_anywhere_is_exit_78_not_a_hang(
    tmp_path: Path, where: str, special: str
) -> None:
    """The configuration, a *_file secret or a numbers file naming a FIFO (reading it would
    block for ever) or /dev/zero (it would fill the memory): one line, exit 78, at once."""
    target = Path(special)
    if special == "fifo":
        target = tmp_path / "fifo"
        os.mkfifo(target)
    data: dict[str, object] = {
        "tencent": {"secret_id": "AKIDtest", "secret_key_file": str(target)},
        "apps": [{"sms_sdk_app_id": "1400006666", "by_number": {"numbers_file": str(target)}}],
    }
    if where != "secret":
        data["tencent"] = VALID["tencent"]
    if where != "numbers":
        data["apps"] = VALID["apps"]
    path = target if where == "config" else write(tmp_path, data)
    result = run_cli("run", "-c", str(path), timeout=30)
    assert result.returncode == EX_CONFIG
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith("tcsms-poller: configuration error: ")
    assert "not a regular file" in line
