"""A webhook URL's credentials are secrets: in check-config, in the running daemon's logs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tcsms_poller.config import load_config
from tcsms_poller.logs import get_logger
from tcsms_poller.sinks.http import redact_url
from tests.support.daemon_process import daemon_config
from tests.support.log_capture import captured_logs, json_lines

PASSWORD = "hook-password-4711"
TOKEN = "query-token-0815"
PATH_TOKEN = "path-token-1234567"
CLEAR = (PASSWORD, TOKEN, PATH_TOKEN)


@pytest.mark.parametrize(
    ("url", "secret_path", "shown"),
    [
        (
            f"http://hooker:{PASSWORD}@hooks.example.com:8443/hook?token={TOKEN}&v=2",
            False,
            "http://***@hooks.example.com:8443/hook?token=***&v=***",
        ),
        (f"https://hooks.example.com/h/{PATH_TOKEN}", True, "https://hooks.example.com/***"),
        ("https://hooks.example.com/sms", False, "https://hooks.example.com/sms"),
    ],
)
def test_redact_url(url: str, secret_path: bool, shown: str) -> None:
    assert redact_url(url, path=secret_path) == shown


def test_check_config_prints_the_url_without_its_secrets(tmp_path: Path) -> None:
    """Output promised safe to paste into a ticket: user info, query and the path are ``***``."""
    config = daemon_config(
        "http://127.0.0.1:9",
        tmp_path,
        sinks=[
            {"type": "http", "url": f"http://hooker:{PASSWORD}@hooks.example.com/h?token={TOKEN}"},
            {
                "type": "http",
                "name": "by_path",
                "url": f"https://hooks.example.com/h/{PATH_TOKEN}",
                "secret_path": True,
            },
        ],
    )
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    result = subprocess.run(
        [sys.executable, "-m", "tcsms_poller", "check-config", "-c", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert not [secret for secret in CLEAR if secret in result.stdout + result.stderr]
    urls = [sink["url"] for sink in yaml.safe_load(result.stdout)["sinks"]]
    assert urls == ["http://***@hooks.example.com/h?token=***", "https://hooks.example.com/***"]


def test_url_secrets_are_masked_in_log_lines(tmp_path: Path) -> None:
    """A URL quoted anywhere in a line (an error, a library's message) loses its secrets."""
    config_path = tmp_path / "config.yaml"
    config_path.write_text(
        yaml.safe_dump(
            daemon_config(
                "http://127.0.0.1:9",
                tmp_path,
                sinks=[
                    {
                        "type": "http",
                        "url": f"http://hooker:{PASSWORD}@h.example/h/{PATH_TOKEN}?t={TOKEN}",
                        "secret_path": True,
                    }
                ],
            )
        )
    )
    config = load_config(config_path)
    with captured_logs(secrets=config.secrets()) as out:
        get_logger("tests").error(
            "sink.failed", error=f"POST http://hooker:{PASSWORD}@h.example/h/{PATH_TOKEN}?t={TOKEN}"
        )
    [line] = json_lines(out)
    assert line["error"] == "POST http://***@h.example***?***"
    assert not [secret for secret in CLEAR if secret in str(line)]


def test_short_url_secrets_are_masked_inside_the_url_only(tmp_path: Path) -> None:
    """A password ``p`` and a query value ``2`` are masked in the URL (its user info, its
    ``key=value``), and the other ``p`` and ``2`` of a line are left as written."""
    sinks = [{"type": "http", "url": "http://u:p@h.example/x?v=2&k=ab"}]
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(daemon_config("http://x:9", tmp_path, sinks=sinks)))
    config = load_config(config_path)
    with captured_logs(secrets=config.secrets()) as out:
        get_logger("tests").error(
            "sink.failed", error="POST http://u:p@h.example/x?v=2&k=ab: attempt 2, p 2, v=2"
        )
    [line] = json_lines(out)
    assert line["error"] == "POST http://***@h.example/x?***: attempt 2, p 2, ***"
