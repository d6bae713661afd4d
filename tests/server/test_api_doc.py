"""docs/api.md names every route the listener serves, and its examples are what the routes take."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tcsms_poller.server.app import build_routes
from tests.server.conftest import SECRET, TOKEN, Listener

pytestmark = pytest.mark.anyio
DOC = Path(__file__).parents[2] / "docs" / "api.md"
AUTH = {"authorization": f"Bearer {TOKEN}"}


def served() -> set[str]:
    """``METHOD /path/{param}`` of every route, with the callback kinds spelled out."""
    routes = set()
    for route in build_routes():
        for method in (route.methods or set()) - {"HEAD"}:
            if route.path == "/callback/{secret}/{kind}":
                routes |= {f"{method} /callback/{{secret}}/{kind}" for kind in ("status", "reply")}
            else:
                routes.add(f"{method} {route.path}")
    return routes


def documented_sections() -> dict[str, str]:
    """Each ``## `METHOD /path``` section's text, by route."""
    text = DOC.read_text()
    parts = re.split(r"^## `([A-Z]+ /[^`]*)`\n", text, flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def json_examples(section: str) -> list[object]:
    return [json.loads(block) for block in re.findall(r"```json\n(.*?)```", section, re.S)]


def test_every_served_route_has_a_section_and_a_row_and_nothing_else_does() -> None:
    """Adding a route without documenting it (or documenting one that is gone) fails here."""
    sections = documented_sections()
    assert set(sections) == served()
    table = DOC.read_text().split("## Conventions")[0]
    assert set(re.findall(r"\[`([A-Z]+ /[^`]*)`\]", table)) == served()


async def test_the_push_examples_are_accepted(listener: Listener) -> None:
    """The documented bodies of Tencent's pushes are what the callback routes accept."""
    sections = documented_sections()
    for kind in ("status", "reply"):
        [body] = json_examples(sections[f"POST /callback/{{secret}}/{kind}"])
        response = await listener.client.post(f"/callback/{SECRET}/{kind}", json=body)
        assert response.json() == {"result": 0, "errmsg": "OK"}


async def test_the_numbers_examples_have_the_answers_shape(listener: Listener) -> None:
    """The documented answers of /v1/numbers have exactly the keys and types the routes give."""
    sections = documented_sections()
    [tracked] = json_examples(sections["POST /v1/numbers"])
    answer = await listener.client.post(
        "/v1/numbers", json={"phone_number": "+8613711112222"}, headers=AUTH
    )
    assert isinstance(tracked, dict)
    assert {k: type(v) for k, v in answer.json().items()} == {
        k: type(v) for k, v in tracked.items()
    }
    [page] = json_examples(sections["GET /v1/numbers"])
    listed = (await listener.client.get("/v1/numbers", params={"limit": 1}, headers=AUTH)).json()
    assert isinstance(page, dict)
    assert set(listed) == set(page)
    assert set(listed["numbers"][0]) == set(page["numbers"][0])
    assert listed["next"] == page["next"]  # the same number on the same app: the same cursor
