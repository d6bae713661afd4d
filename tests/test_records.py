"""Record kinds: the shipped JSON Schema, ids shared by pulled and pushed copies, stats ids."""

from __future__ import annotations

import hashlib
import json
import tracemalloc
from typing import Any

import jsonschema
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tcsms_poller.records import (
    Record,
    conversion_record,
    format_received_at,
    record_schema,
    reply_record,
    send_status_record,
    statistics_record,
)
from tcsms_poller.tencent.models import ReplyStatus, SendStatus
from tcsms_poller.tencent.push import parse_reply_push, parse_status_push

APP = "1400006666"
AT = "2026-11-25T08:00:00.123Z"
STATUS = SendStatus(
    serial_no="5000:1045710669157053657849499619",
    phone_number="+8613711112222",
    country_code="86",
    subscriber_number="13711112222",
    report_status="SUCCESS",
    description="DELIVRD",
    user_receive_time=1620734188,
    session_context=None,
)
REPLY = ReplyStatus(
    phone_number="+8613711112222",
    country_code="86",
    subscriber_number="13711112222",
    sign_name="腾讯云",
    reply_content="退订",
    reply_time=1620734188,
    extend_code="11",
)
COUNTERS = {
    "callback_count": 1745,
    "request_success_count": 1880,
    "callback_fail_count": 401,
    "callback_success_count": 1344,
    "internal_error_count": 0,
    "invalid_number_count": 0,
    "shutdown_error_count": 401,
    "black_list_count": 0,
    "frequency_limit_count": 0,
}


def validate(record: Record) -> dict[str, Any]:
    """Serialize as the outbox does and validate against the shipped schema."""
    document: dict[str, Any] = json.loads(record.to_json())
    jsonschema.Draft202012Validator(record_schema()).validate(document)
    return document


def every_kind() -> list[Record]:
    """One record of each kind."""
    return [
        send_status_record(APP, STATUS, source="PullSmsSendStatus", received_at=AT),
        reply_record(APP, REPLY, source="PullSmsReplyStatus", received_at=AT),
        statistics_record(
            APP,
            begin_time="2021050113",
            end_time="2021050123",
            counters=COUNTERS,
            source="CallbackStatusStatistics",
            received_at=AT,
        ),
        conversion_record(
            APP,
            serial_no=STATUS.serial_no,
            conversion_time=1658310430,
            code="ok",
            message="report success",
            received_at=AT,
        ),
    ]


def test_schema_is_itself_valid() -> None:
    """The shipped schema is a valid draft 2020-12 schema."""
    jsonschema.Draft202012Validator.check_schema(record_schema())


@pytest.mark.parametrize("record", every_kind(), ids=lambda r: r.kind)
def test_every_kind_validates(record: Record) -> None:
    """Each kind serializes to a document the schema accepts, common fields first."""
    document = validate(record)
    assert list(document)[:5] == ["kind", "id", "app_id", "source", "received_at"]


@pytest.mark.parametrize(
    ("mutation", "kind"),
    [
        ({"report_status": "MAYBE"}, "send_status"),
        ({"phone_number": "13711112222"}, "send_status"),
        ({"extra": 1}, "send_status"),
        ({"reply_time": "yesterday"}, "reply"),
        ({"id": "reply:xyz"}, "reply"),
        ({"callback_count": -1}, "callback_statistics"),
        ({"received_at": "2026-11-25 08:00:00"}, "conversion"),
        ({"source": "somewhere"}, "conversion"),
    ],
)
def test_schema_rejects_wrong_documents(mutation: dict[str, Any], kind: str) -> None:
    """The schema is strict enough to catch a wrong field."""
    record = next(r for r in every_kind() if r.kind == kind)
    document = {**json.loads(record.to_json()), **mutation}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(record_schema()).validate(document)


def test_send_status_id_is_the_serial_no() -> None:
    """A receipt's id is its SerialNo."""
    assert send_status_record(APP, STATUS, source="callback", received_at=AT).id == STATUS.serial_no


def test_pushed_and_pulled_reply_share_one_id() -> None:
    """The same reply pulled by queue, by number, or pushed gets one id."""
    [pushed] = parse_reply_push(
        {
            "extend": "11",
            "mobile": "13711112222",
            "nationcode": "86",
            "sign": "腾讯云",
            "text": "退订",
            "time": 1620734188,
        }
    ).items
    ids = {
        reply_record(APP, REPLY, source="PullSmsReplyStatus", received_at=AT).id,
        reply_record(APP, REPLY, source="PullSmsReplyStatusByPhoneNumber", received_at=AT).id,
        reply_record(APP, pushed, source="callback", received_at=AT).id,
    }
    assert len(ids) == 1


def test_pushed_receipt_matches_the_pulled_one() -> None:
    """A status push (Beijing-time string) normalizes to the pulled receipt's fields; its text
    is kept beside the carrier code."""
    [(pushed, text)] = parse_status_push(
        [
            {
                "user_receive_time": "2021-05-11 19:56:28",
                "nationcode": "86",
                "mobile": "13711112222",
                "report_status": "SUCCESS",
                "errmsg": "DELIVRD",
                "description": "delivered",
                "sid": STATUS.serial_no,
            }
        ]
    ).items
    assert pushed == STATUS
    assert text == "delivered"
    record = send_status_record(
        APP, pushed, source="callback", received_at=AT, description_text=text
    )
    assert validate(record)["description_text"] == "delivered"


def test_a_receipt_written_before_description_text_still_validates() -> None:
    """The field is optional in the schema: records in outboxes of earlier versions lack it."""
    document = validate(send_status_record(APP, STATUS, source="PullSmsSendStatus", received_at=AT))
    assert document["description_text"] is None
    del document["description_text"]
    jsonschema.Draft202012Validator(record_schema()).validate(document)


@given(
    content=st.text(max_size=50),
    other=st.text(min_size=1, max_size=5),
    field=st.sampled_from(["reply_content", "extend_code", "sign_name", "phone_number"]),
)
def test_reply_ids_differ_when_any_identifying_field_differs(
    content: str, other: str, field: str
) -> None:
    """Two replies differing in any identifying field get different ids."""
    base = ReplyStatus("+8613711112222", "86", "13711112222", "s", content, 1, "e")
    changed_value = "+8613711112223" if field == "phone_number" else getattr(base, field) + other
    changed = ReplyStatus._make(
        changed_value if name == field else value for name, value in base._asdict().items()
    )
    first = reply_record(APP, base, source="callback", received_at=AT)
    second = reply_record(APP, changed, source="callback", received_at=AT)
    assert first.id != second.id
    validate(first)


COMPACT = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


@given(
    content=st.text(max_size=50),
    sign=st.text(max_size=10),
    extend=st.text(alphabet="0123456789", max_size=6),
    at=st.integers(min_value=0, max_value=2**63 - 1),
)
def test_reply_id_is_what_a_consumer_recomputes(
    content: str, sign: str, extend: str, at: int
) -> None:
    """The documented recipe, done with Python's own json module, gives the same id and line."""
    reply = ReplyStatus("+8613711112222", "86", "13711112222", sign, content, at, extend)
    record = reply_record(APP, reply, source="callback", received_at=AT)
    key = [APP, reply.phone_number, at, content, extend, sign]
    expected = hashlib.sha256(COMPACT.encode(key).encode("utf-8")).hexdigest()
    assert record.id == f"reply:{expected}"
    document = {"kind": "reply", "id": record.id, "app_id": APP, "source": "callback"}
    document |= {"received_at": AT, **record.fields}
    assert record.to_json() == COMPACT.encode(document).encode("utf-8")


def test_statistics_id_changes_only_with_the_counters() -> None:
    """An unchanged hour range keeps its id; a changed counter makes a new one."""

    def stats(counters: dict[str, int]) -> str:
        return statistics_record(
            APP,
            begin_time="2021050113",
            end_time="2021050123",
            counters=counters,
            source="CallbackStatusStatistics",
            received_at=AT,
        ).id

    assert stats(COUNTERS) == stats(dict(COUNTERS))
    assert stats(COUNTERS) != stats({**COUNTERS, "callback_count": 1746})


def test_received_at_is_rfc3339_utc_milliseconds() -> None:
    """Times are UTC with exactly three fractional digits and a Z."""
    assert format_received_at(1764057600.5) == "2025-11-25T08:00:00.500Z"


def test_an_outbox_row_holds_no_more_memory_than_its_bytes() -> None:
    """The outbox tail keeps rows for a while: each must cost about its length, not a buffer."""
    record = send_status_record(APP, STATUS, source="pull", received_at=AT)
    tracemalloc.start()
    try:
        rows = [record.to_json() for _ in range(100)]
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    per_row = held / len(rows)
    assert per_row < len(rows[0]) + 200, f"{per_row:.0f} bytes a row of {len(rows[0])}"
