"""Nothing private in the output: secrets and phone numbers masked in every log line, and the
``Masker`` on its own."""

from __future__ import annotations

import copy
import json
import logging
import re
import string
from dataclasses import dataclass
from typing import Any, Literal

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from tcsms_poller.logs import get_logger, learn_secrets
from tcsms_poller.masking import Masker
from tcsms_poller.settings_types import SecretValue
from tests.support.log_capture import captured_logs, json_lines, output
from tests.test_logs import PHONE, SECRET, log_chained_failure

MASKED_PHONE = "+86137****2222"
Format = Literal["auto", "json", "console"]

log = get_logger("tcsms_poller.tests.masking")


@dataclass
class Credentials:
    """An object whose repr carries a secret and a number."""

    key: str
    phone: str


# --- nothing private reaches the output ---------------------------------------------------------

FORMATS = pytest.mark.parametrize("fmt", ["json", "console"])


@FORMATS
def test_secret_is_masked_in_event_and_values(fmt: Format) -> None:
    """A configured secret is replaced by *** in the event and in plain values."""
    with captured_logs(fmt=fmt, secrets=[SECRET]) as out:
        log.info(f"signing with {SECRET}", secret_key=SECRET, url=f"https://x/callback/{SECRET}")
    text = output(out)
    assert SECRET not in text
    assert "***" in text


@FORMATS
def test_secret_is_masked_in_nested_values_and_keys(fmt: Format) -> None:
    """Dicts, lists, tuples, sets and dict keys are masked all the way down."""
    nested = {"a": [{"b": (SECRET,)}], SECRET: {SECRET}, "c": {"d": [[f"x{SECRET}y"]]}}
    with captured_logs(fmt=fmt, secrets=[SECRET]) as out:
        log.info("config.loaded", config=nested)
    assert SECRET not in output(out)


@FORMATS
def test_secret_and_number_are_masked_in_object_reprs(fmt: Format) -> None:
    """An object the renderer would repr is masked after repr, not skipped."""
    with captured_logs(fmt=fmt, secrets=[SECRET]) as out:
        log.info("config.loaded", credentials=Credentials(key=SECRET, phone=PHONE))
    text = output(out)
    assert SECRET not in text
    assert PHONE not in text
    assert MASKED_PHONE in text


@FORMATS
def test_secret_and_number_are_masked_in_tracebacks(fmt: Format) -> None:
    """Exception messages, causes included, are masked in the traceback text."""
    with captured_logs(fmt=fmt, secrets=[SECRET]) as out:
        log_chained_failure(log.exception)
    text = output(out)
    assert "Traceback" in text
    assert SECRET not in text
    assert PHONE not in text
    assert MASKED_PHONE in text


@FORMATS
def test_numbers_are_masked_in_values_and_text(fmt: Format) -> None:
    """E.164 numbers anywhere in strings keep country code, 3 digits and the last 4."""
    with captured_logs(fmt=fmt) as out:
        log.info(f"tracking {PHONE}", phone_number=PHONE, numbers=[PHONE], note=f"to {PHONE}!")
    text = output(out)
    assert PHONE not in text
    assert text.count(MASKED_PHONE) == 4


@FORMATS
def test_bare_mainland_numbers_are_masked_in_free_text(fmt: Format) -> None:
    """Tencent quotes numbers without "+" in its messages; those are masked too."""
    message = "PhoneNumber 13711112222 (or 8613711112222) is invalid; request a1b2-13711112222x"
    with captured_logs(fmt=fmt) as out:
        log.warning("poll.failed", error=message)
        log.warning(f"number 13711112222: {message}")
    text = output(out)
    assert "13711112222" not in text.replace("a1b2-13711112222x", "")
    assert text.count("137****2222") == 5  # 2 in the first line, 3 in the second
    assert text.count("86137****2222") == 2
    assert "a1b2-13711112222x" in text  # glued to letters: not a number on its own


@FORMATS
def test_numbers_without_plus_are_masked_under_phone_keys(fmt: Format) -> None:
    """Values under phone keys, ours or Tencent's spelling, keep only the last 4 digits."""
    with captured_logs(fmt=fmt) as out:
        log.info(
            "callback.received",
            mobile="13711112222",
            subscriber_number=13711112222,
            payload={"SubscriberNumber": "13711112222", "Mobile": "137 1111 2222"},
        )
    text = output(out)
    assert "13711112222" not in text
    assert "137 1111" not in text
    assert text.count("****2222") == 4


@FORMATS
def test_stdlib_records_are_masked(fmt: Format) -> None:
    """A uvicorn access line with the callback secret in its path and a number is masked."""
    with captured_logs(level="debug", fmt=fmt, secrets=[SECRET]) as out:
        logging.getLogger("uvicorn.access").info(
            '%s - "POST /callback/%s/status HTTP/1.1" 200 %s', "10.0.0.1", SECRET, PHONE
        )
    text = output(out)
    assert SECRET not in text
    assert PHONE not in text
    assert "/callback/***/status" in text


@FORMATS
def test_stdlib_tracebacks_are_masked(fmt: Format) -> None:
    """logging.exception() from a library is masked like ours."""
    with captured_logs(fmt=fmt, secrets=[SECRET]) as out:
        log_chained_failure(logging.getLogger("uvicorn.error").exception)
    text = output(out)
    assert "Traceback" in text
    assert SECRET not in text
    assert PHONE not in text


def test_secret_values_from_the_config_are_accepted() -> None:
    """configure_logging takes the config's SecretValue objects as they are."""
    with captured_logs(secrets=[SecretValue(SECRET)]) as out:
        log.info("config.loaded", key=SECRET)
    assert SECRET not in output(out)


def test_a_masker_learns_secrets_and_keeps_the_ones_it_knew() -> None:
    """After ``learn`` a new secret is masked in text and in a dict key cached before it, the
    old one still is; learning a known secret again changes nothing."""
    rotated = "Zr8wPq3nVx6tYb1M"
    masker = Masker([SECRET])
    key = f"token_{rotated}"
    assert masker.value({key: rotated}) == {key: rotated}  # the key is cached unmasked now
    masker.learn([SecretValue(rotated)])
    masker.learn([rotated, SECRET])
    assert masker.value({key: rotated}) == {"token_***": "***"}
    assert masker.text(f"{SECRET} {rotated} {PHONE}") == f"*** *** {MASKED_PHONE}"


def test_learnt_secrets_are_masked_in_loggers_and_library_records_made_before() -> None:
    """``learn_secrets`` (a reload) reaches loggers bound earlier and stdlib records alike."""
    rotated = "Zr8wPq3nVx6tYb1M"
    bound = log.bind(worker="replies")
    with captured_logs(secrets=[SECRET]) as out:
        learn_secrets([SecretValue(rotated)])
        bound.info("sink.failed", error=f"https://u:{rotated}@hook/x", key=SECRET)
        logging.getLogger("httpx").warning("POST https://u:%s@hook/x", rotated)
    text = output(out)
    assert len(json_lines(out)) == 2
    assert rotated not in text
    assert SECRET not in text
    assert text.count("https://u:***@hook/x") == 2


def test_a_short_secret_is_masked_as_a_whole_token_only() -> None:
    """An empty secret is no secret; a 3-character one is masked where it stands alone (a
    value, a URL's password, ``key=value``), never inside another word."""
    with captured_logs(secrets=["", "abc"]) as out:
        log.info("poll.completed", note="abcdef", key="abc", url="postgresql://u:abc@db/x")
    [line] = json_lines(out)
    assert (line["note"], line["key"], line["url"]) == ("abcdef", "***", "postgresql://u:***@db/x")


def test_a_one_character_password_leaves_the_words_around_it_alone() -> None:
    """A PostgreSQL password ``p`` is masked in the URL and in ``password=p``, and ``port``,
    ``postgresql`` and ``-p`` read as they were written."""
    message = 'connection to server at "127.0.0.1", port 1 failed for postgresql://u:p@db/x'
    masked = Masker(["p"]).text(f"{message} (password=p, p, -p, p_q, pé)")
    assert masked == (
        'connection to server at "127.0.0.1", port 1 failed for postgresql://u:***@db/x'
        " (password=***, ***, -***, p_q, pé)"
    )


def test_a_secret_shorter_than_eight_characters_is_not_masked_inside_words() -> None:
    """``pass`` as a secret leaves ``password`` readable; from 8 characters on, a secret is
    masked even inside a longer word (a secret glued to text is still that secret)."""
    assert Masker(["pass"]).text("password: pass") == "password: ***"
    assert Masker(["passw0rd"]).text("passw0rds passw0rd") == "***s ***"


@pytest.mark.parametrize(
    ("secret", "text", "masked"),
    [("/h", "https://x/h", "https://x***"), ("h/", "x/h/y", "x/***y"), ("@", "u@db", "u***db")],
)
def test_a_short_secret_with_a_non_word_edge_is_masked_beside_words(
    secret: str, text: str, masked: str
) -> None:
    """The whole-token rule looks only at the secret's edges that are letters, digits or ``_``:
    a secret path ``/h`` right after a host name is still masked."""
    assert Masker([secret]).text(text) == masked


def test_escaped_forms_of_a_secret_are_masked() -> None:
    """A secret with quotes or slashes is masked as it appears in a repr, a JSON body or a URL."""
    secret = "p@ss/w'rd\"\\x"
    with captured_logs(secrets=[secret]) as out:
        log.info(
            "sink.request",
            body=json.dumps({"token": secret}),
            url="https://hooks.example.com/?t=p%40ss%2Fw%27rd%22%5Cx",
            obj=Credentials(key=secret, phone=""),
        )
    [line] = json_lines(out)
    assert line["body"] == '{"token": "***"}'
    assert line["url"] == "https://hooks.example.com/?t=***"
    assert "p@ss" not in line["obj"]


SECRETS = st.text(alphabet=string.ascii_letters + string.digits, min_size=12, max_size=40)
PRINTABLE = st.text(alphabet=string.ascii_letters + string.digits + string.punctuation + " ")


@FORMATS
@settings(max_examples=40, deadline=None)
@given(secret=SECRETS, subscriber=st.from_regex(r"1[3-9][0-9]{9}", fullmatch=True), text=PRINTABLE)
def test_random_secret_and_number_in_random_text_never_reach_the_output(
    fmt: Format, secret: str, subscriber: str, text: str
) -> None:
    """Whatever surrounds them, in event, values and tracebacks, in either format."""
    number = "+86" + subscriber
    message = f"{text}{secret}{text}{number}{text}"
    with captured_logs(fmt=fmt, secrets=[secret]) as out:
        try:
            raise ValueError(message)
        except ValueError:
            log.exception(message, detail={"list": [message], "tuple": (message,)})
    rendered = output(out)
    assert secret not in rendered
    assert number not in rendered


# --- the Masker on its own ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("number", "masked"),
    [
        ("+8613711112222", "+86137****2222"),  # China: SPEC's example
        ("+12025550123", "+1****0123"),  # NANP: 10 subscriber digits, only the last 4 stay
        ("+447911123456", "+44****3456"),
        ("+79161234567", "+7****4567"),
        ("+85291234567", "+852****4567"),
        ("+3541234567", "+354****567"),  # 7 subscriber digits: 4 stay hidden
        ("+2341234", "+234****"),  # 4 subscriber digits: all hidden
        ("+886912345678", "+886****5678"),
    ],
)
def test_numbers_are_masked_by_calling_code(number: str, masked: str) -> None:
    """The calling code is found by prefix; at least four subscriber digits are hidden."""
    assert Masker().text(number) == masked


CALLING_CODES = ["1", "7", "20", "27", "33", "44", "49", "61", "81", "82", "84", "86", "91"]
CALLING_CODES += [
    "212",
    "234",
    "351",
    "354",
    "380",
    "420",
    "591",
    "673",
    "852",
    "880",
    "886",
    "971",
]


@st.composite
def e164_numbers(draw: st.DrawFn) -> tuple[str, str]:
    code = draw(st.sampled_from(CALLING_CODES))
    size = draw(st.integers(min_value=7 - len(code), max_value=15 - len(code)))
    return code, draw(st.text(alphabet=string.digits, min_size=size, max_size=size))


@given(parts=e164_numbers(), before=st.text(), after=st.text())
def test_any_number_in_any_text_is_masked(parts: tuple[str, str], before: str, after: str) -> None:
    """The full number never survives, and the country code stays readable."""
    code, subscriber = parts
    number = f"+{code}{subscriber}"
    masked = Masker().text(before + number + after)
    assert number not in masked
    assert f"+{code}" in masked


@given(parts=e164_numbers())
def test_masking_hides_at_least_four_digits_and_keeps_at_most_the_last_four(
    parts: tuple[str, str],
) -> None:
    """Country code + (first 3 when 4+ stay hidden) + **** + at most the last 4."""
    code, subscriber = parts
    masked = Masker().text(f"+{code}{subscriber}")
    head, _, tail = masked.removeprefix(f"+{code}").partition("****")
    assert head in ("", subscriber[:3])
    assert len(tail) <= 4
    assert subscriber.endswith(tail)
    assert len(subscriber) - len(head) - len(tail) >= 4


@given(
    secrets=st.lists(st.text(min_size=8).filter(lambda s: "*" not in s), max_size=4), text=st.text()
)
def test_secrets_never_survive_in_any_text(secrets: list[str], text: str) -> None:
    """Every configured secret, wherever it sits among others, is gone from the masked text."""
    masked = Masker(secrets).text(text.join(secrets) + text)
    for secret in secrets:
        assert secret not in masked


SEPARATORS = st.text(alphabet=" :@/=&?\"'(),;\n", min_size=1)


@given(
    secrets=st.lists(
        st.text(min_size=1, max_size=7).filter(lambda s: "*" not in s), min_size=1, max_size=4
    ),
    separator=SEPARATORS,
)
def test_short_secrets_standing_alone_never_survive(secrets: list[str], separator: str) -> None:
    """A short secret between separators (a URL's parts, ``key=value``, quotes) is masked."""
    masked = Masker(secrets).text(separator + separator.join(secrets) + separator)
    assert masked.strip(" :@/=&?\"'(),;\n*") == ""


@given(text=st.text().filter(lambda s: "+" not in s), secret=SECRETS)
def test_text_without_numbers_or_secrets_is_unchanged(text: str, secret: str) -> None:
    """Masking touches only numbers and secrets: everything else passes untouched."""
    assume(secret not in text)
    assume(not re.search(r"1[3-9][0-9]{9}", text))
    assert Masker([secret]).text(text) == text


@given(
    timestamp=st.integers(min_value=0, max_value=2**40).filter(lambda t: len(str(t)) != 11),
    serial=st.from_regex(r"[0-9]{4}:[0-9]{28}", fullmatch=True),
    request_id=st.uuids().map(str),
    count=st.integers(),
)
def test_timestamps_serials_request_ids_and_counts_survive(
    timestamp: int, serial: str, request_id: str, count: int
) -> None:
    """Receipt fields that look like numbers are not phone numbers."""
    event = {"user_receive_time": timestamp, "serial_no": serial, "request_id": request_id}
    event |= {"records": count, "ts_text": str(timestamp), "begin_time": "2026112510"}
    assert Masker([SECRET]).value(event) == event


@given(
    key=st.sampled_from(
        ["phone", "phone_number", "mobile", "subscriber_number", "number", "Mobile", "PhoneNumber"]
    ),
    digits=st.text(alphabet=string.digits, min_size=1, max_size=20),
    as_int=st.booleans(),
)
def test_phone_key_values_keep_at_most_the_last_four_digits(
    key: str, digits: str, as_int: bool
) -> None:
    """A number without "+" under a phone key shows **** and no more than its last 4 digits."""
    value: str | int = int(digits) if as_int else digits
    shown = str(value)
    masked = Masker().value({key: value})
    assert isinstance(masked, dict)
    kept = masked[key].removeprefix("****")
    assert len(kept) <= max(len(shown) - 4, 0)
    assert shown.endswith(kept)
    assert shown not in masked[key]


@given(text=st.text(), parts=e164_numbers(), secret=SECRETS)
def test_masking_is_idempotent(text: str, parts: tuple[str, str], secret: str) -> None:
    """Masked text masked again is unchanged, so a line masked twice reads the same."""
    masker = Masker([secret])
    once = masker.text(f"{text}+{''.join(parts)}{secret}{text}")
    assert masker.text(once) == once


def test_masking_copies_and_never_mutates_the_input() -> None:
    """The caller's containers are left exactly as they were."""
    value = {"a": [SECRET, {"phone": "13711112222"}], "b": (PHONE,)}
    before = copy.deepcopy(value)
    Masker([SECRET]).value(value)
    assert value == before


def test_cyclic_values_are_cut_off() -> None:
    """A list containing itself is shown by its repr past a depth, not a RecursionError."""
    cycle: list[Any] = [PHONE]
    cycle.append(cycle)
    masked = json.dumps(Masker().value({"cycle": cycle}))
    assert "[...]" in masked
    assert PHONE not in masked


def test_a_failing_repr_does_not_lose_the_line() -> None:
    """An object whose repr raises is shown by its type name."""

    class Broken:
        def __repr__(self) -> str:
            raise RuntimeError("no repr")

    assert Masker().value(Broken()) == "<Broken: repr failed>"
