"""The HTTP sink against a real server on loopback: body, signature, acks, retries, rejections."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from email.utils import formatdate
from pathlib import Path
from typing import Any

import anyio
import pytest

from tcsms_poller import __version__
from tcsms_poller.sinks.base import RejectedBatchError, RetryableSinkError, SinkContext
from tcsms_poller.sinks.http import HttpSettings, HttpSink, sign, verify_signature
from tcsms_poller.sinks.retry_after import parse_retry_after
from tests.support.http_receiver import Received, Receiver, Reply, http_receiver
from tests.support.ports import free_port
from tests.support.records import FakeClock, record, records
from tests.support.sink_rig import drain, outbox, outbox_records

HMAC_SECRET = "hook-secret-3f9a1c"
TOKEN = "token-7d2e40b1"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A scripted webhook on 127.0.0.1."""
    with http_receiver() as running:
        yield running


def make_sink(url: str, clock: FakeClock | None = None, **extra: Any) -> HttpSink:
    """An HTTP sink posting to ``url``, with its timestamps from ``clock``."""
    config = HttpSettings.model_validate({"type": "http", "url": url, **extra})
    return HttpSink(
        config, SinkContext(name="http", state_dir=Path(".")), clock=clock or FakeClock()
    )


async def send_once(sink: HttpSink, *ids: str) -> Any:
    """open, one send of ``ids``, aclose; the ack (or the error, raised)."""
    await sink.open()
    try:
        with anyio.fail_after(30):
            return await sink.send(outbox_records(*ids))
    finally:
        await sink.aclose()


# -- what is sent --------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_posts_the_outbox_bytes_as_one_records_document(receiver: Receiver) -> None:
    """The body is the records' stored JSON joined into {"records": [...]}, byte for byte."""
    ack = await send_once(make_sink(receiver.url), "a", "b")
    [request] = receiver.requests
    assert ack.position is None
    assert (request.method, request.path) == ("POST", "/hook")
    assert request.body == (
        b'{"records":[' + record("a").to_json() + b"," + record("b").to_json() + b"]}"
    )
    assert json.loads(request.body)["records"][1]["id"] == "b"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["User-Agent"] == f"tcsms-poller/{__version__}"
    assert "X-Signature" not in request.headers


@pytest.mark.anyio
async def test_the_receiver_verifies_the_signature(receiver: Receiver) -> None:
    """With hmac_secret, the timestamp and signature headers verify against the exact body."""
    clock = FakeClock()
    await send_once(make_sink(receiver.url, clock, hmac_secret=HMAC_SECRET), "a")
    [request] = receiver.requests
    timestamp = request.headers["X-Signature-Timestamp"]
    signature = request.headers["X-Signature"]
    assert timestamp == str(int(clock.now))
    assert signature.startswith("sha256=")
    assert verify_signature(HMAC_SECRET, timestamp, request.body, signature, now=clock.now)
    assert not verify_signature("another", timestamp, request.body, signature, now=clock.now)
    assert not verify_signature(
        HMAC_SECRET, timestamp, request.body + b" ", signature, now=clock.now
    )


@pytest.mark.anyio
async def test_configured_headers_are_sent_with_their_real_values(receiver: Receiver) -> None:
    """Header values are secrets in the configuration and plain on the wire."""
    sink = make_sink(
        receiver.url, headers={"Authorization": f"Bearer {TOKEN}", "content-type": "text/plain"}
    )
    await send_once(sink, "a")
    [request] = receiver.requests
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert request.headers.get_all("Content-Type") == ["application/json"]


# -- how answers map onto the sink contract ------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("status", [200, 201, 202, 204])
async def test_any_2xx_acknowledges(receiver: Receiver, status: int) -> None:
    """Every success status is an ack."""
    receiver.script(Reply(status, body=b""))
    ack = await send_once(make_sink(receiver.url), "a")
    assert ack.position is None


@pytest.mark.anyio
@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
async def test_overload_and_server_errors_are_retryable(receiver: Receiver, status: int) -> None:
    """408, 429 and 5xx mean: later, maybe."""
    receiver.script(Reply(status, body=b"busy"))
    with pytest.raises(RetryableSinkError, match=f"^HTTP {status}: busy$") as caught:
        await send_once(make_sink(receiver.url), "a")
    assert caught.value.retry_after is None


@pytest.mark.anyio
async def test_retry_after_in_seconds_is_passed_on(receiver: Receiver) -> None:
    """Retry-After: 7 asks the drainer to wait at least seven seconds."""
    receiver.script(Reply(429, headers={"Retry-After": "7"}))
    with pytest.raises(RetryableSinkError) as caught:
        await send_once(make_sink(receiver.url), "a")
    assert caught.value.retry_after == 7


@pytest.mark.anyio
async def test_retry_after_as_an_http_date_is_passed_on(receiver: Receiver) -> None:
    """Retry-After as an HTTP date becomes the seconds from now until then."""
    clock = FakeClock()
    receiver.script(Reply(503, headers={"Retry-After": formatdate(clock.now + 120, usegmt=True)}))
    with pytest.raises(RetryableSinkError) as caught:
        await send_once(make_sink(receiver.url, clock), "a")
    assert caught.value.retry_after == 120


@pytest.mark.anyio
async def test_a_huge_retry_after_is_capped(receiver: Receiver) -> None:
    """A downstream cannot park the sink for a day: ten minutes at most."""
    receiver.script(Reply(503, headers={"Retry-After": "86400"}))
    with pytest.raises(RetryableSinkError) as caught:
        await send_once(make_sink(receiver.url), "a")
    assert caught.value.retry_after == 600


@pytest.mark.anyio
@pytest.mark.parametrize("status", [400, 401, 403, 404, 413, 422])
async def test_other_client_errors_reject_the_batch(receiver: Receiver, status: int) -> None:
    """Retrying cannot fix a 4xx: the batch is rejected with the status and the answer."""
    receiver.script(Reply(status, body=b'{"error": "bad\\nrecord"}'))
    with pytest.raises(RejectedBatchError, match=f'^HTTP {status}: {{"error": "bad\\\\nrecord"}}$'):
        await send_once(make_sink(receiver.url), "a")


@pytest.mark.anyio
async def test_the_answer_excerpt_is_short_and_on_one_line(receiver: Receiver) -> None:
    """A long HTML error page becomes one line of at most 200 characters."""
    page = b"<html>\r\n<body>\x1b[31m" + b"x" * 100_000 + b"</body></html>"
    receiver.script(Reply(400, body=page))
    with pytest.raises(RejectedBatchError) as caught:
        await send_once(make_sink(receiver.url), "a")
    message = str(caught.value)
    assert message.startswith("HTTP 400: <html> <body> [31mxxx")
    assert len(message) <= len("HTTP 400: ") + 200
    assert message.isprintable()


@pytest.mark.anyio
async def test_an_empty_error_answer_gives_the_reason_phrase(receiver: Receiver) -> None:
    """With nothing in the body the status's reason phrase explains it."""
    receiver.script(Reply(404, body=b""))
    with pytest.raises(RejectedBatchError, match=r"^HTTP 404: Not Found$"):
        await send_once(make_sink(receiver.url), "a")


@pytest.mark.anyio
async def test_redirects_are_rejected_not_followed(receiver: Receiver) -> None:
    """A 3xx names where it pointed, and nothing is posted there."""
    receiver.script(Reply(307, headers={"Location": "/elsewhere"}))
    with pytest.raises(RejectedBatchError, match=r"^HTTP 307 redirect to /elsewhere: .*final URL"):
        await send_once(make_sink(receiver.url), "a")
    assert [r.path for r in receiver.requests] == ["/hook"]


@pytest.mark.anyio
async def test_a_downstream_that_never_answers_times_out_retryably(receiver: Receiver) -> None:
    """No answer within ``timeout`` is a retryable error, not a hang."""
    receiver.script(Reply(stall=True))
    with pytest.raises(RetryableSinkError, match=r"^no answer within 0\.5s$"):
        await send_once(make_sink(receiver.url, timeout="500ms"), "a")
    assert len(receiver.requests) == 1


@pytest.mark.anyio
async def test_connection_refused_is_retryable() -> None:
    """Nothing listening is a transport error: retried."""
    with pytest.raises(RetryableSinkError, match=r"^ConnectError: "):
        await send_once(make_sink(f"http://127.0.0.1:{free_port()}/hook"), "a")


@pytest.mark.anyio
async def test_reopen_replaces_the_client(receiver: Receiver) -> None:
    """After reopen() (SIGHUP) the sink keeps posting, on a new connection."""
    sink = make_sink(receiver.url)
    await sink.open()
    await sink.send(outbox_records("a"))
    await sink.reopen()
    await sink.send(outbox_records("b", first_seq=2))
    await sink.aclose()
    assert [json.loads(r.body)["records"][0]["id"] for r in receiver.requests] == ["a", "b"]


@pytest.mark.anyio
async def test_secrets_never_appear_in_errors_or_reprs(receiver: Receiver) -> None:
    """Even a downstream that echoes our headers back cannot leak the secrets into errors."""

    def echo(request: Received) -> bytes:
        return str(dict(request.headers)).encode()

    receiver.script(Reply(400, body=echo), Reply(500, body=echo))
    sink = make_sink(
        receiver.url, hmac_secret=HMAC_SECRET, headers={"X-Api-Key": TOKEN}, timeout="5s"
    )
    errors: list[Exception] = []
    await sink.open()
    for _ in range(2):
        try:
            await sink.send(outbox_records("a"))
        except (RejectedBatchError, RetryableSinkError) as error:
            errors.append(error)
    await sink.aclose()
    config = sink._config
    texts = [*map(str, errors), *map(repr, errors), repr(sink), repr(config), str(config)]
    texts.append(config.model_dump_json())
    assert len(errors) == 2
    assert "X-Api-Key" in str(errors[0])  # the echo did arrive, scrubbed
    for text in texts:
        assert TOKEN not in text
        assert HMAC_SECRET not in text


@pytest.mark.anyio
async def test_a_one_character_header_secret_leaves_the_answer_readable(
    receiver: Receiver,
) -> None:
    """A header value ``k`` echoed back is masked where it stands alone, not in every word."""
    receiver.script(Reply(400, body=b"unknown key k; check your keys"))
    with pytest.raises(RejectedBatchError) as raised:
        await send_once(make_sink(receiver.url, headers={"X-Api-Key": "k"}), "a")
    assert str(raised.value) == "HTTP 400: unknown key ***; check your keys"


# -- through the drainer and a real outbox -------------------------------------------------------


@pytest.mark.anyio
async def test_server_errors_are_retried_until_the_batch_is_accepted(
    receiver: Receiver, tmp_path: Path
) -> None:
    """500, then 503 with Retry-After, then 200: one delivery, the same body three times."""
    receiver.script(Reply(500), Reply(503, headers={"Retry-After": "30"}), Reply(200))
    clock = FakeClock()
    sink = make_sink(receiver.url, clock, hmac_secret=HMAC_SECRET)
    config = sink._config
    async with outbox(tmp_path / "state.db", clock) as store:
        await store.sink_cursor("http")
        await store.commit(records("a", "b"))
        drainer = await drain(store, sink, config, tmp_path / "dead", clock)
        cursor = await store.sink_cursor("http")
    bodies = [r.body for r in receiver.requests]
    assert len(bodies) == 3
    assert len(set(bodies)) == 1
    assert [r["id"] for r in json.loads(bodies[0])["records"]] == ["a", "b"]
    for request in receiver.requests:
        headers = request.headers
        assert verify_signature(
            HMAC_SECRET,
            headers["X-Signature-Timestamp"],
            request.body,
            headers["X-Signature"],
            now=clock.now,
        )
    assert clock.sleeps[1] >= 30
    assert (cursor.acked_seq, drainer.depth) == (2, 0)
    assert not (tmp_path / "dead").exists()


@pytest.mark.anyio
async def test_a_rejected_batch_goes_to_the_dead_letter_file(
    receiver: Receiver, tmp_path: Path
) -> None:
    """A 400 dead-letters the batch with the reason; the next batch is delivered."""
    receiver.script(Reply(400, body=b"schema mismatch"))
    clock = FakeClock()
    sink = make_sink(receiver.url, clock, batch_size=2)
    async with outbox(tmp_path / "state.db", clock) as store:
        await store.sink_cursor("http")
        await store.commit(records("a", "b", "c"))
        await drain(store, sink, sink._config, tmp_path / "dead", clock)
        cursor = await store.sink_cursor("http")
    dead = [
        json.loads(line) for line in (tmp_path / "dead" / "http.jsonl").read_text().splitlines()
    ]
    assert [(d["reason"], d["record"]["id"]) for d in dead] == [
        ("rejected: HTTP 400: schema mismatch", "a"),
        ("rejected: HTTP 400: schema mismatch", "b"),
    ]
    assert [json.loads(r.body)["records"][0]["id"] for r in receiver.requests] == ["a", "c"]
    assert cursor.acked_seq == 3


# -- the helpers receivers and the sink use ------------------------------------------------------


def test_verify_signature_accepts_a_fresh_signature_with_the_real_clock() -> None:
    """Without ``now`` the current time is used."""
    timestamp = str(int(time.time()))
    body = b'{"records":[]}'
    assert verify_signature(HMAC_SECRET, timestamp, body, sign(HMAC_SECRET, timestamp, body))


@pytest.mark.parametrize(
    ("timestamp", "now", "signature"),
    [
        ("1700000000", 1_700_000_301.0, None),  # too old: a replay
        ("1700000301", 1_700_000_000.0, None),  # too far ahead
        ("17e8", 1_700_000_000.0, None),  # not a number
        ("", 1_700_000_000.0, None),
        ("1" * 5000, 1_700_000_000.0, None),  # int() would refuse this many digits
        ("1700000000", 1_700_000_000.0, "sha256=00"),
        ("1700000000", 1_700_000_000.0, "sha256=ü"),
    ],
)
def test_verify_signature_refuses(timestamp: str, now: float, signature: str | None) -> None:
    """Stale or future timestamps, malformed values and wrong signatures are refused."""
    body = b"{}"
    given = signature if signature is not None else sign(HMAC_SECRET, timestamp, body)
    assert not verify_signature(HMAC_SECRET, timestamp, body, given, now=now)


def test_verify_signature_accepts_within_the_tolerance() -> None:
    """Clocks five minutes apart still agree."""
    body = b"{}"
    signature = sign(HMAC_SECRET, "1700000000", body)
    assert verify_signature(HMAC_SECRET, "1700000000", body, signature, now=1_700_000_300.0)
    assert not verify_signature(
        HMAC_SECRET, "1700000000", body, signature, now=1_700_000_300.0, tolerance=60
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("0", 0.0),
        (" 12 ", 12.0),
        ("99999999999999999999", 600.0),
        ("Tue, 14 Nov 2023 22:15:20 GMT", 100.0),  # now is 22:13:40
        ("Tue, 14 Nov 2023 22:00:00 GMT", 0.0),  # in the past: at once
        ("Tuesday, 14-Nov-23 22:15:20 GMT", 100.0),  # RFC 850, still allowed
        ("soon", None),
        ("-5", None),
        ("1.5", None),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    """Delta-seconds and HTTP dates become capped seconds; anything else is ignored."""
    assert parse_retry_after(value, now=1_700_000_020.0, cap=600.0) == expected
