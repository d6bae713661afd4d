"""The upstream: Tencent Cloud SMS API 3.0 (service ``sms``, version ``2021-01-11``)."""

from __future__ import annotations

__all__ = ["API_VERSION", "SERVICE"]

SERVICE = "sms"
API_VERSION = "2021-01-11"
