"""Ops page users: password hashes, and who may log in.

A hash is `scrypt$<n>$<r>$<p>$<salt>$<key>` (salt and key in base64url), made
by `social-queue hash-password`; it holds no `:` or `,`, so hashes can sit in
`OPS_USERS="ana:<hash>,bob:<hash>"`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from app.exceptions import ConfigurationError

# RFC 7914's interactive-login parameters: ~50 ms and 16 MiB per check.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
USER_NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
OPS_PASSWORD_USER = "ops"


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """A new salted scrypt hash of `password`."""
    salt = salt or os.urandom(16)
    key = _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    return "$".join(
        ["scrypt", str(SCRYPT_N), str(SCRYPT_R), str(SCRYPT_P), _b64(salt), _b64(key)]
    )


def verify_password(password: str, encoded: str) -> bool:
    """Whether `password` matches `encoded`; False for a malformed hash."""
    try:
        scheme, n, r, p, salt, key = encoded.split("$")
        if scheme != "scrypt":
            return False
        expected = _unb64(key)
        actual = _scrypt(password, _unb64(salt), int(n), int(r), int(p))
    except ValueError:
        return False
    return hmac.compare_digest(actual, expected)


@dataclass(frozen=True)
class Users:
    """Who may log in to the ops page: user name to password hash.

    `password` is the single OPS_PASSWORD for user `ops`, kept as given and
    compared in constant time.
    """

    hashes: Mapping[str, str] = field(default_factory=dict, repr=False)
    password: str | None = field(default=None, repr=False)

    def __bool__(self) -> bool:
        return bool(self.hashes or self.password)

    def check(self, user: str, password: str) -> bool:
        """Whether the pair is valid. Unknown users cost one scrypt too, so the
        answer's timing does not say which names exist."""
        if self.password is not None and user == OPS_PASSWORD_USER:
            return hmac.compare_digest(
                hashlib.sha256(password.encode()).digest(),
                hashlib.sha256(self.password.encode()).digest(),
            )
        encoded = self.hashes.get(user)
        if encoded is None:
            verify_password(password, _DUMMY_HASH)
            return False
        return verify_password(password, encoded)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Users:
        """OPS_USERS (`name:hash,...`) and/or OPS_PASSWORD (user `ops`)."""
        hashes: dict[str, str] = {}
        for entry in env.get("OPS_USERS", "").split(","):
            entry = entry.strip()
            if not entry:
                continue
            name, sep, encoded = entry.partition(":")
            if not (sep and USER_NAME.match(name) and encoded.startswith("scrypt$")):
                raise ConfigurationError(
                    f"OPS_USERS entry {name!r} is not `name:<hash>`; make the hash "
                    "with `social-queue hash-password`"
                )
            hashes[name] = encoded
        password = env.get("OPS_PASSWORD", "") or None
        return cls(hashes, password)


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        password.encode(), salt=salt, n=n, r=r, p=p, maxmem=64 * 1024 * 1024, dklen=32
    )


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


_DUMMY_HASH = hash_password("not a password", salt=b"0" * 16)
