"""The OpenAPI document (jobwire.openapi): valid OpenAPI 3.1, one operation for every HTTP
route the app has (so a new endpoint without a description fails here), the rules JobUpdate's
validators add beyond its schema in step with parse_update, and every error code present."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlencode

import pytest
import schemathesis
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.requests import Request
from starlette.routing import Mount, Route, WebSocketRoute

from jobwire.app import create_app
from jobwire.config import Settings
from jobwire.cursor import parse_resume_point
from jobwire.errors import InvalidMessage, InvalidUpdate, JobwireError
from jobwire.openapi import (
    JOB_IDS_PATTERN,
    RESUME_POINT_PATTERN,
    UPDATE_RULES,
    document,
    error_codes,
    http_routes,
)
from jobwire.protocol import parse_update
from jobwire.transports.poll import job_ids_param
from jobwire.transports.websocket import WS_PATH

TRANSPORT_SETS = ["websocket,sse,longpoll,poll", "sse", "poll", "longpoll,poll", "websocket"]


def app_and_doc(transports: str, root_path: str = "") -> tuple[Any, dict[str, Any]]:
    app = create_app(Settings.load({}, {"secret": "s" * 32, "transports": transports}))
    return app, document(app.state.service.settings, app.routes, root_path)


def refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == "$ref"] + [
            r for v in node.values() for r in refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in refs(v)]
    return []


def resolve(doc: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = doc
    for part in ref[2:].split("/"):
        node = node[part]
    return node


@pytest.mark.parametrize("transports", TRANSPORT_SETS)
def test_every_http_route_is_described_and_nothing_else(transports):
    app, doc = app_and_doc(transports)
    described = {(path, method) for path, ops in doc["paths"].items() for method in ops}
    assert described == http_routes(app.routes)
    # What OpenAPI cannot describe: the WebSocket and the static files (contract §5, §6).
    others = [r for r in app.routes if not isinstance(r, Route)]
    assert all((isinstance(r, WebSocketRoute) and r.path == WS_PATH)
               or (isinstance(r, Mount) and r.path == "/static") for r in others), others
    assert ("/openapi.json", "get") in described and ("/metrics", "get") in described


def test_a_route_without_a_description_is_noticed():
    app, _ = app_and_doc("poll")
    app.router.routes.append(Route("/api/v2/jobs/{job_id}/cancel", lambda r: None,
                                   methods=["POST"]))
    doc = document(app.state.service.settings, app.routes)
    described = {(p, m) for p, ops in doc["paths"].items() for m in ops}
    assert http_routes(app.routes) - described == {("/api/v2/jobs/{job_id}/cancel", "post")}


@pytest.mark.parametrize("transports", TRANSPORT_SETS)
def test_the_document_is_valid_openapi_3_1(transports):
    _, doc = app_and_doc(transports)
    assert doc["openapi"].startswith("3.1")
    schema = schemathesis.openapi.from_dict(doc)
    schema.validate()  # the OpenAPI 3.1 meta-schema; raises on the first violation
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == sum(len(ops) for ops in doc["paths"].values())
    for ref in refs(doc):
        resolve(doc, ref)  # every reference points somewhere


def test_the_validation_catches_a_broken_document():
    _, doc = app_and_doc("poll")
    del doc["paths"]["/healthz"]["get"]["responses"]["200"]["description"]
    with pytest.raises(Exception, match="description"):
        schemathesis.openapi.from_dict(doc).validate()


def test_operations_have_ids_security_and_error_bodies():
    _, doc = app_and_doc("websocket,sse,longpoll,poll")
    ids = [op["operationId"] for ops in doc["paths"].values() for op in ops.values()]
    assert len(ids) == len(set(ids))
    schemes = set(doc["components"]["securitySchemes"])
    assert schemes == {"bearerToken", "tokenQuery", "tokenCookie"}
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            if path.startswith("/api/"):
                assert {name for req in op["security"] for name in req} == schemes
                assert {"401", "403", "503"} <= set(op["responses"]), (method, path)
                assert "Roles:" in op["description"]
            else:
                assert op["security"] == []
            for status, response in op["responses"].items():
                if status >= "400" and path != "/readyz":  # its 503 is {"status": ...}
                    assert response == {"$ref": f"#/components/responses/Error{status}"}


def test_error_responses_list_every_code_of_their_status():
    _, doc = app_and_doc("poll")
    codes = error_codes()
    documented = {400, 401, 403, 404, 409, 410, 413, 422, 429, 503}
    assert documented <= set(codes)
    classes = [JobwireError]
    while classes:
        cls = classes.pop()
        classes += cls.__subclasses__()
        if cls is not JobwireError:
            assert cls.code in codes[cls.http_status], cls
    for status, names in codes.items():
        response = doc["components"]["responses"][f"Error{status}"]
        schema = response["content"]["application/json"]["schema"]
        assert schema["allOf"] == [{"$ref": "#/components/schemas/ErrorBody"}]
        assert schema["properties"]["error"]["properties"]["code"]["enum"] == names
    assert "WWW-Authenticate" in doc["components"]["responses"]["Error401"]["headers"]
    assert "Retry-After" in doc["components"]["responses"]["Error429"]["headers"]
    detail = doc["components"]["schemas"]["ErrorDetail"]
    assert detail["required"] == ["code", "message"]
    assert set(detail["properties"]) == {"code", "message", "field", "jobId"}


def test_update_schemas_come_from_the_model_with_the_validators_rules():
    _, doc = app_and_doc("poll")
    schemas = doc["components"]["schemas"]
    update, in_path = schemas["JobUpdate"], schemas["PathUpdate"]
    assert update["required"] == ["jobId", "userId", "status"]
    assert in_path["required"] == ["userId", "status"]
    assert set(in_path["properties"]) == set(update["properties"])
    for field, rules in UPDATE_RULES.items():
        branches = [b for b in update["properties"][field]["anyOf"] if b.get("type") != "null"]
        assert branches and all(rules.items() <= b.items() for b in branches), field
    body = doc["paths"]["/api/v2/jobs/{jobId}/status"]["post"]["requestBody"]
    assert body["content"]["application/json"]["schema"]["$ref"].endswith("/PathUpdate")


def valid(**fields: Any) -> bool:
    try:
        parse_update({"jobId": "j", "userId": "u", "status": "processing", **fields})
    except InvalidUpdate:
        return False
    return True


def test_the_added_rules_are_the_validators_rules():
    rules = UPDATE_RULES["progress"]
    assert valid(progress=rules["minimum"]) and valid(progress=rules["maximum"])
    assert valid(progress=rules["maximum"] - 0.5)
    assert not valid(progress=rules["minimum"] - 0.001)
    assert not valid(progress=rules["maximum"] + 0.001)
    assert not valid(progress=10**400)
    limit = UPDATE_RULES["timestamp"]["maxLength"]
    stamp = "2025-11-26T01:25:31.004+00:00"
    assert valid(timestamp=stamp)
    assert not valid(timestamp=stamp + " " * (limit + 1 - len(stamp)))
    assert not valid(timestamp="2025-11-26")  # a date alone is no date-time


def test_the_document_follows_the_app_it_describes():
    _, full = app_and_doc("websocket,sse,longpoll,poll")
    job_id = full["paths"]["/api/v2/jobs/{jobId}"]["get"]["parameters"][0]
    assert job_id["schema"]["not"] == {"enum": ["status", "stream", "poll"]}
    _, poll_only = app_and_doc("poll")
    job_id = poll_only["paths"]["/api/v2/jobs/{jobId}"]["get"]["parameters"][0]
    assert job_id["schema"]["not"] == {"enum": ["status"]}
    assert "servers" not in full
    _, mounted = app_and_doc("poll", root_path="/realtime")
    assert mounted["servers"] == [{"url": "/realtime"}]
    stream = full["paths"]["/api/v2/jobs/stream"]["get"]["responses"]["200"]["content"]
    assert set(stream) == {"text/event-stream"}
    assert full["paths"]["/metrics"]["get"]["responses"]["200"]["content"].keys() == {
        "text/plain"}


# The query parameters' patterns against the server's own parsing of them.
@settings(max_examples=300, deadline=None, database=None)
@given(st.one_of(st.from_regex(RESUME_POINT_PATTERN, fullmatch=True), st.text(max_size=40)))
def test_resume_point_pattern_is_what_the_server_reads(value):
    matches = re.fullmatch(RESUME_POINT_PATTERN, value) is not None
    try:
        parse_resume_point(value, "last_seen")
    except InvalidMessage:
        assert not matches, repr(value)
    else:
        assert matches, repr(value)


def query_request(**params: str) -> Request:
    return Request({"type": "http", "query_string": urlencode(params).encode(), "headers": []})


@settings(max_examples=300, deadline=None, database=None)
@given(st.one_of(st.from_regex(JOB_IDS_PATTERN, fullmatch=True),
                 st.text(alphabet="ab,. /%:-_é", max_size=20)))
def test_job_ids_pattern_is_what_the_server_reads(value):
    matches = re.fullmatch(JOB_IDS_PATTERN, value) is not None
    try:
        job_ids_param(query_request(jobIds=value), limit=10**6)
    except InvalidMessage:
        assert not matches, repr(value)
    else:
        assert matches, repr(value)
