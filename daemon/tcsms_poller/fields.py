"""The former name of ``tcsms_poller.settings_types``, kept so plugins that import it still load.

New code imports ``tcsms_poller.settings_types``.
"""

from __future__ import annotations

from tcsms_poller.settings_types import (
    E164,
    E164_PATTERN,
    REDACTED,
    ByteSize,
    ConfigModel,
    ConfigPath,
    Duration,
    Secret,
    SecretValue,
    is_e164,
    resolve_path,
)

__all__ = [
    "E164",
    "E164_PATTERN",
    "REDACTED",
    "ByteSize",
    "ConfigModel",
    "ConfigPath",
    "Duration",
    "Secret",
    "SecretValue",
    "is_e164",
    "resolve_path",
]
