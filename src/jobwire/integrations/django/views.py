"""The token view: a short-lived jobwire token for the signed-in user, for pages or scripts
that talk to jobwire with a token rather than the session cookie (another origin, a native
client, `Jobwire.connect({token: fetchToken})`)."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from . import conf
from .auth import role_of, user_id_of


@never_cache  # a token must not sit in a shared cache
@require_GET
def token(request: HttpRequest) -> JsonResponse:
    """{token, expiresAt, userId, role}; 401 JSON for anyone not signed in. Not a redirect
    to the login page as `login_required` would do: the caller is `fetch()`, which would
    follow it and get HTML where it expects JSON."""
    user = request.user
    if not user.is_authenticated or not user.is_active:
        response = JsonResponse({"error": {"code": "unauthorized",
                                           "message": "sign in first"}}, status=401)
        response["WWW-Authenticate"] = 'Session realm="jobwire"'
        return response
    ttl = conf.token_ttl()
    user_id, role = user_id_of(user), role_of(user)
    tokens = conf.tokens()
    minted = tokens.mint(user_id, role, ttl=ttl)
    expires = tokens.verify(minted).expires_at  # exactly the token's own `exp`
    return JsonResponse({"token": minted, "expiresAt": int(expires or 0),
                         "userId": user_id, "role": role})
