"""TC3-HMAC-SHA256: published vectors, the official SDK as judge, and the header round trip."""

from __future__ import annotations

import hashlib
import json
import string
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tcsms_poller.tencent.signing import (
    TC3Auth,
    build_authorization,
    canonical_request,
    parse_authorization,
)

DOC_BODY = (
    b'{"Limit": 1, "Filters": [{"Values": ["\\u672a\\u547d\\u540d"], "Name": "instance-name"}]}'
)
DOC_TIMESTAMP = 1551113065
INTL_ID = "AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE"
INTL_KEY = "Gu5t9xGARNpq86cd98joQYCN3EXAMPLE"


def test_doc_body_hash_matches_the_reference() -> None:
    """The vectors' body is the 86-byte text with literal backslash escapes."""
    assert len(DOC_BODY) == 86
    assert (
        hashlib.sha256(DOC_BODY).hexdigest()
        == "35e9c5b0e3ae67532d3c9f17ead6c90222632e5b1ff7f6e89887f1398934f064"
    )


def test_international_doc_vector() -> None:
    """The international documentation's CVM example signs to its published value."""
    headers = {"content-type": "application/json; charset=utf-8", "host": "cvm.tencentcloudapi.com"}
    canonical = canonical_request(
        method="POST",
        path="/",
        query="",
        headers=headers,
        signed_headers=("content-type", "host"),
        body=DOC_BODY,
    )
    assert (
        hashlib.sha256(canonical.encode()).hexdigest()
        == "5ffe6a04c0664d6b969fab9a13bdab201d63ee709638e2749d62a09ca18d7031"
    )
    auth = build_authorization(
        secret_id=INTL_ID,
        secret_key=INTL_KEY,
        service="cvm",
        timestamp=DOC_TIMESTAMP,
        method="POST",
        path="/",
        query="",
        headers=headers,
        body=DOC_BODY,
    )
    assert auth.signature == "72e494ea809ad7a8c8f7a4507b9bddcbaa8e581f516e8da2f66e2c5a96525168"
    assert auth.render() == (
        f"TC3-HMAC-SHA256 Credential={INTL_ID}/2019-02-25/cvm/tc3_request, "
        "SignedHeaders=content-type;host, "
        "Signature=72e494ea809ad7a8c8f7a4507b9bddcbaa8e581f516e8da2f66e2c5a96525168"
    )


def test_chinese_doc_vector_signs_x_tc_action_lower_cased() -> None:
    """The current Chinese documentation also signs x-tc-action, its value lower-cased."""
    headers = {
        "content-type": "application/json; charset=utf-8",
        "host": "cvm.tencentcloudapi.com",
        "x-tc-action": "DescribeInstances",
    }
    canonical = canonical_request(
        method="POST",
        path="/",
        query="",
        headers=headers,
        signed_headers=("x-tc-action", "content-type", "host"),
        body=DOC_BODY,
    )
    assert "x-tc-action:describeinstances\n" in canonical
    assert (
        hashlib.sha256(canonical.encode()).hexdigest()
        == "7019a55be8395899b900fb5564e4200d984910f34794a27cb3fb7d10ff6a1e84"
    )
    auth = build_authorization(
        secret_id="AKID" + "*" * 32,
        secret_key="*" * 32,
        service="cvm",
        timestamp=DOC_TIMESTAMP,
        method="POST",
        path="/",
        query="",
        headers=headers,
        body=DOC_BODY,
        signed_headers=("content-type", "host", "x-tc-action"),
    )
    assert auth.signature == "10b1a37a7301a02ca19a647ad722d5e43b4b3cff309d421d85b46093f6ab6c4f"


def test_sms_vector_derived_from_the_sdk() -> None:
    """An SMS request signs to the value the SDK itself computes."""
    auth = build_authorization(
        secret_id=INTL_ID,
        secret_key=INTL_KEY,
        service="sms",
        timestamp=DOC_TIMESTAMP,
        method="POST",
        path="/",
        query="",
        headers={"content-type": "application/json", "host": "sms.tencentcloudapi.com"},
        body=b'{"SmsSdkAppId": "1400006666", "Limit": 100}',
    )
    assert auth.signature == "2e05f292053ef9563d28dee39cee4c715e2b1db75111cbe03f7e1f7ac71f0cd0"


def test_credential_date_is_utc_not_beijing() -> None:
    """At 00:30 Beijing time the scope still carries the previous UTC day."""
    auth = build_authorization(
        secret_id="id",
        secret_key="key",
        service="sms",
        timestamp=1700152200,  # 2023-11-17 00:30 +08
        method="POST",
        path="/",
        query="",
        headers={"content-type": "application/json", "host": "h"},
        body=b"{}",
    )
    assert auth.date == "2023-11-16"


def test_parse_authorization_round_trips() -> None:
    """What we render, we parse back to the same parts."""
    auth = build_authorization(
        secret_id="AKIDabc",
        secret_key="k",
        service="sms",
        timestamp=DOC_TIMESTAMP,
        method="POST",
        path="/",
        query="",
        headers={"content-type": "application/json", "host": "h"},
        body=b"{}",
    )
    assert parse_authorization(auth.render()) == auth


@pytest.mark.parametrize(
    "header",
    [
        "",
        "HMAC-SHA1 Credential=a/b/c/tc3_request, SignedHeaders=host, Signature=x",
        "TC3-HMAC-SHA256 Credential=a/b/c/tc3_request, SignedHeaders=host",
        "TC3-HMAC-SHA256 Credential=a/b/tc3_request, SignedHeaders=host, Signature=x",
        "TC3-HMAC-SHA256 Credential=a/b/c/other, SignedHeaders=host, Signature=x",
        "TC3-HMAC-SHA256 garbage",
    ],
)
def test_parse_authorization_rejects_malformed_headers(header: str) -> None:
    """A malformed header is a ValueError, never a crash or a silent pass."""
    with pytest.raises(ValueError, match=r"."):
        parse_authorization(header)


def _sdk_authorization(
    *,
    secret_id: str,
    secret_key: str,
    region: str,
    action: str,
    params: dict[str, Any],
    timestamp: int,
    host: str,
) -> tuple[str, bytes]:
    """Let the official SDK build and sign a request without sending it."""
    from unittest import mock  # only to freeze the SDK's clock, which it reads from time.time

    from tencentcloud.common import credential
    from tencentcloud.common.http.request import RequestInternal
    from tencentcloud.common.profile.client_profile import ClientProfile
    from tencentcloud.common.profile.http_profile import HttpProfile
    from tencentcloud.sms.v20210111 import sms_client

    profile = ClientProfile(httpProfile=HttpProfile(endpoint=host))
    client = sms_client.SmsClient(credential.Credential(secret_id, secret_key), region, profile)
    request = RequestInternal(host, "POST", "/")
    with mock.patch("time.time", return_value=float(timestamp)):
        client._build_req_with_tc3_signature(action, params, request)
    return request.header["Authorization"], request.data.encode("utf-8")


_printable = st.text(alphabet=string.ascii_letters + string.digits, min_size=1, max_size=40)


@settings(max_examples=150, deadline=None)
@given(
    secret_id=_printable,
    secret_key=_printable,
    region=st.sampled_from(["ap-guangzhou", "ap-beijing", "ap-singapore", "na-siliconvalley"]),
    action=st.sampled_from(
        [
            "PullSmsReplyStatus",
            "PullSmsSendStatus",
            "PullSmsSendStatusByPhoneNumber",
            "CallbackStatusStatistics",
            "ReportConversion",
        ]
    ),
    params=st.dictionaries(
        st.text(min_size=1, max_size=12),
        st.one_of(st.integers(), st.text(max_size=30), st.booleans(), st.none()),
        max_size=6,
    ),
    timestamp=st.integers(min_value=0, max_value=4_102_444_800),
)
def test_auth_header_matches_the_official_sdk(
    secret_id: str,
    secret_key: str,
    region: str,
    action: str,
    params: dict[str, Any],
    timestamp: int,
) -> None:
    """For any request, our httpx.Auth writes the Authorization header the SDK writes."""
    host = "sms.tencentcloudapi.com"
    expected, body = _sdk_authorization(
        secret_id=secret_id,
        secret_key=secret_key,
        region=region,
        action=action,
        params=params,
        timestamp=timestamp,
        host=host,
    )
    assert json.loads(body) == params
    request = httpx.Request(
        "POST",
        f"https://{host}/",
        content=body,
        headers={"Content-Type": "application/json", "X-TC-Action": action, "X-TC-Region": region},
    )
    auth = TC3Auth(
        secret_id=secret_id, secret_key=secret_key, service="sms", clock=lambda: float(timestamp)
    )
    signed = next(auth.auth_flow(request))
    assert signed.headers["Authorization"] == expected
    assert signed.headers["X-TC-Timestamp"] == str(timestamp)
