"""IAM tokens for the cloud client: authorized keys, the metadata service, static tokens, and a registry
that shares one cached token source per distinct credential."""

from desktop_image_operator.cloud.credentials.keys import (
    IAM_TOKEN_AUDIENCE,
    AuthorizedKey,
    make_jwt,
    parse_authorized_key,
)
from desktop_image_operator.cloud.credentials.registry import TokenSourceRegistry
from desktop_image_operator.cloud.credentials.sources import (
    AuthorizedKeyTokenSource,
    CachingTokenSource,
    MetadataTokenSource,
    StaticTokenSource,
    TokenSource,
)
from desktop_image_operator.cloud.credentials.token_service import IssuedToken, TokenService

__all__ = [
    "IAM_TOKEN_AUDIENCE",
    "AuthorizedKey",
    "AuthorizedKeyTokenSource",
    "CachingTokenSource",
    "IssuedToken",
    "MetadataTokenSource",
    "StaticTokenSource",
    "TokenService",
    "TokenSource",
    "TokenSourceRegistry",
    "make_jwt",
    "parse_authorized_key",
]
