"""TC3 verification and the common headers, each refusal with Tencent's code."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime

import pytest

from tcsms_poller.emulator import SMS_REGIONS
from tcsms_poller.emulator.answers import ApiError
from tcsms_poller.emulator.auth import verify_request
from tcsms_poller.tencent.api import BEIJING
from tcsms_poller.tencent.signing import build_authorization
from tests.support.emulator_api import APP, Api

ID, KEY = "AKIDtest", "secret-key"
NOW = 1_700_000_000
BODY = json.dumps({"SmsSdkAppId": APP, "Limit": 10}).encode()
HEADERS = {"content-type": "application/json", "host": "127.0.0.1:9000", "x-tc-action": "x"}


def _signed(
    *,
    timestamp: int = NOW,
    signed_headers: tuple[str, ...] = ("content-type", "host"),
    key: str = KEY,
    body: bytes = BODY,
    headers: Mapping[str, str] = HEADERS,
) -> dict[str, str]:
    authorization = build_authorization(
        secret_id=ID,
        secret_key=key,
        service="sms",
        timestamp=timestamp,
        method="POST",
        path="/",
        query="",
        headers=headers,
        body=body,
        signed_headers=signed_headers,
    )
    return {**headers, "x-tc-timestamp": str(timestamp), "authorization": authorization.render()}


def _verify(headers: Mapping[str, str], *, body: bytes = BODY, now: float = NOW) -> str:
    return verify_request(
        method="POST",
        path="/",
        query="",
        headers=headers,
        body=body,
        secrets={ID: KEY},
        now=now,
    )


def _code(headers: Mapping[str, str], *, body: bytes = BODY, now: float = NOW) -> str:
    with pytest.raises(ApiError) as raised:
        _verify(headers, body=body, now=now)
    return raised.value.code


def test_a_good_signature_names_its_secret_id() -> None:
    """A request signed with the right key over content-type and host passes."""
    assert _verify(_signed()) == ID


def test_extra_signed_headers_are_verified_too() -> None:
    """Current Chinese docs also sign x-tc-action; the verifier uses what the client declares."""
    assert _verify(_signed(signed_headers=("content-type", "host", "x-tc-action"))) == ID


def test_an_unsigned_payload_is_accepted_when_declared() -> None:
    """The SDK's UNSIGNED-PAYLOAD option hashes that word instead of the body."""
    headers = {**HEADERS, "x-tc-content-sha256": "UNSIGNED-PAYLOAD"}
    signed = _signed(headers=headers, body=b"UNSIGNED-PAYLOAD")
    assert _verify(signed, body=b'{"anything": 1}') == ID


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({k: v for k, v in _signed().items() if k != "authorization"}, "MissingParameter"),
        ({k: v for k, v in _signed().items() if k != "x-tc-timestamp"}, "MissingParameter"),
        ({**_signed(), "x-tc-timestamp": "soon"}, "InvalidParameter"),
        ({**_signed(), "authorization": "Basic abc"}, "AuthFailure.InvalidAuthorization"),
        (
            {**_signed(), "authorization": "TC3-HMAC-SHA256 Credential=x, Signature=y"},
            "AuthFailure.InvalidAuthorization",
        ),
        (_signed(signed_headers=("content-type",)), "AuthFailure.InvalidAuthorization"),
        (_signed(signed_headers=("host",)), "AuthFailure.InvalidAuthorization"),
        (_signed(key="wrong"), "AuthFailure.SignatureFailure"),
    ],
    ids=[
        "no-authorization",
        "no-timestamp",
        "bad-timestamp",
        "other-algorithm",
        "incomplete-authorization",
        "host-not-signed",
        "content-type-not-signed",
        "wrong-key",
    ],
)
def test_bad_authorizations_are_refused(headers: dict[str, str], code: str) -> None:
    """Each malformed or wrong authorization gets its documented code."""
    assert _code(headers) == code


def test_a_signed_header_missing_from_the_request_is_invalid() -> None:
    """Declaring a header in SignedHeaders that was not sent is an invalid authorization."""
    signed = _signed(signed_headers=("content-type", "host", "x-tc-action"))
    del signed["x-tc-action"]
    assert _code(signed) == "AuthFailure.InvalidAuthorization"


def test_another_service_in_the_scope_is_invalid() -> None:
    """A credential scoped to another service is not an SMS credential."""
    signed = _signed()
    signed["authorization"] = signed["authorization"].replace("/sms/", "/cvm/")
    assert _code(signed) == "AuthFailure.InvalidAuthorization"


def test_an_unknown_secret_id_is_not_found() -> None:
    """A SecretId the account does not have is SecretIdNotFound."""
    signed = _signed()
    signed["authorization"] = signed["authorization"].replace(ID, "AKIDother")
    assert _code(signed) == "AuthFailure.SecretIdNotFound"


def test_a_changed_body_fails_the_signature() -> None:
    """The body is signed: one changed byte breaks it."""
    assert _code(_signed(), body=BODY.replace(b"10", b"11")) == "AuthFailure.SignatureFailure"


def test_the_scope_date_must_be_the_utc_date() -> None:
    """At NOW it is already the next day in Beijing: a Beijing date in the scope is refused."""
    utc_date = datetime.fromtimestamp(NOW, UTC).strftime("%Y-%m-%d")
    beijing_date = datetime.fromtimestamp(NOW, BEIJING).strftime("%Y-%m-%d")
    assert utc_date != beijing_date
    signed = _signed()
    signed["authorization"] = signed["authorization"].replace(utc_date, beijing_date)
    with pytest.raises(ApiError, match="UTC date") as raised:
        _verify(signed)
    assert raised.value.code == "AuthFailure.SignatureFailure"


@pytest.mark.parametrize("skew", [-301, 301])
def test_more_than_five_minutes_of_skew_expires(skew: int) -> None:
    """A timestamp more than 300 s away expires, even with a wrong key too."""
    assert _code(_signed(key="wrong"), now=NOW + skew) == "AuthFailure.SignatureExpire"


@pytest.mark.parametrize("skew", [-300, 300])
def test_five_minutes_of_skew_is_still_fine(skew: int) -> None:
    """Exactly 300 s away is inside the window."""
    assert _verify(_signed(), now=NOW + skew) == ID


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({"X-TC-Version": "2019-07-11"}, "NoSuchVersion"),
        ({"X-TC-Version": ""}, "MissingParameter"),
        ({"X-TC-Action": "DescribeSmsSignList"}, "InvalidAction"),
        ({"X-TC-Action": ""}, "MissingParameter"),
        ({"X-TC-Region": ""}, "MissingParameter"),
        ({"X-TC-Region": "ap-shanghai"}, "UnsupportedRegion"),
        ({"X-TC-Region": "eu-frankfurt"}, "UnsupportedRegion"),
    ],
)
async def test_common_headers_are_checked(api: Api, headers: dict[str, str], code: str) -> None:
    """Version, action and region are checked before anything else."""
    answer = await api.call("PullSmsReplyStatus", {"SmsSdkAppId": APP, "Limit": 1}, headers=headers)
    assert answer["Error"]["Code"] == code


@pytest.mark.anyio
@pytest.mark.parametrize("region", SMS_REGIONS)
async def test_every_sms_region_is_served(api: Api, region: str) -> None:
    """The Chinese site's regions and the international site's ap-singapore are accepted."""
    answer = await api.call(
        "PullSmsReplyStatus", {"SmsSdkAppId": APP, "Limit": 1}, headers={"X-TC-Region": region}
    )
    assert answer == {"PullSmsReplyStatusSet": None}


@pytest.mark.anyio
async def test_a_refusal_is_an_error_answer_with_a_request_id(api: Api) -> None:
    """A refused request still gets HTTP 200, application/json and a RequestId."""
    response = await api.post("PullSmsReplyStatus", {"SmsSdkAppId": APP}, secret_key="bad")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    document = response.json()
    assert document["Response"]["Error"]["Code"] == "AuthFailure.SignatureFailure"
    assert len(document["Response"]["RequestId"]) == 36
    stats = await api.control("GET", "stats")
    assert stats["actions"]["PullSmsReplyStatus"]["errors"] == {"AuthFailure.SignatureFailure": 1}
