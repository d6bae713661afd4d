"""Twenty ``kill -9``s of the daemon under live traffic, with a file sink and a webhook.

What a crash may cost is exactly what no client could save: a queue-mode answer the emulator
handed out in the last moments before the kill, which died with the process. Everything else must
arrive: the file sink exactly once, the webhook at least once, and every repeat at the webhook
must be the one batch whose acknowledgement the killed daemon had not committed yet.
"""

from __future__ import annotations

import random
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest

from tcsms_poller.emulator import EmulatorOptions, RunningEmulator, run_emulator
from tests.support.daemon_process import DaemonProcess, daemon_config, running_daemon
from tests.support.emulator import expected_ids, truth, truth_reply_id
from tests.support.http_receiver import Receiver, http_receiver
from tests.support.jsonl import ids_in
from tests.support.reliability import CHAOS_NUMBERS as NUMBERS
from tests.support.reliability import CHAOS_TRAFFIC as TRAFFIC
from tests.support.reliability import Tally, batch_ids, generated_traffic, replayed_batches
from tests.support.waiting import settle

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

SEED = 20_250_611
KILLS = 20
RUN_FOR = (0.3, 1.5)  # seconds after READY=1 until the kill: long enough to be mid-work
IN_FLIGHT = 0.25  # a reply handed out this shortly before a kill may have died with the daemon
RUN_HEADER = "X-Daemon-Run"  # which daemon process posted a batch (a configured sink header)


@dataclass(slots=True)
class Kill:
    """One ``kill -9``: when it struck, and when the next daemon was started."""

    run: int
    at: float
    restarted_at: float = float("inf")

    def covers(self, handed_out_at: float) -> bool:
        """Whether a queue answer handed out then was still the killed daemon's to commit."""
        return self.at - IN_FLIGHT <= handed_out_at <= self.restarted_at


def chaos_config(
    emulator: RunningEmulator, directory: Path, receiver: Receiver, run: int
) -> dict[str, Any]:
    """Queue-mode replies and receipts, per-number receipts, a file sink and a webhook."""
    sinks: list[dict[str, Any]] = [
        {"type": "file", "path": str(directory / "records.jsonl")},
        {
            "type": "http",
            "url": receiver.url,
            "batch_size": 20,  # many small batches: kills land between send and ack
            "timeout": "30s",  # a retry would be a repeat of its own: keep it out of the picture
            "max_backoff": "500ms",
            "headers": {RUN_HEADER: str(run)},
        },
    ]
    return daemon_config(
        emulator.url,
        directory,
        sinks=sinks,
        app={"by_number": {"numbers": list(NUMBERS), "interval": "1s"}},
    )


def lost_replies_by_kill(
    snapshot: dict[str, Any], delivered: set[str], kills: list[Kill]
) -> tuple[dict[int, set[float]], list[str]]:
    """Hand-out times of the lost replies per kill, and the losses no kill explains."""
    handed_out: defaultdict[str, list[float | None]] = defaultdict(list)
    for reply in snapshot["replies"]:
        handed_out[truth_reply_id(reply)].append(reply["handed_out_at"])
    by_kill: defaultdict[int, set[float]] = defaultdict(set)
    unexplained: list[str] = []
    for reply_id, times in handed_out.items():
        if reply_id in delivered:
            continue
        for at in times:  # every copy of a lost reply was lost
            kill = None if at is None else next((k for k in kills if k.covers(at)), None)
            if at is None or kill is None:
                unexplained.append(f"{reply_id} handed out at {at}")
            else:
                by_kill[kill.run].add(at)
    return dict(by_kill), unexplained


def last_hand_out_before(snapshot: dict[str, Any], moment: float) -> float:
    """When the last reply handed out before ``moment`` left the emulator's queue."""
    return max(
        float(reply["handed_out_at"])
        for reply in snapshot["replies"]
        if reply["handed_out_at"] is not None and reply["handed_out_at"] <= moment
    )


def in_flight_at_kills(snapshot: dict[str, Any], kills: list[Kill]) -> set[str]:
    """Ids of the replies handed out shortly before a kill: the only ones a kill may cost."""
    return {
        truth_reply_id(reply)
        for reply in snapshot["replies"]
        if reply["handed_out_at"] is not None
        and any(kill.covers(reply["handed_out_at"]) for kill in kills)
    }


@pytest.mark.timeout(240)  # typically 40 s; room for a busy machine
async def test_twenty_kills_lose_only_answers_in_flight(tmp_path: Path) -> None:
    """kill -9 at seeded random moments: file exactly once, webhook repeats all replays."""
    plan = random.Random(SEED)
    output = tmp_path / "records.jsonl"
    kills: list[Kill] = []
    async with run_emulator(EmulatorOptions(seed=SEED)) as emulator:
        with http_receiver() as receiver:

            @asynccontextmanager
            async def daemon_run(run: int) -> AsyncIterator[DaemonProcess]:
                if kills:
                    kills[-1].restarted_at = time.time()
                config = chaos_config(emulator, tmp_path, receiver, run)
                async with running_daemon(tmp_path, config) as daemon:
                    yield daemon

            async with generated_traffic(emulator, TRAFFIC, seed=SEED) as traffic:
                for run in range(KILLS):
                    async with daemon_run(run) as daemon:
                        await anyio.sleep(plan.uniform(*RUN_FOR))  # the chaos plan, not a wait
                        kills.append(Kill(run, time.time()))
                        await daemon.kill()
                async with daemon_run(KILLS) as daemon:
                    traffic.stop()
                    snapshot = await truth(emulator)
                    candidates = in_flight_at_kills(snapshot, kills)
                    must_have = expected_ids(snapshot) - candidates
                    posted = Tally(receiver)

                    def quiet() -> bool:
                        in_file = set(ids_in(output))
                        return in_file >= must_have and posted.update() >= in_file

                    await settle(quiet, timeout=60)
                    await daemon.stop()
            requests = list(receiver.accepted)
        final = await truth(emulator)

    expected = expected_ids(final)
    in_file = ids_in(output)
    delivered = set(in_file)
    repeated_in_file = [i for i, n in Counter(in_file).items() if n > 1]
    assert not repeated_in_file, f"{len(repeated_in_file)} records twice in the file sink"
    assert delivered <= expected, f"records no one sent: {sorted(delivered - expected)[:5]}"
    statuses = {status["serial_no"] for status in final["send_statuses"]}
    missing = [status for status in final["send_statuses"] if status["serial_no"] not in delivered]
    assert not missing, f"{len(missing)} delivery statuses lost: {missing[:3]}; kills: {kills}"

    lost_by_kill, unexplained = lost_replies_by_kill(final, delivered, kills)
    assert not unexplained, f"replies lost outside any kill's last {IN_FLIGHT}s: {unexplained}"
    for run, times in lost_by_kill.items():
        kill = kills[run]
        # One queue answer at most dies with a daemon: the last one before the restart.
        last = last_hand_out_before(final, kill.restarted_at)
        assert times == {last}, f"kill {run}: lost replies handed out at {times}, not just {last}"
    lost = expected - delivered
    print(  # noqa: T201 (what the run cost is its report, shown with -s)
        f"\n{len(kills)} kills; {len(lost)} replies lost in flight at {len(lost_by_kill)} kills "
        f"(of {len(candidates)} handed out within {IN_FLIGHT}s before a kill); "
        f"{len(statuses)} statuses and {len(expected) - len(statuses)} reply ids in all"
    )

    copies = [record_id for request in requests for record_id in batch_ids(request)]
    assert set(copies) == delivered, "the webhook and the file sink disagree"
    by_run = [
        [r for r in requests if r.headers[RUN_HEADER] == str(run)] for run in range(KILLS + 1)
    ]
    replays, problems = replayed_batches(by_run)
    assert not problems, problems
    print(  # noqa: T201 (as above)
        f"webhook: {len(requests)} batches, {replays} replayed after a kill, "
        f"{len(copies) - len(set(copies))} repeated records"
    )
