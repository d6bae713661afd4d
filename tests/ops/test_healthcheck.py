"""``tcsms-poller healthcheck``: a loopback server answers; the command sums it up in one line."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tcsms_poller.cli import main
from tcsms_poller.commands.healthcheck import healthz_url
from tcsms_poller.config import ServerSettings
from tcsms_poller.exits import EX_CONFIG, EX_FAILURE, EX_OK, EX_USAGE
from tcsms_poller.healthfile import HEALTH_URL_FILE
from tests.support.cli import run_cli
from tests.support.daemon_process import daemon_config, running_daemon
from tests.support.http_receiver import Receiver, Reply, http_receiver

HEALTHY = {"healthy": True, "unhealthy": [], "parts": {"replies:1400006666": {"healthy": True}}}
SICK = {"healthy": False, "unhealthy": ["http"], "parts": {"http": {"healthy": False}}}
TOKEN = "a-bearer-token-of-32-characters!"
CALLBACK_SECRET = "callback-secret-0123456789"
QUIET_APP = {"replies": {"enabled": False}, "send_status": {"enabled": False}}


def write_config(directory: Path, listen: str | None) -> Path:
    """A valid configuration whose listener, if any, is bound as ``listen`` says."""
    server = (
        f"server:\n  listen: '{listen}'\n  token: '{TOKEN}'\n"
        f"  callback_secret: '{CALLBACK_SECRET}'\n"
        if listen is not None
        else ""
    )
    path = directory / "config.yaml"
    path.write_text(
        "tencent:\n"
        "  secret_id: AKIDEXAMPLE0000000000000000000000000\n"
        "  secret_key: examplesecretkey0000000000000000\n"
        "apps:\n"
        "  - sms_sdk_app_id: '1400006666'\n"
        f"state:\n  path: {directory / 'state.db'}\n" + server
    )
    return path


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A real HTTP server on 127.0.0.1 standing in for the daemon's listener."""
    with http_receiver() as running:
        yield running


def port_of(receiver: Receiver) -> int:
    port = urlsplit(receiver.url).port
    assert port is not None
    return port


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[str]]:
    """The command's exit code and its stdout lines."""
    code = main(["healthcheck", *argv])
    return code, capsys.readouterr().out.splitlines()


def test_a_200_from_healthz_is_healthy(
    tmp_path: Path, receiver: Receiver, capsys: pytest.CaptureFixture[str]
) -> None:
    """200 exits 0 with one line: the verdict, the status, the URL and the compact body."""
    receiver.script(Reply(200, json.dumps(HEALTHY, indent=2).encode()))
    config = write_config(tmp_path, f"127.0.0.1:{port_of(receiver)}")
    code, lines = run(capsys, "-c", str(config))
    url = f"http://127.0.0.1:{port_of(receiver)}/healthz"
    assert code == EX_OK
    assert lines == [f"healthy: 200 {url} {json.dumps(HEALTHY, separators=(',', ':'))}"]
    assert [(r.method, r.path) for r in receiver.requests] == [("GET", "/healthz")]


def test_a_503_from_healthz_is_unhealthy(
    tmp_path: Path, receiver: Receiver, capsys: pytest.CaptureFixture[str]
) -> None:
    """503 exits 1 and the line carries the reasons the daemon gave."""
    receiver.script(Reply(503, json.dumps(SICK).encode()))
    config = write_config(tmp_path, f"127.0.0.1:{port_of(receiver)}")
    code, lines = run(capsys, "-c", str(config))
    assert code == EX_FAILURE
    assert len(lines) == 1
    assert lines[0].startswith("unhealthy: 503 http://127.0.0.1:")
    assert lines[0].endswith(json.dumps(SICK, separators=(",", ":")))


def test_any_other_status_is_unhealthy(
    receiver: Receiver, capsys: pytest.CaptureFixture[str]
) -> None:
    """Only 200 counts: a 404 (say, another program on the port) exits 1, its body flattened."""
    receiver.script(Reply(404, b"<html>\n  not found\n</html>\n"))
    code, lines = run(capsys, "--url", receiver.url)
    assert code == EX_FAILURE
    assert lines == [f"unhealthy: 404 {receiver.url} <html> not found </html>"]


def test_a_wildcard_listen_address_is_asked_on_loopback(
    tmp_path: Path, receiver: Receiver, capsys: pytest.CaptureFixture[str]
) -> None:
    """A daemon bound to 0.0.0.0 is asked at 127.0.0.1 (the receiver listens only there)."""
    receiver.script(Reply(200, json.dumps(HEALTHY).encode()))
    config = write_config(tmp_path, f"0.0.0.0:{port_of(receiver)}")
    code, lines = run(capsys, "-c", str(config))
    assert code == EX_OK
    assert lines[0].startswith(f"healthy: 200 http://127.0.0.1:{port_of(receiver)}/healthz ")


@pytest.mark.parametrize(
    ("listen", "url"),
    [
        ("127.0.0.1:8787", "http://127.0.0.1:8787/healthz"),
        ("0.0.0.0:8787", "http://127.0.0.1:8787/healthz"),
        ("[::]:8787", "http://[::1]:8787/healthz"),
        ("[::1]:9000", "http://[::1]:9000/healthz"),
        ("poller.internal:80", "http://poller.internal:80/healthz"),
    ],
)
def test_the_url_follows_server_listen(listen: str, url: str) -> None:
    """Wildcards map to the loopback of their family; IPv6 literals get brackets."""
    settings = ServerSettings.model_validate(
        {"listen": listen, "token": TOKEN, "callback_secret": CALLBACK_SECRET}
    )
    assert healthz_url(settings) == url


def test_connection_refused_is_one_line_and_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Nothing listening: exit 1 with the cause on one line, no traceback."""
    with socket.socket() as bound:  # bound but not listening: the kernel refuses connections
        bound.bind(("127.0.0.1", 0))
        config = write_config(tmp_path, f"127.0.0.1:{bound.getsockname()[1]}")
        code, lines = run(capsys, "-c", str(config))
    assert code == EX_FAILURE
    assert len(lines) == 1
    assert lines[0].startswith("unhealthy: cannot reach http://127.0.0.1:")
    assert "Connection refused" in lines[0]


def test_no_answer_within_the_timeout_is_unhealthy(
    receiver: Receiver, capsys: pytest.CaptureFixture[str]
) -> None:
    """A daemon that accepts but never answers (a wedged loop) fails after --timeout."""
    receiver.script(Reply(stall=True))
    code, lines = run(capsys, "--url", receiver.url, "--timeout", "200ms")
    assert code == EX_FAILURE
    assert lines == [f"unhealthy: no answer within 200ms from {receiver.url}"]


def test_a_long_body_is_cut_to_keep_the_line_readable(
    receiver: Receiver, capsys: pytest.CaptureFixture[str]
) -> None:
    """Docker keeps 4 KiB of a probe's output: the body is cut well before that."""
    receiver.script(Reply(503, json.dumps({"healthy": False, "detail": "x" * 10_000}).encode()))
    code, lines = run(capsys, "--url", receiver.url)
    assert code == EX_FAILURE
    assert len(lines) == 1
    assert len(lines[0]) < 2200
    assert lines[0].endswith("...")


def test_without_a_server_section_it_is_a_configuration_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No listener configured: exit 78 with a message saying what to do, nothing on stdout."""
    config = write_config(tmp_path, None)
    code = main(["healthcheck", "-c", str(config)])
    out, err = capsys.readouterr()
    assert code == EX_CONFIG
    assert out == ""
    assert err.count("\n") == 1
    assert "no server section" in err
    assert "--url" in err


def test_a_listener_on_port_0_cannot_be_found(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Port 0 means the system picked one the healthcheck cannot know: exit 78, suggest --url."""
    config = write_config(tmp_path, "127.0.0.1:0")
    assert main(["healthcheck", "-c", str(config)]) == EX_CONFIG
    assert "pass --url" in capsys.readouterr().err


def test_an_invalid_configuration_exits_78(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The configuration is loaded as the daemon loads it, with the same one-line errors."""
    config = tmp_path / "config.yaml"
    config.write_text("tencent: {}\n")
    assert main(["healthcheck", "-c", str(config)]) == EX_CONFIG
    assert "configuration error" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["-c", "config.yaml", "--url", "http://127.0.0.1:8787/healthz"],
        ["--url", "http://127.0.0.1:8787/healthz", "--timeout", "5"],
    ],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """Neither -c nor --url, both, or a duration without a unit: argparse's exit 2."""
    with pytest.raises(SystemExit) as exit_info:
        main(["healthcheck", *argv])
    assert exit_info.value.code == EX_USAGE
    assert "usage: tcsms-poller healthcheck" in capsys.readouterr().err


@pytest.mark.parametrize("url", ["127.0.0.1:8787", "ftp://127.0.0.1/healthz", "http://"])
def test_a_url_that_is_not_http_is_a_usage_error(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """--url must be an http(s) URL; anything else exits 2 with one line, no traceback."""
    assert main(["healthcheck", "--url", url]) == EX_USAGE
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "--url" in err


def test_the_installed_command_prints_one_line_without_traceback(tmp_path: Path) -> None:
    """The console script, as a container HEALTHCHECK runs it, against a refusing port."""
    with socket.socket() as bound:
        bound.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{bound.getsockname()[1]}/healthz"
        done = subprocess.run(
            [str(Path(sys.executable).with_name("tcsms-poller")), "healthcheck", "--url", url],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            cwd=tmp_path,
        )
    assert done.returncode == EX_FAILURE
    assert done.stderr == ""
    assert done.stdout.startswith(f"unhealthy: cannot reach {url}: ")
    assert done.stdout.count("\n") == 1


@pytest.mark.anyio
async def test_url_file_asks_the_port_the_running_daemon_bound(tmp_path: Path) -> None:
    """The daemon (port 0: only it knows the port) writes healthz.url; healthcheck --url-file
    reads it without a configuration. After a stop the file is gone: unhealthy, exit 1."""
    config = daemon_config("http://127.0.0.1:9", tmp_path, app=QUIET_APP)
    config["server"] = {"listen": "127.0.0.1:0", "token": TOKEN, "callback_secret": CALLBACK_SECRET}
    url_file = tmp_path / HEALTH_URL_FILE
    async with running_daemon(tmp_path, config) as daemon:
        checked = run_cli("healthcheck", "--url-file", str(url_file))
        assert checked.returncode == EX_OK, checked.stdout
        assert checked.stdout.startswith("healthy: 200 http://127.0.0.1:")
        assert ":0/" not in checked.stdout
        await daemon.stop()
    assert not url_file.exists()
    gone = run_cli("healthcheck", "--url-file", str(url_file))
    assert gone.returncode == EX_FAILURE
    assert gone.stdout == (
        f"unhealthy: no health URL: cannot read {url_file}: No such file or directory\n"
    )
