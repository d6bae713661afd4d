"""Durable, rate-limited collector of Tencent Cloud SMS receipts, replies and statistics."""

from __future__ import annotations

from importlib.metadata import version

__all__ = ["__version__"]

# The one version is pyproject.toml's; the installed package metadata carries it here.
__version__ = version("tcsms-poller")
