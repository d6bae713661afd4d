"""``check-config --connect`` against the real emulator: credentials, clock, reachability, sinks."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import yaml

from tcsms_poller.config import config_from_mapping
from tcsms_poller.emulator import (
    DEFAULT_APP_ID,
    DEFAULT_SECRET_ID,
    DEFAULT_SECRET_KEY,
    RunningEmulator,
)
from tcsms_poller.exits import EX_FAILURE, EX_OK
from tcsms_poller.preflight import preflight
from tests.support.cli import run_cli
from tests.support.http_receiver import Reply, http_receiver

pytestmark = pytest.mark.anyio


def config_for(endpoint: str, tmp_path: Path, **tencent: Any) -> dict[str, Any]:
    return {
        "tencent": {
            "secret_id": DEFAULT_SECRET_ID,
            "secret_key": DEFAULT_SECRET_KEY,
            "endpoint": endpoint,
            "timeout": "5s",
            **tencent,
        },
        "apps": [{"sms_sdk_app_id": DEFAULT_APP_ID}],
        "state": {"path": str(tmp_path / "state" / "state.db")},
        "sinks": [{"type": "file", "path": str(tmp_path / "out" / "records.jsonl")}],
    }


async def check_connect(tmp_path: Path, config: dict[str, Any]) -> tuple[int, list[str]]:
    """Run ``check-config -q --connect``; its exit code and its ``# `` lines."""
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    result = await anyio.to_thread.run_sync(
        lambda: run_cli("check-config", "-q", "--connect", "-c", str(path))
    )
    assert result.stderr == ""
    return result.returncode, result.stdout.splitlines()


async def emulator_json(emulator: RunningEmulator, route: str) -> dict[str, Any]:
    async with httpx.AsyncClient() as client:
        response = await client.get(f"{emulator.url}/_emulator/{route}")
        response.raise_for_status()
        return dict(response.json())


async def test_good_credentials_pass_and_consume_no_record(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    """One read-only call for the app: records waiting in the queues stay there."""
    async with httpx.AsyncClient() as client:
        now = int(time.time())
        reply = {"phone_number": "+8613711112222", "reply_content": "hi", "reply_time": now}
        receipt = {"phone_number": "+8613711112222", "user_receive_time": now}
        injected = await client.post(
            f"{emulator.url}/_emulator/records",
            json={"push": False, "replies": [reply], "send_statuses": [receipt]},
        )
        injected.raise_for_status()
    config = config_for(emulator.url, tmp_path)
    code, lines = await check_connect(tmp_path, config)
    assert code == EX_OK
    assert lines == []  # -q: nothing to say when all is well
    stats = await emulator_json(emulator, "stats")
    assert {action: counts["requests"] for action, counts in stats["actions"].items()} == {
        "CallbackStatusStatistics": 1
    }
    truth = await emulator_json(emulator, "truth")
    handed_out = [r["handed_out_at"] for r in truth["replies"] + truth["send_statuses"]]
    assert handed_out == [None, None]
    assert not (tmp_path / "state").exists()  # probing creates nothing
    assert not (tmp_path / "out").exists()


async def test_without_q_every_probe_reports_a_line(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    config = config_for(emulator.url, tmp_path)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    result = await anyio.to_thread.run_sync(
        lambda: run_cli("check-config", "--connect", "-c", str(path))
    )
    assert result.returncode == EX_OK
    probes = [
        line for line in result.stdout.splitlines() if line.startswith("# ") and ": ok: " in line
    ]
    assert [line.split(":")[0] for line in probes] == ["# app 1400006666", "# state", "# sink file"]
    assert "clock in step with the server's" in probes[0]
    yaml.safe_load(result.stdout)  # the probe lines are comments: stdout is still YAML


async def test_bad_credentials_fail_as_authentication(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    config = config_for(emulator.url, tmp_path, secret_key="not-the-emulators-key-0000000000")
    code, lines = await check_connect(tmp_path, config)
    assert code == EX_FAILURE
    assert len(lines) == 1
    assert lines[0].startswith(
        "# app 1400006666: FAILED: authentication failed: "
        "CallbackStatusStatistics: AuthFailure.SignatureFailure: "
    )
    assert "not-the-emulators-key" not in lines[0]


async def test_an_unreachable_endpoint_fails_as_unreachable(tmp_path: Path) -> None:
    code, lines = await check_connect(tmp_path, config_for("http://127.0.0.1:9", tmp_path))
    assert code == EX_FAILURE
    assert lines == [
        "# app 1400006666: FAILED: unreachable: http://127.0.0.1:9: "
        "ConnectError: All connection attempts failed"
    ]


async def test_a_clock_off_by_ten_minutes_is_reported_as_skew(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    """The emulator refuses a request signed 10 minutes early, as Tencent does."""
    config = config_from_mapping(config_for(emulator.url, tmp_path))
    verdicts = await preflight(config, clock=lambda: time.time() - 600)
    assert not verdicts[0].ok
    assert verdicts[0].detail.startswith("clock skew: CallbackStatusStatistics: ")
    assert "AuthFailure.SignatureExpire" in verdicts[0].detail
    assert verdicts[0].detail.endswith("behind the server's (more than 30s: check NTP)")


async def test_sinks_are_probed(tmp_path: Path, emulator: RunningEmulator) -> None:
    """The HTTP sink's URL must answer (405 to HEAD is an answer, 503 is not); a file sink's
    directory must take a file."""
    plain_file = tmp_path / "plain-file"  # a file where a directory should be (root or not)
    plain_file.write_text("")
    with http_receiver() as answering, http_receiver() as failing:
        answering.script(Reply(405, b""))
        failing.script(Reply(503, b""))
        config = config_for(emulator.url, tmp_path)
        config["sinks"] = [
            {"type": "http", "name": "answering", "url": answering.url},
            {"type": "http", "name": "failing", "url": failing.url},
            {"type": "file", "path": str(plain_file / "sub" / "records.jsonl")},
            {"type": "stdout"},
        ]
        code, lines = await check_connect(tmp_path, config)
    assert code == EX_FAILURE
    assert lines == [
        f"# sink failing: FAILED: {failing.url} answers HEAD with HTTP 503",
        f"# sink file: FAILED: cannot create a file in {plain_file}: Not a directory",
    ]


async def test_a_webhook_url_is_probed_and_shown_without_its_secrets(tmp_path: Path) -> None:
    """The URL in the verdict, like the printed configuration, is safe to paste into a ticket."""
    config = config_for("http://127.0.0.1:9", tmp_path)
    config["sinks"] = [
        {"type": "http", "url": "http://hooker:hook-password-4711@127.0.0.1:9/h?token=t0k3n"}
    ]
    _, lines = await check_connect(tmp_path, config)
    [sink] = [line for line in lines if line.startswith("# sink")]
    shown = "http://***@127.0.0.1:9/h?token=***"
    assert sink.startswith(f"# sink http: FAILED: {shown} does not answer")
    assert "hook-password-4711" not in sink
    assert "t0k3n" not in sink


async def test_the_examples_emulator_variant_connects(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    """What ``example-config --emulator`` prints really signs against the emulator."""
    printed = await anyio.to_thread.run_sync(lambda: run_cli("example-config", "--emulator"))
    path = tmp_path / "config.yaml"
    path.write_text(printed.stdout.replace("http://127.0.0.1:9000", emulator.url))
    result = await anyio.to_thread.run_sync(
        lambda: run_cli("check-config", "-q", "--connect", "-c", str(path))
    )
    assert (result.returncode, result.stdout, result.stderr) == (EX_OK, "", "")
