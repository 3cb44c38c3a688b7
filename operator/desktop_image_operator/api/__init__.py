"""The DesktopImage API: the resource's names, and pydantic models that are the single source of its schema.

The operator parses `spec` with `DesktopImageSpec.model_validate(body["spec"])` and builds status patches with
`DesktopImageStatus(...).model_dump(by_alias=True, exclude_none=True)`; `api.crd` turns the same models into
the CustomResourceDefinition.
"""

from desktop_image_operator.api.constants import (
    API_VERSION,
    CATEGORIES,
    CONDITION_READY,
    CONDITION_SYNCED,
    CRD_NAME,
    GROUP,
    KIND,
    LIST_KIND,
    PLURAL,
    SHORT_NAMES,
    SINGULAR,
    VERSION,
)
from desktop_image_operator.api.spec import CredentialsRef, DeletionPolicy, DesktopImageSpec, ImageSource
from desktop_image_operator.api.status import (
    Condition,
    ConditionStatus,
    DesktopImageStatus,
    ImageStatusValue,
    OperationKind,
    OperationRecord,
)

__all__ = [
    "API_VERSION",
    "CATEGORIES",
    "CONDITION_READY",
    "CONDITION_SYNCED",
    "CRD_NAME",
    "GROUP",
    "KIND",
    "LIST_KIND",
    "PLURAL",
    "SHORT_NAMES",
    "SINGULAR",
    "VERSION",
    "Condition",
    "ConditionStatus",
    "CredentialsRef",
    "DeletionPolicy",
    "DesktopImageSpec",
    "DesktopImageStatus",
    "ImageSource",
    "ImageStatusValue",
    "OperationKind",
    "OperationRecord",
]
