"""The record kinds every sink receives (SPEC §5), and how each source maps onto them.

Pulled and pushed copies of one event normalize to the same ``id``, which is what lets the
deduper deliver a receipt once whether it arrived by pull, by push, or both. The shape is a public
contract, shipped as ``records.schema.json`` beside this module.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from functools import cache, partial
from importlib import resources
from typing import Any, Literal, NamedTuple

import orjson

from tcsms_poller.tencent.api import Action
from tcsms_poller.tencent.models import ReplyStatus, SendStatus

__all__ = [
    "Kind",
    "OutboxRecord",
    "Record",
    "conversion_record",
    "format_received_at",
    "receipt_missing_record",
    "record_ids",
    "record_schema",
    "reply_id",
    "reply_record",
    "send_status_record",
    "statistics_id",
    "statistics_record",
]

Kind = Literal["send_status", "reply", "callback_statistics", "conversion", "receipt_missing"]


class Record(NamedTuple):
    """One normalized record; ``fields`` are the kind's own fields, in schema order.

    A named tuple, as the parsed items are (``tencent/models.py``): one is built per record.
    """

    kind: Kind
    id: str
    app_id: str
    source: str
    received_at: str
    fields: Mapping[str, Any]

    def to_json(self) -> bytes:
        """Compact UTF-8 JSON, common fields first (what the outbox stores and sinks send)."""
        document = {
            "kind": self.kind,
            "id": self.id,
            "app_id": self.app_id,
            "source": self.source,
            "received_at": self.received_at,
            **self.fields,
        }
        # Compact, UTF-8, not ASCII-escaped. orjson hands back its whole output buffer (4 KiB
        # and up, whatever the length), which the outbox tail would pin for each row it keeps:
        # the join copies the row into a bytes of its own size (figures: docs/benchmarks.md).
        return b"".join((orjson.dumps(document), b""))


class OutboxRecord(NamedTuple):
    """One record as the outbox holds it: its position and its compact UTF-8 JSON.

    A named tuple, as ``Record`` is: one is built per record per commit, and the outbox tail
    builds them in C (``tuple.__new__``) instead of running a dataclass ``__init__`` for each.
    """

    seq: int
    data: bytes

    def as_dict(self) -> dict[str, Any]:
        """The record parsed back into a dict (SPEC §5 shape)."""
        parsed: dict[str, Any] = orjson.loads(self.data)
        return parsed


def record_ids(records: Iterable[OutboxRecord]) -> list[str]:
    """The ``id`` of each record, in order."""
    return [str(record.as_dict()["id"]) for record in records]


# The one way the package builds a Record: its six values in field order, built in C. Keywords
# cost three times as much, and the two queue kinds build one per item pulled.
_new_record = partial(tuple.__new__, Record)


def format_received_at(moment: datetime | float) -> str:
    """RFC 3339 UTC with milliseconds: ``2026-11-25T08:00:00.123Z``."""
    if not isinstance(moment, datetime):
        moment = datetime.fromtimestamp(moment, UTC)
    return (
        moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    )


def send_status_record(
    app_id: str,
    status: SendStatus,
    *,
    source: str,
    received_at: str,
    description_text: str | None = None,
) -> Record:
    """A delivery receipt; its id is Tencent's SerialNo, the same by pull and by push.

    ``description`` is the carrier's code (``DELIVRD``) by either path; ``description_text`` the
    push's human-readable description, which a pull does not carry (null then).
    """
    fields = {
        "serial_no": status.serial_no,
        "phone_number": status.phone_number,
        "country_code": status.country_code,
        "subscriber_number": status.subscriber_number,
        "report_status": status.report_status,
        "description": status.description,
        "description_text": description_text,
        "user_receive_time": status.user_receive_time,
        "session_context": status.session_context,
    }
    return _new_record(("send_status", status.serial_no, app_id, source, received_at, fields))


def reply_id(app_id: str, reply: ReplyStatus) -> str:
    """``reply:`` + hex SHA-256 of the reply's identifying fields.

    Tencent gives replies no id, so we derive one from what both the pulled and the pushed copy
    carry: the JSON array ``[app_id, phone_number, reply_time, reply_content, extend_code,
    sign_name]`` (compact, UTF-8, not ASCII-escaped). Consumers can recompute it.
    """
    key = [
        app_id,
        reply.phone_number,
        reply.reply_time,
        reply.reply_content,
        reply.extend_code,
        reply.sign_name,
    ]
    digest = hashlib.sha256(orjson.dumps(key)).hexdigest()
    return f"reply:{digest}"


def reply_record(app_id: str, reply: ReplyStatus, *, source: str, received_at: str) -> Record:
    """A user's reply (MO)."""
    fields = {
        "phone_number": reply.phone_number,
        "country_code": reply.country_code,
        "subscriber_number": reply.subscriber_number,
        "sign_name": reply.sign_name,
        "reply_content": reply.reply_content,
        "reply_time": reply.reply_time,
        "extend_code": reply.extend_code,
    }
    return _new_record(("reply", reply_id(app_id, reply), app_id, source, received_at, fields))


def statistics_id(app_id: str, begin_time: str, end_time: str, counters: Mapping[str, int]) -> str:
    """``stats:APP:BEGIN-END:HASH``: a changed range is new, an unchanged one a duplicate."""
    digest = hashlib.sha256(
        json.dumps(counters, sort_keys=True, separators=(",", ":")).encode("ascii")
    ).hexdigest()[:16]
    return f"stats:{app_id}:{begin_time}-{end_time}:{digest}"


def statistics_record(
    app_id: str,
    *,
    begin_time: str,
    end_time: str,
    counters: Mapping[str, int],
    source: str,
    received_at: str,
) -> Record:
    """Receipt statistics for the hours ``begin_time``..``end_time`` (``yyyymmddhh``, both
    counted)."""
    record_id = statistics_id(app_id, begin_time, end_time, counters)
    fields = {"begin_time": begin_time, "end_time": end_time, **counters}
    return _new_record(("callback_statistics", record_id, app_id, source, received_at, fields))


def conversion_record(
    app_id: str,
    *,
    serial_no: str,
    conversion_time: int | None,
    code: str,
    message: str,
    received_at: str,
    source: str = Action.REPORT_CONVERSION,
) -> Record:
    """The outcome of reporting one conversion to Tencent."""
    fields = {
        "serial_no": serial_no,
        "conversion_time": conversion_time,
        "code": code,
        "message": message,
    }
    return _new_record(
        ("conversion", f"conversion:{serial_no}", app_id, source, received_at, fields)
    )


def receipt_missing_record(
    app_id: str, *, serial_no: str, phone_number: str, sent_at: int, received_at: str
) -> Record:
    """A tracked message whose receipt never came within ``give_up_after`` of its send."""
    return Record(
        kind="receipt_missing",
        id=f"missing:{serial_no}",
        app_id=app_id,
        source="tracking",
        received_at=received_at,
        fields={"serial_no": serial_no, "phone_number": phone_number, "sent_at": sent_at},
    )


@cache
def record_schema() -> Mapping[str, Any]:
    """The JSON Schema (draft 2020-12) of every record kind, as shipped in the package."""
    text = resources.files("tcsms_poller").joinpath("records.schema.json").read_text("utf-8")
    schema: Mapping[str, Any] = json.loads(text)
    return schema
