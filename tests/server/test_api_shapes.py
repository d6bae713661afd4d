"""The local API's shapes: lists on both POST routes, opaque cursors, bounded error answers."""

from __future__ import annotations

import time
from pathlib import Path

import anyio
import pytest

from tcsms_poller.server.api import MAX_FIELD_PROBLEMS, decode_cursor, encode_cursor
from tests.server.conftest import APP, NOW, OTHER_APP, TOKEN, Listener, open_listener

pytestmark = pytest.mark.anyio
AUTH = {"authorization": f"Bearer {TOKEN}"}
JSON = {**AUTH, "content-type": "application/json"}


async def test_numbers_accept_a_list_as_conversions_do(listener: Listener) -> None:
    """A list of numbers is tracked in one request; the answer lists each, in order."""
    body = [
        {"phone_number": "+8613711110001"},
        {"phone_number": "+8613711110002", "app_id": OTHER_APP, "track_for": "1h"},
    ]
    response = await listener.client.post("/v1/numbers", json=body, headers=AUTH)
    assert response.status_code == 201
    assert response.json() == [
        {
            "app_id": APP,
            "phone_number": "+8613711110001",
            "tracked_until": round(NOW + 7 * 86_400),
            "created": True,
        },
        {
            "app_id": OTHER_APP,
            "phone_number": "+8613711110002",
            "tracked_until": round(NOW + 3600),
            "created": True,
        },
    ]
    again = await listener.client.post("/v1/numbers", json=body, headers=AUTH)
    assert again.status_code == 200
    listed = (await listener.client.get("/v1/numbers", headers=AUTH)).json()["numbers"]
    assert [type(number["tracked_until"]) for number in listed] == [int, int]


async def test_one_bad_item_in_a_list_refuses_the_whole_list(listener: Listener) -> None:
    """Items are checked before any is stored, and the problem names the item's index."""
    before = await listener.snapshot()
    body = [{"phone_number": "+8613711110001"}, {"phone_number": "0"}]
    response = await listener.client.post("/v1/numbers", json=body, headers=AUTH)
    assert response.status_code == 422
    assert [f["field"] for f in response.json()["fields"]] == ["1.phone_number"]
    assert await listener.snapshot() == before


HUGE = b"[" + b"1," * 500_000 + b"1]"  # 1 MB


@pytest.mark.parametrize("path", ["/v1/conversions", "/v1/numbers"])
async def test_a_huge_list_is_refused_by_its_count_with_a_small_answer(
    tmp_path: Path, path: str
) -> None:
    """1 MB of ``[1,1,…]`` is refused from its length alone: a short 422, and quickly."""
    async with open_listener(tmp_path, max_body="2MiB") as listener:
        before = await listener.snapshot()
        started = time.perf_counter()
        response = await listener.client.post(path, content=HUGE, headers=JSON)
        elapsed = time.perf_counter() - started
        assert response.status_code == 422
        assert response.json()["fields"][0]["message"].endswith("got 500001")
        assert len(response.content) < 1024
        assert elapsed < 2.0  # validating every item took seconds; counting takes milliseconds
        assert await listener.snapshot() == before


async def test_item_problems_are_capped(listener: Listener) -> None:
    """A list of 1,000 bad items names the first few problems and how many more there were."""
    response = await listener.client.post("/v1/conversions", json=[1] * 1000, headers=AUTH)
    assert response.status_code == 422
    fields = response.json()["fields"]
    assert len(fields) == MAX_FIELD_PROBLEMS + 1
    assert fields[0] == {"field": "0", "message": "expected a JSON object"}
    assert fields[-1] == {
        "field": "body",
        "message": f"{1000 - MAX_FIELD_PROBLEMS} more problems not shown",
    }


async def test_healthz_answers_while_a_large_body_is_refused(listener: Listener) -> None:
    """A large refused body does not stall the listener's other requests."""
    body = b"[" + b"1," * 400_000 + b"1]"
    headers = {**AUTH, "content-type": "application/json"}
    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(
                lambda: listener.client.post("/v1/conversions", content=body, headers=headers)
            )
        with anyio.fail_after(5):
            assert (await listener.client.get("/healthz")).status_code == 200


async def test_the_paging_cursor_is_url_safe_and_needs_no_quoting(listener: Listener) -> None:
    """``next`` goes back into ``?after=`` as is: no ``+``, ``/`` or ``=`` to be mangled."""
    numbers = [f"+8613711110{index:03d}" for index in range(7)]
    body = [{"phone_number": number} for number in numbers]
    assert (await listener.client.post("/v1/numbers", json=body, headers=AUTH)).is_success
    seen: list[str] = []
    after = ""
    for _ in range(10):
        url = f"/v1/numbers?limit=3{'&after=' + after if after else ''}"  # deliberately unquoted
        page = (await listener.client.get(url, headers=AUTH)).json()
        seen += [n["phone_number"] for n in page["numbers"]]
        if page["next"] is None:
            break
        after = page["next"]
        assert after.replace("-", "").replace("_", "").isalnum()
    assert seen == numbers


@pytest.mark.parametrize(
    "after",
    [f"{APP}:+8613711110001", f"{APP}: 8613711110001", "not-base64!", encode_cursor(APP, "x")],
)
async def test_an_invalid_cursor_is_a_422(listener: Listener, after: str) -> None:
    """Raw positions, mangled or forged cursors are refused, never read as "from the start"."""
    response = await listener.client.get("/v1/numbers", params={"after": after}, headers=AUTH)
    assert response.status_code == 422
    assert response.json()["fields"] == [
        {"field": "after", "message": "use the 'next' value of the previous page"}
    ]


def test_cursors_round_trip() -> None:
    """A cursor decodes to the position it was made from."""
    assert decode_cursor(encode_cursor(APP, "+8613711110001")) == (APP, "+8613711110001")
