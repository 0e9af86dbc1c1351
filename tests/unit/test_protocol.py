"""Wire validation (job updates, client messages, JSON bodies) and event-id cursors."""

import math

import orjson
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from jobwire.cursor import START, IdClock, format_id, parse_id, parse_resume_point
from jobwire.errors import BadRequest, InvalidCursor, InvalidMessage, InvalidUpdate, JobwireError
from jobwire.protocol import (
    MAX_OPERATION_CHARS,
    AuthMsg,
    JobUpdate,
    PingMsg,
    Status,
    SubscribeMsg,
    UnsubscribeMsg,
    loads,
    parse_client_message,
    parse_update,
)

EXAMPLE = {
    "jobId": "job_123",
    "userId": "user_789",
    "status": "processing",
    "progress": 45,
    "currentOperation": "Processing page 120/300",
    "timestamp": "2025-09-11T10:15:30Z",
    "workerId": "worker_3",
    "result": None,
    "error": None,
}
MINIMAL = {"jobId": "j1", "userId": "u1", "status": "queued"}
UPDATE_FIELDS = set(JobUpdate.model_fields)
ID_FIELDS = ["jobId", "userId", "workerId", "eventId"]
ALLOWED_ID = ("AZaz09_.:-" * 13)[:128]

BAD_IDS = [
    pytest.param("", id="empty"),
    pytest.param("a" * 129, id="129-chars"),
    pytest.param("job 1", id="space"),
    pytest.param(" job1", id="leading-space"),
    pytest.param("job/1", id="slash"),
    pytest.param("job\\1", id="backslash"),
    pytest.param("jöb", id="unicode-letter"),
    pytest.param("job\u0661", id="unicode-digit"),
    pytest.param("job1\n", id="trailing-newline"),
    pytest.param("job\x00", id="nul"),
    pytest.param("job*", id="star"),
    pytest.param(1, id="int"),
    pytest.param(1.5, id="float"),
    pytest.param(True, id="bool"),
    pytest.param(["job1"], id="list"),
    pytest.param({"id": "job1"}, id="dict"),
]


def bad_update(body, field, **kwargs):
    """Assert `parse_update(body)` refuses it as a 422 naming `field`; return the error."""
    with pytest.raises(InvalidUpdate) as info:
        parse_update(body, **kwargs)
    err = info.value
    assert err.http_status == 422
    assert err.code == "invalid_update"
    assert err.field == field
    assert err.message
    return err


def with_(**changes):
    return {**MINIMAL, **changes}


def without(key, body=MINIMAL):
    return {k: v for k, v in body.items() if k != key}


# --- job updates: accepted -----------------------------------------------------------------


def test_contract_example_parses_field_by_field():
    update = parse_update(EXAMPLE)
    assert update.jobId == "job_123"
    assert update.userId == "user_789"
    assert update.status is Status.PROCESSING
    assert update.progress == 45
    assert update.currentOperation == "Processing page 120/300"
    assert update.timestamp == "2025-09-11T10:15:30Z"
    assert update.workerId == "worker_3"
    assert update.result is None and update.error is None and update.eventId is None


def test_optional_fields_default_to_none():
    update = parse_update(MINIMAL)
    assert update.status is Status.QUEUED
    for name in (
        "progress",
        "currentOperation",
        "timestamp",
        "workerId",
        "result",
        "error",
        "eventId",
    ):
        assert getattr(update, name) is None, name


@pytest.mark.parametrize("status", [s.value for s in Status])
def test_every_status_is_accepted(status):
    assert parse_update(with_(status=status)).status is Status(status)


@pytest.mark.parametrize("progress", [0, 0.0, 1, 45, 45.5, 99.999, 100, 100.0])
def test_progress_in_range_is_accepted(progress):
    assert parse_update(with_(progress=progress)).progress == progress


def test_progress_null_means_unchanged():
    assert parse_update(with_(progress=None)).progress is None


@pytest.mark.parametrize("field", ID_FIELDS)
@pytest.mark.parametrize("value", ["a", "A", "0", "job_1.2:3-4", ALLOWED_ID])
def test_ids_of_allowed_characters_are_accepted(field, value):
    assert getattr(parse_update(with_(**{field: value})), field) == value


@pytest.mark.parametrize("text", ["", "x", "Processing page 120/300 — ünïcödé ✓", "x" * 1024])
def test_current_operation_up_to_the_limit_is_accepted(text):
    assert MAX_OPERATION_CHARS == 1024
    assert parse_update(with_(currentOperation=text)).currentOperation == text


@pytest.mark.parametrize(
    "timestamp",
    [
        "2025-09-11T10:15:30Z",
        "2025-09-11T10:15:30.123Z",
        "2025-09-11T10:15:30+02:00",
        "2025-09-11T10:15:30.123456-05:30",
        "2025-09-11T10:15:30",
        "2025-09-11 10:15:30Z",
    ],
)
def test_iso_timestamps_are_accepted_verbatim(timestamp):
    assert parse_update(with_(timestamp=timestamp)).timestamp == timestamp


@pytest.mark.parametrize(
    "value", [{"pages": 150, "errors": 0}, [1, 2], "done", 3, 2.5, True, None, {"a": {"b": []}}]
)
def test_result_and_error_carry_any_json(value):
    update = parse_update(with_(status="failed", result=value, error=value))
    assert update.result == value and update.error == value


def test_unknown_keys_are_ignored():
    update = parse_update(with_(priority=5, type="status_update", nested={"x": [1]}, JOBID="z"))
    assert update.jobId == "j1"
    assert not hasattr(update, "priority")
    assert "priority" not in update.model_dump()


def test_update_is_frozen():
    update = parse_update(MINIMAL)
    with pytest.raises(ValidationError):
        update.progress = 50


# --- job updates: refused ------------------------------------------------------------------


@pytest.mark.parametrize("body", [[MINIMAL], "update", None, 5, 1.5, True, b"{}"])
def test_body_not_an_object_is_refused(body):
    bad_update(body, None)


@pytest.mark.parametrize("field", ["jobId", "userId", "status"])
def test_required_field_missing(field):
    bad_update(without(field), field)


def test_empty_object_names_a_required_field():
    err = bad_update({}, "jobId")
    assert "jobId" in err.message


@pytest.mark.parametrize("field", ID_FIELDS)
@pytest.mark.parametrize("value", BAD_IDS)
def test_bad_ids_are_refused(field, value):
    bad_update(with_(**{field: value}), field)


@pytest.mark.parametrize("field", ["jobId", "userId"])
def test_required_id_null_is_refused(field):
    bad_update(with_(**{field: None}), field)


@pytest.mark.parametrize("field", ["workerId", "eventId"])
def test_optional_id_null_means_absent(field):
    assert getattr(parse_update(with_(**{field: None})), field) is None


def test_pattern_mismatch_message_explains_the_rule():
    err = bad_update(with_(jobId="a b"), "jobId")
    assert "128" in err.message and "A-Z" in err.message


@pytest.mark.parametrize(
    "status",
    [
        "running",
        "done",
        "",
        "Queued",
        "PROCESSING",
        " queued",
        "queued ",
        1,
        None,
        True,
        ["queued"],
        {"status": "queued"},
    ],
)
def test_status_not_in_the_enum_is_refused(status):
    err = bad_update(with_(status=status), "status")
    if isinstance(status, str):
        assert all(s.value in err.message for s in Status)


@pytest.mark.parametrize(
    "progress",
    [
        pytest.param(-1, id="negative-int"),
        pytest.param(-0.001, id="negative-float"),
        pytest.param(100.0001, id="just-above-100"),
        pytest.param(101, id="101"),
        pytest.param(10**6, id="million"),
        pytest.param(math.nan, id="nan"),
        pytest.param(math.inf, id="inf"),
        pytest.param(-math.inf, id="-inf"),
        pytest.param(10**400, id="huge-int"),
        pytest.param(-(10**400), id="huge-negative-int"),
        pytest.param(True, id="true"),
        pytest.param(False, id="false"),
        pytest.param("45", id="numeric-string"),
        pytest.param("", id="empty-string"),
        pytest.param([45], id="list"),
        pytest.param({"value": 45}, id="dict"),
    ],
)
def test_bad_progress_is_refused_naming_progress(progress):
    bad_update(with_(progress=progress), "progress")


@pytest.mark.parametrize(
    "text",
    [
        "x" * (MAX_OPERATION_CHARS + 1),
        "é" * (MAX_OPERATION_CHARS + 1),
        5,
        ["step"],
        {"op": "x"},
        True,
    ],
)
def test_bad_current_operation_is_refused(text):
    bad_update(with_(currentOperation=text), "currentOperation")


@pytest.mark.parametrize(
    "timestamp",
    [
        "",
        "now",
        "yesterday",
        "10:15",
        "2025-13-01T00:00:00Z",
        "2025-02-30T00:00:00Z",
        "2025-09-11T25:00:00Z",
        "2025-09-11T10:15:30+25:00",
        "11/09/2025",
        "2025-09-11T10:15:30ZZ",
        "\ud800",
        1757585730,
        1757585730.5,
        ["2025-09-11T10:15:30Z"],
        True,
    ],
)
def test_bad_timestamp_is_refused(timestamp):
    bad_update(with_(timestamp=timestamp), "timestamp")


def test_only_the_first_error_is_reported():
    err = bad_update({"status": "nope", "progress": -5}, "jobId")
    assert isinstance(err, JobwireError)


def test_error_body_names_the_field_as_sent():
    err = bad_update(with_(progress=500), "progress")
    assert err.to_body() == {
        "error": {"code": "invalid_update", "message": err.message, "field": "progress"}
    }


# --- job updates: jobId from the URL path ----------------------------------------------------


def test_path_job_id_fills_a_missing_body_job_id():
    body = without("jobId")
    update = parse_update(body, job_id="from-url")
    assert update.jobId == "from-url"
    assert "jobId" not in body  # the caller's dict is not modified


def test_path_job_id_equal_to_body_job_id_is_fine():
    assert parse_update(with_(jobId="j9"), job_id="j9").jobId == "j9"


@pytest.mark.parametrize("body_job_id", ["other", "J1", "j1 ", "", None, 1])
def test_body_job_id_differing_from_url_is_refused(body_job_id):
    err = bad_update(with_(jobId=body_job_id), "jobId", job_id="j1")
    assert "URL" in err.message


@pytest.mark.parametrize("path_id", ["a b", "", "x" * 129, "a/b"])
def test_bad_path_job_id_is_refused_naming_job_id(path_id):
    bad_update(without("jobId"), "jobId", job_id=path_id)


def test_path_job_id_does_not_excuse_a_non_object_body():
    bad_update(["not", "an", "object"], None, job_id="j1")


# --- loads -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw,expected",
    [
        (b'{"a": 1}', {"a": 1}),
        ('{"a": [1, 2.5, null]}', {"a": [1, 2.5, None]}),
        (b"[1]", [1]),
        ("null", None),
        (b'"s"', "s"),
    ],
)
def test_loads_parses_json(raw, expected):
    assert loads(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        "",
        b"{",
        "{'a': 1}",
        b"NaN",
        b"Infinity",
        b"1e400",
        b"\xff\xfe",
        b'{"a":1}x',
        "\ud800",
        b"{a: 1}",
        b"[1,]",
    ],
)
def test_loads_of_bad_json_is_a_bad_request(raw):
    with pytest.raises(BadRequest) as info:
        loads(raw)
    assert info.value.http_status == 400
    assert info.value.code == "bad_request"


def test_bad_request_is_not_an_invalid_update():
    # 400 (unparseable) and 422 (invalid) are different answers.
    assert not issubclass(BadRequest, InvalidUpdate)
    assert BadRequest.http_status == 400 and InvalidUpdate.http_status == 422


# --- Status ------------------------------------------------------------------------------------


def test_status_values_are_the_contract_enum():
    assert [s.value for s in Status] == ["queued", "processing", "completed", "failed", "cancelled"]


@pytest.mark.parametrize(
    "status,terminal,rank",
    [
        ("queued", False, 0),
        ("processing", False, 1),
        ("completed", True, 2),
        ("failed", True, 2),
        ("cancelled", True, 2),
    ],
)
def test_status_terminal_and_rank(status, terminal, rank):
    assert Status(status).terminal is terminal
    assert Status(status).rank == rank


# --- client messages ---------------------------------------------------------------------------


def msg(obj) -> bytes:
    return orjson.dumps(obj)


def bad_message(raw, field):
    with pytest.raises(InvalidMessage) as info:
        parse_client_message(raw)
    err = info.value
    assert err.code == "invalid_message"
    assert err.http_status == 400
    assert err.field == field
    assert err.message
    if field is not None:
        assert field in err.message
    return err


def test_auth_message():
    parsed = parse_client_message(msg({"type": "auth", "token": "abc.def.ghi"}))
    assert isinstance(parsed, AuthMsg) and parsed.token == "abc.def.ghi"


def test_ping_message_from_text_and_bytes():
    assert isinstance(parse_client_message('{"type":"ping"}'), PingMsg)
    assert isinstance(parse_client_message(b'{"type":"ping","extra":[1]}'), PingMsg)


def test_subscribe_with_job_ids():
    parsed = parse_client_message(msg({"type": "subscribe", "jobIds": ["j1", "j2"]}))
    assert isinstance(parsed, SubscribeMsg)
    assert parsed.jobIds == ["j1", "j2"]
    assert parsed.all is False and parsed.userId is None and parsed.lastEventId is None


def test_subscribe_to_all_with_user_and_cursor():
    parsed = parse_client_message(
        msg({"type": "subscribe", "all": True, "userId": "u1", "lastEventId": "1700000000000-3"})
    )
    assert isinstance(parsed, SubscribeMsg)
    assert parsed.jobIds is None and parsed.all is True
    assert parsed.userId == "u1" and parsed.lastEventId == "1700000000000-3"


def test_subscribe_last_event_id_up_to_64_chars():
    parsed = parse_client_message(msg({"type": "subscribe", "all": True, "lastEventId": "9" * 64}))
    assert parsed.lastEventId == "9" * 64


@pytest.mark.parametrize(
    "body,job_ids,all_",
    [
        ({"jobIds": ["j1"]}, ["j1"], False),
        ({"all": True}, None, True),
        ({"jobIds": ["a", "b"], "all": True}, ["a", "b"], True),
    ],
)
def test_unsubscribe(body, job_ids, all_):
    parsed = parse_client_message(msg({"type": "unsubscribe", **body}))
    assert isinstance(parsed, UnsubscribeMsg)
    assert (parsed.jobIds, parsed.all) == (job_ids, all_)


@pytest.mark.parametrize(
    "raw",
    [b"", "", "{", "not json", b"\xff", "\ud800", "{'type': 'ping'}", '{"type":"ping"}x', "NaN"],
)
def test_invalid_json_message(raw):
    bad_message(raw, None)


@pytest.mark.parametrize("raw", ["[]", '["ping"]', "null", "1", '"ping"', "true"])
def test_non_object_message(raw):
    bad_message(raw, None)


@pytest.mark.parametrize(
    "obj",
    [
        {},
        {"token": "t"},
        {"type": None},
        {"type": "hello"},
        {"type": "PING"},
        {"type": "Ping"},
        {"type": ""},
        {"type": 1},
        {"type": ["ping"]},
        {"type": {"ping": 1}},
        {"type": "ping "},
    ],
)
def test_missing_or_unknown_type(obj):
    err = bad_message(msg(obj), "type")
    assert "ping" in err.message  # lists what is expected


def test_unknown_type_echo_is_truncated():
    err = bad_message(msg({"type": "x" * 10_000}), "type")
    assert len(err.message) < 200


@pytest.mark.parametrize(
    "obj,field",
    [
        ({"type": "subscribe"}, "jobIds"),
        ({"type": "subscribe", "all": False}, "jobIds"),
        ({"type": "subscribe", "jobIds": None}, "jobIds"),
        ({"type": "unsubscribe"}, "jobIds"),
        ({"type": "unsubscribe", "all": False}, "jobIds"),
        ({"type": "subscribe", "jobIds": "j1"}, "jobIds"),
        ({"type": "subscribe", "jobIds": {"j1": True}}, "jobIds"),
        ({"type": "subscribe", "jobIds": 1}, "jobIds"),
        ({"type": "subscribe", "jobIds": ["j1", "bad id"]}, "jobIds"),
        ({"type": "subscribe", "jobIds": [""]}, "jobIds"),
        ({"type": "subscribe", "jobIds": ["x" * 129]}, "jobIds"),
        ({"type": "subscribe", "jobIds": [1]}, "jobIds"),
        ({"type": "subscribe", "jobIds": [None]}, "jobIds"),
        ({"type": "subscribe", "jobIds": ["j/1"]}, "jobIds"),
        ({"type": "unsubscribe", "jobIds": ["ok", "no way"]}, "jobIds"),
        ({"type": "unsubscribe", "jobIds": "j1"}, "jobIds"),
        ({"type": "subscribe", "all": "true"}, "all"),
        ({"type": "subscribe", "all": 1}, "all"),
        ({"type": "subscribe", "all": None}, "all"),
        ({"type": "unsubscribe", "all": "yes"}, "all"),
        ({"type": "subscribe", "all": True, "userId": "bad user"}, "userId"),
        ({"type": "subscribe", "all": True, "userId": 7}, "userId"),
        ({"type": "subscribe", "all": True, "lastEventId": "1" * 65}, "lastEventId"),
        ({"type": "subscribe", "all": True, "lastEventId": 17}, "lastEventId"),
        ({"type": "auth"}, "token"),
        ({"type": "auth", "token": ""}, "token"),
        ({"type": "auth", "token": None}, "token"),
        ({"type": "auth", "token": 123}, "token"),
        ({"type": "auth", "token": ["t"]}, "token"),
        ({"type": "auth", "token": "t" * 8193}, "token"),
    ],
)
def test_invalid_client_message_names_the_field(obj, field):
    err = bad_message(msg(obj), field)
    assert not err.message.startswith(obj["type"] + ".")  # the union tag is not leaked


def test_auth_token_up_to_8192_chars_is_accepted():
    assert parse_client_message(msg({"type": "auth", "token": "t" * 8192})).token == "t" * 8192


# --- cursors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "pos,text",
    [
        ((0, 0), "0-0"),
        ((1, 2), "1-2"),
        ((1757585730123, 0), "1757585730123-0"),
        ((1757585730123, 41), "1757585730123-41"),
        ((10**16 - 1, 10**16 - 1), "9" * 16 + "-" + "9" * 16),
    ],
)
def test_format_and_parse_id(pos, text):
    assert format_id(pos) == text
    assert parse_id(text) == pos


def test_start_is_before_every_issued_id():
    assert format_id(START) == "0-0"
    assert START < IdClock().next(0)


def test_ids_order_by_position_not_by_text():
    ids = ["9-5", "10-0", "10-1", "10-10", "100-0"]
    positions = [parse_id(i) for i in ids]
    assert positions == sorted(positions)
    assert sorted(ids) != ids  # string order would be wrong: the tuple is what counts


@pytest.mark.parametrize(
    "value",
    [
        "",
        "-",
        "1",
        "12345",
        "1-",
        "-1",
        "1--2",
        "1-2-3",
        "a-b",
        "1-b",
        "1.5-2",
        "1_2",
        " 1-2",
        "1-2 ",
        "+1-2",
        "1-+2",
        "1- 2",
        "0x1-2",
        "1-2x",
        "12345678901234567-0",
        "0-12345678901234567",
        "x" * 1000,
    ],
)
def test_parse_id_refuses_garbage(value):
    with pytest.raises(InvalidCursor) as info:
        parse_id(value)
    assert info.value.field == "lastEventId"
    assert info.value.code == "invalid_message"
    assert len(info.value.message) < 120  # the echoed value is truncated


@pytest.mark.parametrize("value", ["1-2\n", "\u0661-\u0662", "\uff11-\uff12"])
def test_parse_id_refuses_lookalikes_of_a_valid_id(value):
    """An event id is ASCII digits, a dash, ASCII digits, and nothing else: a trailing newline
    or non-ASCII digits would make two different strings name the same event."""
    with pytest.raises(InvalidCursor):
        parse_id(value)


@given(st.integers(0, 10**16 - 1), st.integers(0, 10**16 - 1))
def test_id_round_trip_and_never_purely_digits(ms, n):
    text = format_id((ms, n))
    assert not text.isdigit()
    assert parse_id(text) == (ms, n)


@given(
    st.tuples(st.integers(0, 10**15), st.integers(0, 10**6)),
    st.tuples(st.integers(0, 10**15), st.integers(0, 10**6)),
)
def test_id_order_matches_position_order(a, b):
    assert (parse_id(format_id(a)) < parse_id(format_id(b))) == (a < b)


@pytest.mark.parametrize(
    "value,ms",
    [
        ("0", 0),
        ("1", 1000),
        ("1757585730", 1_757_585_730_000),  # seconds
        ("99999999999", 99_999_999_999_000),  # 10^11 - 1: still seconds
        ("100000000000", 100_000_000_000),  # 10^11: milliseconds
        ("1757585730123", 1_757_585_730_123),  # milliseconds
        ("  1757585730 ", 1_757_585_730_000),
        ("1757585730\n", 1_757_585_730_000),
    ],
)
def test_resume_point_from_unix_time(value, ms):
    point = parse_resume_point(value)
    assert point[0] == ms
    # Everything accepted in that millisecond is at or before the point, the next one after it.
    assert (ms, 0) < point and (ms, 10**9) < point
    assert (ms + 1, 0) > point


def test_resume_point_of_seconds_and_same_moment_in_milliseconds_agree():
    assert parse_resume_point("1757585730") == parse_resume_point("1757585730000")


@pytest.mark.parametrize("value", ["1757585730123-0", "0-0", "5-7", " 5-7 "])
def test_resume_point_from_event_id(value):
    assert parse_resume_point(value) == parse_id(value.strip())


@pytest.mark.parametrize(
    "value",
    [
        "",
        "   ",
        "abc",
        "-5",
        "1.5",
        "1e9",
        "12345678901234567",
        "1-2-3",
        "last",
        "1-",
        "0x10",
    ],
)
@pytest.mark.parametrize("field", ["lastEventId", "last_seen", "Last-Event-ID"])
def test_resume_point_refuses_garbage_with_the_given_field(value, field):
    with pytest.raises(InvalidCursor) as info:
        parse_resume_point(value, field=field)
    assert info.value.field == field


@pytest.mark.parametrize("value", ["\u00b2", "\u2460", "1\u00b2"])
def test_resume_point_refuses_digit_symbols_that_are_not_numbers(value):
    """str.isdigit() is true for superscripts and circled digits, which int() cannot read:
    they must be refused as a bad cursor, not escape as a bare ValueError."""
    with pytest.raises(InvalidCursor) as info:
        parse_resume_point(value, field="last_seen")
    assert info.value.field == "last_seen"


def test_resume_point_default_field_is_last_event_id():
    with pytest.raises(InvalidCursor) as info:
        parse_resume_point("nope")
    assert info.value.field == "lastEventId"


@pytest.mark.parametrize(
    "clock,expected",
    [
        ([100, 101, 105], [(100, 0), (101, 0), (105, 0)]),
        ([100, 100, 100], [(100, 0), (100, 1), (100, 2)]),
        ([100, 90, 50, 100, 101], [(100, 0), (100, 1), (100, 2), (100, 3), (101, 0)]),
        ([0, 0], [(0, 1), (0, 2)]),  # the start position (0, 0) is never issued
    ],
)
def test_id_clock_sequence(clock, expected):
    ids = IdClock()
    assert [ids.next(t) for t in clock] == expected
    assert ids.last == expected[-1]


def test_id_clock_resumes_after_a_given_position():
    ids = IdClock((500, 7))
    assert ids.next(400) == (500, 8)
    assert ids.next(500) == (500, 9)
    assert ids.next(501) == (501, 0)


@given(st.lists(st.integers(0, 2**45), min_size=1, max_size=60), st.integers(0, 2**45))
def test_id_clock_is_strictly_increasing_whatever_the_clock_does(times, start_ms):
    ids = IdClock((start_ms, 0))
    issued = [ids.next(t) for t in times]
    previous = (start_ms, 0)
    for pos, t in zip(issued, times, strict=True):
        assert pos > previous
        assert pos[0] >= t  # never behind the clock
        assert parse_id(format_id(pos)) == pos
        previous = pos


# --- properties: nothing but JobwireError escapes ----------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=12,
)
field_names = st.sampled_from(sorted(UPDATE_FIELDS))
# Mostly-valid updates with some fields replaced or dropped, so validators are reached.
near_updates = st.builds(
    lambda base, changes, drop: {k: v for k, v in {**base, **changes}.items() if k not in drop},
    st.just(EXAMPLE),
    st.dictionaries(field_names | st.text(max_size=8), json_values, max_size=3),
    st.sets(field_names, max_size=2),
)

PROPERTY_SETTINGS = settings(max_examples=300, deadline=None, database=None)


def check_update(data, job_id=None):
    try:
        update = parse_update(data, job_id=job_id)
    except JobwireError as err:
        assert isinstance(err, InvalidUpdate)
        assert err.http_status == 422
        # The field is named as sent: a top-level key, never a dotted pydantic location.
        assert err.field is None or err.field in UPDATE_FIELDS, err.field
        return
    assert isinstance(update, JobUpdate)
    assert isinstance(update.status, Status)
    if update.progress is not None:
        assert not isinstance(update.progress, bool)
        assert 0 <= update.progress <= 100
    if job_id is not None:
        assert update.jobId == job_id


@PROPERTY_SETTINGS
@given(json_values)
def test_parse_update_of_anything_raises_only_jobwire_errors(data):
    check_update(data)


@PROPERTY_SETTINGS
@given(near_updates, st.none() | st.sampled_from(["job_123", "other", "bad id"]))
@example({**EXAMPLE, "progress": 10**400}, None)  # beyond float range: found the hard way
def test_parse_update_of_near_valid_bodies_raises_only_jobwire_errors(data, job_id):
    check_update(data, job_id)


MESSAGE_FIELDS = {"type", "token", "jobIds", "all", "userId", "lastEventId"}
message_objects = st.builds(
    lambda kind, extra: {"type": kind, **extra},
    st.sampled_from(["auth", "subscribe", "unsubscribe", "ping", "pong", ""]) | json_scalars,
    st.dictionaries(
        st.sampled_from(sorted(MESSAGE_FIELDS - {"type"})) | st.text(max_size=6),
        json_values | st.lists(st.text(max_size=4), max_size=3),
        max_size=4,
    ),
)


def check_message(raw):
    try:
        parsed = parse_client_message(raw)
    except JobwireError as err:
        assert isinstance(err, InvalidMessage)
        assert err.code == "invalid_message"
        assert err.field is None or err.field in MESSAGE_FIELDS, err.field
        return
    assert isinstance(parsed, AuthMsg | SubscribeMsg | UnsubscribeMsg | PingMsg)
    if isinstance(parsed, SubscribeMsg | UnsubscribeMsg):
        assert parsed.jobIds is not None or parsed.all is True


@PROPERTY_SETTINGS
@given(st.text() | st.binary())
def test_parse_client_message_of_any_text_or_bytes_raises_only_jobwire_errors(raw):
    check_message(raw)


@PROPERTY_SETTINGS
@given(message_objects | json_values)
def test_parse_client_message_of_any_json_raises_only_jobwire_errors(obj):
    try:
        raw = orjson.dumps(obj)
    except (TypeError, orjson.JSONEncodeError):
        return  # e.g. integers beyond 64 bits: not JSON orjson can write, so never on the wire
    check_message(raw)


@PROPERTY_SETTINGS
@given(st.text(max_size=40), st.sampled_from(["lastEventId", "last_seen"]))
@example("\u00b2", "last_seen")  # isdigit() but not int()-able
def test_parse_resume_point_of_any_text_raises_only_invalid_cursor(value, field):
    try:
        point = parse_resume_point(value, field=field)
    except InvalidCursor as err:
        assert err.field == field
        return
    assert isinstance(point, tuple) and len(point) == 2
    assert all(isinstance(p, int) and p >= 0 for p in point)
