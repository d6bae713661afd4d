"""``tcsms-poller dead-letter list|replay``: refused batches go back to their sink, once."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

import anyio
import pytest
import yaml

from tcsms_poller.emulator import RunningEmulator
from tests.support.daemon_process import daemon_config, running_daemon
from tests.support.emulator import expected_ids, inject, receipts, truth
from tests.support.http_receiver import Reply, http_receiver, posted_ids
from tests.support.jsonl import read_jsonl
from tests.support.ports import free_port
from tests.support.waiting import wait_until

pytestmark = pytest.mark.anyio
SECRET = "pw-not-in-logs-7e2"


async def cli(config: Path, *args: str) -> tuple[int, str, str]:
    """``tcsms-poller ARGS -c CONFIG`` as a subprocess: exit code, stdout, stderr."""
    command = [sys.executable, "-m", "tcsms_poller", *args, "-c", str(config)]
    with anyio.fail_after(60):
        done = await anyio.run_process(command, check=False)
    return done.returncode, done.stdout.decode(), done.stderr.decode()


async def test_dead_letters_are_replayed_into_their_sink_once(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    """Refused with a 400, listed, replayed into the recovered webhook, and never twice."""
    await inject(emulator, send_statuses=receipts(3))
    expected = expected_ids(await truth(emulator))
    config = tmp_path / "config.yaml"
    with http_receiver() as receiver:
        receiver.script(Reply(400, body=b'{"error":"schema mismatch"}'))
        sinks = [{"type": "http", "url": receiver.url, "max_backoff": "500ms"}]
        config.write_text(yaml.safe_dump(daemon_config(emulator.url, tmp_path, sinks=sinks)))

        await cli(config, "once")
        assert receiver.accepted == []
        code, out, _ = await cli(config, "dead-letter", "list", "--json")
        assert code == 0
        [batch] = [json.loads(line) for line in out.splitlines()]
        assert (batch["sink"], batch["records"], batch["replayed"], batch["queued"]) == (
            "http",
            3,
            0,
            0,
        )
        assert "HTTP 400" in batch["reason"]

        code, out, _ = await cli(config, "dead-letter", "replay", "--sink", "http")
        assert code == 0
        assert out.startswith("queued 3 dead-lettered records for sink http")
        code, out, _ = await cli(config, "dead-letter", "list", "--json")
        assert json.loads(out)["queued"] == 3

        await cli(config, "once")  # the webhook accepts now (the receiver's fallback is 200)
        delivered = posted_ids([request.body for request in receiver.accepted])
        assert sorted(delivered) == sorted(expected)

        code, out, _ = await cli(config, "dead-letter", "replay", "--sink", "http")
        assert out.startswith("queued 0 dead-lettered records for sink http (3 skipped")
        await cli(config, "once")
        assert len(receiver.accepted) == 1  # nothing was sent again
        code, out, _ = await cli(config, "dead-letter", "list")
        assert " 3 records  3 replayed  0 queued  rejected: " in out


async def test_since_leaves_older_dead_letters_alone_and_a_wrong_sink_is_a_usage_error(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    """``--since`` in the future selects nothing; an unknown sink exits 2 with one line."""
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(daemon_config(emulator.url, tmp_path)))
    dead = tmp_path / "dead-letter" / "file.jsonl"
    dead.parent.mkdir()
    record = {"kind": "send_status", "id": "2019:-1", "app_id": "1", "source": "x"}
    line = {"dead_lettered_at": "2026-01-01T00:00:00.000Z", "sink": "file", "reason": "r"}
    dead.write_text(json.dumps({**line, "record": record}) + "\n")
    code, out, _ = await cli(
        config, "dead-letter", "replay", "--sink", "file", "--since", "2026-01-02T00:00:00Z"
    )
    assert (code, out.split(" (")[0]) == (0, "queued 0 dead-lettered records for sink file")
    code, out, _ = await cli(config, "dead-letter", "list", "--since", "2025-12-31T00:00:00Z")
    assert "1 records  0 replayed  0 queued  r" in out
    code, out, _ = await cli(config, "dead-letter", "list", "--since", "1h")
    assert (code, out) == (0, "no dead-lettered batches\n")
    code, out, err = await cli(config, "dead-letter", "replay", "--sink", "../etc")
    assert code == 2
    assert err.strip().splitlines() == [
        "tcsms-poller: --sink '../etc' is not configured (sinks: file)"
    ]
    code, _, err = await cli(config, "dead-letter", "replay", "--sink", "file", "--since", "x")
    assert code == 2
    assert "Traceback" not in err


async def test_a_running_daemon_delivers_a_replay_on_sighup(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    """No restart needed: ``replay`` then SIGHUP, and the recovered webhook gets the records."""
    await inject(emulator, send_statuses=receipts(3))
    expected = expected_ids(await truth(emulator))
    dead = tmp_path / "dead-letter" / "http.jsonl"
    with http_receiver() as receiver:
        receiver.script(Reply(400, body=b'{"error":"schema mismatch"}'))
        sinks = [{"type": "http", "url": receiver.url}]
        config = daemon_config(emulator.url, tmp_path, sinks=sinks)
        async with running_daemon(tmp_path, config) as daemon:
            await wait_until(lambda: len(read_jsonl(dead)) == 3, what="dead letters")
            code, out, _ = await cli(
                tmp_path / "config.yaml", "dead-letter", "replay", "--sink", "http"
            )
            assert (code, out.split(" dead-lettered")[0]) == (0, "queued 3")
            daemon.signal(signal.SIGHUP)
            await wait_until(
                lambda: set(posted_ids([r.body for r in receiver.accepted])) == expected,
                what="the replayed records",
            )
            await daemon.stop()


async def test_an_unreachable_postgresql_state_fails_in_one_line_without_its_password(
    tmp_path: Path,
) -> None:
    """With ``state.url`` the dead letters are in the database: one that does not answer is
    one error event (exit 1), the URL's password masked, no traceback."""
    config = tmp_path / "config.yaml"
    settings = daemon_config("http://127.0.0.1:9", tmp_path, sinks=[{"type": "stdout"}])
    settings["state"]["url"] = f"postgresql://tcsms:{SECRET}@127.0.0.1:{free_port()}/tcsms"
    config.write_text(yaml.safe_dump(settings))
    code, out, err = await cli(config, "dead-letter", "list")
    assert (code, out) == (1, "")
    [failed] = [json.loads(line) for line in err.splitlines() if "dead_letter.failed" in line]
    assert failed["error"].startswith("cannot open state database postgresql://tcsms:***@")
    assert "Traceback" not in err
    assert SECRET not in err
