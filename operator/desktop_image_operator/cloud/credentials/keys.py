"""Service-account authorized keys (`yc iam key create` JSON) and the PS256 JWT that IAM exchanges.

The JWT and cryptography libraries are imported when a key is first loaded, not with this module: they
cost about 9 MB of resident memory, which an operator that gets its tokens from the metadata service or
as static tokens never needs.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from desktop_image_operator.cloud.errors import Code, CredentialsError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import rsa

IAM_TOKEN_AUDIENCE = "https://iam.api.cloud.yandex.net/iam/v1/tokens"
# IAM refuses a JWT living longer than an hour; it is exchanged at once, so this is only a ceiling.
JWT_LIFETIME_SECONDS = 3600
_PEM_BEGIN = "-----BEGIN"


@dataclass(frozen=True)
class AuthorizedKey:
    """The parts of an authorized key that matter. The private key is never in repr or str."""

    key_id: str
    service_account_id: str
    private_key_pem: str = field(repr=False)
    key_algorithm: str = ""

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the key material: tells two keys with the same id apart, reveals nothing."""
        return hashlib.sha256(self.private_key_pem.encode()).hexdigest()

    def load_private_key(self) -> rsa.RSAPrivateKey:
        from cryptography.exceptions import UnsupportedAlgorithm
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        try:
            key = serialization.load_pem_private_key(self.private_key_pem.encode(), password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            # Not chained: the library's message could quote parts of the key.
            raise CredentialsError(
                f"authorized key {self.key_id}: private_key is not a readable PEM private key",
                code=Code.INVALID_ARGUMENT,
            ) from None
        if not isinstance(key, rsa.RSAPrivateKey):
            raise CredentialsError(
                f"authorized key {self.key_id}: private_key is not an RSA key", code=Code.INVALID_ARGUMENT
            )
        return key


def _strip_preamble(private_key: str) -> str:
    """Drop anything before the PEM block, i.e. the `PLEASE DO NOT REMOVE THIS LINE! ...` line yc adds."""
    start = private_key.find(_PEM_BEGIN)
    return private_key[start:].strip() + "\n" if start >= 0 else private_key


def parse_authorized_key(data: str | bytes | Mapping[str, object]) -> AuthorizedKey:
    """Read an authorized key from its JSON text or decoded object.

    Accepts the `yc` spelling (`service_account_id`, `private_key`) and the API's camelCase. Errors name
    the missing field but never echo the input.
    """
    if isinstance(data, bytes | str):
        try:
            decoded = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise CredentialsError("authorized key is not valid JSON", code=Code.INVALID_ARGUMENT) from None
    else:
        decoded = data
    if not isinstance(decoded, Mapping):
        raise CredentialsError("authorized key is not a JSON object", code=Code.INVALID_ARGUMENT)

    def text(*names: str) -> str:
        for name in names:
            value = decoded.get(name)
            if isinstance(value, str) and value.strip():
                return value.strip()
        raise CredentialsError(f"authorized key lacks {names[0]!r}", code=Code.INVALID_ARGUMENT)

    key_id = text("id", "key_id", "keyId")
    service_account_id = text("service_account_id", "serviceAccountId")
    private_key = _strip_preamble(text("private_key", "privateKey"))
    if not private_key.startswith(_PEM_BEGIN):
        raise CredentialsError(
            f"authorized key {key_id}: private_key holds no PEM block", code=Code.INVALID_ARGUMENT
        )
    algorithm = decoded.get("key_algorithm", decoded.get("keyAlgorithm", ""))
    return AuthorizedKey(
        key_id=key_id,
        service_account_id=service_account_id,
        private_key_pem=private_key,
        key_algorithm=algorithm if isinstance(algorithm, str) else "",
    )


def make_jwt(
    key: AuthorizedKey,
    private_key: rsa.RSAPrivateKey,
    *,
    now: float,
    audience: str = IAM_TOKEN_AUDIENCE,
    lifetime: int = JWT_LIFETIME_SECONDS,
) -> str:
    """The signed PS256 JWT IAM exchanges for a token (PSS salt length = hash length, as IAM requires)."""
    import jwt

    issued_at = int(now)
    claims = {
        "iss": key.service_account_id,
        "aud": audience,
        "iat": issued_at,
        "exp": issued_at + min(lifetime, JWT_LIFETIME_SECONDS),
    }
    return jwt.encode(claims, private_key, algorithm="PS256", headers={"kid": key.key_id, "typ": "JWT"})
