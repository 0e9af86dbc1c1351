"""`CeleryOwnerMiddleware`: a Celery task sent while a view runs belongs to `request.user`
(its jobwire user id) unless the task names its owner (a `user_id` header or keyword
argument, as `jobwire.integrations.celery` reads them). Put it after
AuthenticationMiddleware."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponse

from ...integrations import celery as jobwire_celery
from .auth import user_id_of


def _signed_in(user: Any) -> str | None:
    return user_id_of(user) if user is not None and user.is_authenticated else None


class CeleryOwnerMiddleware:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]):
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> HttpResponse | Awaitable[HttpResponse]:
        if self.is_async:
            return self._acall(request)
        # Looked up only if a task is sent: most requests send none, and `request.user`
        # costs a session and a user query the first time it is read.
        with jobwire_celery.owner(lambda: _signed_in(getattr(request, "user", None))):
            return self.get_response(request)

    async def _acall(self, request: HttpRequest) -> HttpResponse:
        # An async view's task is sent on the event loop, where `request.user` cannot run
        # its queries: look the user up now, the async way. The context, and so the owner,
        # reaches sync views too (asgiref copies it into their thread).
        auser = getattr(request, "auser", None)
        user = await auser() if auser is not None else None
        with jobwire_celery.owner(_signed_in(user)):
            return await self.get_response(request)
