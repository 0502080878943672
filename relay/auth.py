"""Who may post: the gateway's bearer secret and Meta's `X-Hub-Signature-256`; who may answer
Meta's verification handshake: its verify token.

Every comparison is `hmac.compare_digest` on bytes (on a non-ASCII `str` it raises, and a
sender controls the header). Every configured credential is tried, matched or not, so timing
does not tell which one came close. When both kinds are configured a request needs both.

An `Authenticator` never changes: a credential reload (relay.credentials) builds a new one, and
the handler reads its reference once per request, so a request sees one set of credentials.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from typing import NamedTuple

from relay.config import AuthConfig
from relay.outcomes import AuthFailure

SIGNATURE_PREFIX = b"sha256="


class AuthResult(NamedTuple):
    failure: AuthFailure | None = None
    credentials: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.failure is None


def _header_bytes(value: str) -> bytes:
    # aiohttp decodes header bytes as UTF-8 with surrogateescape; this gets the wire bytes
    # back, so any byte a client sends compares (and fails) instead of raising.
    return value.encode("utf-8", "surrogateescape")


def _first_match(candidate: bytes, secrets: tuple[bytes, ...]) -> int:
    match = -1
    for index, secret in enumerate(secrets):
        if hmac.compare_digest(candidate, secret) and match < 0:
            match = index
    return match


class Authenticator:
    def __init__(
        self, bearer_tokens: list[str], app_secrets: list[str], verify_token: str | None = None
    ) -> None:
        self._tokens = tuple(token.encode("ascii") for token in bearer_tokens)
        self._secrets = tuple(secret.encode("ascii") for secret in app_secrets)
        self._verify_token = _header_bytes(verify_token) if verify_token else None
        # The `credential` label of the success counter: which configured entry matched, by
        # position, never the credential itself.
        self._token_labels = tuple(f"bearer:{i}" for i in range(len(self._tokens)))
        self._secret_labels = tuple(f"app_secret:{i}" for i in range(len(self._secrets)))

    @classmethod
    def of(cls, auth: AuthConfig) -> Authenticator:
        return cls(auth.bearer_tokens, auth.app_secrets, auth.verify_token)

    @property
    def labels(self) -> tuple[str, ...]:
        """Every credential label this authenticator can report (`bearer:N`, `app_secret:N`)."""
        return self._token_labels + self._secret_labels

    @property
    def needs_bearer(self) -> bool:
        return bool(self._tokens)

    @property
    def needs_signature(self) -> bool:
        return bool(self._secrets)

    def check_bearer(self, authorization: Sequence[str]) -> AuthResult:
        """Check `Authorization: Bearer <token>` (every value the request carried); before the
        body is read. More than one value is malformed: which would count is ambiguous."""
        if not authorization:
            return AuthResult(AuthFailure.MISSING_CREDENTIALS)
        if len(authorization) > 1:
            return AuthResult(AuthFailure.MALFORMED_HEADER)
        scheme, _, token = _header_bytes(authorization[0]).strip().partition(b" ")
        token = token.strip()
        if scheme.lower() != b"bearer" or not token or b" " in token:
            return AuthResult(AuthFailure.MALFORMED_HEADER)
        index = _first_match(token, self._tokens)
        if index < 0:
            return AuthResult(AuthFailure.INVALID_TOKEN)
        return AuthResult(credentials=(self._token_labels[index],))

    def check_signature(self, signature: str | None, body: bytes) -> AuthResult:
        """Check `X-Hub-Signature-256: sha256=<hex HMAC of the raw body>`."""
        if signature is None:
            return AuthResult(AuthFailure.MISSING_SIGNATURE)
        raw = _header_bytes(signature).strip()
        if not raw.startswith(SIGNATURE_PREFIX):
            return AuthResult(AuthFailure.MALFORMED_HEADER)
        given = raw[len(SIGNATURE_PREFIX) :].lower()
        expected = tuple(
            hmac.new(secret, body, hashlib.sha256).hexdigest().encode() for secret in self._secrets
        )
        index = _first_match(given, expected)
        if index < 0:
            return AuthResult(AuthFailure.INVALID_SIGNATURE)
        return AuthResult(credentials=(self._secret_labels[index],))

    def check_verify_token(self, given: str) -> bool:
        """Meta's GET handshake: `hub.verify_token` equals the configured verify token."""
        if self._verify_token is None:
            return False
        return hmac.compare_digest(_header_bytes(given), self._verify_token)
