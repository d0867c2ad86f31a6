"""The FastAPI application."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from hostcraft import __version__
from hostcraft.api.errors import install_error_handlers
from hostcraft.api.routes import cluster, regions, servers, system, tokens
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
        docs_url="/api/docs",
        openapi_url="/api/openapi.json",
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    install_error_handlers(app)
    app.include_router(system.public)
    app.include_router(system.router)
    app.include_router(tokens.router)
    app.include_router(regions.router)
    app.include_router(servers.router)
    app.include_router(cluster.router)
    return app
