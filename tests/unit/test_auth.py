import hashlib
import hmac

import pytest

from relay.auth import Authenticator
from relay.outcomes import AuthFailure

BODY = b'{"object":"whatsapp_business_account","entry":[]}'


def sign(secret: str, body: bytes = BODY) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@pytest.fixture
def auth() -> Authenticator:
    return Authenticator(["old-token", "new-token"], ["secret-a", "secret-b"])


def test_any_configured_token_is_valid_and_reported_by_index(auth: Authenticator) -> None:
    assert auth.check_bearer(["Bearer old-token"]).credentials == ("bearer:0",)
    assert auth.check_bearer(["bearer new-token"]).credentials == ("bearer:1",)


@pytest.mark.parametrize(
    ("header", "failure"),
    [
        ([], AuthFailure.MISSING_CREDENTIALS),
        ("", AuthFailure.MALFORMED_HEADER),
        # The right token twice, or right and wrong: which one counts would be ambiguous.
        (["Bearer old-token", "Bearer old-token"], AuthFailure.MALFORMED_HEADER),
        (["Bearer old-token", "Bearer nope"], AuthFailure.MALFORMED_HEADER),
        ("Basic b2xkLXRva2Vu", AuthFailure.MALFORMED_HEADER),
        ("Bearer", AuthFailure.MALFORMED_HEADER),
        ("Bearer a b", AuthFailure.MALFORMED_HEADER),
        ("Bearer old-token-x", AuthFailure.INVALID_TOKEN),
        ("Bearer OLD-TOKEN", AuthFailure.INVALID_TOKEN),
        # aiohttp hands over non-ASCII header bytes as surrogate escapes; never a crash
        ("Bearer t\udcc3\udcb6ken", AuthFailure.INVALID_TOKEN),
        ("Bearer tökén", AuthFailure.INVALID_TOKEN),
    ],
)
def test_bad_bearer_headers_fail_without_raising(
    auth: Authenticator, header: str | list[str], failure: AuthFailure
) -> None:
    result = auth.check_bearer([header] if isinstance(header, str) else header)
    assert not result.ok
    assert result.failure is failure


def test_signature_matches_any_secret(auth: Authenticator) -> None:
    assert auth.check_signature(sign("secret-a"), BODY).credentials == ("app_secret:0",)
    assert auth.check_signature(sign("secret-b").upper().replace("SHA256=", "sha256="), BODY).ok


@pytest.mark.parametrize(
    ("header", "failure"),
    [
        (None, AuthFailure.MISSING_SIGNATURE),
        ("md5=abc", AuthFailure.MALFORMED_HEADER),
        (sign("secret-c"), AuthFailure.INVALID_SIGNATURE),
        (sign("secret-a", BODY + b" "), AuthFailure.INVALID_SIGNATURE),
        ("sha256=\udcff", AuthFailure.INVALID_SIGNATURE),
    ],
)
def test_bad_signatures_fail(auth: Authenticator, header: str | None, failure: AuthFailure) -> None:
    assert auth.check_signature(header, BODY).failure is failure
