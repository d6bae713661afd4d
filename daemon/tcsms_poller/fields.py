"""The former name of ``tcsms_poller.settings_types``, kept so plugins that import it still load.

New code imports ``tcsms_poller.settings_types``; every name there is also found here.
"""

from __future__ import annotations

from typing import Any

from tcsms_poller import settings_types

__all__ = settings_types.__all__


def __getattr__(name: str) -> Any:
    if name in settings_types.__all__:
        return getattr(settings_types, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
