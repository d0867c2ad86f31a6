"""The FastAPI application."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import swagger_ui_bundle
from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from hostcraft import __version__
from hostcraft.api.errors import install_error_handlers
from hostcraft.api.routes import (
    alerts,
    applications,
    backup_destinations,
    backups,
    cluster,
    dr,
    maintenance,
    metrics,
    monitoring,
    regions,
    self_backup,
    servers,
    system,
    tokens,
)
from hostcraft.engine.loops import Engine
from hostcraft.runtime import Runtime


def create_app(runtime: Runtime, *, run_engine: bool | None = None) -> FastAPI:
    """Build the API around a runtime; the engine loops start with it unless disabled."""
    start_engine = runtime.settings.engine_enabled if run_engine is None else run_engine

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = Engine(runtime) if start_engine else None
        app.state.engine = engine
        if engine is not None:
            engine.start()
        try:
            yield
        finally:
            if engine is not None:
                engine.stop()

    app = FastAPI(
        title="HostCraft",
        version=__version__,
        description="Control plane for Docker Swarm: high availability and disaster recovery.",
        docs_url=None,
        openapi_url="/api/openapi.json",
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    install_error_handlers(app)
    _serve_docs_locally(app)
    _declare_bearer_auth(app)
    app.include_router(system.public)
    app.include_router(system.router)
    app.include_router(tokens.router)
    app.include_router(regions.router)
    app.include_router(servers.router)
    app.include_router(cluster.router)
    app.include_router(applications.router)
    app.include_router(monitoring.router)
    app.include_router(alerts.router)
    app.include_router(maintenance.router)
    app.include_router(metrics.router)
    app.include_router(backup_destinations.router)
    app.include_router(backups.router)
    app.include_router(self_backup.router)
    app.include_router(dr.router)
    return app


def _serve_docs_locally(app: FastAPI) -> None:
    """Serve Swagger UI from the installed swagger-ui-bundle package instead of a CDN."""
    app.mount(
        "/api/docs/assets", StaticFiles(directory=swagger_ui_bundle.swagger_ui_path), name="docs-assets"
    )

    @app.get("/api/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/api/openapi.json",
            title="HostCraft API",
            swagger_js_url="/api/docs/assets/swagger-ui-bundle.js",
            swagger_css_url="/api/docs/assets/swagger-ui.css",
            swagger_favicon_url="/api/docs/assets/favicon-32x32.png",
        )


def _declare_bearer_auth(app: FastAPI) -> None:
    """Add the bearer scheme to the OpenAPI document, so Swagger UI can send the token."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            schema.setdefault("components", {})["securitySchemes"] = {
                "bearer": {"type": "http", "scheme": "bearer", "description": "a HostCraft API token"}
            }
            for path, operations in schema["paths"].items():
                if path != "/health" and not (
                    path == "/metrics" and app.state.runtime.settings.metrics_public
                ):
                    for operation in operations.values():
                        operation["security"] = [{"bearer": []}]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
