import pytest

from relay.auth import Authenticator
from relay.outcomes import AuthFailure
from tests.raw_http import signature

BODY = b'{"object":"whatsapp_business_account","entry":[]}'


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
    assert auth.check_signature(signature(BODY, "secret-a"), BODY).credentials == ("app_secret:0",)
    upper_hex = signature(BODY, "secret-b").upper().replace("SHA256=", "sha256=")
    assert auth.check_signature(upper_hex, BODY).ok


@pytest.mark.parametrize(
    ("header", "failure"),
    [
        (None, AuthFailure.MISSING_SIGNATURE),
        ("md5=abc", AuthFailure.MALFORMED_HEADER),
        (signature(BODY, "secret-c"), AuthFailure.INVALID_SIGNATURE),
        (signature(BODY + b" ", "secret-a"), AuthFailure.INVALID_SIGNATURE),
        ("sha256=\udcff", AuthFailure.INVALID_SIGNATURE),
    ],
)
def test_bad_signatures_fail(auth: Authenticator, header: str | None, failure: AuthFailure) -> None:
    assert auth.check_signature(header, BODY).failure is failure
