"""A sink's ack in cluster mode when its lease passed on between the send and the ack.

One instance in this process (``PostgresStore``, ``Membership``, ``SinkFleet``: the rig of
``test_fleet_reload_cluster``) on a fresh database of the session's PostgreSQL server, a real
HTTP sink posting to a receiver on loopback.
"""

from __future__ import annotations

from pathlib import Path

import anyio
import psycopg
import pytest

from tests.sinks.test_fleet_reload_cluster import holds, http, instance, posted
from tests.support.http_receiver import Received, Reply, http_receiver
from tests.support.log_capture import captured_logs, json_lines
from tests.support.records import records

pytestmark = pytest.mark.anyio


async def test_an_ack_the_fence_refused_is_sent_again_by_the_same_instance_when_it_holds_again(
    tmp_path: Path, postgres_url: str
) -> None:
    """While the webhook takes a's first batch, the sink's lease passes to b in the database (b
    took it over and died before it sent anything). The ack is refused by the fence, and a,
    whose lease still looks held here, drops it and sends nothing under the dead token: it
    drains again from the shared cursor once a claim returns the lease (b's expired), so the
    batch comes once more from the same instance, with no other sender in between. That is the
    at-least-once case the cluster chaos run recognises by a's ``sink.lease_lost`` ("write
    refused") between the batch and its replay."""

    def pass_lease_on(request: Received) -> bytes:
        with psycopg.connect(postgres_url, autocommit=True) as connection:
            connection.execute(
                "UPDATE leases SET holder = 'b', token = nextval('lease_tokens') "
                "WHERE name = 'sink:hook'"
            )
        return b'{"ok":true}'

    with http_receiver() as to_hook, captured_logs() as out:
        to_hook.script(Reply(200, body=pass_lease_on))
        with anyio.fail_after(60):
            async with instance(postgres_url, "a", [http("hook", to_hook)], tmp_path) as a:
                await holds(a, ["sink:hook"])
                await a.store.commit(records("r1", "r2"))
                while (await a.store.sink_cursor("hook")).acked_seq < 2:  # noqa: ASYNC110
                    await anyio.sleep(0.05)  # the batch sent again and acknowledged
                assert posted(to_hook) == ["r1", "r2", "r1", "r2"]
    events = [e for e in json_lines(out) if e["event"] in {"sink.started", "sink.lease_lost"}]
    assert [e["event"] for e in events] == ["sink.started", "sink.lease_lost", "sink.started"]
    assert "passed from a to b: write refused" in events[1]["error"]
    first, _, again = events
    assert first["acked_seq"] == again["acked_seq"] == 0  # both from the cursor: nothing acked
    assert again["lease_token"] != first["lease_token"]  # a claim returned it, b's expired
