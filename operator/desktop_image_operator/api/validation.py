"""Limits and patterns of the DesktopImage fields, shared by the pydantic models and the CRD.

Each limit is written once here and used twice: as a pydantic constraint (so the operator and the tests
reject what the API server rejects) and in the generated schema (`pattern`, `maxLength`, CEL rules).
Patterns must mean the same in Python `re`, pydantic's Rust regex, Go's regexp and CEL's RE2: plain
character classes, groups, anchors and repeats (no lookaround, no backreferences).
"""

from __future__ import annotations

import re
from typing import Final

from desktop_image_operator.api.constants import (
    OWNER_CLUSTER_LABEL,
    OWNER_NAME_LABEL,
    OWNER_NAMESPACE_LABEL,
    OWNER_UID_LABEL,
)

# Cloud resource names. Yandex Cloud accepts at most 50 characters for a desktop image name; the pattern is
# the conservative naming rule shared by most Yandex Cloud resources (lowercase, starts with a letter, no
# trailing hyphen), so whatever passes here is accepted by the cloud.
CLOUD_NAME_MAX_LENGTH: Final = 50
CLOUD_NAME_PATTERN: Final = "^[a-z]([-a-z0-9]{0,48}[a-z0-9])?$"

# Cloud IDs (desktops, Compute images, folders, images, operations) are short opaque strings; 50 is the
# limit the Yandex Cloud API reference gives for ID fields.
CLOUD_ID_MAX_LENGTH: Final = 50
# Real IDs are lowercase letters and digits ("fd8...", "b1g..."); '-' and '_' are allowed after the first
# character for safety. An ID becomes a path segment of a REST URL (/cloud-desktop/v1/images/{imageId}), so
# '.', '/', '%', uppercase and whitespace are refused: "." or ".." would address another resource.
CLOUD_ID_PATTERN: Final = "^[a-z0-9][-_a-z0-9]*$"

DESCRIPTION_MAX_LENGTH: Final = 1024

# Yandex Cloud label rules (yandex-cloud-api.md). The cloud allows 64 labels; the operator stamps its
# ownership labels on top of the spec's, so the spec may hold that many fewer.
CLOUD_LABELS_MAX_COUNT: Final = 64
OWNERSHIP_LABELS: Final = (OWNER_UID_LABEL, OWNER_CLUSTER_LABEL, OWNER_NAMESPACE_LABEL, OWNER_NAME_LABEL)
LABELS_MAX_COUNT: Final = CLOUD_LABELS_MAX_COUNT - len(OWNERSHIP_LABELS)
LABEL_KEY_MAX_LENGTH: Final = 63
LABEL_KEY_PATTERN: Final = "^[a-z][-_0-9a-z]*$"
LABEL_VALUE_MAX_LENGTH: Final = 63
LABEL_VALUE_PATTERN: Final = "^[-_0-9a-z]*$"

# Kubernetes object names (RFC 1123 subdomain) and Secret data keys, as the API server checks them.
DNS_SUBDOMAIN_MAX_LENGTH: Final = 253
_DNS_SUBDOMAIN: Final = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
DNS_SUBDOMAIN_PATTERN: Final = f"^{_DNS_SUBDOMAIN}$"
SECRET_KEY_MAX_LENGTH: Final = 253
SECRET_KEY_PATTERN: Final = "^[-._a-zA-Z0-9]+$"

# metav1.Condition field rules, so status.conditions reads like any built-in resource's.
CONDITION_TYPE_MAX_LENGTH: Final = 316
# An optional DNS-subdomain prefix, then a name: "Ready" or "example.com/Ready".
CONDITION_TYPE_PATTERN: Final = f"^({_DNS_SUBDOMAIN}/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$"
CONDITION_REASON_MAX_LENGTH: Final = 1024
CONDITION_REASON_PATTERN: Final = "^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"
CONDITION_MESSAGE_MAX_LENGTH: Final = 32768
CONDITIONS_MAX_COUNT: Final = 8

_LABEL_KEY_RE: Final = re.compile(LABEL_KEY_PATTERN)


def is_label_key(value: str) -> bool:
    return len(value) <= LABEL_KEY_MAX_LENGTH and _LABEL_KEY_RE.fullmatch(value) is not None
