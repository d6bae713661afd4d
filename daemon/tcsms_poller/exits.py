"""Exit codes and the exceptions the CLI turns into them without a traceback."""

from __future__ import annotations

__all__ = [
    "EX_CONFIG",
    "EX_FAILURE",
    "EX_OK",
    "EX_USAGE",
    "ConfigError",
    "ReportedError",
    "UsageError",
]

EX_OK = 0
EX_FAILURE = 1
EX_USAGE = 2
EX_CONFIG = 78  # sysexits.h EX_CONFIG; systemd's RestartPreventExitStatus=78 keys on it


class ConfigError(Exception):
    """An invalid configuration: one line naming the key path and ``file:line``."""


class UsageError(Exception):
    """A command-line mistake that argparse could not catch on its own."""


class ReportedError(Exception):
    """A runtime failure already logged (``daemon.failed``): the CLI exits 1 and prints nothing."""
