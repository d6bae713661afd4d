"""Warnings about a valid configuration that is still likely wrong; the daemon runs anyway.

``check-config`` prints them, ``run`` logs them at start (``config.warning``).
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from tcsms_poller.config.model import Config
from tcsms_poller.emulator_account import DEFAULT_SECRET_ID, DEFAULT_SECRET_KEY

__all__ = ["config_warnings"]


def config_warnings(config: Config) -> list[str]:
    """One line per likely mistake, naming the key."""
    found: list[str] = []
    tencent = config.tencent
    emulator_credentials = tencent.secret_id.reveal() == DEFAULT_SECRET_ID or (
        tencent.secret_key.reveal() == DEFAULT_SECRET_KEY
    )
    if emulator_credentials and not _is_loopback(tencent.endpoint):
        found.append(
            f"tencent: the emulator's credentials with the endpoint {tencent.endpoint}, "
            "which is not the emulator (every request will fail with AuthFailure): "
            "set your own secret_id and secret_key, or point endpoint at the emulator"
        )
    return found


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
