"""Whatever arrives, the listener answers below 500, and a refused request changes nothing."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.server.conftest import APP, SECRET, TOKEN, Listener

pytestmark = pytest.mark.anyio

_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=False)
    | st.text(max_size=30)
    | st.sampled_from(["+8613711112222", "48h", APP, "2019:-1", "SUCCESS", "2025-11-25 16:00:01"]),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "phone_number",
                    "app_id",
                    "track_for",
                    "serial_no",
                    "conversion_time",
                    "sid",
                    "mobile",
                    "nationcode",
                    "report_status",
                    "user_receive_time",
                    "text",
                    "time",
                    "x",
                ]
            ),
            inner,
            max_size=6,
        )
    ),
    max_leaves=15,
)
_bodies = _json.map(lambda value: json.dumps(value).encode()) | st.binary(max_size=200)
_paths = st.sampled_from(
    [
        f"/callback/{SECRET}/status",
        f"/callback/{SECRET}/reply",
        f"/callback/{SECRET}/status?app_id=1",
        "/callback/x/status",
        "/v1/numbers",
        "/v1/numbers?limit=0",
        "/v1/numbers?after=zzz",
        "/v1/numbers/+8613711112222",
        "/v1/numbers/12%00",
        "/v1/conversions",
        "/healthz",
        "/metrics",
    ]
) | st.text(alphabet="/abcv1%?=&.+-_", max_size=30).map(lambda path: "/" + path)
_headers = st.fixed_dictionaries(
    {},
    optional={
        "authorization": st.sampled_from([f"Bearer {TOKEN}", "Bearer x", "", f"bearer  {TOKEN}"]),
        "content-type": st.sampled_from(
            ["application/json", "text/plain", "application/x-www-form-urlencoded", "a/b+json", ""]
        ),
    },
)


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    method=st.sampled_from(["GET", "POST", "DELETE", "PUT", "PATCH"]),
    path=_paths,
    headers=_headers,
    body=_bodies,
)
@example(method="GET", path="////", headers={}, body=b"")  # once sent as a relative URL
async def test_any_request_is_answered_below_500(
    listener: Listener, method: str, path: str, headers: dict[str, Any], body: bytes
) -> None:
    before = await listener.snapshot()
    # Absolute, so that a path starting with "//" is a path, not a relative URL httpx refuses.
    host, port = listener.address
    url = f"http://{host}:{port}{path}"
    response = await listener.client.request(method, url, headers=headers, content=body)
    assert response.status_code < 500, response.text
    assert response.headers["content-type"].startswith(("application/json", "text/plain"))
    if response.status_code >= 400:
        assert await listener.snapshot() == before
