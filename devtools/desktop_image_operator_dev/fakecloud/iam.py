"""Service accounts, their authorized keys, the PS256 JWT exchange, and the IAM tokens it issues."""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Callable

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from desktop_image_operator_dev.fakecloud import ids
from desktop_image_operator_dev.fakecloud.clock import Clock, rfc3339
from desktop_image_operator_dev.fakecloud.codes import ApiError, StatusCode

AUDIENCE = "https://iam.api.cloud.yandex.net/iam/v1/tokens"
MAX_JWT_LIFETIME_SECONDS = 3600
KEY_ID_LINE = "PLEASE DO NOT REMOVE THIS LINE! Yandex.Cloud SA Key ID "
# Forgive small clock differences between the client and the fake.
_CLOCK_SKEW_SECONDS = 300
_PRUNE_EVERY = 10_000


@dataclasses.dataclass
class ServiceAccount:
    id: str
    name: str
    key_ids: list[str] = dataclasses.field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        return {"id": self.id, "name": self.name, "keyIds": list(self.key_ids)}


@dataclasses.dataclass
class AuthorizedKey:
    id: str
    service_account_id: str
    created_at: float
    public_key: rsa.RSAPublicKey
    public_pem: str
    private_pem: str

    def to_json(self) -> dict[str, str]:
        """The file `yc iam key create` writes."""
        return {
            "id": self.id,
            "service_account_id": self.service_account_id,
            "created_at": rfc3339(self.created_at),
            "key_algorithm": "RSA_2048",
            "public_key": self.public_pem,
            "private_key": f"{KEY_ID_LINE}{self.id}\n{self.private_pem}",
        }


@dataclasses.dataclass(frozen=True)
class IssuedToken:
    service_account_id: str
    expires_at: float


def _unauthenticated(message: str) -> ApiError:
    return ApiError(StatusCode.UNAUTHENTICATED, message)


class Iam:
    """Everything about identities; kept across `/fake/reset` so clients' keys and tokens stay valid."""

    def __init__(self, clock: Clock, token_ttl: Callable[[], float]) -> None:
        self._clock = clock
        self._token_ttl = token_ttl
        self.accounts: dict[str, ServiceAccount] = {}
        self.keys: dict[str, AuthorizedKey] = {}
        self._tokens: dict[str, IssuedToken] = {}
        self._issued = 0

    def create_service_account(self, name: str, account_id: str | None = None) -> ServiceAccount:
        account = ServiceAccount(id=account_id or ids.new_id("aje"), name=name)
        if account.id in self.accounts:
            raise ValueError(f"service account {account.id} already exists")
        self.accounts[account.id] = account
        return account

    def create_key(self, account_id: str, private_key: rsa.RSAPrivateKey | None = None) -> AuthorizedKey:
        account = self.accounts[account_id]
        private_key = private_key or rsa.generate_private_key(public_exponent=65537, key_size=2048)
        public_key = private_key.public_key()
        key = AuthorizedKey(
            id=ids.new_id("aje"),
            service_account_id=account.id,
            created_at=self._clock(),
            public_key=public_key,
            public_pem=public_key.public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            ).decode(),
            private_pem=private_key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ).decode(),
        )
        self.keys[key.id] = key
        account.key_ids.append(key.id)
        return key

    def exchange_jwt(self, token: str) -> tuple[str, IssuedToken]:
        """Verify a service account's JWT as IAM does and issue an IAM token for that account."""
        if not token:
            raise ApiError(StatusCode.INVALID_ARGUMENT, "jwt: field is required")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise _unauthenticated(f"JWT is malformed: {exc}") from None
        algorithm = header.get("alg")
        if algorithm != "PS256":
            raise _unauthenticated(f"JWT algorithm {algorithm!r} is not supported: sign the JWT with PS256")
        if header.get("typ") != "JWT":
            raise _unauthenticated(f"JWT header typ must be 'JWT', got {header.get('typ')!r}")
        key_id = header.get("kid")
        if not isinstance(key_id, str) or not key_id:
            raise _unauthenticated("JWT header has no kid: set it to the authorized key id")
        key = self.keys.get(key_id)
        if key is None:
            raise _unauthenticated(f"authorized key {key_id} not found")
        try:
            claims = jwt.decode(
                token,
                key.public_key,
                algorithms=["PS256"],
                options={"verify_exp": False, "verify_iat": False, "verify_nbf": False, "verify_aud": False},
            )
        except jwt.InvalidSignatureError:
            raise _unauthenticated(f"JWT signature does not verify with authorized key {key_id}") from None
        except jwt.PyJWTError as exc:
            raise _unauthenticated(f"JWT is invalid: {exc}") from None
        self._check_claims(claims, key)
        return self.issue_token(key.service_account_id)

    def _check_claims(self, claims: dict[str, object], key: AuthorizedKey) -> None:
        if claims.get("iss") != key.service_account_id:
            raise _unauthenticated(
                f"JWT iss must be {key.service_account_id}, the service account that key {key.id} belongs to"
            )
        audience = claims.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        if AUDIENCE not in audiences:
            raise _unauthenticated(f"JWT aud must be {AUDIENCE}")
        issued_at, expires = claims.get("iat"), claims.get("exp")
        if not isinstance(issued_at, int | float) or not isinstance(expires, int | float):
            raise _unauthenticated("JWT must carry numeric iat and exp claims")
        if expires - issued_at > MAX_JWT_LIFETIME_SECONDS:
            raise _unauthenticated(
                f"JWT lifetime exp - iat must be at most {MAX_JWT_LIFETIME_SECONDS} seconds"
            )
        if expires <= issued_at:
            raise _unauthenticated("JWT exp must be after iat")
        now = self._clock()
        if expires <= now:
            raise _unauthenticated("JWT has expired")
        if issued_at > now + _CLOCK_SKEW_SECONDS:
            raise _unauthenticated("JWT iat is in the future")

    def issue_token(self, account_id: str, ttl_seconds: float | None = None) -> tuple[str, IssuedToken]:
        if account_id not in self.accounts:
            raise ApiError(StatusCode.NOT_FOUND, f"service account {account_id} not found")
        self._issued += 1
        if self._issued % _PRUNE_EVERY == 0:
            self._prune()
        ttl = self._token_ttl() if ttl_seconds is None else ttl_seconds
        token = "t1." + secrets.token_urlsafe(64)
        issued = IssuedToken(service_account_id=account_id, expires_at=self._clock() + ttl)
        self._tokens[token] = issued
        return token, issued

    def principal(self, authorization: str | None) -> tuple[str | None, str]:
        """The service account behind an `Authorization` header, or None and the reason it is refused."""
        if not authorization:
            return None, "Authorization header is missing: send 'Authorization: Bearer <IAM token>'"
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None, "Authorization header must be 'Bearer <IAM token>'"
        issued = self._tokens.get(token.strip())
        if issued is None:
            return None, "The IAM token is invalid"
        if issued.expires_at <= self._clock():
            return None, "The IAM token has expired"
        return issued.service_account_id, ""

    def _prune(self) -> None:
        now = self._clock()
        self._tokens = {token: issued for token, issued in self._tokens.items() if issued.expires_at > now}
