"""List ordering (`orderBy`) and opaque page tokens that stay correct when images come and go."""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
from collections.abc import Callable, Sequence

from desktop_image_operator_dev.fakecloud.codes import ApiError, StatusCode
from desktop_image_operator_dev.fakecloud.model import Image

DEFAULT_PAGE_SIZE = 100

SortKey = tuple[str | float | int, str]

# orderBy field (either spelling) -> the key it sorts by; the id breaks ties.
_ORDER_FIELDS: dict[str, Callable[[Image], str | float | int]] = {
    "id": lambda image: image.id,
    "name": lambda image: image.name,
    "createdAt": lambda image: image.created_at,
    "created_at": lambda image: image.created_at,
    "status": lambda image: image.status,
}


@dataclasses.dataclass(frozen=True)
class Ordering:
    field: str
    descending: bool

    def key(self, image: Image) -> SortKey:
        return (_ORDER_FIELDS[self.field](image), image.id)


def parse_order_by(text: str) -> Ordering:
    words = text.split()
    if not words:
        return Ordering("id", descending=False)
    if (
        len(words) > 2
        or words[0] not in _ORDER_FIELDS
        or (len(words) == 2 and words[1].lower() not in ("asc", "desc"))
    ):
        raise ApiError(
            StatusCode.INVALID_ARGUMENT,
            f"order_by: expected name, createdAt or status, optionally followed by asc or desc; got {text!r}",
        )
    return Ordering(words[0], descending=len(words) == 2 and words[1].lower() == "desc")


def _encode_token(key: SortKey) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(key)).encode()).decode().rstrip("=")


def _decode_token(token: str) -> SortKey:
    try:
        decoded = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (binascii.Error, ValueError):
        decoded = None
    if (
        not isinstance(decoded, list)
        or len(decoded) != 2
        or not isinstance(decoded[0], str | int | float)
        or not isinstance(decoded[1], str)
    ):
        raise ApiError(StatusCode.INVALID_ARGUMENT, "page_token: invalid page token")
    return (decoded[0], decoded[1])


def page(
    images: Sequence[Image], ordering: Ordering, page_size: int, page_token: str
) -> tuple[list[Image], str]:
    """One page of `images` in `ordering`, and the token of the next page ("" on the last one)."""
    size = page_size or DEFAULT_PAGE_SIZE
    ordered = sorted(images, key=ordering.key, reverse=ordering.descending)
    start = 0
    if page_token:
        after = _decode_token(page_token)
        try:
            start = next(
                index
                for index, image in enumerate(ordered)
                if (ordering.key(image) < after if ordering.descending else ordering.key(image) > after)
            )
        except TypeError:
            raise ApiError(
                StatusCode.INVALID_ARGUMENT, "page_token: does not belong to this ordering"
            ) from None
        except StopIteration:
            start = len(ordered)
    chunk = ordered[start : start + size]
    more = start + size < len(ordered)
    return chunk, _encode_token(ordering.key(chunk[-1])) if more and chunk else ""
