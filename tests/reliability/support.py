"""What the reliability runs share: steady live traffic, fault rules at runtime, health probes.

The runs drive the real daemon (a subprocess, ``tests.e2e.daemon_process``) against the real
emulator over loopback; these helpers only talk to the emulator's control endpoints and the
daemon's listener, as an operator's tooling would.
"""

from __future__ import annotations

import random
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx

from tcsms_poller.emulator import RunningEmulator
from tests.e2e.conftest import expected_ids, read_jsonl

__all__ = [
    "HealthProbe",
    "LiveTraffic",
    "delivered_ids",
    "emulator_truth",
    "listener",
    "live_traffic",
    "reason_of",
    "request_counts",
    "set_faults",
]

TOKEN = "reliability-token-0123456789"
CALLBACK_SECRET = "reliability-callback-0123456789"
NUMBERS = ("+8613711112222", "+8613722223333", "+8613733334444", "+8615544445555")


async def emulator_truth(emulator: RunningEmulator) -> set[str]:
    """The id of every record the emulator has created so far (what a sink must end up with)."""
    async with httpx.AsyncClient() as client:
        response = await client.get(f"{emulator.url}/_emulator/truth")
        response.raise_for_status()
        return expected_ids(response.json())


def delivered_ids(path: Path) -> list[str]:
    """The ids in a file sink's JSON Lines, in file order (duplicates kept, to be caught)."""
    return [record["id"] for record in read_jsonl(path)]


def listener(port: int) -> dict[str, Any]:
    """The daemon's ``server`` settings: its listener (``/healthz``, ``/metrics``) on ``port``."""
    return {"listen": f"127.0.0.1:{port}", "token": TOKEN, "callback_secret": CALLBACK_SECRET}


async def set_faults(emulator: RunningEmulator, rules: Sequence[Mapping[str, Any]]) -> None:
    """Replace the emulator's fault rules at runtime (``[]`` turns every fault off)."""
    async with httpx.AsyncClient() as client:
        response = await client.post(
            f"{emulator.url}/_emulator/faults", json={"faults": list(rules)}
        )
        response.raise_for_status()


def request_counts(emulator: RunningEmulator, action: str) -> tuple[int, int]:
    """``(requests, ok)`` the emulator has seen for ``action`` so far."""
    stats = emulator.state.stats_snapshot()["actions"].get(action, {})
    return stats.get("requests", 0), stats.get("ok", 0)


class LiveTraffic:
    """Receipts and replies arriving in small seeded batches, the way real traffic trickles in.

    Injected through ``POST /_emulator/records`` (without pushes), so the emulator's truth lists
    exactly what was sent; ``batches`` counts what has arrived so far.
    """

    def __init__(self, emulator: RunningEmulator, *, seed: int, period: float) -> None:
        self._emulator = emulator
        self._rng = random.Random(f"live-traffic:{seed}")
        self._period = period
        self._replies = 0
        self.batches = 0

    async def inject_batch(self, client: httpx.AsyncClient) -> None:
        """One batch: a few receipts and perhaps a reply, spread over the numbers."""
        now = int(time.time())
        receipts = [
            {
                "phone_number": self._rng.choice(NUMBERS),
                "report_status": "SUCCESS" if self._rng.random() < 0.9 else "FAIL",
                "user_receive_time": now - self._rng.randrange(0, 30),
            }
            for _ in range(self._rng.randint(3, 12))
        ]
        replies = []
        for _ in range(self._rng.randint(0, 2)):
            self._replies += 1
            replies.append(
                {
                    "phone_number": self._rng.choice(NUMBERS),
                    "reply_content": f"live reply {self._replies}",
                    "reply_time": now,
                }
            )
        response = await client.post(
            f"{self._emulator.url}/_emulator/records",
            json={"send_statuses": receipts, "replies": replies, "push": False},
        )
        response.raise_for_status()
        self.batches += 1

    async def run(self, *, batches: int | None = None) -> None:
        """Inject a batch every ``period`` seconds (``batches`` of them, or until cancelled)."""
        async with httpx.AsyncClient() as client:
            while batches is None or self.batches < batches:
                await self.inject_batch(client)
                await anyio.sleep(self._period)  # pacing the traffic, not waiting on the daemon


@asynccontextmanager
async def live_traffic(
    emulator: RunningEmulator, *, seed: int, period: float = 0.1
) -> AsyncIterator[LiveTraffic]:
    """Traffic flows while the block runs and stops (between batches) when it is left."""
    traffic = LiveTraffic(emulator, seed=seed, period=period)
    async with anyio.create_task_group() as tg:
        tg.start_soon(traffic.run)
        try:
            yield traffic
        finally:
            tg.cancel_scope.cancel()


class HealthProbe:
    """``GET /healthz`` of a running daemon, polled until it answers what a test waits for."""

    def __init__(self, client: httpx.AsyncClient, port: int) -> None:
        self._client = client
        self.url = f"http://127.0.0.1:{port}/healthz"
        self.last: tuple[int, dict[str, Any]] | None = None

    async def get(self) -> tuple[int, dict[str, Any]]:
        """One probe: the status code and the JSON body."""
        response = await self._client.get(self.url)
        self.last = (response.status_code, dict(response.json()))
        return self.last

    async def wait_for(
        self,
        code: int,
        *,
        unhealthy: Sequence[str] = (),
        timeout: float = 60.0,  # noqa: ASYNC109 (polls another process, like e2e's wait_until)
    ) -> dict[str, Any]:
        """The body of the first answer with ``code`` whose ``unhealthy`` list has ``unhealthy``."""
        try:
            with anyio.fail_after(timeout):
                while True:
                    status, body = await self.get()
                    if status == code and set(unhealthy) <= set(body["unhealthy"]):
                        return body
                    await anyio.sleep(0.05)
        except TimeoutError:
            raise AssertionError(
                f"/healthz never answered {code} naming {list(unhealthy)} within {timeout}s; "
                f"last answer: {self.last}"
            ) from None


def reason_of(body: Mapping[str, Any], name: str) -> str:
    """The reason ``/healthz`` gives for the part ``name`` (empty if it has none)."""
    for part in body["parts"]:
        if part["name"] == name:
            return str(part["reason"] or "")
    raise AssertionError(f"/healthz names no part {name!r}: {body}")
