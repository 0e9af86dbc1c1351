"""The live server against its own GET /openapi.json: schemathesis generates requests from the
document (valid ones, and invalid ones that must be refused), each answer must match what the
document says (status, content type, body schema), and nothing may answer 5xx.

A publisher token publishes, a user token reads (an admin token reads too: it sees the jobs
the fuzzed publishes made, whatever their contents). The SSE stream never ends, so it is not
fuzzed; its frames are read and checked against the document's schemas by hand below.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, reject, settings
from pydantic import TypeAdapter, ValidationError
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from jobwire.protocol import JobUpdate
from jobwire.schemas import ErrorBody, JobEvent, StreamMessage

from ..conftest import WAIT, Server, eventually, start_server

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance, negative_data_rejection]
# Invalid input must get one of the 4xx the contract gives for bad input (a 409 or 429 would
# mean the server took it for valid).
# The test sends the tokens itself: schemathesis is not to make up (or leave out, as invalid
# input) the alternatives the security schemes describe.
CONFIG = """
[generation]
with-security-parameters = false

[checks.negative_data_rejection]
expected-statuses = ["400", "401", "403", "404", "413", "422"]
"""
EXAMPLES = 30  # per operation, mode and token: the whole run stays well under 40 s
REQUEST_TIMEOUT = 5.0  # a request that waits longer is a failure, not a hang
SSE = "/api/v2/jobs/stream"
LONG_POLL = "/api/v2/jobs/poll"
BATCH = "/api/v2/jobs/status"
FIXED_PATHS = ("status", "stream", "poll")  # routes of their own beside /api/v2/jobs/{jobId}
USER, OTHER = "alice", "bob"


@dataclass
class Tally:
    requests: int = 0
    by_status: dict[int, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def api() -> Iterator[Server]:
    # Processing jobs stall at once, so snapshots include `job_stalled` states too.
    server = start_server(stalled_after_seconds=0.1, heartbeat_seconds=0.5)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def seeded(api: Server) -> list[str]:
    """Jobs of USER in every kind of state, and one of OTHER."""
    publisher = api.headers("seeder", "publisher")
    jobs = [("oa-queued", USER, {"status": "queued"}),
            ("oa-running", USER, {"status": "processing", "progress": 12.5,
                                  "currentOperation": "step 1", "workerId": "w1"}),
            ("oa-done", USER, {"status": "completed", "result": {"pages": [1, 2]}}),
            ("oa-failed", USER, {"status": "failed", "error": "disk full"}),
            ("oa-bobs", OTHER, {"status": "queued"})]
    with httpx.Client(base_url=api.url, timeout=WAIT) as http:
        for job_id, user, update in jobs:
            r = http.post(f"/api/v2/jobs/{job_id}/status", headers=publisher,
                          json={"userId": user, **update})
            assert r.status_code == 202, r.text

        def stalled() -> bool:
            r = http.get("/api/v2/jobs/oa-running", headers=api.headers(USER))
            return r.json()["type"] == "job_stalled"

        asyncio.run(eventually(stalled))
    return [job_id for job_id, user, _ in jobs if user == USER]


def long_poll_at_once(case: schemathesis.Case) -> None:
    """A long-poll with `timeout=0` answers at once. Only an absent or valid timeout is set
    to 0, so whether the request is valid does not change; an invalid one stays."""
    if case.operation.path != LONG_POLL:
        return
    query = dict(case.query or {})
    raw = query.get("timeout")
    try:
        valid = raw is None or 0 <= float(str(raw)) < float("inf")
    except ValueError:
        valid = False
    if valid:
        query["timeout"] = 0
        case.query = query


def has_inputs(operation: schemathesis.APIOperation) -> bool:
    raw = operation.definition.raw
    return bool(raw.get("parameters") or raw.get("requestBody"))


def batch_refuses_items(case: schemathesis.Case, response: Any) -> None:
    """A batch is refused whole only when it is not an array (422); otherwise each item is
    validated alone, and an invalid one is refused in its own result of a 202 (contract §5).
    So for invalid batches schemathesis's negative_data_rejection does not apply: this does."""
    if not isinstance(case.body, list):
        assert response.status_code in (400, 413, 422), response.status_code
        return
    assert response.status_code == 202, (response.status_code, response.text)
    results = response.json()["results"]
    assert len(results) == len(case.body)
    items = TypeAdapter(JobUpdate)
    for item, result in zip(case.body, results, strict=True):
        try:
            items.validate_python(item)
        except ValidationError:
            assert result["status"] == 422, (item, result)


def valid_updates_accepted(case: schemathesis.Case, response: Any) -> None:
    """What the document calls a valid update, the server validates too: the schema and
    JobUpdate's validators agree. (A body may repeat the URL's jobId only if equal, a rule
    no schema can state.)"""
    if case.operation.path == BATCH and response.status_code == 202:
        refused = [r for r in response.json()["results"] if r.get("status") == 422]
        assert not refused, refused
    elif case.operation.path == "/api/v2/jobs/{jobId}/status":
        repeated = isinstance(case.body, dict) and case.body.get("jobId") not in (
            None, (case.path_parameters or {}).get("jobId"))
        assert response.status_code != 422 or repeated, response.text


def fuzz(operation: schemathesis.APIOperation, mode: GenerationMode, headers: dict[str, str],
         tally: Tally, expect: int | None = None, examples: int = EXAMPLES,
         **fixed: Any) -> None:
    """Up to `examples` generated requests; every failure is recorded, none stops the run.
    `expect`: the status every answer must have (a token of the wrong role)."""
    label = f"{operation.method.upper()} {operation.path} [{mode.value}]"
    batch = (operation.method.upper() == "POST" and operation.path == BATCH
             and mode is GenerationMode.NEGATIVE and expect is None)
    checks = [c for c in CHECKS if not (batch and c is negative_data_rejection)]
    publish = (operation.method.upper() == "POST" and mode is GenerationMode.POSITIVE
               and expect is None)

    @settings(max_examples=examples, deadline=None, database=None, derandomize=True,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    @given(operation.as_strategy(generation_mode=mode, **fixed))
    def run(case: schemathesis.Case) -> None:
        if (case.path_parameters or {}).get("jobId") in FIXED_PATHS:
            # GET /api/v2/jobs/poll is another operation, not a bad {jobId} (contract §5).
            reject()
        long_poll_at_once(case)
        response = case.call(headers=headers, timeout=REQUEST_TIMEOUT)
        tally.requests += 1
        tally.by_status[response.status_code] = tally.by_status.get(response.status_code, 0) + 1
        case.validate_response(response, checks=checks, headers=headers)
        if batch:
            batch_refuses_items(case, response)
        if publish:
            valid_updates_accepted(case, response)
        if expect is not None:
            assert response.status_code == expect, (response.status_code, response.text)

    try:
        run()
    # The first failure of this operation (schemathesis raises its failures as a
    # BaseExceptionGroup, not an Exception); the other operations still run.
    except (Exception, BaseExceptionGroup) as exc:
        tally.failures.append(f"{label}: {exc}")


def test_the_live_server_matches_its_openapi_document(api: Server, seeded: list[str],
                                                      capsys: pytest.CaptureFixture[str]
                                                      ) -> None:
    schema = schemathesis.openapi.from_url(api.url + "/openapi.json",
                                           config=schemathesis.Config.from_str(CONFIG))
    schema.validate()
    publisher = api.headers("fuzz-publisher", "publisher")
    user = api.headers(USER)
    admin = api.headers("fuzz-admin", "admin")
    tally = Tally()
    started = time.monotonic()
    operations = [result.ok() for result in schema.get_all_operations()]
    labels = {f"{op.method.upper()} {op.path}" for op in operations}
    assert {"POST /api/v2/jobs/status", "POST /api/v2/jobs/{jobId}/status",
            "GET /api/v2/jobs/status", "GET /api/v2/jobs/{jobId}", f"GET {LONG_POLL}",
            f"GET {SSE}", "GET /healthz", "GET /readyz", "GET /metrics"} <= labels

    for op in operations:
        if op.path == SSE:
            continue  # an endless stream: test_sse_frames_match_the_document
        publishes = op.method.upper() == "POST"
        own, wrong_role = (publisher, user) if publishes else (user, publisher)
        fuzz(op, GenerationMode.POSITIVE, own, tally)
        if not has_inputs(op):
            continue
        fuzz(op, GenerationMode.NEGATIVE, own, tally)
        if publishes:
            fuzz(op, GenerationMode.POSITIVE, admin, tally, examples=EXAMPLES // 3)
        else:
            # An admin sees every job the fuzzing published, whatever they hold.
            fuzz(op, GenerationMode.POSITIVE, admin, tally)
        # The wrong role and no token at all: the documented 403 and 401.
        fuzz(op, GenerationMode.POSITIVE, wrong_role, tally, expect=403, examples=3)
        fuzz(op, GenerationMode.POSITIVE, {}, tally, expect=401, examples=3)
        if op.path == "/api/v2/jobs/{jobId}":
            for job_id in seeded:  # known jobs: 200s, and 304s with a matching ETag
                fuzz(op, GenerationMode.POSITIVE, user, tally, examples=3,
                     path_parameters={"jobId": job_id})
                etag = httpx.get(f"{api.url}/api/v2/jobs/{job_id}", headers=user,
                                 timeout=WAIT).headers["ETag"]
                fuzz(op, GenerationMode.POSITIVE, {**user, "If-None-Match": etag}, tally,
                     expect=304, examples=1, path_parameters={"jobId": job_id})

    summary = (f"openapi: {tally.requests} requests to {len(operations)} operations in "
               f"{time.monotonic() - started:.1f} s, {len(tally.failures)} failures; statuses "
               + " ".join(f"{s}x{n}" for s, n in sorted(tally.by_status.items())))
    with capsys.disabled():  # shown whether the test passes or fails
        print("\n" + summary)
    assert not tally.failures, "\n\n".join(tally.failures)
    assert tally.by_status.get(200) and tally.by_status.get(202), tally.by_status
    assert tally.by_status.get(422) and tally.by_status.get(400), tally.by_status
    assert tally.by_status.get(304) == len(seeded), tally.by_status


def sse_blocks(lines: Iterator[str], count: int) -> list[dict[str, str]]:
    """The next `count` SSE blocks as {field: value}."""
    blocks: list[dict[str, str]] = []
    block: dict[str, str] = {}
    for line in lines:
        if line:
            name, _, value = line.partition(": ")
            block[name] = value
        elif block:
            blocks.append(block)
            block = {}
            if len(blocks) == count:
                return blocks
    raise AssertionError(f"the stream ended after {blocks}")


def test_sse_frames_match_the_document(api: Server, seeded: list[str]) -> None:
    doc = httpx.get(api.url + "/openapi.json", timeout=WAIT).json()
    stream = doc["paths"][SSE]["get"]["responses"]
    described = stream["200"]["content"]["text/event-stream"]["x-event-data"]["oneOf"]
    assert {ref["$ref"].rsplit("/", 1)[1] for ref in described} == {
        "JobEvent", "SubscribedMessage", "ErrorMessage", "HeartbeatMessage"}
    messages: TypeAdapter[Any] = TypeAdapter(StreamMessage)
    url = f"{api.url}{SSE}?jobIds=oa-bobs,{seeded[0]}"
    with httpx.stream("GET", url, headers=api.headers(USER), timeout=WAIT) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = response.iter_lines()
        forbidden, subscribed = sse_blocks(lines, 2)
        assert orjson.loads(forbidden["data"])["code"] == "forbidden"
        assert orjson.loads(subscribed["data"])["type"] == "subscribed"
        for block in (forbidden, subscribed):
            message = messages.validate_json(block["data"], strict=True)
            assert orjson.loads(block["data"]).keys() <= type(message).model_fields.keys()
        r = httpx.post(f"{api.url}/api/v2/jobs/{seeded[0]}/status", timeout=WAIT,
                       headers=api.headers("sse-publisher", "publisher"),
                       json={"userId": USER, "status": "processing", "progress": 3})
        assert r.status_code == 202, r.text
        kinds = set()
        # The update, its stall 0.1 s later, and a heartbeat (every 0.5 s); each read is
        # bounded by the client's timeout.
        while not {"status_update", "job_stalled", "heartbeat"} <= kinds:
            (block,) = sse_blocks(lines, 1)
            message = messages.validate_json(block["data"], strict=True)
            # Every key sent is described: a new field must be added to jobwire.schemas.
            assert orjson.loads(block["data"]).keys() <= type(message).model_fields.keys()
            kinds.add(message.type)
            if isinstance(message, JobEvent):
                assert block["id"] == message.id
            if message.type == "status_update":
                assert message.id == r.json()["id"]
    refused = httpx.get(f"{api.url}{SSE}?jobIds=a%20b", headers=api.headers(USER),
                        timeout=WAIT)
    assert refused.status_code == 400
    assert "400" in stream
    assert ErrorBody.model_validate_json(refused.content, strict=True).error.field == "jobIds"
