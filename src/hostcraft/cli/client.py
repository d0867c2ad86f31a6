"""The CLI's HTTP client: finds the API URL and token, turns API errors into CliError."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import httpx

DEFAULT_URL = "http://127.0.0.1:8080"


class CliError(Exception):
    """An error to print (without a traceback) before exiting non-zero."""

    def __init__(self, message: str, *, exit_code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


def config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "hostcraft" / "cli.json"


def read_config() -> dict[str, str]:
    path = config_path()
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CliError(f"failed to read {path}: {exc}. Run 'hostcraft login' again") from exc
    return {key: str(value) for key, value in data.items() if isinstance(value, str)}


def write_config(url: str, token: str) -> Path:
    """Store the URL and token for later commands, readable by the owner only."""
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump({"url": url, "token": token}, handle)
    os.chmod(path, 0o600)
    return path


class ApiClient:
    def __init__(self, url: str | None = None, token: str | None = None, *, timeout: float = 120.0) -> None:
        stored = read_config() if not (url and token) else {}
        self.url = (url or os.environ.get("HOSTCRAFT_URL") or stored.get("url") or DEFAULT_URL).rstrip("/")
        self.token = token or os.environ.get("HOSTCRAFT_TOKEN") or stored.get("token")
        self._http = httpx.Client(base_url=self.url, timeout=timeout)

    def request(
        self, method: str, path: str, *, json_body: Any = None, params: dict[str, Any] | None = None
    ) -> Any:
        if not self.token:
            raise CliError(
                "no API token: set HOSTCRAFT_TOKEN, or run 'hostcraft login --token TOKEN' "
                "(the first 'hostcraft up' prints an admin token)"
            )
        headers = {"Authorization": f"Bearer {self.token}"}
        try:
            response = self._http.request(method, path, json=json_body, params=params, headers=headers)
        except httpx.TransportError as exc:
            raise CliError(
                f"cannot reach HostCraft at {self.url}: {exc}. Is 'hostcraft up' running?"
            ) from exc
        if response.status_code == 204:
            return None
        try:
            payload = response.json()
        except ValueError:
            payload = None
        if response.is_error:
            error = (payload or {}).get("error", {}) if isinstance(payload, dict) else {}
            message = error.get("message") or f"HTTP {response.status_code}: {response.text[:200]}"
            raise CliError(f"{message} [{response.status_code} {error.get('code', '')}]".rstrip())
        return payload

    def get_text(self, path: str, **params: Any) -> str:
        """GET a non-JSON document (such as CSV) and return its text; errors as for ``request``."""
        if not self.token:
            raise CliError("no API token: set HOSTCRAFT_TOKEN, or run 'hostcraft login --token TOKEN'")
        query = {key: value for key, value in params.items() if value is not None}
        try:
            response = self._http.get(path, params=query, headers={"Authorization": f"Bearer {self.token}"})
        except httpx.TransportError as exc:
            raise CliError(
                f"cannot reach HostCraft at {self.url}: {exc}. Is 'hostcraft up' running?"
            ) from exc
        if response.is_error:
            self.request("GET", path, params=query)  # raises CliError with the API's message
        return response.text

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params={k: v for k, v in params.items() if v is not None})

    def post(self, path: str, body: Any = None) -> Any:
        return self.request("POST", path, json_body=body if body is not None else {})

    def put(self, path: str, body: Any) -> Any:
        return self.request("PUT", path, json_body=body)

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path)
