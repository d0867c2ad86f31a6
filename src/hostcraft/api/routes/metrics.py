"""``GET /metrics``: Prometheus text format; needs a bearer token unless HOSTCRAFT_METRICS_PUBLIC is true."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

from hostcraft.api.auth import current_principal, get_runtime
from hostcraft.metrics import render_metrics

router = APIRouter(tags=["metrics"])


@router.get("/metrics", response_class=Response)
def metrics(request: Request) -> Response:
    """Return every HostCraft metric; any token role may read it."""
    runtime = get_runtime(request)
    if not runtime.settings.metrics_public:
        current_principal(request)
    return Response(content=render_metrics(runtime), media_type=CONTENT_TYPE_LATEST)
