"""``/healthz`` for load balancers and container runtimes, ``/metrics`` for Prometheus."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from tcsms_poller.server.context import ListenerContext

__all__ = ["healthz", "metrics"]


async def healthz(request: Request) -> Response:
    """200 when every worker and sink is healthy; 503 naming what is not, and why. In cluster
    mode the body also names this instance and the leases it holds: a standby is healthy."""
    ctx: ListenerContext = request.app.state.ctx
    healthy = ctx.board.is_healthy
    body = {
        "healthy": healthy,
        "unhealthy": [part.name for part in ctx.board.unhealthy()],
        "parts": ctx.board.describe(),
    }
    if ctx.cluster is not None:
        body["cluster"] = ctx.cluster()
    return JSONResponse(body, status_code=200 if healthy else 503)


async def metrics(request: Request) -> Response:
    """Every metric of the daemon in Prometheus' text format."""
    ctx: ListenerContext = request.app.state.ctx
    return Response(generate_latest(ctx.metrics.registry), media_type=CONTENT_TYPE_LATEST)
