"""Where a running daemon's ``/healthz`` is: a one-line file in its state directory.

``healthcheck --url-file`` reads it instead of parsing the configuration again, so a container's
``HEALTHCHECK`` needs neither the configuration's secrets nor its environment, and asks the port
the listener really bound (``server.listen: 127.0.0.1:0`` too). The daemon writes the file once
its listener is serving and removes it when it stops; a daemon killed leaves it behind, pointing
at a port nothing answers on, which reads as unhealthy, as it should.
"""

from __future__ import annotations

import os
from pathlib import Path

from tcsms_poller.textfile import read_text_file

__all__ = ["HEALTH_URL_FILE", "healthz_url_of", "read_health_url", "write_health_url"]

HEALTH_URL_FILE = "healthz.url"
_WILDCARDS = {"0.0.0.0": "127.0.0.1", "::": "::1"}  # noqa: S104 - mapped away, never bound


def healthz_url_of(host: str, port: int) -> str:
    """The ``/healthz`` URL of a listener bound to ``host:port``; a wildcard is asked on the
    loopback of its family."""
    host = _WILDCARDS.get(host, host)
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}/healthz"


def write_health_url(state_dir: Path, host: str, port: int) -> Path:
    """Write the URL atomically (a reader never sees half of it); the file's path."""
    path = state_dir / HEALTH_URL_FILE
    partial = path.with_name(f".{HEALTH_URL_FILE}.{os.getpid()}")
    partial.write_text(healthz_url_of(host, port) + "\n", encoding="ascii")
    os.replace(partial, path)
    return path


def read_health_url(path: Path) -> str:
    """The URL in ``path``; ``ValueError`` with a message fit to show if it cannot be read."""
    url = read_text_file(path, max_bytes=4096).strip()
    if not url:
        raise ValueError(f"{path} is empty")
    return url
