"""The instance's stable id: ``state.instance_id``, or hostname-pid by default."""

from __future__ import annotations

import os
import socket

__all__ = ["instance_id"]


def instance_id(configured: str | None) -> str:
    """The configured id, or ``HOSTNAME-PID`` (a container's hostname is its pod name)."""
    if configured:
        return configured
    return f"{socket.gethostname()}-{os.getpid()}"
