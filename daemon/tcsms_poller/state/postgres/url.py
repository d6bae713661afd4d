"""A PostgreSQL URL as it may be shown: the password replaced by ``***``."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from tcsms_poller.settings_types import REDACTED

__all__ = ["mask_url"]


def mask_url(url: str) -> str:
    """``postgresql://tcsms:***@db:5432/tcsms`` for a URL with a password; others unchanged."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
    except ValueError:
        return "postgresql://***"  # not even a URL: show none of it
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}:{REDACTED}@{host}"))
