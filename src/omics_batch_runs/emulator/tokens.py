"""Pagination tokens: opaque to clients, and refused when altered or reused elsewhere."""

from __future__ import annotations

import base64
import hashlib
import hmac


class TokenError(ValueError):
    """The token was not issued for this listing."""


class TokenSigner:
    """Signs a position together with the listing it belongs to (batch and filter)."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def _mac(self, scope: str, position: int) -> bytes:
        msg = f"{scope}\x00{position}".encode()
        return hmac.new(self._secret, msg, hashlib.sha256).digest()[:18]

    def issue(self, scope: str, position: int) -> str:
        raw = position.to_bytes(8, "big") + self._mac(scope, position)
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    def position(self, scope: str, token: str) -> int:
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except ValueError:
            raise TokenError(token) from None
        if len(raw) != 26:
            raise TokenError(token)
        position = int.from_bytes(raw[:8], "big")
        if not hmac.compare_digest(raw[8:], self._mac(scope, position)):
            raise TokenError(token)
        return position
