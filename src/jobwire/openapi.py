"""`GET /openapi.json`: an OpenAPI 3.1 description of jobwire's HTTP endpoints, built from
the pydantic models that validate requests (jobwire.protocol) and describe answers
(jobwire.schemas), and from the error classes (jobwire.errors) for the error bodies.

Only routes the app really has are described (the read transports are optional), so the
document always matches the server that serves it. The WebSocket (`/ws/jobs`) and the static
files are outside OpenAPI's reach; the document points to the contract for them.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from . import __version__, errors, schemas
from .config import Settings
from .protocol import ID_PATTERN, JobUpdate
from .transports.http import JSONResponse, service_of

REF = "#/components/schemas/{model}"
CONTRACT = "docs/protocol.md in the jobwire repository"

# A comma-separated list of job ids; empty entries are dropped (`?jobIds=a,,b`).
JOB_IDS_PATTERN = r"^[A-Za-z0-9_.:\-]{0,128}(,[A-Za-z0-9_.:\-]{0,128})*$"
# A resume point (contract §4): an event id or a Unix time of at most 16 digits, with the
# surrounding whitespace the server strips (Python's str.strip, spelled out: JSON Schema's
# `\s` is a slightly different set).
_SPACE = r"[\t\n\x0b\x0c\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*"
RESUME_POINT_PATTERN = rf"^{_SPACE}([0-9]{{1,16}}|[0-9]{{1,16}}-[0-9]{{1,16}}){_SPACE}$"

# What JobUpdate's field validators enforce beyond what pydantic can put in a schema
# (tests/unit/test_openapi_doc.py checks each rule against parse_update).
UPDATE_RULES: dict[str, dict[str, Any]] = {
    "progress": {"minimum": 0, "maximum": 100},
    # JSON Schema's date-time is RFC 3339; the server reads it with datetime.fromisoformat,
    # which refuses its lower-case `t`/`z` and leap seconds (and reads more ISO 8601 forms).
    "timestamp": {
        "format": "date-time", "maxLength": 64,
        "description": "A date-time with a time part, e.g. `2025-11-26T01:25:31Z`: RFC 3339 with "
                       "an upper-case `T` (or a space) and `Z`, no leap second; other ISO 8601 "
                       "forms Python's datetime.fromisoformat reads are accepted too.",
    },
}

BEARER = "bearerToken"
SECURITY_SCHEMES = {
    BEARER: {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
             "description": "`Authorization: Bearer <token>`, checked first."},
    "tokenQuery": {"type": "apiKey", "in": "query", "name": "token",
                   "description": "`?token=<token>`, for clients that cannot set headers "
                                  "(EventSource, WebSocket)."},
    "tokenCookie": {"type": "apiKey", "in": "cookie", "name": "jobwire_token",
                    "description": "The `jobwire_token` cookie; only from an allowed `Origin` "
                                   "(else 403 `origin not allowed`)."},
}
ANY_TOKEN = [{name: []} for name in SECURITY_SCHEMES]

ERROR_TITLES = {400: "Bad request", 401: "Unauthorized", 403: "Forbidden", 404: "Not found",
                405: "Method not allowed (a known path, another method)", 409: "Conflict",
                410: "Gone", 413: "Payload too large", 422: "Invalid update",
                429: "Too many requests", 503: "Unavailable"}
# Codes the routing layer answers with (transports/http.py http_error_handler).
ROUTING_CODES = {404: "not_found", 405: "method_not_allowed"}


def error_codes() -> dict[int, list[str]]:
    """Every error code by HTTP status, from the exception tree itself."""
    by_status: dict[int, set[str]] = {}
    pending = [errors.JobwireError]
    while pending:
        cls = pending.pop()
        pending += cls.__subclasses__()
        if cls is not errors.JobwireError:
            by_status.setdefault(cls.http_status, set()).add(cls.code)
    for status, code in ROUTING_CODES.items():
        by_status.setdefault(status, set()).add(code)
    return {status: sorted(codes) for status, codes in sorted(by_status.items())}


class _Components:
    """components.schemas, filled from models: each model's nested definitions are hoisted,
    and its references already point at components (pydantic's `ref_template`)."""

    def __init__(self) -> None:
        self.schemas: dict[str, Any] = {}

    def add(self, model: type[BaseModel]) -> None:
        schema = model.model_json_schema(ref_template=REF)
        self.schemas.update(schema.pop("$defs", {}))
        self.schemas[model.__name__] = schema

    @staticmethod
    def ref(name: str) -> dict[str, str]:
        return {"$ref": REF.format(model=name)}


def _update_schemas(components: _Components) -> None:
    """JobUpdate for the batch's items; PathUpdate for the body whose jobId is in the URL."""
    components.add(JobUpdate)
    update = components.schemas["JobUpdate"]
    for field, rules in UPDATE_RULES.items():
        for branch in _non_null(update["properties"][field]):
            branch.update(rules)
    path_update = copy.deepcopy(update)
    path_update["title"] = "PathUpdate"
    path_update["required"] = [f for f in update["required"] if f != "jobId"]
    path_update["properties"]["jobId"]["description"] = (
        "Optional here: the job id is the URL's; if the body repeats it, it must be equal.")
    components.schemas["PathUpdate"] = path_update


def _non_null(prop: dict[str, Any]) -> list[dict[str, Any]]:
    """The non-null branches of an optional field's schema (`anyOf: [X, Y, null]`)."""
    return [b for b in prop.get("anyOf", [prop]) if b.get("type") != "null"]


def _error_responses(codes: dict[int, list[str]], used: set[str]) -> dict[str, Any]:
    """One response per error status, its codes listed; `used`: the statuses operations
    answer (the others belong to codes only the streams send in-band, contract §7)."""
    out = {}
    for status, names in codes.items():
        routing = status in ROUTING_CODES
        note = "" if str(status) in used or routing else (
            " (no HTTP endpoint answers it in this version)")
        out[f"Error{status}"] = {
            "description": f"{ERROR_TITLES.get(status, 'Error')}: "
                           + ", ".join(f"`{c}`" for c in names) + note,
            "content": {"application/json": {"schema": {
                "allOf": [_Components.ref("ErrorBody")],
                "properties": {"error": {"properties": {"code": {"enum": names}}}},
            }}},
        }
    out["Error401"]["headers"] = {"WWW-Authenticate": {
        "description": "`Bearer`", "schema": {"type": "string"}}}
    out["Error429"]["headers"] = {"Retry-After": {
        "description": "Seconds to wait before retrying.", "schema": {"type": "integer"}}}
    return out


def _errors(*statuses: int) -> dict[str, Any]:
    return {str(s): {"$ref": f"#/components/responses/Error{s}"} for s in statuses}


def _json(schema: dict[str, Any], description: str, **extra: Any) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/json": {"schema": schema}}, **extra}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema,
            "description": description}


def _header(name: str, description: str, schema: dict[str, Any] | None = None
            ) -> dict[str, Any]:
    return {"name": name, "in": "header", "required": False,
            "schema": schema or {"type": "string"}, "description": description}


def _job_id_path(shadowed: list[str]) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string", "pattern": ID_PATTERN}
    description = "A job id: 1-128 characters of `A-Z a-z 0-9 _ . : -`."
    if shadowed:
        # /api/v2/jobs/status (and stream, poll) are routes of their own.
        schema["not"] = {"enum": shadowed}
        description += " Ids equal to a fixed path cannot be read here (contract §5)."
    return {"name": "jobId", "in": "path", "required": True, "schema": schema,
            "description": description}


JOB_IDS = _query("jobIds", {"type": "string", "pattern": JOB_IDS_PATTERN},
                 "Comma-separated job ids; empty entries and duplicates are dropped; at most "
                 "JOBWIRE_MAX_SUBSCRIPTIONS ids (else 400). Absent: every job the principal "
                 "may see.")
CACHE_HEADERS = {
    "ETag": {"description": "A strong tag of the body.", "schema": {"type": "string"}},
    "Retry-After": {"description": "Seconds until another poll is worth making.",
                    "schema": {"type": "integer", "minimum": 1}},
    "Cache-Control": {"description": "`no-cache`", "schema": {"type": "string"}},
}
IF_NONE_MATCH = _header("If-None-Match", "ETags from earlier answers: 304 if one is current.")
NOT_MODIFIED = {"description": "Not modified: the `If-None-Match` tag is current. No body.",
                "headers": CACHE_HEADERS}
READERS = "Roles: `user` (its own jobs) and `admin` (every job); `publisher`: 403."
PUBLISHERS = "Roles: `publisher` and `admin`; `user`: 403."
# Statuses every authenticated endpoint may answer: no or a bad token (401), the role or
# the Origin refused (403), the session store or authenticate hook failed (503).
AUTH_ERRORS = (401, 403, 503)


def _operations(settings: Settings, shadowed: list[str]) -> dict[tuple[str, str], Any]:
    c = _Components.ref
    job_id = _job_id_path(shadowed)
    return {
        ("/", "get"): {
            "summary": "The dashboard page", "tags": ["pages"], "security": [],
            "responses": {"200": {"description": "HTML", "content": {"text/html": {
                "schema": {"type": "string"}}}}}},
        ("/openapi.json", "get"): {
            "summary": "This document", "tags": ["meta"], "security": [],
            "responses": {"200": _json({"type": "object"}, "OpenAPI 3.1")}},
        ("/healthz", "get"): {
            "summary": "Liveness", "tags": ["meta"], "security": [],
            "responses": {"200": _json(c("Health"), "The process serves.")}},
        ("/readyz", "get"): {
            "summary": "Readiness", "tags": ["meta"], "security": [],
            "responses": {"200": _json(c("Readiness"), "The broker can store updates."),
                          "503": _json(c("Readiness"), "The broker is unavailable.")}},
        ("/metrics", "get"): {
            "summary": "Prometheus metrics", "tags": ["meta"], "security": [],
            "responses": {"200": {"description": "Prometheus text format (contract §5).",
                                  "content": {"text/plain": {"schema": {"type": "string"}}}}}},
        ("/api/v2/jobs/{jobId}/status", "post"): {
            "summary": "Publish one update", "tags": ["publish"],
            "description": f"{PUBLISHERS} At most {settings.max_message_bytes} bytes. "
                           "Ownership and lifecycle rules: contract §2.",
            "parameters": [job_id],
            "requestBody": {"required": True, "content": {"application/json": {
                "schema": c("PathUpdate")}}},
            "responses": {"202": _json(c("PublishAck"), "Accepted, a duplicate, or a known "
                                                        "eventId."),
                          **_errors(400, *AUTH_ERRORS, 404, 409, 413, 422, 429)}},
        ("/api/v2/jobs/status", "post"): {
            "summary": "Publish a batch of updates", "tags": ["publish"],
            "description": f"{PUBLISHERS} At most {settings.max_batch_items} items and "
                           f"{settings.max_batch_bytes} bytes (else 413). Items are applied "
                           "in order; a refused item does not hold back the others.",
            "requestBody": {"required": True, "content": {"application/json": {
                "schema": {"type": "array", "items": c("JobUpdate")}}}},
            "responses": {"202": _json(c("BatchAnswer"), "One result per item, in order."),
                          **_errors(400, *AUTH_ERRORS, 413, 422, 429)}},
        ("/api/v2/jobs/stream", "get"): {
            "summary": "Server-Sent Events", "tags": ["read"],
            "description": f"{READERS} An endless stream: it ends only when the token "
                           "expires, the client is too slow, or the server shuts down. Each "
                           "`data:` line holds one JSON message (`x-event-data`); job events "
                           "also carry their id as `id:`. Order: one `error` per refused job "
                           "id, `cursor_expired` if applicable, `subscribed`, replayed events, "
                           "live events; `heartbeat` every JOBWIRE_HEARTBEAT_SECONDS.",
            "parameters": [
                JOB_IDS,
                _query("lastEventId", {"type": "string", "pattern": RESUME_POINT_PATTERN},
                       "Resume point (contract §4); the header wins."),
                _header("Last-Event-ID", "Resume point (contract §4).",
                        {"type": "string", "pattern": RESUME_POINT_PATTERN}),
            ],
            "responses": {"200": {
                "description": "The stream.",
                "headers": {"Cache-Control": CACHE_HEADERS["Cache-Control"]},
                "content": {"text/event-stream": {
                    "schema": {"type": "string"},
                    "x-event-data": {"oneOf": [c("JobEvent"), c("SubscribedMessage"),
                                               c("ErrorMessage"), c("HeartbeatMessage")]}}}},
                **_errors(400, *AUTH_ERRORS, 429)}},
        ("/api/v2/jobs/poll", "get"): {
            "summary": "Long-polling", "tags": ["read"],
            "description": f"{READERS} Without `last_seen`: the current states at once. With "
                           "it: the events after it, or after `timeout` seconds none.",
            "parameters": [
                JOB_IDS,
                _query("last_seen", {"type": "string", "pattern": RESUME_POINT_PATTERN},
                       "Resume point: an event id or a Unix time (contract §4)."),
                _query("timeout", {"type": "number", "minimum": 0},
                       "Seconds to wait; default 30; values above 60 wait 60."),
            ],
            "responses": {"200": _json(c("LongPollAnswer"), "Events, or current states."),
                          **_errors(400, *AUTH_ERRORS, 429)}},
        ("/api/v2/jobs/status", "get"): {
            "summary": "Poll several jobs", "tags": ["read"],
            "description": f"{READERS} Others' and unknown job ids are left out silently.",
            "parameters": [
                JOB_IDS,
                _query("userId", {"type": "string"},
                       "Without `jobIds`: every job of this user. A user may name only "
                       "itself (else 403, `field: userId`); ignored with `jobIds`."),
                IF_NONE_MATCH,
            ],
            "responses": {"200": _json(c("PollAnswer"), "Snapshot states.",
                                       headers=CACHE_HEADERS),
                          "304": NOT_MODIFIED, **_errors(400, *AUTH_ERRORS)}},
        ("/api/v2/jobs/{jobId}", "get"): {
            "summary": "Poll one job", "tags": ["read"],
            "description": f"{READERS} Unknown jobs and others' jobs are both 404.",
            "parameters": [job_id, IF_NONE_MATCH],
            "responses": {"200": _json(c("JobEvent"), "The job's snapshot state.",
                                       headers=CACHE_HEADERS),
                          "304": NOT_MODIFIED, **_errors(*AUTH_ERRORS, 404)}},
    }


OPENAPI_PATHS = {"/api/v2/jobs/{job_id}/status": "/api/v2/jobs/{jobId}/status",
                 "/api/v2/jobs/{job_id}": "/api/v2/jobs/{jobId}"}


def http_routes(routes: Iterable[Any]) -> set[tuple[str, str]]:
    """(OpenAPI path, lower-case method) of every HTTP route; HEAD rides along with GET."""
    out = set()
    for route in routes:
        if isinstance(route, Route):
            path = OPENAPI_PATHS.get(route.path, route.path)
            out |= {(path, m.lower()) for m in route.methods or () if m != "HEAD"}
    return out


def document(settings: Settings, routes: Iterable[Any], root_path: str = "") -> dict[str, Any]:
    """The OpenAPI document of an app with these `routes`."""
    present = http_routes(routes)
    fixed = ("status", "stream", "poll")
    shadowed = [name for name in fixed if (f"/api/v2/jobs/{name}", "get") in present]
    components = _Components()
    _update_schemas(components)
    for model in (schemas.ErrorBody, schemas.PublishAck, schemas.BatchAnswer,
                  schemas.JobEvent, schemas.PollAnswer, schemas.LongPollAnswer,
                  schemas.SubscribedMessage, schemas.ErrorMessage, schemas.HeartbeatMessage,
                  schemas.Health, schemas.Readiness):
        components.add(model)
    paths: dict[str, dict[str, Any]] = {}
    for (path, method), operation in _operations(settings, shadowed).items():
        if (path, method) in present:
            if operation.get("security") != []:
                operation["security"] = ANY_TOKEN
            operation["operationId"] = f"{method}{_camel(path)}"
            paths.setdefault(path, {})[method] = operation
    used = {status for ops in paths.values() for op in ops.values()
            for status in op["responses"]}
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "jobwire",
            "version": __version__,
            "description": "Live job status over HTTP. The WebSocket (`GET /ws/jobs`), the "
                           "static files and the full rules are in the protocol contract "
                           f"({CONTRACT}). Every error has the body `ErrorBody`.",
        },
        "paths": dict(sorted(paths.items())),
        "components": {"schemas": dict(sorted(components.schemas.items())),
                       "responses": _error_responses(error_codes(), used),
                       "securitySchemes": SECURITY_SCHEMES},
    }
    if root_path:
        doc["servers"] = [{"url": root_path}]
    return copy.deepcopy(doc)  # nothing in it shared with this module's constants


def _camel(path: str) -> str:
    words = path.replace("{", "").replace("}", "").replace(".", "/").split("/")
    return "".join(w[:1].upper() + w[1:] for w in words if w and w not in ("api", "v2"))


async def endpoint(request: Request) -> Response:
    """Built once per mount point: the routes and settings do not change while serving."""
    root_path = request.scope.get("root_path", "")
    cache: dict[str, dict[str, Any]] | None = getattr(request.app.state, "openapi", None)
    if cache is None:
        cache = request.app.state.openapi = {}
    if root_path not in cache:
        cache[root_path] = document(service_of(request).settings, request.app.routes, root_path)
    return JSONResponse(cache[root_path])
