"""Who is calling: `Authorization: Bearer <id>.<secret>` (the raw key, what every SDK sends by
default) or the SDKs' JWT form (HS256 signed with the secret; `exp` and `timestamp` in
milliseconds). Failures are 401 with the Z.AI codes 1000-1004."""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from dataclasses import dataclass

from .errors import AUTH_FAILED, INVALID_TOKEN, NO_AUTH, TOKEN_EXPIRED, TOKEN_VERIFY, APIError
from .store import Store, derive_secret, sha256


@dataclass(frozen=True)
class Caller:
    key_id: str | None  # None when the server runs without keys
    max_concurrency: int | None = None
    rpm: int | None = None


def _b64url(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


class Authenticator:
    def __init__(self, store: Store, secret_key: bytes | None, extra_keys: list[str] = ()):
        self.store, self.secret_key = store, secret_key
        self.extra: dict[str, str] = {}  # key id -> secret, for --api-key keys (this run only)
        for key in extra_keys:
            key_id, sep, secret = key.partition(".")
            if not sep or not key_id or not secret or "." in secret:
                raise ValueError("an API key has the form <id>.<secret>")
            self.extra[key_id] = secret

    def open(self) -> bool:
        """True when there is no key at all: the server then serves everyone (on loopback only)."""
        return not self.extra and not self.store.has_active_keys()

    def authenticate(self, authorization: str | None) -> Caller:
        if self.open():
            return Caller(None)
        scheme, _, token = (authorization or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise APIError(NO_AUTH, "Authorization header missing: send 'Authorization: Bearer <API key>'")
        if token.count(".") == 2:
            return self._jwt(token)
        if token.count(".") != 1:
            raise APIError(INVALID_TOKEN, "invalid API key format: expected <id>.<secret>")
        key_id, secret = token.split(".")
        if key_id in self.extra:
            if hmac.compare_digest(self.extra[key_id], secret):
                return Caller(key_id)
            raise APIError(AUTH_FAILED, "authentication failed: wrong API key")
        found = self.store.active_key(key_id)
        if found is None or not hmac.compare_digest(found[1], sha256(secret)):
            raise APIError(AUTH_FAILED, "authentication failed: unknown or revoked API key")
        return Caller(key_id, found[0].max_concurrency, found[0].rpm)

    def _jwt(self, token: str) -> Caller:
        head, body, signature = token.split(".")
        try:
            header, claims = json.loads(_b64url(head)), json.loads(_b64url(body))
            given = _b64url(signature)
            key_id = claims["api_key"]
            expires = float(claims["exp"])
        except (ValueError, KeyError, TypeError, binascii.Error):
            raise APIError(INVALID_TOKEN, "invalid token: not a JWT with api_key and exp claims") from None
        if not isinstance(header, dict) or header.get("alg") != "HS256" or not isinstance(key_id, str):
            raise APIError(INVALID_TOKEN, "invalid token: only HS256 JWTs naming an api_key are accepted")
        caller = Caller(key_id)
        secret = self.extra.get(key_id)
        if secret is None:
            found = self.store.active_key(key_id)
            if found is None or self.secret_key is None:
                raise APIError(AUTH_FAILED, "authentication failed: unknown or revoked API key")
            secret = derive_secret(self.secret_key, key_id)
            if not hmac.compare_digest(found[1], sha256(secret)):
                raise APIError(AUTH_FAILED, "authentication failed: the key was not made with this server's secret")
            caller = Caller(key_id, found[0].max_concurrency, found[0].rpm)
        expected = hmac.new(secret.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
        if not hmac.compare_digest(expected, given):
            raise APIError(TOKEN_VERIFY, "token verification failed: bad signature")
        if expires <= time.time() * 1000:  # milliseconds, as the SDKs write it
            raise APIError(TOKEN_EXPIRED, "token expired")
        return caller
