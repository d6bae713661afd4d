"""Finds sink types through the ``tcsms_poller.sinks`` entry-point group.

Built-in and third-party sinks register alike (``pyproject.toml``: ``[project.entry-points.
"tcsms_poller.sinks"] name = "package.module:Class"``). Only the names a configuration asks for
are imported, so a broken unrelated plugin never stops the daemon.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import cast

from tcsms_poller.sinks.base import SinkType

__all__ = ["ENTRY_POINT_GROUP", "LoadedSinkType", "known_sink_types", "load_sink_type"]

ENTRY_POINT_GROUP = "tcsms_poller.sinks"


@dataclass(frozen=True, slots=True)
class LoadedSinkType:
    """A sink type and where it came from (logged at start)."""

    name: str
    factory: SinkType
    distribution: str
    version: str


def _entry_points() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def known_sink_types() -> list[str]:
    """Every registered sink type name, sorted, without importing any of them."""
    return sorted(_entry_points())


def load_sink_type(name: str) -> LoadedSinkType:
    """Import the sink type registered as ``name``.

    Raises:
        LookupError: no such type; the message lists the known ones.
        ImportError: the plugin is registered but fails to import.
    """
    entry_point = _entry_points().get(name)
    if entry_point is None:
        known = ", ".join(known_sink_types()) or "none"
        raise LookupError(f"unknown sink type {name!r} (known: {known})")
    factory = cast(SinkType, entry_point.load())
    if not hasattr(factory, "Config"):
        raise ImportError(f"sink type {name!r} ({entry_point.value}) has no Config model")
    dist = entry_point.dist
    return LoadedSinkType(
        name=name,
        factory=factory,
        distribution=dist.name if dist else "unknown",
        version=dist.version if dist else "unknown",
    )
