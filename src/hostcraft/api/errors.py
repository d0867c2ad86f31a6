"""The one place where exceptions become HTTP responses: ``{"error": {code, message, details}}``."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from hostcraft.errors import HostCraftError

logger = logging.getLogger(__name__)

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    422: "validation_error",
    503: "unavailable",
}


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or {}}}


def _field_path(location: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(part) for part in location if part not in ("body", "query", "path", "header")]
    path = ""
    for part in parts:
        if part.isdigit():
            path += f"[{part}]"
        elif path:
            path += f".{part}"
        else:
            path = part
    return path


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(HostCraftError)
    async def _hostcraft_error(_request: Request, exc: HostCraftError) -> JSONResponse:
        if exc.status_code >= 500 and exc.status_code != 503:
            logger.error("request failed: %s", exc.message, extra={"code": exc.code})
        headers = {"WWW-Authenticate": "Bearer"} if exc.status_code == 401 else None
        return JSONResponse(
            error_body(exc.code, exc.message, exc.details), status_code=exc.status_code, headers=headers
        )

    @app.exception_handler(RequestValidationError)
    async def _request_invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            {
                "field": "body" if error.get("type") == "json_invalid" else _field_path(error.get("loc", ())),
                "message": str(error.get("msg", "invalid value")).removeprefix("Value error, "),
            }
            for error in exc.errors()
        ]
        first = problems[0] if problems else {"field": "", "message": "invalid request"}
        message = (
            first["message"]
            if first["message"].startswith("invalid ")
            else f"invalid {first['field'] or 'request'}: {first['message']}"
        )
        if len(problems) > 1:
            message += f" (and {len(problems) - 1} more problem{'s' if len(problems) > 2 else ''})"
        return JSONResponse(
            error_body("validation_error", message, {"field": first["field"], "problems": problems}),
            status_code=422,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "error")
        return JSONResponse(
            error_body(code, str(exc.detail)),
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error")
        return JSONResponse(
            error_body("internal_error", f"internal error ({type(exc).__name__}); see the HostCraft log"),
            status_code=500,
        )
