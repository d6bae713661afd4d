"""The emulator's ASGI app: the API at ``POST /``, the control endpoints under ``/_emulator/``."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.routing import Route

from tcsms_poller.emulator.api import handle_api
from tcsms_poller.emulator.control import CONTROL_ROUTES
from tcsms_poller.emulator.state import EmulatorState

__all__ = ["build_app"]


def build_app(state: EmulatorState) -> Starlette:
    """The app serving ``state``."""
    app = Starlette(routes=[Route("/", handle_api, methods=["POST"]), *CONTROL_ROUTES])
    app.state.emulator = state
    return app
