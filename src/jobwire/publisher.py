"""Publishing from Python. `Publisher` (sync, for plain worker code) and `AsyncPublisher` go
over HTTP with bounded retries; `BrokerPublisher` writes straight to a broker in the same
process. All validate locally first, with the server's own rules."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterable
from typing import Any

import httpx

from .broker import Broker
from .errors import (
    BrokerUnavailable,
    Conflict,
    Forbidden,
    InvalidUpdate,
    JobwireError,
    Unauthorized,
)
from .protocol import parse_update

__all__ = ["AsyncPublisher", "BrokerPublisher", "Publisher", "make_update"]

DEFAULT_URL = "http://127.0.0.1:3000"
_BY_STATUS: dict[int, type[JobwireError]] = {401: Unauthorized, 403: Forbidden,
                                             409: Conflict, 422: InvalidUpdate}


def make_update(job_id: str, user_id: str, status: str, progress: float | None = None,
                current_operation: str | None = None, **extra: Any) -> dict[str, Any]:
    update: dict[str, Any] = {"jobId": job_id, "userId": user_id, "status": status}
    if progress is not None:
        update["progress"] = progress
    if current_operation is not None:
        update["currentOperation"] = current_operation
    update.update({k: v for k, v in extra.items() if v is not None})
    parse_update(update)  # the same validation as the server, before any network
    return update


def _raise_for(response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    try:
        err = response.json()["error"]
        message, field = err.get("message", ""), err.get("field")
    except (ValueError, KeyError, TypeError):
        message, field = response.text[:200], None
    cls = _BY_STATUS.get(response.status_code, JobwireError)
    raise cls(f"{response.status_code}: {message}", field=field)


def _retryable(exc: Exception) -> bool:
    return isinstance(exc, httpx.TransportError | BrokerUnavailable)


def _backoff(attempt: int, base: float = 0.2, cap: float = 5.0) -> float:
    return random.uniform(0, min(cap, base * 2**attempt))  # full jitter


class Publisher:
    """Synchronous publisher over HTTP: `Publisher(url, token).update("job_1", "u1", ...)`."""

    def __init__(self, url: str = DEFAULT_URL, token: str = "", *, timeout: float = 10.0,
                 retries: int = 3):
        self.retries = retries
        self._client = httpx.Client(base_url=url, timeout=timeout,
                                    headers={"Authorization": f"Bearer {token}"})

    def update(self, job_id: str, user_id: str, status: str, progress: float | None = None,
               current_operation: str | None = None, **extra: Any) -> dict[str, Any]:
        update = make_update(job_id, user_id, status, progress, current_operation, **extra)
        return self._post(f"/api/v2/jobs/{job_id}/status", update)

    def publish_many(self, updates: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        return self._post("/api/v2/jobs/status", list(updates))["results"]

    def _post(self, path: str, body: Any) -> Any:
        for attempt in range(self.retries + 1):
            try:
                response = self._client.post(path, json=body)
                if response.status_code == 503:
                    raise BrokerUnavailable("server could not store the update")
                _raise_for(response)
                return response.json()
            except Exception as exc:
                if not _retryable(exc) or attempt == self.retries:
                    raise
                time.sleep(_backoff(attempt))
        raise AssertionError("unreachable")

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncPublisher:
    """Asynchronous publisher over HTTP, same API as `Publisher` with `await`."""

    def __init__(self, url: str = DEFAULT_URL, token: str = "", *, timeout: float = 10.0,
                 retries: int = 3):
        self.retries = retries
        self._client = httpx.AsyncClient(base_url=url, timeout=timeout,
                                         headers={"Authorization": f"Bearer {token}"})

    async def update(self, job_id: str, user_id: str, status: str,
                     progress: float | None = None, current_operation: str | None = None,
                     **extra: Any) -> dict[str, Any]:
        update = make_update(job_id, user_id, status, progress, current_operation, **extra)
        return await self._post(f"/api/v2/jobs/{job_id}/status", update)

    async def publish_many(self, updates: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        return (await self._post("/api/v2/jobs/status", list(updates)))["results"]

    async def _post(self, path: str, body: Any) -> Any:
        for attempt in range(self.retries + 1):
            try:
                response = await self._client.post(path, json=body)
                if response.status_code == 503:
                    raise BrokerUnavailable("server could not store the update")
                _raise_for(response)
                return response.json()
            except Exception as exc:
                if not _retryable(exc) or attempt == self.retries:
                    raise
                await asyncio.sleep(_backoff(attempt))
        raise AssertionError("unreachable")

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __aenter__(self) -> AsyncPublisher:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class BrokerPublisher:
    """Publishes straight to a broker (no HTTP hop), with the same validation."""

    def __init__(self, broker: Broker):
        self.broker = broker

    async def update(self, job_id: str, user_id: str, status: str,
                     progress: float | None = None, current_operation: str | None = None,
                     **extra: Any) -> dict[str, Any]:
        update = make_update(job_id, user_id, status, progress, current_operation, **extra)
        return (await self.broker.publish(parse_update(update))).to_wire()
