"""What the listener tells operators: rejected pushes in the log, requests and build in metrics."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tcsms_poller import __version__
from tests.server.conftest import SECRET, TOKEN, Listener
from tests.server.test_callbacks import RECEIPT, REPLY
from tests.support.log_capture import captured_logs

pytestmark = pytest.mark.anyio
AUTH = {"authorization": f"Bearer {TOKEN}"}


def _events(output: str, event: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("event") == event]


async def _samples(listener: Listener, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    text = (await listener.client.get("/metrics")).text
    return {
        tuple(sorted(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    }


async def test_a_rejected_push_is_logged_with_its_reason_and_the_number_masked(
    listener: Listener,
) -> None:
    """A 400 to Tencent is a lost push unless logged: ``callback.rejected`` says why."""
    # Fresh logging: an identical rejection by an earlier test must not throttle these lines.
    out = io.StringIO()
    with captured_logs(stream=out):
        bad = {**RECEIPT, "mobile": "13711112222"}
        response = await listener.client.post(f"/callback/{SECRET}/status", json=bad)
        assert response.status_code == 400
        response = await listener.client.post(f"/callback/{SECRET}/reply", json=[REPLY])
        assert response.status_code == 400
    output = out.getvalue()
    rejected = _events(output, "callback.rejected")
    assert [(e["kind"], e["status"], e["reason"], e["level"]) for e in rejected] == [
        ("status", 400, "body: expected a non-empty JSON array of receipts", "warning"),
        ("reply", 400, "body: expected a JSON object", "warning"),
    ]
    assert "13711112222" not in output
    assert SECRET not in output


async def test_an_accepted_push_logs_no_rejection(
    listener: Listener, capsys: pytest.CaptureFixture[str]
) -> None:
    """Only refused pushes are logged as rejected."""
    capsys.readouterr()
    response = await listener.client.post(f"/callback/{SECRET}/status", json=[RECEIPT])
    assert response.status_code == 200
    assert _events(capsys.readouterr().out, "callback.rejected") == []


async def test_requests_are_counted_by_route_template_and_status(listener: Listener) -> None:
    """The callback secret never becomes a label: the route is the template."""
    await listener.client.post(f"/callback/{SECRET}/status", json=[RECEIPT])
    await listener.client.post(f"/callback/{SECRET}/reply", json=[])
    await listener.client.post("/callback/wrong-secret/status", json=[RECEIPT])
    await listener.client.get("/v1/numbers", headers=AUTH)
    await listener.client.get("/v1/numbers?limit=0", headers=AUTH)
    await listener.client.put("/v1/numbers", headers=AUTH)
    await listener.client.get("/no/such/route")
    counts = await _samples(listener, "tcsms_poller_http_requests_total")
    callback = "/callback/{secret}/{kind}"
    expected = {
        ((("route", callback), ("status", "200"))): 1.0,
        ((("route", callback), ("status", "400"))): 1.0,
        ((("route", callback), ("status", "404"))): 1.0,
        ((("route", "/v1/numbers"), ("status", "200"))): 1.0,
        ((("route", "/v1/numbers"), ("status", "422"))): 1.0,
        ((("route", "/v1/numbers"), ("status", "405"))): 1.0,
        ((("route", "unmatched"), ("status", "404"))): 1.0,
    }
    assert {key: value for key, value in counts.items() if key in expected} == expected
    text = (await listener.client.get("/metrics")).text
    assert SECRET not in text
    assert "wrong-secret" not in text


async def test_build_info_names_the_running_version(listener: Listener) -> None:
    """``tcsms_poller_build_info{version}`` is 1."""
    assert await _samples(listener, "tcsms_poller_build_info") == {(("version", __version__),): 1.0}
