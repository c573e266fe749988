"""Webhook signatures: the Standard Webhooks spec vector, rotation, tolerance, tampering, hmac and token."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest
from multidict import CIMultiDict

from bridge.config import SourceConfig
from bridge.errors import SignatureInvalid
from bridge.secret import Secret
from bridge.sources import signatures

# The Standard Webhooks specification's test vector.
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TS = 1614265330
SPEC_BODY = b'{"test": 2432232314}'
SPEC_SIG = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
SPEC_NOW = datetime.fromtimestamp(SPEC_TS, UTC)
OTHER_SECRET = "whsec_" + base64.b64encode(b"another-key-of-24-bytes!").decode()


def spec_headers(signature: str = SPEC_SIG, **overrides: str) -> dict[str, str]:
    headers = {"webhook-id": SPEC_ID, "webhook-timestamp": str(SPEC_TS), "webhook-signature": signature}
    headers.update(overrides)
    return headers


def test_spec_vector_signs() -> None:
    assert signatures.sign_standard_webhooks(SPEC_SECRET, SPEC_ID, SPEC_TS, SPEC_BODY) == SPEC_SIG


def test_spec_vector_verifies_and_returns_the_webhook_id() -> None:
    got = signatures.verify_standard_webhooks([SPEC_SECRET], spec_headers(), SPEC_BODY, SPEC_NOW, 300)
    assert got == SPEC_ID


def test_header_names_are_case_insensitive_plain_dict_and_cimultidict() -> None:
    upper = {k.upper(): v for k, v in spec_headers().items()}
    assert signatures.verify_standard_webhooks([SPEC_SECRET], upper, SPEC_BODY, SPEC_NOW, 300) == SPEC_ID
    multi = CIMultiDict({"Webhook-Id": SPEC_ID, "Webhook-Timestamp": str(SPEC_TS), "Webhook-Signature": SPEC_SIG})
    assert signatures.verify_standard_webhooks([SPEC_SECRET], multi, SPEC_BODY, SPEC_NOW, 300) == SPEC_ID


def test_rotation_second_secret_matches() -> None:
    got = signatures.verify_standard_webhooks([OTHER_SECRET, SPEC_SECRET], spec_headers(), SPEC_BODY, SPEC_NOW, 300)
    assert got == SPEC_ID


def test_wrong_secret_alone_fails() -> None:
    with pytest.raises(SignatureInvalid, match="no signature matched"):
        signatures.verify_standard_webhooks([OTHER_SECRET], spec_headers(), SPEC_BODY, SPEC_NOW, 300)


def test_several_signatures_in_header_any_one_is_enough() -> None:
    bogus = "v1," + base64.b64encode(b"x" * 32).decode()
    header = f"v2,ignored-other-version {bogus} {SPEC_SIG}"
    got = signatures.verify_standard_webhooks([SPEC_SECRET], spec_headers(header), SPEC_BODY, SPEC_NOW, 300)
    assert got == SPEC_ID


def test_only_other_versions_is_refused() -> None:
    with pytest.raises(SignatureInvalid, match="no v1 signature"):
        signatures.verify_standard_webhooks([SPEC_SECRET], spec_headers("v1a," + SPEC_SIG[3:]), SPEC_BODY,
                                            SPEC_NOW, 300)


@pytest.mark.parametrize(("offset", "side"), [(301, "too old"), (-301, "in the future")])
def test_timestamp_outside_tolerance_either_direction(offset: int, side: str) -> None:
    now = SPEC_NOW + timedelta(seconds=offset)
    with pytest.raises(SignatureInvalid, match=rf"timestamp outside tolerance \(301 s > 300 s\): {side}"):
        signatures.verify_standard_webhooks([SPEC_SECRET], spec_headers(), SPEC_BODY, now, 300)


@pytest.mark.parametrize("offset", [300, -300])
def test_timestamp_at_the_tolerance_edge_passes(offset: int) -> None:
    now = SPEC_NOW + timedelta(seconds=offset)
    assert signatures.verify_standard_webhooks([SPEC_SECRET], spec_headers(), SPEC_BODY, now, 300) == SPEC_ID


def test_tampered_body_fails() -> None:
    with pytest.raises(SignatureInvalid, match="no signature matched"):
        signatures.verify_standard_webhooks([SPEC_SECRET], spec_headers(), b'{"test": 2432232315}', SPEC_NOW, 300)


def test_tampered_id_fails() -> None:
    with pytest.raises(SignatureInvalid, match="no signature matched"):
        signatures.verify_standard_webhooks([SPEC_SECRET], spec_headers(**{"webhook-id": "msg_other"}), SPEC_BODY,
                                            SPEC_NOW, 300)


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_missing_headers_are_named(missing: str) -> None:
    headers = spec_headers()
    del headers[missing]
    with pytest.raises(SignatureInvalid, match=f"missing {missing} header"):
        signatures.verify_standard_webhooks([SPEC_SECRET], headers, SPEC_BODY, SPEC_NOW, 300)


@pytest.mark.parametrize("stamp", ["1614265330.5", "-5", "abc", "١٦١٤٢٦٥٣٣٠"])
def test_non_integer_timestamp_refused(stamp: str) -> None:
    with pytest.raises(SignatureInvalid, match="whole seconds"):
        signatures.verify_standard_webhooks([SPEC_SECRET], spec_headers(**{"webhook-timestamp": stamp}), SPEC_BODY,
                                            SPEC_NOW, 300)


def test_non_ascii_signature_does_not_crash() -> None:
    with pytest.raises(SignatureInvalid, match="no signature matched"):
        signatures.verify_standard_webhooks([SPEC_SECRET], spec_headers("v1,签名"), SPEC_BODY, SPEC_NOW, 300)


@pytest.mark.parametrize("secret", ["MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_not*base64", "whsec_c2hvcnQ="])
def test_decode_whsec_refuses_bad_secrets_without_echoing_them(secret: str) -> None:
    with pytest.raises(ValueError) as info:
        signatures.decode_whsec(secret)
    assert secret not in str(info.value)


def test_failure_messages_never_contain_the_secret_or_expected_signature() -> None:
    with pytest.raises(SignatureInvalid) as info:
        signatures.verify_standard_webhooks([SPEC_SECRET], spec_headers("v1,AAAA"), SPEC_BODY, SPEC_NOW, 300)
    assert SPEC_SECRET[6:] not in str(info.value) and SPEC_SIG[3:] not in str(info.value)


# --- hmac-sha256 ------------------------------------------------------------------------------------------


def test_hmac_sign_known_value() -> None:
    # HMAC-SHA256("key", "The quick brown fox jumps over the lazy dog"), the textbook value.
    got = signatures.sign_hmac_sha256("key", b"The quick brown fox jumps over the lazy dog")
    assert got == "sha256=f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"


def test_hmac_verify_with_rotation_and_uppercase_hex() -> None:
    body = b'{"a": 1}'
    sig = signatures.sign_hmac_sha256("new", body)
    signatures.verify_hmac_sha256(["old", "new"], {"x-hub-signature-256": sig}, body)
    signatures.verify_hmac_sha256(["new"], {"X-Hub-Signature-256": "sha256=" + sig[7:].upper()}, body)


def test_hmac_tampered_body_and_wrong_secret() -> None:
    sig = signatures.sign_hmac_sha256("s", b"body")
    with pytest.raises(SignatureInvalid, match="no signature matched"):
        signatures.verify_hmac_sha256(["s"], {"X-Hub-Signature-256": sig}, b"body!")
    with pytest.raises(SignatureInvalid, match="no signature matched"):
        signatures.verify_hmac_sha256(["t"], {"X-Hub-Signature-256": sig}, b"body")


@pytest.mark.parametrize(("headers", "message"), [
    ({}, "missing X-Hub-Signature-256 header"),
    ({"X-Hub-Signature-256": "sha1=abcd"}, "malformed"),
    ({"X-Hub-Signature-256": "abcd"}, "malformed"),
])
def test_hmac_missing_or_malformed_header(headers: dict[str, str], message: str) -> None:
    with pytest.raises(SignatureInvalid, match=message):
        signatures.verify_hmac_sha256(["s"], headers, b"body")


# --- token --------------------------------------------------------------------------------------------------


def test_token_matches_any_secret() -> None:
    signatures.verify_token(["first", "second"], {"x-bridge-token": "second"})


def test_token_wrong_or_missing() -> None:
    with pytest.raises(SignatureInvalid, match="token did not match"):
        signatures.verify_token(["first"], {"X-Bridge-Token": "firs"})
    with pytest.raises(SignatureInvalid, match="missing X-Bridge-Token header"):
        signatures.verify_token(["first"], {"Authorization": "first"})


# --- per source: verify() and sign_headers() round trip ------------------------------------------------------


def source(signature: str, *secrets: str, tolerance: int = 300) -> SourceConfig:
    return SourceConfig(name="s", signature=signature, secrets=tuple(Secret(s) for s in secrets),
                        timestamp_tolerance_s=tolerance)


@pytest.mark.parametrize("src", [
    source("standard-webhooks", SPEC_SECRET, OTHER_SECRET),
    source("hmac-sha256", "k1", "k2"),
    source("token", "t1", "t2"),
    source("none"),
])
def test_sign_headers_then_verify_round_trip(src: SourceConfig) -> None:
    body = b'{"approval_id": "PO-1"}'
    headers = signatures.sign_headers(src, body, SPEC_NOW, msg_id="msg_1")
    got = signatures.verify(src, headers, body, SPEC_NOW + timedelta(seconds=10))
    assert got == ("msg_1" if src.signature == "standard-webhooks" else None)
    if src.signature in ("standard-webhooks", "hmac-sha256"):
        with pytest.raises(SignatureInvalid, match="no signature matched"):
            signatures.verify(src, headers, body + b" ", SPEC_NOW)
    if src.signature != "none":
        with pytest.raises(SignatureInvalid, match="missing"):
            signatures.verify(src, {}, body, SPEC_NOW)


def test_sign_headers_standard_webhooks_matches_spec_and_generates_ids() -> None:
    src = source("standard-webhooks", SPEC_SECRET)
    headers = signatures.sign_headers(src, SPEC_BODY, SPEC_NOW, msg_id=SPEC_ID)
    assert headers == spec_headers()
    first = signatures.sign_headers(src, SPEC_BODY, SPEC_NOW)["webhook-id"]
    second = signatures.sign_headers(src, SPEC_BODY, SPEC_NOW)["webhook-id"]
    assert first.startswith("msg_") and first != second


def test_verify_uses_the_source_tolerance() -> None:
    src = source("standard-webhooks", SPEC_SECRET, tolerance=5)
    with pytest.raises(SignatureInvalid, match=r"\(6 s > 5 s\)"):
        signatures.verify(src, spec_headers(), SPEC_BODY, SPEC_NOW + timedelta(seconds=6))


def test_none_passes_anything() -> None:
    assert signatures.verify(source("none"), {}, b"whatever", SPEC_NOW) is None


def test_native_scheme_is_not_handled_here() -> None:
    src = SourceConfig(name="n", signature="native", format="dingtalk")
    with pytest.raises(ValueError, match="not verified here"):
        signatures.verify(src, {}, b"", SPEC_NOW)
    with pytest.raises(ValueError, match="not signed here"):
        signatures.sign_headers(src, b"", SPEC_NOW)


# --- compatibility: unpadded secrets and Svix header names (issue 14 part 4) -------------------------------


def _independent_signature(key: bytes, msg_id: str, ts: int, body: bytes) -> str:
    """Computed here from the spec's definition, not with bridge's signer."""
    import hashlib
    import hmac

    return "v1," + base64.b64encode(hmac.new(key, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()).decode()


def test_a_secret_without_base64_padding_verifies() -> None:
    key = b"twenty-three-byte-key!!"  # base64 ends in "="
    padded = "whsec_" + base64.b64encode(key).decode()
    assert padded.endswith("=")
    unpadded = padded.rstrip("=")
    headers = spec_headers(_independent_signature(key, SPEC_ID, SPEC_TS, SPEC_BODY))
    assert signatures.verify_standard_webhooks([unpadded], headers, SPEC_BODY, SPEC_NOW, 300) == SPEC_ID
    assert signatures.decode_whsec(unpadded) == signatures.decode_whsec(padded) == key


def test_svix_header_names_are_aliases_of_the_webhook_ones() -> None:
    key = base64.b64decode(SPEC_SECRET.removeprefix("whsec_"))
    headers = CIMultiDict({"svix-id": "msg_svix1", "svix-timestamp": str(SPEC_TS),
                           "svix-signature": _independent_signature(key, "msg_svix1", SPEC_TS, SPEC_BODY)})
    assert signatures.verify_standard_webhooks([SPEC_SECRET], headers, SPEC_BODY, SPEC_NOW, 300) == "msg_svix1"
    tampered = CIMultiDict(headers)
    tampered["svix-id"] = "msg_other"
    with pytest.raises(SignatureInvalid):
        signatures.verify_standard_webhooks([SPEC_SECRET], tampered, SPEC_BODY, SPEC_NOW, 300)
    del tampered["svix-signature"]
    with pytest.raises(SignatureInvalid, match="missing webhook-signature"):
        signatures.verify_standard_webhooks([SPEC_SECRET], tampered, SPEC_BODY, SPEC_NOW, 300)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"webhook-id": "msg_1"}, "msg_1"),
        ({"Svix-Id": " msg_2 "}, "msg_2"),
        ({"webhook-id": "msg_1", "svix-id": "msg_2"}, "msg_1"),
        ({"webhook-id": "  ", "svix-id": "msg_2"}, "msg_2"),
        ({"webhook-id": ""}, None),
        ({}, None),
    ],
)
def test_delivery_id_reads_webhook_id_then_its_svix_alias(headers: dict[str, str], expected: str | None) -> None:
    assert signatures.delivery_id(headers) == expected
    assert signatures.delivery_id(CIMultiDict(headers)) == expected
