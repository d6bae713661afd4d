"""What the listener's routes share: the daemon's intake, state, metrics and health."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tcsms_poller.config import ServerSettings
from tcsms_poller.config.model import TrackingSettings
from tcsms_poller.health import Health, HealthBoard
from tcsms_poller.intake import Intake
from tcsms_poller.metrics import Metrics
from tcsms_poller.numbers_ascii import shorten
from tcsms_poller.server.errors import ApiError
from tcsms_poller.state import StateStore

__all__ = ["ListenerContext"]


@dataclass(frozen=True, slots=True)
class ListenerContext:
    """The listener's view of the daemon."""

    settings: ServerSettings
    intake: Intake
    store: StateStore
    metrics: Metrics
    board: HealthBoard
    health: Health
    app_ids: tuple[str, ...]
    conversion_apps: frozenset[str]
    tracking: Mapping[str, TrackingSettings] = field(default_factory=dict)  # per app
    clock: Callable[[], float] = time.time
    cluster: Callable[[], dict[str, Any]] | None = None  # cluster mode: this instance's leases

    def app_id(self, requested: str | None, *, callback: bool = False) -> str:
        """The configured app a request names; the first app when it names none."""
        if requested is None or requested == "":
            return self.app_ids[0]
        if requested not in self.app_ids:
            raise ApiError(
                400 if callback else 422,
                f"app_id {shorten(requested, 40)!r} is not configured",
                callback=callback,
                fields=() if callback else [{"field": "app_id", "message": "not configured"}],
            )
        return requested
