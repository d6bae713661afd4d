"""Configuration: YAML with ``${VAR}`` and ``*_file`` secrets -> one validated, frozen ``Config``.

``source`` keeps YAML line numbers, ``model`` holds every rule, ``errors`` words pydantic's
findings for an operator, ``loader`` ties them together.
"""

from tcsms_poller.config.loader import (
    config_from_mapping,
    load_config,
    read_numbers_file,
    render_config,
)
from tcsms_poller.config.model import (
    AppSettings,
    ByNumberSettings,
    Config,
    LogSettings,
    PollSettings,
    RateLimits,
    ServerSettings,
    StateSettings,
    StatisticsSettings,
    TencentSettings,
)

__all__ = [
    "AppSettings",
    "ByNumberSettings",
    "Config",
    "LogSettings",
    "PollSettings",
    "RateLimits",
    "ServerSettings",
    "StateSettings",
    "StatisticsSettings",
    "TencentSettings",
    "config_from_mapping",
    "load_config",
    "read_numbers_file",
    "render_config",
]
