"""The local API: bearer auth, JSON only, field-level errors, numbers and conversions stored."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tcsms_poller.state.conversions import pending_conversions
from tests.server.conftest import APP, NOW, OTHER_APP, TOKEN, Listener

pytestmark = pytest.mark.anyio
AUTH = {"authorization": f"Bearer {TOKEN}"}


async def test_without_the_right_token_nothing_happens(listener: Listener) -> None:
    before = await listener.snapshot()
    body = {"phone_number": "+8613711112222"}
    for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": f"Basic {TOKEN}"}):
        response = await listener.client.post("/v1/numbers", json=body, headers=headers)
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.json() == {"error": "missing or wrong bearer token"}
    assert (await listener.client.get("/v1/numbers")).status_code == 401
    assert (await listener.client.delete("/v1/numbers/+8613711112222")).status_code == 401
    assert await listener.snapshot() == before


async def test_bodies_must_be_json(listener: Listener) -> None:
    response = await listener.client.post(
        "/v1/numbers", content=b'{"phone_number": "+8613711112222"}', headers=AUTH
    )
    assert response.status_code == 415
    response = await listener.client.post(
        "/v1/numbers",
        content=b"{",
        headers={**AUTH, "content-type": "application/json; charset=utf-8"},
    )
    assert response.status_code == 400


async def test_track_list_and_untrack_a_number(listener: Listener) -> None:
    body = {"phone_number": "+8613711112222", "app_id": OTHER_APP, "track_for": "48h"}
    created = await listener.client.post("/v1/numbers", json=body, headers=AUTH)
    assert created.status_code == 201
    assert created.json() == {
        "app_id": OTHER_APP,
        "phone_number": "+8613711112222",
        "tracked_until": round(NOW + 48 * 3600),
        "created": True,
    }
    again = await listener.client.post("/v1/numbers", json=body, headers=AUTH)
    assert (again.status_code, again.json()["created"]) == (200, False)
    default_app = await listener.client.post(
        "/v1/numbers", json={"phone_number": "+8613711113333"}, headers=AUTH
    )
    assert default_app.json()["app_id"] == APP

    listed = (await listener.client.get("/v1/numbers", headers=AUTH)).json()
    assert [(n["app_id"], n["phone_number"], n["origin"]) for n in listed["numbers"]] == [
        (APP, "+8613711113333", "api"),
        (OTHER_APP, "+8613711112222", "api"),
    ]
    assert listed["next"] is None

    gone = await listener.client.delete(
        "/v1/numbers/+8613711112222", params={"app_id": OTHER_APP}, headers=AUTH
    )
    assert gone.status_code == 204
    missing = await listener.client.delete(
        "/v1/numbers/+8613711112222", params={"app_id": OTHER_APP}, headers=AUTH
    )
    assert missing.status_code == 404


async def test_numbers_are_listed_in_pages(listener: Listener) -> None:
    for index in range(5):
        body = {"phone_number": f"+861371111000{index}"}
        assert (await listener.client.post("/v1/numbers", json=body, headers=AUTH)).is_success
    seen: list[str] = []
    after = None
    for _ in range(10):
        params = {"limit": "2", **({"after": after} if after else {})}
        page = (await listener.client.get("/v1/numbers", params=params, headers=AUTH)).json()
        seen += [n["phone_number"] for n in page["numbers"]]
        after = page["next"]
        if after is None:
            break
    assert seen == [f"+861371111000{index}" for index in range(5)]


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        (
            {"phone_number": "13711112222"},
            [("phone_number", "'13711112222' is not an E.164 number like +8613711112222")],
        ),
        ({}, [("phone_number", "Field required")]),
        (
            {"phone_number": "+8613711112222", "track_for": "forever"},
            [
                (
                    "track_for",
                    "invalid duration 'forever': use a number and a unit: ms, s, m, h or d",
                )
            ],
        ),
        (
            {"phone_number": "+8613711112222", "track_for": "31d"},
            [("track_for", "Input should be less than or equal to 2592000")],
        ),
        (
            {"phone_number": "+8613711112222", "colour": "red"},
            [("colour", "Extra inputs are not permitted")],
        ),
        ({"phone_number": "+8613711112222", "app_id": "42"}, [("app_id", "not configured")]),
        (["+8613711112222"], [("0", "expected a JSON object")]),
        ("+8613711112222", [("body", "expected a JSON object")]),
    ],
)
async def test_bad_number_requests_get_field_level_422(
    listener: Listener, body: object, fields: list[tuple[str, str]]
) -> None:
    before = await listener.snapshot()
    response = await listener.client.post("/v1/numbers", json=body, headers=AUTH)
    assert response.status_code == 422
    assert [(f["field"], f["message"]) for f in response.json()["fields"]] == fields
    assert await listener.snapshot() == before


async def test_conversions_are_queued_one_or_many(listener: Listener) -> None:
    one = await listener.client.post(
        "/v1/conversions",
        json={"app_id": APP, "serial_no": "2019:-1", "conversion_time": 1658310430},
        headers=AUTH,
    )
    assert (one.status_code, one.json()) == (202, {"queued": 1})
    many = await listener.client.post(
        "/v1/conversions", json=[{"serial_no": "2019:-2"}, {"serial_no": "2019:-3"}], headers=AUTH
    )
    assert (many.status_code, many.json()) == (202, {"queued": 2})
    assert await listener.store.read(pending_conversions) == 3
    leased = await listener.store.lease_conversions(limit=10, lease=60)
    assert [(c.app_id, c.serial_no, c.conversion_time) for c in leased] == [
        (APP, "2019:-1", 1658310430),
        (APP, "2019:-2", None),
        (APP, "2019:-3", None),
    ]


async def test_conversions_for_a_disabled_app_or_badly_formed_are_refused(
    listener: Listener,
) -> None:
    before = await listener.snapshot()
    disabled = await listener.client.post(
        "/v1/conversions",
        json=[{"serial_no": "a"}, {"serial_no": "b", "app_id": OTHER_APP}],
        headers=AUTH,
    )
    assert disabled.status_code == 422
    assert disabled.json()["fields"] == [
        {"field": "1.app_id", "message": f"conversions are disabled for app {OTHER_APP}"}
    ]
    malformed = await listener.client.post(
        "/v1/conversions", json=[{"serial_no": ""}, {"conversion_time": -1}], headers=AUTH
    )
    assert [f["field"] for f in malformed.json()["fields"]] == [
        "0.serial_no",
        "1.serial_no",
        "1.conversion_time",
    ]
    assert (await listener.client.post("/v1/conversions", json=[], headers=AUTH)).status_code == 422
    assert await listener.snapshot() == before


async def test_healthz_names_what_is_unhealthy(listener: Listener) -> None:
    healthy = await listener.client.get("/healthz")
    assert (healthy.status_code, healthy.json()["healthy"]) == (200, True)
    listener.board.register("replies:1400006666", "worker").failed("AuthFailure.SecretIdNotFound")
    unhealthy = await listener.client.get("/healthz")
    assert unhealthy.status_code == 503
    body = unhealthy.json()
    assert body["unhealthy"] == ["replies:1400006666"]
    [part] = [p for p in body["parts"] if p["name"] == "replies:1400006666"]
    assert "AuthFailure.SecretIdNotFound" in str(part)


async def test_metrics_parse_and_unknown_routes_answer_json(listener: Listener) -> None:
    listener.metrics.outbox_depth.labels("file").set(7)
    response = await listener.client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(response.text)}
    [sample] = families["tcsms_poller_outbox_depth"].samples
    assert (sample.labels, sample.value) == ({"sink": "file"}, 7.0)
    assert "process_cpu_seconds" in families
    missing = await listener.client.get("/nowhere")
    assert (missing.status_code, missing.json()) == (404, {"error": "Not Found"})
    wrong_method = await listener.client.put("/healthz")
    assert wrong_method.status_code == 405
    assert wrong_method.json() == {"error": "Method Not Allowed"}
