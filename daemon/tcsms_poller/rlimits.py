"""The open-files limit: raised to what the system allows, and a share of it for connections.

A soft limit of 1,024 (a common default outside systemd) runs out under a few hundred idle
connections plus the daemon's own files and upstream sockets; once ``accept()`` fails, nothing
that needs a descriptor works (Tencent pulls, webhook deliveries). So the soft limit is raised to
the hard one at start, and open connections are capped at half of it, leaving the rest for the
daemon's own work.
"""

from __future__ import annotations

import resource

import structlog

__all__ = ["connection_cap", "raise_open_files_limit"]

log = structlog.get_logger("tcsms_poller.rlimits")


def raise_open_files_limit() -> int:
    """Raise the soft ``RLIMIT_NOFILE`` to the hard limit; return the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft == hard:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (OSError, ValueError) as error:  # e.g. a hard limit above the kernel's nr_open
        log.warning("rlimit.not_raised", soft=soft, hard=hard, error=str(error))
        return soft
    return hard


def connection_cap(configured: int, open_files: int) -> int:
    """``configured``, lowered to half the open-files limit when that is smaller."""
    if open_files == resource.RLIM_INFINITY:
        return configured
    cap = max(1, open_files // 2)
    if configured > cap:
        log.warning("listener.connections_capped", max_connections=configured, capped_to=cap)
        return cap
    return configured
