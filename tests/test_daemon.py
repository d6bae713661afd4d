"""The daemon's lifecycle in-process, where the test must drive two calls at once."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import pytest
import yaml

from tcsms_poller.config import load_config
from tcsms_poller.daemon import Daemon
from tcsms_poller.emulator import EmulatorOptions, run_emulator
from tcsms_poller.logs import get_logger
from tests.support.daemon_process import APP, daemon_config
from tests.support.log_capture import captured_logs, json_lines, output

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def serving(config_path: Path, config: dict[str, Any]) -> AsyncIterator[Daemon]:
    """A daemon of ``config`` (written to ``config_path``, which its reloads read again)
    serving in this process while the block runs, stopped at its end."""
    await anyio.Path(config_path).write_text(yaml.safe_dump(config))
    daemon = Daemon(load_config(config_path), config_path=config_path)
    stop = anyio.Event()
    async with anyio.create_task_group() as tg:
        await tg.start(partial(daemon.serve, stop.wait))
        try:
            yield daemon
        finally:
            stop.set()


async def test_overlapping_reloads_start_an_added_sink_once(tmp_path: Path) -> None:
    """Two reloads at once run one after the other: the sink they add is started once."""
    config_path = tmp_path / "config.yaml"
    async with run_emulator(EmulatorOptions(seed=7)) as emulator:
        config = daemon_config(emulator.url, tmp_path)
        with captured_logs() as out, anyio.fail_after(60):
            async with serving(config_path, config) as daemon:
                second = {"type": "file", "name": "second", "path": str(tmp_path / "2.jsonl")}
                config_path.write_text(yaml.safe_dump({**config, "sinks": [second]}))
                async with anyio.create_task_group() as reloads:
                    reloads.start_soon(daemon.reload)
                    reloads.start_soon(daemon.reload)
    events = json_lines(out)
    started = [e["sink"] for e in events if e["event"] == "sink.started"]
    assert started == ["file", "second"]
    assert [e["sinks"] for e in events if e["event"] == "daemon.reloaded"] == [["second"]] * 2


async def test_a_burst_of_identical_errors_is_counted_by_the_stop_at_the_latest(
    tmp_path: Path,
) -> None:
    """A library's error logged 100 times at once, then quiet: the daemon writes the count of
    the 99 held back before it says it stopped, with no further line to carry it."""
    config_path = tmp_path / "config.yaml"
    async with run_emulator(EmulatorOptions(seed=7)) as emulator:
        with captured_logs() as out, anyio.fail_after(60):
            async with serving(config_path, daemon_config(emulator.url, tmp_path)):
                for _ in range(100):
                    logging.getLogger("asyncio").error("socket.accept() out of system resource")
            events = [(e["event"], e.get("repeated")) for e in json_lines(out)]
    accept_failed = [event for event in events if event[0].startswith("socket.accept()")]
    assert [count for _, count in accept_failed] == [None, 99]
    assert events.index(accept_failed[1]) < events.index(("daemon.stopped", None))


async def test_a_reload_that_fails_changes_neither_the_configuration_nor_the_numbers(
    tmp_path: Path,
) -> None:
    """One ``daemon.reload_failed`` line, the old sinks, numbers and configuration stay; a good
    reload later applies all of it."""
    config_path = tmp_path / "config.yaml"
    number = "+8613700000001"
    blocker = tmp_path / "blocker"
    blocker.write_text("")  # a sink under a regular file cannot open, not even as root
    async with run_emulator(EmulatorOptions(seed=7)) as emulator:
        config = daemon_config(emulator.url, tmp_path)

        def with_second_sink(directory: Path) -> dict[str, Any]:
            second = {"type": "file", "name": "second", "path": str(directory / "2.jsonl")}
            app = {**config["apps"][0], "by_number": {"enabled": False, "numbers": [number]}}
            return {**config, "sinks": [*config["sinks"], second], "apps": [app]}

        def reload_successful() -> float | None:
            registry = daemon.metrics.registry
            return registry.get_sample_value("tcsms_poller_config_last_reload_successful")

        async def tracked() -> list[str]:
            assert daemon.context is not None
            return [n.phone for n in await daemon.context.store.list_numbers(app_id=APP)]

        with captured_logs() as out, anyio.fail_after(60):
            async with serving(config_path, config) as daemon:
                before = daemon.config
                config_path.write_text(yaml.safe_dump(with_second_sink(blocker)))
                await daemon.reload()
                assert daemon.config is before
                assert await tracked() == []
                assert reload_successful() == 0
                failed = json_lines(out)
                config_path.write_text(yaml.safe_dump(with_second_sink(tmp_path)))
                await daemon.reload()
                assert [s.sink_name for s in daemon.config.sinks] == ["file", "second"]
                assert await tracked() == [number]
                assert reload_successful() == 1
    [line] = [e for e in failed if e["event"] in ("daemon.reloaded", "daemon.reload_failed")]
    assert (line["event"], line["level"]) == ("daemon.reload_failed", "error")
    assert "cannot open" in line["error"]
    assert line["hint"] == "the previous configuration stays"
    assert not [e for e in failed if e["event"] == "sink.stopped"]  # "file" ran on throughout


@pytest.mark.parametrize("fails", [False, True], ids=["applied", "failed"])
async def test_a_reload_masks_the_secrets_of_the_sinks_it_adds(tmp_path: Path, fails: bool) -> None:
    """A webhook added by a reload: its URL's password and Authorization header are masked in the
    lines logged afterwards, ours and a library's, and on /healthz; also when the reload then
    fails (another new sink cannot open), as the file that holds them was read."""
    config_path = tmp_path / "config.yaml"
    password, token = "hook-pass-4711", "tok-8f3Kq9Zx2Lm"
    url = f"http://hooks:{password}@127.0.0.1:9/sms"  # nothing listens: only its text matters
    hook = {"type": "http", "url": url, "headers": {"Authorization": f"Bearer {token}"}}
    blocker = tmp_path / "blocker"
    blocker.write_text("")  # a sink under a regular file cannot open, not even as root
    broken = {"type": "file", "name": "broken", "path": str(blocker / "out.jsonl")}
    async with run_emulator(EmulatorOptions(seed=7)) as emulator:
        config = daemon_config(emulator.url, tmp_path)
        with captured_logs() as out, anyio.fail_after(60):
            async with serving(config_path, config) as daemon:
                sinks = [hook, broken] if fails else [hook]
                config_path.write_text(yaml.safe_dump({**config, "sinks": sinks}))
                await daemon.reload()
                get_logger("tcsms_poller.tests").error(
                    "probe.quoted", url=url, auth=f"Bearer {token}"
                )
                logging.getLogger("httpx").warning("POST %s (Authorization: Bearer %s)", url, token)
                probe = daemon.board.register("probe", "sink")
                probe.failed(f"POST {url} with Authorization: Bearer {token} refused")
    text = output(out)
    reloaded = [e["sinks"] for e in json_lines(out) if e["event"] == "daemon.reloaded"]
    assert reloaded == ([] if fails else [["http"]])
    [quoted] = [e for e in json_lines(out) if e["event"] == "probe.quoted"]
    assert (quoted["url"], quoted["auth"]) == ("http://***@127.0.0.1:9/sms", "***")
    assert "POST http://***@127.0.0.1:9/sms (Authorization: ***)" in text
    assert password not in text
    assert token not in text
    assert probe.reason == "POST http://***@127.0.0.1:9/sms with Authorization: *** refused"
