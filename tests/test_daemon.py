"""The daemon's lifecycle in-process, where the test must drive two calls at once."""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path

import anyio
import pytest
import yaml

from tcsms_poller.config import load_config
from tcsms_poller.daemon import Daemon
from tcsms_poller.emulator import EmulatorOptions, run_emulator
from tests.support.daemon_process import daemon_config
from tests.support.log_capture import captured_logs, json_lines

pytestmark = pytest.mark.anyio


async def test_overlapping_reloads_start_an_added_sink_once(tmp_path: Path) -> None:
    """Two reloads at once run one after the other: the sink they add is started once."""
    config_path = tmp_path / "config.yaml"
    async with run_emulator(EmulatorOptions(seed=7)) as emulator:
        config = daemon_config(emulator.url, tmp_path)
        config_path.write_text(yaml.safe_dump(config))
        daemon = Daemon(load_config(config_path), config_path=config_path)
        stop = anyio.Event()
        with captured_logs() as out, anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                await tg.start(partial(daemon.serve, stop.wait))
                second = {"type": "file", "name": "second", "path": str(tmp_path / "2.jsonl")}
                config_path.write_text(yaml.safe_dump({**config, "sinks": [second]}))
                async with anyio.create_task_group() as reloads:
                    reloads.start_soon(daemon.reload)
                    reloads.start_soon(daemon.reload)
                stop.set()
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
        config_path.write_text(yaml.safe_dump(daemon_config(emulator.url, tmp_path)))
        daemon = Daemon(load_config(config_path), config_path=config_path)
        stop = anyio.Event()
        with captured_logs() as out, anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                await tg.start(partial(daemon.serve, stop.wait))
                for _ in range(100):
                    logging.getLogger("asyncio").error("socket.accept() out of system resource")
                stop.set()
            events = [(e["event"], e.get("repeated")) for e in json_lines(out)]
    accept_failed = [event for event in events if event[0].startswith("socket.accept()")]
    assert [count for _, count in accept_failed] == [None, 99]
    assert events.index(accept_failed[1]) < events.index(("daemon.stopped", None))
