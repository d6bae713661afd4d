"""Numbers that only look valid, in every route and field: a 4xx, never a 500, nothing stored."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tcsms_poller.numbers_ascii import INT64_MAX, MAX_UNIX_TIME, parse_ascii_int
from tests.server.conftest import SECRET, TOKEN, Listener
from tests.server.test_callbacks import RECEIPT, REPLY

pytestmark = pytest.mark.anyio
AUTH = {"authorization": f"Bearer {TOKEN}"}

# Each passes str.isdigit() or parses as a number somewhere, and none is a valid value here.
HOSTILE: list[Any] = [
    "²",
    "١٢٣",
    "1" * 23,
    "9" * 5000,
    "-1",
    " 1",
    "1e3",
    "0x10",
    "",
    -1,
    1.5,
    True,
    10**23,
    2**63,
    -(2**63) - 1,
]
# Fullwidth and Arabic-Indic digits, which strptime would read as a valid time.
HOSTILE_TIMES: list[Any] = [
    *HOSTILE,
    "\uff12\uff10\uff12\uff15-11-25 16:00:01",
    "2025-11-25 16:00:0\u0661",
]
HOSTILE_DURATIONS: list[Any] = [*HOSTILE, "²s", "9" * 5000 + "s", "1" * 23 + "d"]

CONVERSION: dict[str, Any] = {"serial_no": "2019:-1"}
NUMBER: dict[str, Any] = {"phone_number": "+8613711112222"}


def _body_with(path: str, field: str, value: Any) -> Any:
    """A valid body of ``path`` with ``field`` set to ``value`` (``[].x``: in a one-item list)."""
    items: dict[str, dict[str, Any]] = {
        "reply": REPLY,
        "status": RECEIPT,
        "/v1/numbers": NUMBER,
        "/v1/conversions": CONVERSION,
    }
    item = items[path.rsplit("/", 1)[-1] if path.startswith("/callback/") else path]
    if field == "app_id":
        value = value or "x"  # an empty app_id means the default app, rightly
    if path.endswith("/status"):
        return [{**item, field: value}]
    if field.startswith("[]."):
        return [{**item, field.removeprefix("[]."): value}]
    return {**item, field: value}


ROUTE_FIELDS = [
    (f"/callback/{SECRET}/reply", "time"),
    (f"/callback/{SECRET}/reply", "mobile"),
    (f"/callback/{SECRET}/reply", "nationcode"),
    (f"/callback/{SECRET}/status", "mobile"),
    (f"/callback/{SECRET}/status", "nationcode"),
    (f"/callback/{SECRET}/status", "user_receive_time"),
    ("/v1/numbers", "phone_number"),
    ("/v1/numbers", "[].phone_number"),
    ("/v1/numbers", "app_id"),
    ("/v1/numbers", "track_for"),
    ("/v1/conversions", "conversion_time"),
    ("/v1/conversions", "[].conversion_time"),
    ("/v1/conversions", "app_id"),
]


def _hostile_values(field: str) -> list[Any]:
    return {"track_for": HOSTILE_DURATIONS, "user_receive_time": HOSTILE_TIMES}.get(field, HOSTILE)


@pytest.mark.parametrize(("path", "field"), ROUTE_FIELDS[6:], ids=lambda v: v.rsplit("/", 1)[-1])
async def test_hostile_numbers_in_bodies_are_refused(
    listener: Listener, path: str, field: str
) -> None:
    """Each field of each API route refuses every look-alike with a short 4xx, storing nothing."""
    before = await listener.snapshot()
    for value in _hostile_values(field):
        response = await listener.client.post(
            path,
            content=json.dumps(_body_with(path, field, value)).encode(),
            headers={**AUTH, "content-type": "application/json"},
        )
        assert 400 <= response.status_code < 500, (str(value)[:30], response.text[:200])
        assert len(response.content) < 2048
    assert await listener.snapshot() == before


@pytest.mark.parametrize(("path", "field"), ROUTE_FIELDS[:6], ids=lambda v: v.rsplit("/", 1)[-1])
async def test_hostile_numbers_in_pushes_are_quarantined(
    listener: Listener, path: str, field: str
) -> None:
    """A pushed item with a look-alike is kept in the quarantine and acknowledged, never a record.

    Tencent sends a refused push again as it was, so an odd item is answered ``OK`` and kept
    verbatim for an operator, instead of being refused into a loss.
    """
    head, numbers, conversions, quarantined = await listener.snapshot()
    values = _hostile_values(field)
    for value in values:
        response = await listener.client.post(
            path,
            content=json.dumps(_body_with(path, field, value)).encode(),
            headers={"content-type": "application/json"},
        )
        assert response.json() == {"result": 0, "errmsg": "OK"}, (str(value)[:30], response.text)
    assert await listener.snapshot() == (head, numbers, conversions, quarantined + len(values))


async def test_hostile_numbers_in_queries_and_paths_are_refused(listener: Listener) -> None:
    """``limit``, ``after``, ``app_id`` and the number in a path refuse look-alikes with a 4xx."""
    before = await listener.snapshot()
    for value in [v or "x" for v in HOSTILE if isinstance(v, str)]:
        for params in ({"limit": value}, {"after": value}, {"app_id": value}):
            response = await listener.client.get("/v1/numbers", params=params, headers=AUTH)
            assert 400 <= response.status_code < 500, (params, response.text[:200])
        response = await listener.client.delete(f"/v1/numbers/+{value}", headers=AUTH)
        assert 400 <= response.status_code < 500
        response = await listener.client.post(
            f"/callback/{SECRET}/status", params={"app_id": value}, json=[RECEIPT]
        )
        assert 400 <= response.status_code < 500
    assert await listener.snapshot() == before


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", 0),
        ("42", 42),
        (str(INT64_MAX), INT64_MAX),
        (str(INT64_MAX + 1), None),
        ("²", None),
        ("١٢٣", None),
        ("9" * 5000, None),
        ("+1", None),
        (" 1", None),
        ("", None),
        (7, 7),
        (True, None),
        (1.0, None),
        (-1, None),
    ],
)
def test_parse_ascii_int_takes_ascii_digits_within_range_only(
    value: object, expected: int | None
) -> None:
    """Only ASCII digits and ints within the signed 64-bit range (and the bounds given) pass."""
    assert parse_ascii_int(value) == expected


def test_parse_ascii_int_honours_the_bounds() -> None:
    """``minimum``/``maximum`` are inclusive; a UNIX time past year 9999 is refused."""
    assert parse_ascii_int("1", minimum=1, maximum=1) == 1
    assert parse_ascii_int("0", minimum=1) is None
    assert parse_ascii_int(str(MAX_UNIX_TIME + 1), maximum=MAX_UNIX_TIME) is None
