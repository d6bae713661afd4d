"""``tcsms-poller healthcheck (--url-file FILE | --url URL | -c FILE)``: ask a running daemon.

For container ``HEALTHCHECK``s and monitoring scripts: GETs the listener's ``/healthz`` and prints
one line, ``healthy: 200 <url> <body>`` or ``unhealthy: <why> <url> ...``. Exits 0 when the daemon
answers 200, 1 otherwise (503, any other status, no answer, connection refused), 78 when the
configuration has no ``server`` section (there is nothing to ask: configure the listener or pass
``--url``), 2 on a usage error.

``--url-file`` reads the URL the daemon wrote into its state directory once its listener was
serving (``healthz.url``; see ``healthfile``): no configuration is parsed, which is what the
image's ``HEALTHCHECK`` uses. With ``-c`` the address comes from ``server.listen``; a wildcard
address (``0.0.0.0``, ``::``) is asked on the matching loopback. The configuration is loaded as
the daemon loads it, so run that where the daemon's environment is; ``--url`` and ``--url-file``
need no configuration at all.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import httpx

from tcsms_poller.config import ServerSettings, load_config
from tcsms_poller.exits import EX_FAILURE, EX_OK, ConfigError, UsageError
from tcsms_poller.healthfile import healthz_url_of, read_health_url
from tcsms_poller.units import format_duration, parse_duration

__all__ = ["add_arguments", "execute", "healthz_url", "summarize"]

_MAX_BODY_CHARS = 2000  # Docker keeps 4 KiB of a probe's output; the line must stay readable


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # Not _common.add_config_argument: here -c is one of two ways to name the daemon.
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument(
        "-c",
        "--config",
        type=Path,
        metavar="FILE",
        help="the daemon's YAML configuration; its server.listen is asked",
    )
    target.add_argument(
        "--url", metavar="URL", help="ask this URL instead, e.g. http://127.0.0.1:8787/healthz"
    )
    target.add_argument(
        "--url-file",
        type=Path,
        metavar="FILE",
        help="ask the URL the daemon wrote here, e.g. /var/lib/tcsms-poller/healthz.url",
    )
    parser.add_argument(
        "--timeout",
        type=_duration,
        default=5.0,
        metavar="DURATION",
        help="how long to wait for the answer (default 5s)",
    )


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _checked_url(text: str) -> str:
    try:
        url = httpx.URL(text)
    except httpx.InvalidURL as error:
        raise UsageError(f"--url {text!r}: {error}") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise UsageError(f"--url {text!r} is not an http(s) URL like http://127.0.0.1:8787/healthz")
    return text


def healthz_url(server: ServerSettings) -> str:
    """The ``/healthz`` URL of a listener bound as ``server.listen`` says."""
    if server.port == 0:
        raise ConfigError(
            f"server.listen {server.listen!r} lets the system pick the port, "
            "so the healthcheck cannot know it: pass --url"
        )
    return healthz_url_of(server.host, server.port)


def _compact(text: str) -> str:
    """The body on one line: JSON re-serialized without spaces, anything else flattened."""
    try:
        flat = json.dumps(json.loads(text), separators=(",", ":"), ensure_ascii=False)
    except ValueError:
        flat = " ".join(text.split())
    return flat if len(flat) <= _MAX_BODY_CHARS else flat[:_MAX_BODY_CHARS] + "..."


def summarize(url: str, timeout: float) -> tuple[bool, str]:
    """GET ``url`` once; whether it answered 200, and the one line to print."""
    try:
        # No proxy from the environment: the daemon is local, a proxy would answer for it.
        with httpx.Client(timeout=timeout, trust_env=False) as client:
            response = client.get(url)
    except httpx.TimeoutException:
        return False, f"unhealthy: no answer within {format_duration(timeout)} from {url}"
    except httpx.HTTPError as error:
        reason = str(error) or type(error).__name__
        return False, f"unhealthy: cannot reach {url}: {' '.join(reason.split())}"
    healthy = response.status_code == httpx.codes.OK
    state = "healthy" if healthy else "unhealthy"
    line = f"{state}: {response.status_code} {url} {_compact(response.text)}".rstrip()
    return healthy, line


def execute(args: argparse.Namespace) -> int:
    if args.url is not None:
        url = _checked_url(args.url)
    elif args.url_file is not None:
        try:
            url = read_health_url(args.url_file)
        except ValueError as error:  # not written yet (starting) or never (no listener)
            print(f"unhealthy: no health URL: {error}", flush=True)
            return EX_FAILURE
    else:
        config = load_config(args.config)
        if config.server is None:
            raise ConfigError(
                f"{config.source}: has no server section, so no /healthz to ask: "
                "configure the listener or pass --url"
            )
        url = healthz_url(config.server)
    healthy, line = summarize(url, args.timeout)
    print(line, flush=True)
    return EX_OK if healthy else EX_FAILURE
