"""The cloud client layer: Yandex Cloud Desktop images over REST or gRPC, behind one small interface.

Typical use::

    async with open_cloud(CloudSettings()) as session:
        client = session.client(session.token_sources.from_key(key_json))
        operation = await client.copy(CopyRequest(desktop_id=..., name=...), idempotency_key=key)
        operation = await client.follow_operation(operation.id)
"""

from desktop_image_operator.cloud.credentials import (
    AuthorizedKey,
    CachingTokenSource,
    TokenSource,
    TokenSourceRegistry,
    parse_authorized_key,
)
from desktop_image_operator.cloud.errors import RETRYABLE_CODES, CloudError, Code, CredentialsError
from desktop_image_operator.cloud.session import CloudSession, open_cloud
from desktop_image_operator.cloud.settings import CloudSettings
from desktop_image_operator.cloud.types import (
    UPDATABLE_FIELDS,
    CloudImage,
    CloudOperation,
    CopyRequest,
    DesktopImageClient,
    ImageStatus,
)

__all__ = [
    "RETRYABLE_CODES",
    "UPDATABLE_FIELDS",
    "AuthorizedKey",
    "CachingTokenSource",
    "CloudError",
    "CloudImage",
    "CloudOperation",
    "CloudSession",
    "CloudSettings",
    "Code",
    "CopyRequest",
    "CredentialsError",
    "DesktopImageClient",
    "ImageStatus",
    "TokenSource",
    "TokenSourceRegistry",
    "open_cloud",
    "parse_authorized_key",
]
